/**
 * React hooks for `@mediamesh/sdk` (`react` is an optional peer dependency).
 * @packageDocumentation
 */
import { useEffect, useRef, useState, useSyncExternalStore } from 'react';
import { connect, type ConnectOptions, type PublishOptions, type Publication, type Session, type SubscribeOptions, type Subscription } from '../session.js';
import type { ConnectionState, PeerInfo, RemoteTrack, TrackSource } from '../types.js';

/** Result of {@link useSession}. */
export interface UseSession {
  session: Session | null;
  state: ConnectionState;
  error: Error | null;
}

/**
 * Connects on mount (and when url, token or the join's room/peer change) and closes the
 * session on unmount. Pass `null` to stay disconnected.
 */
export function useSession(options: ConnectOptions | null): UseSession {
  const [session, setSession] = useState<Session | null>(null);
  const [state, setState] = useState<ConnectionState>('new');
  const [error, setError] = useState<Error | null>(null);
  const optsRef = useRef(options);
  optsRef.current = options;
  const key = options ? JSON.stringify([options.url, options.token, options.join?.room, options.join?.peer, options.join?.mode]) : null;
  useEffect(() => {
    const opts = optsRef.current;
    if (!opts) return;
    let cancelled = false;
    let current: Session | null = null;
    let off: (() => void) | null = null;
    setError(null);
    setState('connecting');
    // Connect from a task, not from the effect itself: React's StrictMode (development)
    // mounts, unmounts and mounts again synchronously, and a connection opened by the
    // first mount would join the room as the same peer as the second one (the others
    // would see the peer twice, then leave). The cleanup cancels the timer first.
    const timer = setTimeout(() => {
      connect(opts).then(
        (s) => {
          if (cancelled) {
            void s.close();
            return;
          }
          current = s;
          off = s.on('connectionState', setState);
          setState(s.state);
          setSession(s);
        },
        (e: Error) => {
          if (cancelled) return;
          setError(e);
          setState('failed');
        },
      );
    }, 0);
    return () => {
      cancelled = true;
      clearTimeout(timer);
      off?.();
      if (current) void current.close();
      setSession(null);
      setState('closed');
    };
  }, [key]);
  return { session, state, error };
}

const EMPTY: readonly never[] = [];

function useSessionStore<T>(session: Session | null, events: Array<'peerJoined' | 'peerUpdated' | 'peerLeft' | 'trackStarted' | 'trackUpdated' | 'trackStopped' | 'roomChanged'>, get: (s: Session) => T, empty: T): T {
  return useSyncExternalStore(
    (notify) => {
      if (!session) return () => {};
      const offs = events.map((e) => session.on(e, () => notify()));
      return () => offs.forEach((o) => o());
    },
    () => (session ? get(session) : empty),
    () => empty,
  );
}

/** The other peers in the room (re-renders on join/update/leave). */
export function usePeers(session: Session | null): readonly PeerInfo[] {
  return useSessionStore(session, ['peerJoined', 'peerUpdated', 'peerLeft', 'roomChanged'], (s) => s.peers, EMPTY as readonly PeerInfo[]);
}

/** The tracks published by other peers (re-renders on start/update/stop). */
export function useTracks(session: Session | null): readonly RemoteTrack[] {
  return useSessionStore(session, ['trackStarted', 'trackUpdated', 'trackStopped', 'roomChanged'], (s) => s.remoteTracks, EMPTY as readonly RemoteTrack[]);
}

/**
 * Subscribes to `source` and returns the MediaStream to play (null until ready or when
 * `source` is null). A change of `source` switches the same receiver (no
 * renegotiation); a change of limits reconfigures it; unmount unsubscribes.
 */
export function useSubscription(session: Session | null, source: TrackSource | null, options: SubscribeOptions): MediaStream | null {
  const [stream, setStream] = useState<MediaStream | null>(null);
  const subRef = useRef<Subscription | null>(null);
  const pending = useRef<Promise<unknown>>(Promise.resolve());
  const srcKey = source ? `${source.peer}\u0000${source.track}` : null;
  const limitsKey = JSON.stringify([options.priority, options.maxSpatial, options.maxTemporal, options.minSpatial, options.minTemporal]);
  const optsRef = useRef(options);
  optsRef.current = options;

  // Subscribe per session and kind; unsubscribe on unmount.
  useEffect(() => {
    if (!session) return;
    return () => {
      setStream(null);
      // Read the ref when this job runs, not now: a subscribe still in flight (queued
      // before) must end too, or its receiver would stay attached after unmount.
      pending.current = pending.current
        .then(() => {
          const sub = subRef.current;
          subRef.current = null;
          return sub?.unsubscribe();
        })
        .catch(() => {});
    };
  }, [session, options.kind]);

  // Source changes: subscribe the first time, switch afterwards; null pauses.
  useEffect(() => {
    if (!session || !source) return;
    const src = { peer: source.peer, track: source.track };
    pending.current = pending.current
      .then(async () => {
        const sub = subRef.current;
        if (sub && sub.status !== 'ended') {
          if (sub.status === 'paused') await sub.resume();
          if (sub.source.peer !== src.peer || sub.source.track !== src.track) await sub.switchTo(src);
          return;
        }
        const created = await session.subscribe(src, optsRef.current);
        subRef.current = created;
        setStream(created.stream);
      })
      .catch(() => {});
    // A null source pauses (below); the next source switches: nothing to undo here.
  }, [session, srcKey]);

  useEffect(() => {
    if (source !== null) return;
    pending.current = pending.current.then(() => subRef.current?.pause()).catch(() => {});
  }, [srcKey]);

  // New limits: receiver.config (the first subscribe already carried the initial ones).
  const appliedLimits = useRef(limitsKey);
  useEffect(() => {
    if (appliedLimits.current === limitsKey) return;
    appliedLimits.current = limitsKey;
    pending.current = pending.current.then(() => subRef.current?.setLimits(optsRef.current)).catch(() => {});
  }, [limitsKey]);

  // Paused (null source): no stream, as documented; the same one again on resume.
  return source ? stream : null;
}

/**
 * Publishes `track` as `name` while mounted: a new track is sent with `replace` (no
 * renegotiation), `null` stops publishing, unmount stops it. Returns the publication.
 */
export function usePublication(session: Session | null, name: string, track: MediaStreamTrack | null, options: PublishOptions = {}): Publication | null {
  const [pub, setPub] = useState<Publication | null>(null);
  const pubRef = useRef<Publication | null>(null);
  const pending = useRef<Promise<unknown>>(Promise.resolve());
  const optsRef = useRef(options);
  optsRef.current = options;

  useEffect(() => {
    if (!session) return;
    return () => {
      setPub(null);
      // Read the ref when this job runs, not now: a publish still in flight (queued
      // before) must be stopped too, or it would stay published after unmount.
      pending.current = pending.current
        .then(() => {
          const p = pubRef.current;
          pubRef.current = null;
          return p?.stop();
        })
        .catch(() => {});
    };
  }, [session, name]);

  useEffect(() => {
    if (!session) return;
    pending.current = pending.current
      .then(async () => {
        const p = pubRef.current;
        if (!track) {
          await p?.stop();
          return;
        }
        if (p) {
          await p.replace(track, optsRef.current.metadata);
          return;
        }
        const created = await session.publish(name, track, optsRef.current);
        pubRef.current = created;
        setPub(created);
      })
      .catch(() => {});
  }, [session, name, track]);

  return pub;
}
