// Slots (one m-line each) of a session and the `shared.Tracks` list sent with every
// connect, restart-ice and UpdateSdp. Each list is in creation order, which is the
// order of the transceivers, hence of the m-sections of that kind and direction.
import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { BitrateControlMode, TracksSchema, type Tracks } from './gen/shared_pb.js';
import { kindValue } from './protocol.js';
import type { ReceiverLimits, TrackKind, TrackSource } from './types.js';

/** A send slot: a `sendonly` transceiver, published to the room as track `name`. */
export interface SenderSlot {
  kind: TrackKind;
  name: string;
  priority: number;
  /** `max`: always ask for full quality; `dynamic` (default): follow the subscribers. */
  bitrate: 'dynamic' | 'max';
  /** Set while the slot publishes: the local track's id and metadata. */
  source?: { id: string; metadata?: string; screen?: boolean };
}

/** A receive slot: a `recvonly` transceiver the server forwards one remote track on. */
export interface ReceiverSlot {
  kind: TrackKind;
  name: string;
  /** Set while attached to a remote track. */
  source?: TrackSource;
  limits: ReceiverLimits;
}

export const DEFAULT_LIMITS: Required<Pick<ReceiverLimits, 'priority' | 'maxSpatial' | 'maxTemporal'>> = {
  priority: 1,
  maxSpatial: 2,
  maxTemporal: 2,
};

/** `shared.Receiver.Config` init for `limits` (defaults filled in, min_* only when given). */
export function receiverConfig(limits: ReceiverLimits) {
  const c: { priority: number; maxSpatial: number; maxTemporal: number; minSpatial?: number; minTemporal?: number } = {
    priority: limits.priority ?? DEFAULT_LIMITS.priority,
    maxSpatial: limits.maxSpatial ?? DEFAULT_LIMITS.maxSpatial,
    maxTemporal: limits.maxTemporal ?? DEFAULT_LIMITS.maxTemporal,
  };
  if (limits.minSpatial !== undefined) c.minSpatial = limits.minSpatial;
  if (limits.minTemporal !== undefined) c.minTemporal = limits.minTemporal;
  return c;
}

/** `shared.Sender.Config` init. */
export function senderConfig(s: Pick<SenderSlot, 'priority' | 'bitrate'>) {
  return { priority: s.priority, bitrate: s.bitrate === 'max' ? BitrateControlMode.MAX_BITRATE : BitrateControlMode.DYNAMIC_CONSUMERS };
}

/** `shared.Sender.Source` init. */
export function senderSource(src: NonNullable<SenderSlot['source']>) {
  const s: { id: string; screen: boolean; metadata?: string } = { id: src.id, screen: !!src.screen };
  if (src.metadata !== undefined) s.metadata = src.metadata;
  return s;
}

/** Builds the full `shared.Tracks` of a session from its slots, each list in creation order. */
export function buildTracks(senders: readonly SenderSlot[], receivers: readonly ReceiverSlot[]): Tracks {
  const init: MessageInitShape<typeof TracksSchema> = {
    senders: senders.map((s) => ({
      kind: kindValue(s.kind),
      name: s.name,
      state: { config: senderConfig(s), ...(s.source ? { source: senderSource(s.source) } : {}) },
    })),
    receivers: receivers.map((r) => ({
      kind: kindValue(r.kind),
      name: r.name,
      state: r.source ? { config: receiverConfig(r.limits), source: { peer: r.source.peer, track: r.source.track } } : {},
    })),
  };
  return create(TracksSchema, init);
}

/** One media m-section of an SDP, as the server maps it to a slot. */
export interface MLine {
  mid: string | null;
  kind: string;
  direction: string;
  /** Slot name from `Tracks`, or null for an m-section no slot describes. */
  slot: string | null;
}

/**
 * Maps the m-sections of `sdp` to the slots of `tracks` as the server does: the i-th
 * `sendonly` audio section is the i-th audio sender, the i-th `recvonly` video section the
 * i-th video receiver, and so on; `m=application` is skipped. Useful to check an offer.
 */
export function mapMLines(sdp: string, tracks: Tracks): MLine[] {
  const out: MLine[] = [];
  const counters = new Map<string, number>();
  const sections = sdp.split(/\r?\nm=/).slice(1);
  for (const sec of sections) {
    const kind = sec.split(' ')[0];
    if (kind !== 'audio' && kind !== 'video') continue;
    const dir = (sec.match(/\r?\na=(sendrecv|sendonly|recvonly|inactive)/) || [])[1] || 'sendrecv';
    const mid = (sec.match(/\r?\na=mid:(\S+)/) || [])[1] ?? null;
    const key = `${kind}/${dir}`;
    const i = counters.get(key) ?? 0;
    counters.set(key, i + 1);
    const want = kindValue(kind);
    const list = dir === 'sendonly' ? tracks.senders : dir === 'recvonly' ? tracks.receivers : [];
    const slot = (list as Array<{ kind: number; name: string }>).filter((x) => x.kind === want)[i]?.name ?? null;
    out.push({ mid, kind, direction: dir, slot });
  }
  return out;
}
