// A MediaMesh session: one RTCPeerConnection with the control data channel, its send and
// receive slots, ICE handling and the room state seen through server events.
import { create } from '@bufbuild/protobuf';
import {
  ConnectRequestSchema,
  ConnectResponseSchema,
  RemoteIceRequestSchema,
  RemoteIceResponseSchema,
} from './gen/gateway_pb.js';
import { RoomJoinSchema, type RoomJoin } from './gen/session_pb.js';
import { Emitter } from './emitter.js';
import { MediaMeshError } from './errors.js';
import { postProtobuf } from './http.js';
import { ControlProtocol, type SdkEvent } from './protocol.js';
import { AudioMixer, type MixerOptions } from './mixer.js';
import type { ServerEvent as FeaturesEvent } from './gen/features_pb.js';
import { buildTracks, receiverConfig, senderConfig, senderSource, type ReceiverSlot, type SenderSlot } from './tracks.js';
import type {
  ChannelMessage,
  ConnectionState,
  JoinInfo,
  PeerInfo,
  ReceiverLimits,
  ReceiverStats,
  ReceiverStatus,
  RemoteTrack,
  SenderStatus,
  TrackKind,
  TrackSource,
} from './types.js';

/** SDK version string sent in `ConnectRequest.version`. */
export const SDK_VERSION = 'mediamesh-ts@0.1.0';

/** Options of {@link connect}. */
export interface ConnectOptions {
  /** Gateway base URL, e.g. `http://127.0.0.1:8080` (the SDK appends `/webrtc/...`). */
  url: string;
  /** A `webrtc` token; its room/peer must match `join`. */
  token: string;
  /** Room to join right away; without it the session connects only. */
  join?: JoinInfo;
  /** Receivers created before the first offer (default 1 audio + 1 video); more are added on demand. */
  receivers?: { audio?: number; video?: number };
  /** Timeout of each data-channel request (default 5000 ms). */
  requestTimeoutMs?: number;
  /** Timeout of the HTTP calls (default 10000 ms). */
  httpTimeoutMs?: number;
  /** Time allowed from the connect POST to an open data channel (default 20000 ms). */
  connectTimeoutMs?: number;
  /** Restart ICE by itself when the connection goes `disconnected` or `failed` (default true). */
  autoRestartIce?: boolean;
  /** Extra RTCPeerConnection configuration (ICE servers...). `bundlePolicy` is always `max-bundle`. */
  rtcConfig?: RTCConfiguration;
  /** Sent as `ConnectRequest.version` (default {@link SDK_VERSION}). */
  version?: string;
  /** `fetch` to use (default `globalThis.fetch`). */
  fetch?: typeof fetch;
  /** The audio mixer: N audio outputs the server fills with the loudest speakers ({@link Session.mixer}). */
  mixer?: MixerOptions;
}

/** Options of {@link Session.publish}. */
export interface PublishOptions {
  /** Priority among the room's tracks (default 1). */
  priority?: number;
  /** Metadata seen by subscribers in `trackStarted`. */
  metadata?: string;
  /** `max`: always request full quality; `dynamic` (default): follow the subscribers. */
  bitrate?: 'dynamic' | 'max';
  /** Send three simulcast layers (rids "0", "1", "2"; video only). */
  simulcast?: boolean;
  /**
   * SVC or temporal layering as a WebRTC scalability mode, e.g. `L3T3` (VP9/AV1
   * spatial + temporal SVC), `L3T3_KEY`, `L1T3` (temporal only); with `simulcast`
   * it applies to each stream (e.g. `L1T3`). Video only.
   */
  scalabilityMode?: string;
  /**
   * Send this video codec (`vp8`, `vp9`, `h264`, `av1`): only it (with its
   * retransmission and FEC formats) is offered. Unset: the browser's default list.
   */
  codec?: 'vp8' | 'vp9' | 'h264' | 'av1';
}

/** Options of {@link Session.subscribe}. */
export interface SubscribeOptions extends ReceiverLimits {
  /** Kind of the remote track. */
  kind: TrackKind;
}

/** Events of a {@link Session}, with their payloads. */
export interface SessionEvents {
  connectionState: ConnectionState;
  peerJoined: PeerInfo;
  peerUpdated: PeerInfo;
  peerLeft: { peer: string };
  trackStarted: RemoteTrack;
  trackUpdated: RemoteTrack;
  trackStopped: RemoteTrack;
  /** A publication's status changed (`active` once the server receives its media). */
  senderState: { name: string; status: SenderStatus };
  /** A receiver's status changed (`active` while media is forwarded to it). */
  receiverState: { receiver: string; status: ReceiverStatus; source?: TrackSource };
  voiceActivity: { receiver: string; level: number; source?: TrackSource };
  /** The server's report on a receiver (layer sent, target, bandwidth estimate), once a second. */
  receiverStats: { receiver: string; stats: ReceiverStats; source?: TrackSource };
  /** Joined a room (`JoinInfo`) or left it (`null`). */
  roomChanged: JoinInfo | null;
  /** Something unusual that did not fail a call (undecodable frame, failed trickle POST...). */
  warning: string;
}

interface ReceiverEntry {
  slot: ReceiverSlot;
  transceiver: RTCRtpTransceiver;
  subscription: Subscription | null;
  /** Reserved as a mixer output (never used for subscriptions). */
  mixer?: boolean;
}

interface SenderEntry {
  slot: SenderSlot;
  transceiver: RTCRtpTransceiver;
  publication: Publication;
}

const sourceKey = (s: TrackSource) => `${s.peer}\u0000${s.track}`;

function roomJoin(info: JoinInfo, mixer: AudioMixer | null): RoomJoin {
  const mode = info.mode ?? 'full';
  return create(RoomJoinSchema, {
    room: info.room,
    peer: info.peer,
    ...(info.metadata !== undefined ? { metadata: info.metadata } : {}),
    publish: { peer: true, tracks: true },
    subscribe: { peers: mode === 'full', tracks: mode !== 'manual' },
    features: mixer ? { mixer: mixer.joinConfig() } : {},
  });
}

const DEPENDENCY_DESCRIPTOR = 'https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension';

/**
 * Asks for the AV1 Dependency Descriptor header extension on a receiving video
 * transceiver (Chromium offers it only for sending by default). Without it a
 * subscriber cannot follow AV1 SVC frames of several spatial layers.
 */
function negotiateDependencyDescriptor(t: RTCRtpTransceiver): void {
  const tx = t as RTCRtpTransceiver & {
    getHeaderExtensionsToNegotiate?: () => { uri: string; direction: string }[];
    setHeaderExtensionsToNegotiate?: (e: { uri: string; direction: string }[]) => void;
  };
  if (!tx.getHeaderExtensionsToNegotiate || !tx.setHeaderExtensionsToNegotiate) return;
  try {
    const exts = tx.getHeaderExtensionsToNegotiate();
    if (!exts.some((e) => e.uri === DEPENDENCY_DESCRIPTOR && e.direction === 'stopped')) return;
    tx.setHeaderExtensionsToNegotiate(exts.map((e) => (e.uri === DEPENDENCY_DESCRIPTOR ? { ...e, direction: 'sendrecv' } : e)));
  } catch {
    // Older browsers: the stream still plays, without AV1 SVC above the base layer.
  }
}

/** Limits a transceiver to one video codec plus rtx/red/ulpfec/flexfec (when the browser can). */
function preferCodec(t: RTCRtpTransceiver, codec: string): void {
  const caps = typeof RTCRtpSender !== 'undefined' ? RTCRtpSender.getCapabilities?.('video') : null;
  if (!caps || typeof t.setCodecPreferences !== 'function') return;
  const mime = `video/${codec}`.toLowerCase();
  const helpers = ['video/rtx', 'video/red', 'video/ulpfec', 'video/flexfec-03'];
  const chosen = caps.codecs.filter((c) => c.mimeType.toLowerCase() === mime);
  if (chosen.length === 0) throw new MediaMeshError('INVALID_STATE', `this browser cannot send ${codec}`);
  t.setCodecPreferences([...chosen, ...caps.codecs.filter((c) => helpers.includes(c.mimeType.toLowerCase()))]);
}

/**
 * Connects to MediaMesh: creates the peer connection (the pool of receivers and the
 * control data channel), POSTs `/webrtc/connect` with the offer and, if `join` is given,
 * the room to join; resolves once the data channel is open.
 *
 * @throws {@link MediaMeshError} with the HTTP status as `code` when the server refuses
 *   (401/403 for a bad token), `REQUEST_TIMEOUT` / `NOT_CONNECTED` on timeouts.
 */
export async function connect(options: ConnectOptions): Promise<Session> {
  const s = new Session(options);
  await s.start();
  return s;
}

/**
 * A connection to MediaMesh. Create it with {@link connect}.
 *
 * Room state is kept up to date from server events: {@link Session.peers} and
 * {@link Session.remoteTracks} are immutable snapshots replaced on every change.
 */
export class Session extends Emitter<SessionEvents> {
  /** The underlying peer connection. */
  readonly pc: RTCPeerConnection;
  /** The control data channel (pre-negotiated, id 0). */
  readonly dataChannel: RTCDataChannel;
  /** The request/response layer on the data channel. */
  readonly protocol: ControlProtocol;
  /** The audio mixer, when connected with `mixer`. */
  readonly mixer: AudioMixer | null = null;

  private readonly opts: Required<Pick<ConnectOptions, 'requestTimeoutMs' | 'httpTimeoutMs' | 'connectTimeoutMs' | 'autoRestartIce' | 'version'>> & ConnectOptions;
  private token: string;
  private joinInfo: JoinInfo | null;
  private _state: ConnectionState = 'new';
  private _connId: string | null = null;
  private _iceLite = false;
  private senders: SenderEntry[] = [];
  private receivers: ReceiverEntry[] = [];
  private slotCounter = 0;
  private negChain: Promise<void> = Promise.resolve();
  private pendingCandidates: string[] = [];
  private _peers = new Map<string, PeerInfo>();
  private _tracks = new Map<string, RemoteTrack>();
  private peersSnap: PeerInfo[] = [];
  private tracksSnap: RemoteTrack[] = [];
  private channels = new Map<string, MessageChannel>();
  private restartTimer: ReturnType<typeof setTimeout> | null = null;
  private restartAttempts = 0;
  private restarting = false;
  /** Number of completed renegotiations (UpdateSdp) and ICE restarts, for diagnostics. */
  negotiations = { updateSdp: 0, iceRestarts: 0 };

  /** @internal Use {@link connect}. */
  constructor(options: ConnectOptions) {
    super();
    this.opts = {
      requestTimeoutMs: 5000,
      httpTimeoutMs: 10000,
      connectTimeoutMs: 20000,
      autoRestartIce: true,
      version: SDK_VERSION,
      ...options,
    };
    this.token = options.token;
    this.joinInfo = options.join ?? null;
    this.pc = new RTCPeerConnection({ ...(options.rtcConfig ?? {}), bundlePolicy: 'max-bundle' });
    this.dataChannel = this.pc.createDataChannel('data', { negotiated: true, id: 0 });
    this.protocol = new ControlProtocol(this.dataChannel as any, this.opts.requestTimeoutMs);
    this.protocol.on('event', (e) => this.onServerEvent(e));
    this.protocol.on('warning', (w) => this.emit('warning', w));
    this.dataChannel.addEventListener('close', () => {
      if (this._state !== 'closed') this.setState('disconnected');
    });
    const pool = { audio: options.receivers?.audio ?? 1, video: options.receivers?.video ?? 1 };
    for (let i = 0; i < pool.audio; i++) this.addReceiver('audio');
    for (let i = 0; i < pool.video; i++) this.addReceiver('video');
    if (options.mixer) {
      const outputs = Array.from({ length: Math.max(0, options.mixer.outputs) }, () => {
        const e = this.addReceiver('audio');
        e.mixer = true;
        return { name: e.slot.name, stream: new MediaStream([e.transceiver.receiver.track]) };
      });
      const host = {
        requestMixer: (action: { case: 'attach' | 'detach'; value: { sources: TrackSource[] } }) =>
          this.protocol.request('features', { feature: { case: 'mixer', value: { action } } }),
      };
      this.mixer = new AudioMixer(host, outputs, options.mixer);
    }
    this.pc.addEventListener('icecandidate', (ev) => {
      const c = ev.candidate?.candidate;
      if (c) this.trickle(c);
    });
    this.pc.addEventListener('connectionstatechange', () => this.onPcState());
  }

  // ------------------------------------------------------------------ state

  /** Connection state of the session. */
  get state(): ConnectionState {
    return this._state;
  }
  /** The server's id for this connection (used in the restart-ice and ice-candidate URLs). */
  get connId(): string | null {
    return this._connId;
  }
  /** Whether the server runs ICE-lite (then no candidates are trickled). */
  get iceLite(): boolean {
    return this._iceLite;
  }
  /** The room joined, or null. */
  get room(): JoinInfo | null {
    return this.joinInfo;
  }
  /** Other peers in the room (snapshot; a new array after every change). */
  get peers(): readonly PeerInfo[] {
    return this.peersSnap;
  }
  /** Tracks published by other peers (snapshot; a new array after every change). */
  get remoteTracks(): readonly RemoteTrack[] {
    return this.tracksSnap;
  }
  /** This session's publications. */
  get publications(): readonly Publication[] {
    return this.senders.map((s) => s.publication);
  }
  /** This session's active subscriptions. */
  get subscriptions(): readonly Subscription[] {
    return this.receivers.flatMap((r) => (r.subscription ? [r.subscription] : []));
  }
  /** Receiver slots: name, kind, and the source attached (diagnostics). */
  get receiverSlots(): ReadonlyArray<{ name: string; kind: TrackKind; source: TrackSource | null; busy: boolean }> {
    return this.receivers.map((r) => ({ name: r.slot.name, kind: r.slot.kind, source: r.slot.source ?? null, busy: !!r.subscription }));
  }

  private setState(s: ConnectionState) {
    if (this._state === s || this._state === 'closed') return;
    this._state = s;
    this.emit('connectionState', s);
  }

  /** POSTs a `ConnectRequest` with the local offer, the room and the slots to `path`. */
  private postOffer(path: string) {
    return postProtobuf(
      this.base(path),
      ConnectRequestSchema,
      create(ConnectRequestSchema, {
        version: this.opts.version,
        ...(this.joinInfo ? { join: roomJoin(this.joinInfo, this.mixer) } : {}),
        tracks: this.currentTracks(),
        sdp: this.pc.localDescription!.sdp,
      }),
      ConnectResponseSchema,
      { token: this.token, timeoutMs: this.opts.httpTimeoutMs, fetchImpl: this.opts.fetch },
    );
  }

  private base(path: string): string {
    return this.opts.url.replace(/\/+$/, '') + path;
  }

  // ------------------------------------------------------------------ connect / ICE

  /** @internal Called by {@link connect}. */
  async start(): Promise<void> {
    if (this._state !== 'new') throw new MediaMeshError('INVALID_STATE', `start() in state ${this._state}`);
    this.setState('connecting');
    const deadline = Date.now() + this.opts.connectTimeoutMs;
    try {
      const offer = await this.pc.createOffer();
      await this.pc.setLocalDescription(offer);
      const res = await this.postOffer('/webrtc/connect');
      if (!res.connId || !res.sdp) {
        throw new MediaMeshError('INVALID_RESPONSE', `POST /webrtc/connect: reply without ${!res.connId ? 'conn_id' : 'sdp'}`);
      }
      this._connId = res.connId;
      this._iceLite = res.iceLite;
      await this.pc.setRemoteDescription({ type: 'answer', sdp: res.sdp });
      this.flushCandidates();
      await this.waitOpen(Math.max(0, deadline - Date.now()));
      this.setState('connected');
      if (this.joinInfo) this.emit('roomChanged', this.joinInfo);
    } catch (e) {
      this.teardown();
      this.setState('failed');
      throw e;
    }
  }

  private waitOpen(ms: number): Promise<void> {
    if (this.dataChannel.readyState === 'open') return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        cleanup();
        reject(new MediaMeshError('NOT_CONNECTED',
          `the control data channel did not open within ${this.opts.connectTimeoutMs} ms (pc ${this.pc.connectionState}, ice ${this.pc.iceConnectionState})`));
      }, ms);
      const onOpen = () => {
        cleanup();
        resolve();
      };
      const cleanup = () => {
        clearTimeout(timer);
        this.dataChannel.removeEventListener('open', onOpen);
      };
      this.dataChannel.addEventListener('open', onOpen);
    });
  }

  private trickle(candidate: string) {
    if (this._connId === null) {
      this.pendingCandidates.push(candidate);
      return;
    }
    if (this._iceLite) return;
    const url = this.base(`/webrtc/${encodeURIComponent(this._connId)}/ice-candidate`);
    postProtobuf(url, RemoteIceRequestSchema, create(RemoteIceRequestSchema, { candidates: [candidate] }), RemoteIceResponseSchema, {
      timeoutMs: this.opts.httpTimeoutMs,
      fetchImpl: this.opts.fetch,
    }).catch((e) => this.emit('warning', `trickle candidate failed: ${(e as Error).message}`));
  }

  private flushCandidates() {
    const list = this.pendingCandidates.splice(0);
    for (const c of list) this.trickle(c);
  }

  private onPcState() {
    const st = this.pc.connectionState;
    if (this._state === 'closed' || this._state === 'new' || this._state === 'connecting') return;
    if (st === 'connected') {
      this.restartAttempts = 0;
      if (this.restartTimer) clearTimeout(this.restartTimer);
      this.restartTimer = null;
      if (this.dataChannel.readyState === 'open') this.setState('connected');
      return;
    }
    if ((st === 'disconnected' || st === 'failed') && this.opts.autoRestartIce) {
      this.setState('reconnecting');
      if (this.restartTimer) return;
      // "disconnected" often heals by itself within a second or two: give it that time.
      const delay = st === 'failed' ? 0 : 2000;
      this.restartTimer = setTimeout(() => {
        this.restartTimer = null;
        const now = this.pc.connectionState;
        if (now !== 'disconnected' && now !== 'failed') return;
        if (this.restartAttempts >= 5) {
          this.setState('failed');
          return;
        }
        this.restartAttempts += 1;
        this.restartIce().catch((e) => {
          this.emit('warning', `automatic ICE restart ${this.restartAttempts} failed: ${(e as Error).message}`);
          setTimeout(() => this.onPcState(), 1000 * this.restartAttempts);
        });
      }, delay);
    } else if (st === 'failed') {
      this.setState('failed');
    }
  }

  /**
   * Restarts ICE: a new offer with fresh credentials, `POST /webrtc/{conn_id}/restart-ice`
   * with the current join and tracks, then the answer. Runs after any renegotiation in
   * progress. The session calls it by itself when the connection goes `disconnected`
   * (for 2 s) or `failed`, unless `autoRestartIce` is false.
   */
  restartIce(): Promise<void> {
    return this.enqueue(async () => {
      if (this._state === 'closed') throw new MediaMeshError('CLOSED', 'restartIce() on a closed session');
      if (!this._connId) throw new MediaMeshError('NOT_CONNECTED', 'restartIce() before connect');
      this.restarting = true;
      try {
        this.pc.restartIce();
        const offer = await this.pc.createOffer({ iceRestart: true });
        await this.pc.setLocalDescription(offer);
        let res;
        try {
          res = await this.postOffer(`/webrtc/${encodeURIComponent(this._connId)}/restart-ice`);
        } catch (e) {
          await this.pc.setLocalDescription({ type: 'rollback' }).catch(() => {});
          throw e;
        }
        if (!res.sdp) throw new MediaMeshError('INVALID_RESPONSE', 'restart-ice: reply without sdp');
        this._iceLite = res.iceLite;
        if (res.connId && res.connId !== this._connId) this._connId = res.connId;
        await this.pc.setRemoteDescription({ type: 'answer', sdp: res.sdp });
        this.negotiations.iceRestarts += 1;
      } finally {
        this.restarting = false;
      }
    });
  }

  /** True while an ICE restart is running. */
  get isRestartingIce(): boolean {
    return this.restarting;
  }

  // ------------------------------------------------------------------ negotiation

  /** Runs `job` after every earlier negotiation job (offer/answer exchanges never overlap). */
  private enqueue<T>(job: () => Promise<T>): Promise<T> {
    const run = this.negChain.then(job);
    this.negChain = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  /** The full Tracks for the current local description: slots whose transceiver has an m-line. */
  private currentTracks() {
    return buildTracks(
      this.senders.filter((s) => s.transceiver.mid !== null).map((s) => s.slot),
      this.receivers.filter((r) => r.transceiver.mid !== null).map((r) => r.slot),
    );
  }

  /**
   * Renegotiates (UpdateSdp, the client offers) if any transceiver has no m-line yet.
   * Several callers are served by one exchange when they queue up together.
   */
  private renegotiate(): Promise<void> {
    return this.enqueue(async () => {
      const missing = [...this.senders, ...this.receivers].some((x) => x.transceiver.mid === null);
      if (!missing) return;
      this.assertOpen('renegotiation');
      const offer = await this.pc.createOffer();
      await this.pc.setLocalDescription(offer);
      let res;
      try {
        res = await this.protocol.request('session', {
          action: { case: 'sdp', value: { tracks: this.currentTracks(), sdp: this.pc.localDescription!.sdp } },
        });
      } catch (e) {
        await this.pc.setLocalDescription({ type: 'rollback' }).catch(() => {});
        throw e;
      }
      if (res.action.case !== 'sdp' || !res.action.value.sdp) {
        await this.pc.setLocalDescription({ type: 'rollback' }).catch(() => {});
        throw new MediaMeshError('INVALID_RESPONSE', `UpdateSdp: the response carries ${res.action.case ?? 'no action'} without an answer`);
      }
      await this.pc.setRemoteDescription({ type: 'answer', sdp: res.action.value.sdp });
      this.negotiations.updateSdp += 1;
    });
  }

  private assertOpen(what: string) {
    if (this._state === 'closed') throw new MediaMeshError('CLOSED', `${what}: the session is closed`);
    if (!this.protocol.isOpen) throw new MediaMeshError('NOT_CONNECTED', `${what}: the session is not connected (${this._state})`);
  }

  private addReceiver(kind: TrackKind): ReceiverEntry {
    const transceiver = this.pc.addTransceiver(kind, { direction: 'recvonly' });
    if (kind === 'video') negotiateDependencyDescriptor(transceiver);
    const entry: ReceiverEntry = { slot: { kind, name: `${kind}_${this.slotCounter++}`, limits: {} }, transceiver, subscription: null };
    this.receivers.push(entry);
    return entry;
  }

  // ------------------------------------------------------------------ publish

  /**
   * Publishes `track` to the room as track `name` (what other peers see in
   * `trackStarted` and subscribe to). Adds a send m-line and renegotiates. Publishing a
   * name that was stopped re-attaches the same slot without renegotiation.
   */
  async publish(name: string, track: MediaStreamTrack, options: PublishOptions = {}): Promise<Publication> {
    this.assertOpen(`publish ${name}`);
    const existing = this.senders.find((s) => s.slot.name === name);
    if (existing) {
      if (existing.slot.source) throw new MediaMeshError('INVALID_STATE', `a track named ${name} is already published`);
      if (existing.slot.kind !== track.kind) throw new MediaMeshError('INVALID_STATE', `${name} is a ${existing.slot.kind} slot, got a ${track.kind} track`);
      if (options.priority !== undefined) existing.slot.priority = options.priority;
      if (options.bitrate !== undefined) existing.slot.bitrate = options.bitrate;
      await existing.publication.replace(track, options.metadata);
      return existing.publication;
    }
    const kind = track.kind as TrackKind;
    if (kind !== 'audio' && kind !== 'video') throw new MediaMeshError('INVALID_STATE', `cannot publish a track of kind ${track.kind}`);
    const slot: SenderSlot = {
      kind,
      name,
      priority: options.priority ?? 1,
      bitrate: options.bitrate ?? 'dynamic',
      source: { id: track.id, ...(options.metadata !== undefined ? { metadata: options.metadata } : {}) },
    };
    const init: RTCRtpTransceiverInit = { direction: 'sendonly' };
    if (kind === 'video') {
      const svc = options.scalabilityMode ? { scalabilityMode: options.scalabilityMode } : {};
      if (options.simulcast) {
        init.sendEncodings = [{ rid: '0', scaleResolutionDownBy: 4, ...svc }, { rid: '1', scaleResolutionDownBy: 2, ...svc }, { rid: '2', ...svc }];
      } else if (options.scalabilityMode) {
        init.sendEncodings = [svc as RTCRtpEncodingParameters];
      }
    }
    const transceiver = this.pc.addTransceiver(track, init);
    if (kind === 'video' && options.codec) preferCodec(transceiver, options.codec);
    const publication = new Publication(this, slot, transceiver, track);
    const entry: SenderEntry = { slot, transceiver, publication };
    this.senders.push(entry);
    try {
      await this.renegotiate();
    } catch (e) {
      this.senders = this.senders.filter((s) => s !== entry);
      try {
        transceiver.stop();
      } catch {
        /* ignore */
      }
      throw e;
    }
    return publication;
  }

  /** @internal */
  senderRequest(name: string, action: any) {
    this.assertOpen(`sender ${name}`);
    return this.protocol.request('sender', { name, action });
  }

  // ------------------------------------------------------------------ subscribe

  /**
   * Plays a remote track. Takes a free receiver of `kind` from the pool, or adds one
   * (renegotiation), and attaches it to `source`. The returned subscription's `stream`
   * plays the track; it can later switch to another source without renegotiation.
   */
  async subscribe(source: TrackSource, options: SubscribeOptions): Promise<Subscription> {
    this.assertOpen(`subscribe ${source.peer}/${source.track}`);
    const { kind, ...limits } = options;
    let entry = this.receivers.find((r) => r.slot.kind === kind && !r.subscription && !r.mixer && r.transceiver.mid !== null)
      ?? this.receivers.find((r) => r.slot.kind === kind && !r.subscription && !r.mixer);
    const sub = new Subscription(this, kind, limits);
    if (!entry) entry = this.addReceiver(kind);
    entry.subscription = sub;
    sub.bind(entry.slot.name, entry.transceiver);
    try {
      if (entry.transceiver.mid === null) await this.renegotiate();
      await this.attachReceiver(entry.slot.name, source, limits);
    } catch (e) {
      entry.subscription = null;
      sub.markEnded();
      throw e;
    }
    sub.started(source);
    return sub;
  }

  private entryOf(name: string): ReceiverEntry {
    const e = this.receivers.find((r) => r.slot.name === name);
    if (!e) throw new MediaMeshError('INVALID_STATE', `no receiver named ${name}`);
    return e;
  }

  /** @internal */
  async attachReceiver(name: string, source: TrackSource, limits: ReceiverLimits) {
    this.assertOpen(`receiver ${name} attach`);
    await this.protocol.request('receiver', {
      name,
      action: { case: 'attach', value: { source: { peer: source.peer, track: source.track }, config: receiverConfig(limits) } },
    });
    const e = this.entryOf(name);
    e.slot.source = { peer: source.peer, track: source.track };
    e.slot.limits = { ...limits };
  }

  /** @internal */
  async detachReceiver(name: string) {
    const e = this.entryOf(name);
    this.assertOpen(`receiver ${name} detach`);
    await this.protocol.request('receiver', { name, action: { case: 'detach', value: {} } });
    e.slot.source = undefined;
  }

  /** @internal */
  async configReceiver(name: string, limits: ReceiverLimits) {
    this.assertOpen(`receiver ${name} config`);
    await this.protocol.request('receiver', { name, action: { case: 'config', value: receiverConfig(limits) } });
    this.entryOf(name).slot.limits = { ...limits };
  }

  /** @internal Returns the receiver to the pool. */
  releaseReceiver(name: string) {
    const e = this.receivers.find((r) => r.slot.name === name);
    if (e) {
      e.subscription = null;
      e.slot.source = undefined;
    }
  }

  // ------------------------------------------------------------------ room

  /** Joins a room on this connection (`token` defaults to the session's token). */
  async join(info: JoinInfo, token = this.token): Promise<void> {
    this.assertOpen('join');
    await this.protocol.request('session', { action: { case: 'join', value: { info: roomJoin(info, this.mixer), token } } });
    this.token = token;
    this.joinInfo = { ...info };
    this.emit('roomChanged', this.joinInfo);
  }

  /**
   * Leaves the room. Subscriptions end (their receivers return to the pool), message
   * channels close, remote peers and tracks are forgotten. Publications stay: the server
   * publishes them again on the next {@link join}.
   */
  async leave(): Promise<void> {
    this.assertOpen('leave');
    await this.protocol.request('session', { action: { case: 'leave', value: {} } });
    this.joinInfo = null;
    this.mixer?.reset();
    for (const r of this.receivers) {
      const s = r.subscription;
      r.subscription = null;
      r.slot.source = undefined;
      s?.markEnded();
    }
    for (const ch of this.channels.values()) ch.markClosed();
    this.channels.clear();
    this._peers.clear();
    this._tracks.clear();
    this.peersSnap = [];
    this.tracksSnap = [];
    this.emit('roomChanged', null);
  }

  /** In `manual` mode: start receiving `peer`'s peer and track events. */
  async subscribePeer(peer: string): Promise<void> {
    this.assertOpen('subscribePeer');
    await this.protocol.request('room', { action: { case: 'subscribe', value: { peer } } });
  }

  /** In `manual` mode: stop receiving `peer`'s events. */
  async unsubscribePeer(peer: string): Promise<void> {
    this.assertOpen('unsubscribePeer');
    await this.protocol.request('room', { action: { case: 'unsubscribe', value: { peer } } });
  }

  // ------------------------------------------------------------------ message channels

  /**
   * A room-wide message channel. Subscribes (and, unless `publish: false`, starts
   * publishing) at once; `ready` settles when the server accepted. The same label returns
   * the same open channel.
   */
  messageChannel(label: string, options: { publish?: boolean } = {}): MessageChannel {
    const existing = this.channels.get(label);
    if (existing) return existing;
    const ch = new MessageChannel(this, label, options.publish ?? true);
    this.channels.set(label, ch);
    return ch;
  }

  /** @internal */
  channelRequest(label: string, action: any) {
    this.assertOpen(`message channel ${label}`);
    return this.protocol.request('messageChannel', { label, action });
  }

  /** @internal */
  forgetChannel(ch: MessageChannel) {
    if (this.channels.get(ch.label) === ch) this.channels.delete(ch.label);
  }

  // ------------------------------------------------------------------ events

  private onServerEvent(e: SdkEvent) {
    switch (e.type) {
      case 'peerJoined':
      case 'peerUpdated':
        this._peers.set(e.peer.peer, e.peer);
        this.peersSnap = [...this._peers.values()];
        this.emit(e.type, e.peer);
        break;
      case 'peerLeft':
        this._peers.delete(e.peer);
        this.peersSnap = [...this._peers.values()];
        this.emit('peerLeft', { peer: e.peer });
        break;
      case 'trackStarted':
      case 'trackUpdated':
        this._tracks.set(sourceKey(e.track), e.track);
        this.tracksSnap = [...this._tracks.values()];
        this.emit(e.type, e.track);
        break;
      case 'trackStopped':
        this._tracks.delete(sourceKey(e.track));
        this.tracksSnap = [...this._tracks.values()];
        this.emit('trackStopped', e.track);
        break;
      case 'senderState': {
        const s = this.senders.find((x) => x.slot.name === e.name);
        s?.publication.setStatus(e.status);
        this.emit('senderState', { name: e.name, status: e.status });
        break;
      }
      case 'senderLayers': {
        const s = this.senders.find((x) => x.slot.name === e.name);
        s?.publication.setMaxSpatial(e.maxSpatial).catch((err: Error) => this.emit('warning', `${e.name}: pausing simulcast streams above ${e.maxSpatial} failed: ${err.message}`));
        break;
      }
      case 'receiverState': {
        const r = this.receivers.find((x) => x.slot.name === e.name);
        r?.subscription?.setStatus(e.status);
        this.emit('receiverState', { receiver: e.name, status: e.status, ...(r?.slot.source ? { source: r.slot.source } : {}) });
        break;
      }
      case 'features':
        this.mixer?.onEvent(e.detail as FeaturesEvent);
        break;
      case 'receiverStats': {
        const r = this.receivers.find((x) => x.slot.name === e.name);
        r?.subscription?.onStats(e.stats);
        this.emit('receiverStats', { receiver: e.name, stats: e.stats, ...(r?.slot.source ? { source: r.slot.source } : {}) });
        break;
      }
      case 'voiceActivity': {
        this.mixer?.onVoice(e.name, e.level);
        const r = this.receivers.find((x) => x.slot.name === e.name);
        this.emit('voiceActivity', { receiver: e.name, level: e.level, ...(r?.slot.source ? { source: r.slot.source } : {}) });
        break;
      }
      case 'message': {
        const ch = this.channels.get(e.label);
        if (ch) ch.deliver(e.peer, e.data);
        else this.emit('warning', `message on unknown channel ${e.label} from ${e.peer}`);
        break;
      }
      default:
        break;
    }
  }

  // ------------------------------------------------------------------ close

  /**
   * Closes the session: asks the server to disconnect (bounded wait), then closes the peer
   * connection. Idempotent.
   */
  async close(): Promise<void> {
    if (this._state === 'closed') return;
    if (this.protocol.isOpen) {
      await this.protocol.request('session', { action: { case: 'disconnect', value: {} } }, 2000).catch((e) => {
        this.emit('warning', `disconnect: ${(e as Error).message}`);
      });
    }
    this.teardown();
    this._state = 'closed';
    this.emit('connectionState', 'closed');
  }

  private teardown() {
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = null;
    this.protocol.shutdown('session closed');
    for (const r of this.receivers) r.subscription?.markEnded();
    for (const ch of this.channels.values()) ch.markClosed();
    this.channels.clear();
    try {
      this.pc.close();
    } catch {
      /* ignore */
    }
  }

  /** @internal */
  senderSlotConfig(slot: SenderSlot) {
    return senderConfig(slot);
  }
  /** @internal */
  senderSlotSource(slot: SenderSlot) {
    return senderSource(slot.source!);
  }
}

/** Events of a {@link Publication}. */
export interface PublicationEvents {
  /** Server-side status: `active` once media arrives, `inactive` when it stops. */
  status: SenderStatus;
  /**
   * The simulcast streams subscribers may want changed (MediaMesh servers): streams above
   * `maxSpatial` were paused (`encodings[i].active = false`), the others are on.
   */
  layers: { maxSpatial: number; active: boolean[] };
  /** Local state changed (published / paused / stopped). */
  change: Publication;
}

/** A local track published to the room. Created by {@link Session.publish}. */
export class Publication extends Emitter<PublicationEvents> {
  private _status: SenderStatus | null = null;
  private _paused = false;
  private _maxSpatial: number | null = null;

  /** @internal */
  constructor(
    private readonly session: Session,
    private readonly slot: SenderSlot,
    /** The send transceiver (its `sender` gives stats and encoding parameters). */
    readonly transceiver: RTCRtpTransceiver,
    private _track: MediaStreamTrack | null,
  ) {
    super();
  }

  /** Track name seen by other peers. */
  get name(): string {
    return this.slot.name;
  }
  get kind(): TrackKind {
    return this.slot.kind;
  }
  /** The local track being sent (null after {@link stop}). */
  get track(): MediaStreamTrack | null {
    return this._track;
  }
  /** The RTCRtpSender. */
  get sender(): RTCRtpSender {
    return this.transceiver.sender;
  }
  /** True while published to the room. */
  get published(): boolean {
    return !!this.slot.source;
  }
  get paused(): boolean {
    return this._paused;
  }
  /** Last status reported by the server. */
  get status(): SenderStatus | null {
    return this._status;
  }

  /** @internal */
  setStatus(s: SenderStatus) {
    this._status = s;
    this.emit('status', s);
  }

  /** The highest simulcast stream subscribers may want, as the server last said (null: all). */
  get maxSpatial(): number | null {
    return this._maxSpatial;
  }

  /**
   * @internal The server says which simulcast streams subscribers may want: the others
   * pause (the browser stops encoding them) until the server asks for them again.
   */
  async setMaxSpatial(maxSpatial: number): Promise<void> {
    this._maxSpatial = maxSpatial;
    const sender = this.transceiver.sender;
    const params = sender.getParameters();
    const encodings = params.encodings ?? [];
    if (encodings.length < 2 || !encodings.every((e) => e.rid)) return;
    let changed = false;
    encodings.forEach((e, i) => {
      const active = i <= maxSpatial;
      if (e.active !== active) {
        e.active = active;
        changed = true;
      }
    });
    if (changed) await sender.setParameters(params);
    this.emit('layers', { maxSpatial, active: encodings.map((e) => e.active !== false) });
  }

  /**
   * Sends `track` instead of the current one (no renegotiation, subscribers stay). On a
   * stopped publication this publishes again (`sender.attach`).
   */
  async replace(track: MediaStreamTrack, metadata?: string): Promise<void> {
    if (track.kind !== this.slot.kind) throw new MediaMeshError('INVALID_STATE', `${this.name}: cannot replace a ${this.slot.kind} track with a ${track.kind} track`);
    if (this.slot.source) {
      if (!this._paused) await this.transceiver.sender.replaceTrack(track);
      this._track = track;
      this.emit('change', this);
      return;
    }
    await this.transceiver.sender.replaceTrack(track);
    const source = { id: track.id, ...(metadata !== undefined ? { metadata } : {}) };
    await this.session.senderRequest(this.name, {
      case: 'attach',
      value: { source: senderSource(source), config: senderConfig(this.slot) },
    });
    this.slot.source = source;
    this._track = track;
    this._paused = false;
    this.emit('change', this);
  }

  /** Stops sending media but stays published (subscribers see the track go inactive). */
  async pause(): Promise<void> {
    if (this._paused || !this.slot.source) return;
    await this.transceiver.sender.replaceTrack(null);
    this._paused = true;
    this.emit('change', this);
  }

  /** Sends the track again after {@link pause}. */
  async resume(): Promise<void> {
    if (!this._paused) return;
    await this.transceiver.sender.replaceTrack(this._track);
    this._paused = false;
    this.emit('change', this);
  }

  /** Changes priority and bitrate mode (`sender.config`). */
  async setConfig(config: { priority?: number; bitrate?: 'dynamic' | 'max' }): Promise<void> {
    const next = { priority: config.priority ?? this.slot.priority, bitrate: config.bitrate ?? this.slot.bitrate };
    if (this.slot.source) await this.session.senderRequest(this.name, { case: 'config', value: senderConfig(next) });
    this.slot.priority = next.priority;
    this.slot.bitrate = next.bitrate;
  }

  /**
   * Unpublishes (`sender.detach`: subscribers get `trackStopped`). The m-line stays; a
   * later {@link replace} or `session.publish(name, ...)` publishes again. The local track
   * is not stopped.
   */
  async stop(): Promise<void> {
    if (!this.slot.source) return;
    await this.transceiver.sender.replaceTrack(null);
    await this.session.senderRequest(this.name, { case: 'detach', value: {} });
    this.slot.source = undefined;
    this._track = null;
    this._paused = false;
    this.emit('change', this);
  }
}

/** Status of a subscription: the server's receiver status, or local `paused` / `ended`. */
export type SubscriptionStatus = ReceiverStatus | 'paused' | 'ended';

/** Events of a {@link Subscription}. */
export interface SubscriptionEvents {
  status: SubscriptionStatus;
  /** Now playing another source (after {@link Subscription.switchTo}). */
  source: TrackSource;
  /** The server's report on this receiver, once a second while it plays. */
  stats: ReceiverStats;
}

/** A remote track played on one receiver. Created by {@link Session.subscribe}. */
export class Subscription extends Emitter<SubscriptionEvents> {
  private _source: TrackSource | null = null;
  private _server: ReceiverStatus = 'waiting';
  private _stats: ReceiverStats | null = null;
  private _paused = false;
  private _ended = false;
  private _name = '';
  private _transceiver: RTCRtpTransceiver | null = null;
  private _stream: MediaStream | null = null;

  /** @internal */
  constructor(
    private readonly session: Session,
    /** Kind of the played track. */
    readonly kind: TrackKind,
    private limits: ReceiverLimits,
  ) {
    super();
  }

  /** @internal */
  bind(name: string, transceiver: RTCRtpTransceiver) {
    this._name = name;
    this._transceiver = transceiver;
    this._stream = new MediaStream([transceiver.receiver.track]);
  }
  /** @internal */
  started(source: TrackSource) {
    this._source = { ...source };
  }

  /** The played source (the last one attached). */
  get source(): TrackSource {
    return this._source!;
  }
  /** A MediaStream with the receiver's track; the same object across switches. */
  get stream(): MediaStream {
    return this._stream!;
  }
  /** Receiver slot name (`audio_0`, `video_1`, ...). */
  get receiverName(): string {
    return this._name;
  }
  /** The RTCRtpReceiver (for getStats). */
  get receiver(): RTCRtpReceiver {
    return this._transceiver!.receiver;
  }
  get transceiver(): RTCRtpTransceiver {
    return this._transceiver!;
  }
  /** `ended` and `paused` are local states; otherwise the server's receiver status. */
  get status(): SubscriptionStatus {
    return this._ended ? 'ended' : this._paused ? 'paused' : this._server;
  }
  /** Current layer limits. */
  get currentLimits(): ReceiverLimits {
    return { ...this.limits };
  }

  /** The server's last report on this receiver (see {@link ReceiverStats}). */
  get stats(): ReceiverStats | null {
    return this._stats;
  }
  /** @internal */
  onStats(s: ReceiverStats) {
    this._stats = s;
    this.emit('stats', s);
  }
  /** @internal The server's receiver status. */
  setStatus(s: ReceiverStatus) {
    const before = this.status;
    this._server = s;
    if (this.status !== before) this.emit('status', this.status);
  }
  /** @internal */
  markEnded() {
    this.setLocal(() => {
      this._ended = true;
    });
  }

  private setLocal(change: () => void) {
    const before = this.status;
    change();
    if (this.status !== before) this.emit('status', this.status);
  }

  private live(what: string) {
    if (this._ended) throw new MediaMeshError('INVALID_STATE', `${what}: the subscription has ended`);
  }

  /**
   * Plays another remote track of the same kind on the same receiver: one `attach`
   * request, no renegotiation; `stream` stays the same object.
   */
  async switchTo(source: TrackSource): Promise<void> {
    this.live('switchTo');
    this._server = 'waiting'; // until the server reports the new source flowing
    await this.session.attachReceiver(this._name, source, this.limits);
    this._source = { ...source };
    this.setLocal(() => {
      this._paused = false;
    });
    this.emit('source', this._source);
  }

  /** Stops the forwarding (`receiver.detach`); the receiver stays reserved. */
  async pause(): Promise<void> {
    this.live('pause');
    if (this._paused) return;
    await this.session.detachReceiver(this._name);
    this.setLocal(() => {
      this._paused = true;
    });
  }

  /** Forwards the source again after {@link pause} (`receiver.attach`). */
  async resume(): Promise<void> {
    this.live('resume');
    if (!this._paused) return;
    this._server = 'waiting';
    await this.session.attachReceiver(this._name, this._source!, this.limits);
    this.setLocal(() => {
      this._paused = false;
    });
  }

  /** Changes priority and layer limits (`receiver.config`; stored while paused). */
  async setLimits(limits: ReceiverLimits): Promise<void> {
    this.live('setLimits');
    const next = { ...this.limits, ...limits };
    if (!this._paused) await this.session.configReceiver(this._name, next);
    this.limits = next;
  }

  /** Ends the subscription: detaches and returns the receiver to the pool. */
  async unsubscribe(): Promise<void> {
    if (this._ended) return;
    try {
      if (!this._paused) await this.session.detachReceiver(this._name);
    } finally {
      this.session.releaseReceiver(this._name);
      this.markEnded();
    }
  }
}

/** Events of a {@link MessageChannel}. */
export interface MessageChannelEvents {
  message: ChannelMessage;
  close: void;
}

const utf8 = new TextEncoder();
const utf8d = new TextDecoder();

/** A room-wide pub/sub channel over the control data channel. Created by {@link Session.messageChannel}. */
export class MessageChannel extends Emitter<MessageChannelEvents> {
  /** Settles when the server accepted the subscription (and publishing, if enabled). */
  readonly ready: Promise<void>;
  private publishing = false;
  private closed = false;

  /** @internal */
  constructor(
    private readonly session: Session,
    /** Channel label. */
    readonly label: string,
    publish: boolean,
  ) {
    super();
    this.ready = (async () => {
      await session.channelRequest(label, { case: 'sub', value: {} });
      if (publish) {
        await session.channelRequest(label, { case: 'startPub', value: {} });
        this.publishing = true;
      }
    })();
    this.ready.catch(() => {});
  }

  /** True after {@link close}, a leave or the end of the session. */
  get isClosed(): boolean {
    return this.closed;
  }

  /** Publishes one message (strings are sent as UTF-8). Messages keep their order. */
  async publish(data: string | Uint8Array): Promise<void> {
    if (this.closed) throw new MediaMeshError('INVALID_STATE', `message channel ${this.label} is closed`);
    await this.ready;
    if (!this.publishing) {
      await this.session.channelRequest(this.label, { case: 'startPub', value: {} });
      this.publishing = true;
    }
    await this.session.channelRequest(this.label, { case: 'pub', value: { data: typeof data === 'string' ? utf8.encode(data) : data } });
  }

  /** Stops publishing and unsubscribes. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.markClosed();
    this.session.forgetChannel(this);
    if (this.publishing) await this.session.channelRequest(this.label, { case: 'stopPub', value: {} }).catch(() => {});
    await this.session.channelRequest(this.label, { case: 'unsub', value: {} });
  }

  /** @internal */
  deliver(peer: string, data: Uint8Array) {
    if (this.closed) return;
    let text: string | undefined;
    const msg: ChannelMessage = {
      label: this.label,
      peer,
      data,
      get text() {
        return (text ??= utf8d.decode(data));
      },
    };
    this.emit('message', msg);
  }

  /** @internal */
  markClosed() {
    if (this.closed) return;
    this.closed = true;
    this.emit('close', undefined);
  }
}
