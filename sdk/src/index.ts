/**
 * `@mediamesh/sdk`: the MediaMesh client SDK (atm0s-media-server v0.2 SDK protocol).
 *
 * ```ts
 * import { connect } from '@mediamesh/sdk';
 * const session = await connect({ url, token, join: { room: 'demo', peer: 'alice' } });
 * await session.publish('video_main', camTrack);
 * session.on('trackStarted', async (t) => {
 *   const sub = await session.subscribe(t, { kind: t.kind });
 *   videoElement.srcObject = sub.stream;
 * });
 * ```
 * @packageDocumentation
 */
export { connect, Session, Publication, Subscription, MessageChannel, SDK_VERSION } from './session.js';
export type {
  ConnectOptions,
  PublishOptions,
  SubscribeOptions,
  SessionEvents,
  PublicationEvents,
  SubscriptionEvents,
  SubscriptionStatus,
  MessageChannelEvents,
} from './session.js';
export { AudioMixer } from './mixer.js';
export type { MixerOptions, MixerEvents, MixerOutput } from './mixer.js';
export { MediaMeshError } from './errors.js';
export type { LocalErrorCode } from './errors.js';
export { Emitter } from './emitter.js';
export { ControlProtocol, decodeServerEvent } from './protocol.js';
export type { ControlChannel, SdkEvent, RequestCase } from './protocol.js';
export { buildTracks, mapMLines } from './tracks.js';
export type { SenderSlot, ReceiverSlot, MLine } from './tracks.js';
export * from './types.js';
