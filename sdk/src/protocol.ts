// The control protocol on the session's data channel: ClientEvent/ServerEvent framing,
// request/response matching by req_id, timeouts, and decoding of server events into
// typed SDK events. No WebRTC here: the channel is anything that looks like an
// RTCDataChannel (a fake one in unit tests).
import { create, fromBinary, toBinary, type MessageInitShape } from '@bufbuild/protobuf';
import {
  ClientEventSchema,
  RequestSchema,
  ServerEventSchema,
  type Response,
  type ServerEvent,
} from './gen/session_pb.js';
import { Kind, Receiver_Status, Sender_Status } from './gen/shared_pb.js';
import { Emitter } from './emitter.js';
import { MediaMeshError } from './errors.js';
import type { PeerInfo, ReceiverStats, ReceiverStatus, RemoteTrack, SenderStatus, TrackKind } from './types.js';

/** The part of RTCDataChannel the protocol uses. */
export interface ControlChannel {
  readonly readyState: string;
  binaryType: string;
  send(data: Uint8Array): void;
  addEventListener(type: 'open' | 'close' | 'message', fn: (ev: any) => void): void;
  removeEventListener(type: 'open' | 'close' | 'message', fn: (ev: any) => void): void;
}

type RequestInit = MessageInitShape<typeof RequestSchema>;
/** The request groups: `session`, `room`, `sender`, `receiver`, `features`, `messageChannel`. */
export type RequestCase = NonNullable<RequestInit['group']>['case'] & string;
/** Init shape of a request group. */
export type RequestValue<C extends RequestCase> = Extract<NonNullable<RequestInit['group']>, { case: C }>['value'];
/** The decoded response group answering a request of group `C`. */
export type ResponseValue<C extends RequestCase> = Extract<Response['body'], { case: C }>['value'];

/** A decoded server event, in SDK terms. */
export type SdkEvent =
  | { type: 'peerJoined'; peer: PeerInfo }
  | { type: 'peerUpdated'; peer: PeerInfo }
  | { type: 'peerLeft'; peer: string }
  | { type: 'trackStarted'; track: RemoteTrack }
  | { type: 'trackUpdated'; track: RemoteTrack }
  | { type: 'trackStopped'; track: RemoteTrack }
  | { type: 'senderState'; name: string; status: SenderStatus }
  | { type: 'senderLayers'; name: string; maxSpatial: number }
  | { type: 'receiverState'; name: string; status: ReceiverStatus }
  | { type: 'voiceActivity'; name: string; level: number }
  | { type: 'receiverStats'; name: string; stats: ReceiverStats }
  | { type: 'message'; label: string; peer: string; data: Uint8Array }
  | { type: 'session'; event: string; detail: unknown }
  | { type: 'features'; detail: unknown };

export const kindName = (k: Kind): TrackKind => (k === Kind.VIDEO ? 'video' : 'audio');
export const kindValue = (k: TrackKind): Kind => (k === 'video' ? Kind.VIDEO : Kind.AUDIO);


function peerInfo(peer: string, metadata?: string, extraData?: string): PeerInfo {
  const p: PeerInfo = { peer };
  if (metadata !== undefined) p.metadata = metadata;
  if (extraData !== undefined) p.extraData = extraData;
  return p;
}

function remoteTrack(peer: string, track: string, kind: Kind, metadata?: string): RemoteTrack {
  const t: RemoteTrack = { peer, track, kind: kindName(kind) };
  if (metadata !== undefined) t.metadata = metadata;
  return t;
}

/** Maps a decoded ServerEvent (other than a response) to an {@link SdkEvent}; null if empty. */
export function decodeServerEvent(ev: ServerEvent): SdkEvent | null {
  const e = ev.event;
  switch (e.case) {
    case 'room': {
      const r = e.value.event;
      switch (r.case) {
        case 'peerJoined':
          return { type: 'peerJoined', peer: peerInfo(r.value.peer, r.value.metadata, r.value.extraData) };
        case 'peerUpdated':
          return { type: 'peerUpdated', peer: peerInfo(r.value.peer, r.value.metadata) };
        case 'peerLeaved':
          return { type: 'peerLeft', peer: r.value.peer };
        case 'trackStarted':
          return { type: 'trackStarted', track: remoteTrack(r.value.peer, r.value.track, r.value.kind, r.value.metadata) };
        case 'trackUpdated':
          return { type: 'trackUpdated', track: remoteTrack(r.value.peer, r.value.track, r.value.kind, r.value.metadata) };
        case 'trackStopped':
          return { type: 'trackStopped', track: remoteTrack(r.value.peer, r.value.track, r.value.kind) };
        default:
          return null;
      }
    }
    case 'sender': {
      const s = e.value;
      if (s.event.case === 'state') {
        return { type: 'senderState', name: s.name, status: s.event.value.status === Sender_Status.INACTIVE ? 'inactive' : 'active' };
      }
      if (s.event.case === 'layers') {
        return { type: 'senderLayers', name: s.name, maxSpatial: s.event.value.maxSpatial };
      }
      return null;
    }
    case 'receiver': {
      const r = e.value;
      switch (r.event.case) {
        case 'state': {
          const st = r.event.value.status;
          const status: ReceiverStatus = st === Receiver_Status.ACTIVE ? 'active' : st === Receiver_Status.INACTIVE ? 'inactive' : 'waiting';
          return { type: 'receiverState', name: r.name, status };
        }
        case 'voiceActivity':
          return { type: 'voiceActivity', name: r.name, level: r.event.value.audioLevel };
        case 'stats': {
          const { transmit: t, source: s } = r.event.value;
          const stats: ReceiverStats = {};
          if (t) {
            stats.transmit = { spatial: t.spatial, temporal: t.temporal, bitrateKbps: t.bitrateKbps };
            if (t.targetSpatial !== undefined) stats.transmit.targetSpatial = t.targetSpatial;
            if (t.targetTemporal !== undefined) stats.transmit.targetTemporal = t.targetTemporal;
            if (t.targetKbps !== undefined) stats.transmit.targetKbps = t.targetKbps;
            if (t.estimateKbps !== undefined) stats.transmit.estimateKbps = t.estimateKbps;
          }
          if (s) stats.source = { bitrateKbps: s.bitrateKbps, rtt: s.rtt, lost: s.lost, jitter: s.jitter };
          return { type: 'receiverStats', name: r.name, stats };
        }
        default:
          return null;
      }
    }
    case 'messageChannel': {
      const m = e.value;
      if (m.event.case === 'message') {
        return { type: 'message', label: m.label, peer: m.event.value.peer, data: m.event.value.message };
      }
      return null;
    }
    case 'session':
      return e.value.event.case ? { type: 'session', event: e.value.event.case, detail: e.value.event.value } : null;
    case 'features':
      return { type: 'features', detail: e.value };
    default:
      return null;
  }
}

interface Pending {
  group: RequestCase;
  what: string;
  resolve: (v: any) => void;
  reject: (e: MediaMeshError) => void;
  timer: ReturnType<typeof setTimeout>;
}

/** Events of {@link ControlProtocol}. */
export interface ProtocolEvents {
  event: SdkEvent;
  open: void;
  close: void;
  /** A frame that could not be decoded, or a response nobody waits for. */
  warning: string;
}

/** Describes a request for error messages, e.g. `receiver video_1 attach`. */
function describe(group: string, value: any): string {
  const name = value?.name ?? value?.label;
  const action = value?.action?.case ?? value?.feature?.case;
  return [group, name, action].filter(Boolean).join(' ');
}

/**
 * Request/response layer over the control data channel.
 *
 * `ClientEvent.seq` and `Request.req_id` both start at 1 and grow by one per request.
 * Each request is answered by the `ServerEvent.response` with the same `req_id`; it must
 * carry the same group as the request (or `error`). Requests time out after
 * `timeoutMs` and fail at once when the channel closes.
 */
export class ControlProtocol extends Emitter<ProtocolEvents> {
  private seq = 0;
  private reqId = 0;
  private serverSeq = 0;
  private pending = new Map<number, Pending>();
  private queue: Uint8Array[] = [];
  private closed = false;
  private readonly onOpen = () => {
    for (const q of this.queue.splice(0)) this.channel.send(q);
    this.emit('open', undefined);
  };
  private readonly onClose = () => this.shutdown('data channel closed');
  private readonly onMessage = (ev: { data: unknown }) => this.receive(ev.data);

  constructor(
    private readonly channel: ControlChannel,
    /** Per-request timeout in ms (default 5000, as the server promises to answer well within it). */
    public timeoutMs = 5000,
  ) {
    super();
    channel.binaryType = 'arraybuffer';
    channel.addEventListener('open', this.onOpen);
    channel.addEventListener('close', this.onClose);
    channel.addEventListener('message', this.onMessage);
  }

  /** True once the channel is open and not closed. */
  get isOpen(): boolean {
    return !this.closed && this.channel.readyState === 'open';
  }

  /** Number of requests waiting for their response. */
  get pendingCount(): number {
    return this.pending.size;
  }

  /** Sequence number of the last server event seen. */
  get lastServerSeq(): number {
    return this.serverSeq;
  }

  /**
   * Sends one request of group `group` and resolves with the response's group of the same
   * case. Rejects with a {@link MediaMeshError}: the server's code and message on an error
   * response, `REQUEST_TIMEOUT`, `INVALID_RESPONSE` or `CLOSED`.
   */
  request<C extends RequestCase>(group: C, value: RequestValue<C>, timeoutMs = this.timeoutMs): Promise<ResponseValue<C>> {
    const what = describe(group, value);
    if (this.closed) {
      return Promise.reject(new MediaMeshError('CLOSED', `${what}: the session's control channel is closed`));
    }
    const reqId = ++this.reqId;
    const seq = ++this.seq;
    const bytes = toBinary(
      ClientEventSchema,
      create(ClientEventSchema, {
        seq,
        event: { case: 'request', value: create(RequestSchema, { reqId, group: { case: group, value } as any }) },
      }),
    );
    return new Promise<ResponseValue<C>>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(reqId);
        reject(new MediaMeshError('REQUEST_TIMEOUT', `${what} (req_id ${reqId}): no response within ${timeoutMs} ms`, { reqId, request: what }));
      }, timeoutMs);
      this.pending.set(reqId, { group, what, resolve, reject, timer });
      if (this.channel.readyState === 'open') this.channel.send(bytes);
      else this.queue.push(bytes);
    });
  }

  /** Feeds one received frame (used by the channel listener; public for tests). */
  receive(data: unknown): void {
    let bytes: Uint8Array;
    if (data instanceof ArrayBuffer) bytes = new Uint8Array(data);
    else if (ArrayBuffer.isView(data)) bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    else {
      this.emit('warning', `ignored a non-binary control message (${typeof data})`);
      return;
    }
    let ev: ServerEvent;
    try {
      ev = fromBinary(ServerEventSchema, bytes);
    } catch (e) {
      this.emit('warning', `undecodable server event (${bytes.length} bytes): ${(e as Error).message}`);
      return;
    }
    this.serverSeq = ev.seq;
    if (ev.event.case === 'response') {
      this.settle(ev.event.value);
      return;
    }
    const sdk = decodeServerEvent(ev);
    if (sdk) this.emit('event', sdk);
  }

  private settle(res: Response): void {
    const p = this.pending.get(res.reqId);
    if (!p) {
      this.emit('warning', `response for unknown req_id ${res.reqId} (${res.body.case ?? 'empty'})`);
      return;
    }
    this.pending.delete(res.reqId);
    clearTimeout(p.timer);
    const body = res.body;
    if (body.case === 'error') {
      p.reject(new MediaMeshError(body.value.code, body.value.message || `${p.what} failed (code ${body.value.code})`, { reqId: res.reqId, request: p.what }));
    } else if (body.case !== p.group) {
      p.reject(new MediaMeshError('INVALID_RESPONSE', `${p.what} (req_id ${res.reqId}): the response carries ${body.case ?? 'no group'} instead of ${p.group}`, { reqId: res.reqId, request: p.what }));
    } else {
      p.resolve(body.value);
    }
  }

  /** Fails every pending request and stops using the channel. */
  shutdown(reason = 'session closed'): void {
    if (this.closed) return;
    this.closed = true;
    this.queue = [];
    this.channel.removeEventListener('open', this.onOpen);
    this.channel.removeEventListener('close', this.onClose);
    this.channel.removeEventListener('message', this.onMessage);
    for (const [reqId, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new MediaMeshError('CLOSED', `${p.what} (req_id ${reqId}): ${reason} before the response`, { reqId, request: p.what }));
    }
    this.pending.clear();
    this.emit('close', undefined);
  }
}
