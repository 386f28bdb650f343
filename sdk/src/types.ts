/** Media kind of a track. */
export type TrackKind = 'audio' | 'video';

/** A peer in the room, as announced by the server. */
export interface PeerInfo {
  /** Peer id (the `peer` of its join, or of its WHIP/WHEP token). */
  peer: string;
  /** Metadata the peer joined with, if any. */
  metadata?: string;
  /** Extra data attached by the server, if any. */
  extraData?: string;
}

/** Identifies a remote track: the publishing peer and the track name it published. */
export interface TrackSource {
  peer: string;
  track: string;
}

/** A track published in the room by another peer. */
export interface RemoteTrack extends TrackSource {
  kind: TrackKind;
  metadata?: string;
}

/** Receiver status as reported by the server. */
export type ReceiverStatus = 'waiting' | 'active' | 'inactive';

/**
 * What the server reports about one receiver, once a second while it plays
 * (`receiverStats` on the session, `stats` on the subscription).
 */
export interface ReceiverStats {
  /** The layer forwarded now and the bitrate sent to this receiver. */
  transmit?: {
    spatial: number;
    temporal: number;
    bitrateKbps: number;
    /** The layer quality control aims at (reached at the next decodable point), video only. */
    targetSpatial?: number;
    targetTemporal?: number;
    /** The target layer's bitrate as measured at the source. */
    targetKbps?: number;
    /** The server's bandwidth estimate towards this client (shared by its receivers). */
    estimateKbps?: number;
  };
  /** How the source reaches the server: its bitrate and its publisher's link. */
  source?: { bitrateKbps: number; rtt: number; lost: number; jitter: number };
}

/** Sender status as reported by the server (`active` once the server receives its media). */
export type SenderStatus = 'active' | 'inactive';

/**
 * Which room events this peer publishes and receives:
 * - `full`: announces itself and its tracks; told about peers and tracks.
 * - `tracks`: announces itself and its tracks; told about tracks only (no peer events).
 * - `manual`: announces itself and its tracks; told nothing until
 *   {@link Session.subscribePeer} is called for a peer.
 */
export type JoinMode = 'full' | 'tracks' | 'manual';

/** Room to join, at connect or later with {@link Session.join}. */
export interface JoinInfo {
  room: string;
  peer: string;
  metadata?: string;
  /** Default `full`. */
  mode?: JoinMode;
}

/** Receiver (subscription) layer and priority preferences. */
export interface ReceiverLimits {
  /** Priority among this session's subscriptions (default 1). */
  priority?: number;
  /** Highest simulcast/SVC spatial layer, 0..2 (default 2). */
  maxSpatial?: number;
  /** Highest temporal layer, 0..2 (default 2). */
  maxTemporal?: number;
  minSpatial?: number;
  minTemporal?: number;
}

/** Session connection state. */
export type ConnectionState =
  | 'new'
  | 'connecting'
  | 'connected'
  | 'reconnecting'
  | 'disconnected'
  | 'failed'
  | 'closed';

/** A message received on a {@link MessageChannel}. */
export interface ChannelMessage {
  /** Channel label. */
  label: string;
  /** Publishing peer. */
  peer: string;
  /** Raw bytes. */
  data: Uint8Array;
  /** `data` decoded as UTF-8. */
  text: string;
}
