// A tiny video-call app written with our SDK's React hooks (`@mediamesh/sdk/react`):
// useSession, usePeers, useTracks, usePublication (camera + mic), useSubscription (one
// <video>/<audio> per remote track). Bundled by lib/bundle-react.js into
// build/react-app.js for pages/react.html; test/react-hooks.test.js drives it with
// `window.rx` (mount/unmount) and clicks on the DOM (pause, camera, leave).
// Everything the app sees is kept for failure messages (`rx.debug()`).
import { Component, StrictMode, useEffect, useRef, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { usePeers, usePublication, useSession, useSubscription, useTracks } from '@mediamesh/sdk/react';

const t0 = performance.now();
const now = () => Math.round(performance.now() - t0);
const S = {
  session: null, sessions: 0, media: null, root: null,
  events: [], http: [], console: [], errors: [], renders: {}, mounts: { Media: 0 },
  pubs: {},   // name -> Publication returned by usePublication (last render)
};
const clean = (o) => JSON.parse(JSON.stringify(o ?? null));
function note(type, data) {
  S.events.push({ t: now(), type, ...(data && typeof data === 'object' ? clean(data) : { value: data }) });
  if (S.events.length > 500) S.events.shift();
}
const rendered = (name) => { S.renders[name] = (S.renders[name] ?? 0) + 1; };

// React reports hook misuse (invalid hook call, an uncached getSnapshot, updates on
// unmounted trees...) with console.error / console.warn: keep them for the test.
for (const level of ['error', 'warn']) {
  const orig = console[level].bind(console);
  console[level] = (...args) => {
    S.console.push({ t: now(), level, text: args.map((a) => (a instanceof Error ? a.stack || a.message : String(a))).join(' ').slice(0, 2000) });
    orig(...args);
  };
}
const realFetch = window.fetch.bind(window);
window.fetch = async (input, init = {}) => {
  const entry = { t: now(), method: (init.method || 'GET').toUpperCase(), url: String(input), status: null };
  S.http.push(entry);
  if (S.http.length > 100) S.http.shift();
  try {
    const r = await realFetch(input, init);
    entry.status = r.status;
    return r;
  } catch (e) { entry.error = String(e); throw e; }
};

// ---------------------------------------------------------------- components

/** Plays `stream` (the hook's MediaStream) in a <video> or <audio>. */
function Player({ kind, source, stream }) {
  const ref = useRef(null);
  useEffect(() => {
    const el = ref.current;
    el.srcObject = stream;
    el.play().catch(() => {});
    return () => { el.srcObject = null; };
  }, [stream]);
  // Audio is played (muted) too: Chromium counts totalSamplesReceived only for played tracks.
  return kind === 'video'
    ? <video ref={ref} data-source={source} autoPlay playsInline muted />
    : <audio ref={ref} data-source={source} autoPlay muted />;
}

/** One remote track's player: subscribed while mounted; "pause" passes a null source to the hook. */
function Media({ session, track, source }) {
  rendered('Media');
  useEffect(() => { S.mounts.Media += 1; }, []);
  const [paused, setPaused] = useState(false);
  const stream = useSubscription(session, paused ? null : track, { kind: track.kind });
  return (
    <span className="media" data-paused={String(paused)} data-stream={stream ? 'yes' : 'no'}>
      <button className="pause" onClick={() => setPaused((p) => !p)}>{paused ? 'resume' : 'pause'}</button>
      {stream ? <Player kind={track.kind} source={source} stream={stream} /> : <span className="placeholder">{paused ? 'paused' : 'waiting'}</span>}
    </span>
  );
}

/** Publishes `track` as `name` while mounted (null: unpublished). */
function Publish({ session, name, track }) {
  const pub = usePublication(session, name, track);
  useEffect(() => { S.mounts[name] = (S.mounts[name] ?? 0) + 1; }, [name]);
  S.pubs[name] = pub;
  return <span className="publication" data-name={name}>{pub ? pub.name : ''} </span>;
}

function Room({ url, token, room, peer }) {
  rendered('Room');
  const { session, state, error } = useSession({ url, token, join: { room, peer } });
  const peers = usePeers(session);
  const tracks = useTracks(session);
  const [camera, setCamera] = useState(true);
  const [watch, setWatch] = useState(true);
  const [extra, setExtra] = useState(false);
  const [extraTrack] = useState(() => S.media.getVideoTracks()[0].clone());

  // Diagnostics only (not part of what the test asserts): the session's events.
  useEffect(() => {
    if (!session) return;
    S.session = session;
    S.sessions += 1;
    note('app.session', { connId: session.connId, n: S.sessions });
    const offs = ['connectionState', 'peerJoined', 'peerUpdated', 'peerLeft', 'trackStarted', 'trackUpdated', 'trackStopped',
      'senderState', 'receiverState', 'roomChanged', 'warning'].map((ev) => session.on(ev, (d) => note(ev, d)));
    return () => offs.forEach((off) => off());
  }, [session]);
  useEffect(() => { note('app.state', { state }); }, [state]);
  useEffect(() => { if (error) note('app.error', { message: error.message, code: error.code }); }, [error]);

  const box = (id, checked, set, label) => (
    <label><input id={id} type="checkbox" checked={checked} onChange={(e) => { note('app.click', { id, checked: e.target.checked }); set(e.target.checked); }} /> {label}</label>
  );
  return (
    <div id="room" data-peer={peer}>
      <p>
        {peer} in {room}: <span id="state">{state}</span>
        {error ? <span id="error"> {error.message}</span> : null}
      </p>
      <p>
        {box('camera', camera, setCamera, 'camera')} {box('watch', watch, setWatch, 'play remote tracks')} {box('extra', extra, setExtra, 'second camera')}
      </p>
      <p id="publications">
        <Publish session={session} name="audio_main" track={S.media.getAudioTracks()[0]} />
        <Publish session={session} name="video_main" track={camera ? S.media.getVideoTracks()[0] : null} />
        {extra ? <Publish session={session} name="video_extra" track={extraTrack} /> : null}
      </p>
      <h3>peers</h3>
      <ul id="peers">{peers.map((p) => <li key={p.peer} data-peer={p.peer}>{p.peer}</li>)}</ul>
      <h3>tracks</h3>
      <ul id="tracks">
        {tracks.map((t) => {
          const key = `${t.peer}/${t.track}`;
          return (
            <li key={key} data-source={key} data-kind={t.kind}>
              {key} ({t.kind}) {watch ? <Media session={session} track={t} source={key} /> : null}
            </li>
          );
        })}
      </ul>
    </div>
  );
}

class Boundary extends Component {
  constructor(props) { super(props); this.state = { error: null }; }
  static getDerivedStateFromError(error) { return { error }; }
  componentDidCatch(error, info) { S.errors.push({ t: now(), message: error.message, stack: info.componentStack }); }
  render() { return this.state.error ? <p id="crash">{this.state.error.message}</p> : this.props.children; }
}

function App(props) {
  rendered('App');
  const [inRoom, setInRoom] = useState(true);
  return (
    <Boundary>
      <button id="leave" onClick={() => setInRoom((v) => !v)}>{inRoom ? 'leave' : 'join'}</button>
      {inRoom ? <Room {...props} /> : <p id="lobby">not in a room</p>}
    </Boundary>
  );
}

// ---------------------------------------------------------------- test API

async function camera({ width, height, fps = 15 }) {
  S.media = await navigator.mediaDevices.getUserMedia({ video: { width: { exact: width }, height: { exact: height }, frameRate: fps }, audio: true });
  const s = S.media.getVideoTracks()[0].getSettings();
  return { width: s.width, height: s.height };
}

function mount({ strict = false, ...props }) {
  if (S.root) throw new Error('already mounted');
  if (!S.media) throw new Error('camera() first');
  S.root = createRoot(document.getElementById('root'));
  const app = <App {...props} />;
  S.root.render(strict ? <StrictMode>{app}</StrictMode> : app);
  note('app.mount', { strict, room: props.room, peer: props.peer });
}

function unmount() {
  S.root.unmount();
  S.root = null;
  note('app.unmount');
}

/** What the DOM shows. */
function dom() {
  const all = (sel) => [...document.querySelectorAll(sel)];
  return {
    room: !!document.getElementById('room'),
    lobby: !!document.getElementById('lobby'),
    crash: document.getElementById('crash')?.textContent ?? null,
    state: document.getElementById('state')?.textContent ?? null,
    error: document.getElementById('error')?.textContent ?? null,
    publications: all('#publications .publication').map((el) => el.dataset.name),
    peers: all('#peers li').map((li) => li.dataset.peer),
    tracks: all('#tracks li').map((li) => {
      const m = li.querySelector('.media');
      return { source: li.dataset.source, kind: li.dataset.kind, media: !!m, paused: m?.dataset.paused === 'true', stream: m?.dataset.stream === 'yes' };
    }),
    players: all('[data-source]').filter((el) => el.tagName === 'VIDEO' || el.tagName === 'AUDIO').map((el) => el.dataset.source),
  };
}

const inbound = async (receiver) => {
  const o = {};
  (await receiver.getStats()).forEach((x) => {
    if (x.type !== 'inbound-rtp') return;
    // bytesReceived: payload only; padding (bandwidth probes) counts in packetsReceived and headerBytesReceived.
    Object.assign(o, { packetsReceived: x.packetsReceived || 0, bytesReceived: x.bytesReceived || 0, headerBytesReceived: x.headerBytesReceived || 0 });
    if (x.kind === 'video') Object.assign(o, { framesReceived: x.framesReceived || 0, framesDecoded: x.framesDecoded || 0, frameWidth: x.frameWidth || 0 });
    else Object.assign(o, { totalSamplesReceived: x.totalSamplesReceived || 0 });
  });
  return o;
};

/**
 * For each <video>/<audio> the hooks rendered: the element's own numbers and the
 * inbound-rtp stats of the RTCRtpReceiver whose track it plays.
 */
async function players() {
  const receivers = S.session ? S.session.pc.getReceivers() : [];
  const out = {};
  for (const el of document.querySelectorAll('video[data-source], audio[data-source]')) {
    const track = el.srcObject?.getTracks()[0] ?? null;
    const r = track ? receivers.find((x) => x.track === track) : null;
    const o = out[el.dataset.source] = { element: el.tagName.toLowerCase(), trackId: track?.id ?? null, receiver: !!r, readyState: el.readyState };
    if (el.tagName === 'VIDEO') Object.assign(o, { videoWidth: el.videoWidth, videoHeight: el.videoHeight, presented: el.getVideoPlaybackQuality().totalVideoFrames });
    if (r) Object.assign(o, await inbound(r));
  }
  return out;
}

/** inbound-rtp of every receiver of the session, by its track id. */
async function receivers() {
  const out = {};
  for (const r of S.session ? S.session.pc.getReceivers() : []) out[r.track.id] = { kind: r.track.kind, ...(await inbound(r)) };
  return out;
}

function debug() {
  const s = S.session;
  return {
    state: s?.state ?? null, connId: s?.connId ?? null, sessions: S.sessions,
    pc: s ? { conn: s.pc.connectionState, ice: s.pc.iceConnectionState, sig: s.pc.signalingState } : null,
    negotiations: s ? clean(s.negotiations) : null,
    receiverSlots: s ? clean(s.receiverSlots) : [],
    subscriptions: s ? s.subscriptions.map((x) => ({ receiver: x.receiverName, status: x.status, source: clean(x.source) })) : [],
    publications: s ? s.publications.map((p) => ({ name: p.name, published: p.published, paused: p.paused, status: p.status })) : [],
    hookPublications: Object.fromEntries(Object.entries(S.pubs).map(([k, p]) => [k, p ? { published: p.published, status: p.status } : null])),
    peers: s ? clean(s.peers) : [], remoteTracks: s ? clean(s.remoteTracks) : [],
    renders: S.renders, mounts: S.mounts, errors: S.errors, console: S.console, events: S.events, http: S.http, dom: dom(),
  };
}

window.rx = { camera, mount, unmount, dom, players, receivers, debug, ready: true };
