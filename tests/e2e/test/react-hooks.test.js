// Our SDK's React hooks (`@mediamesh/sdk/react`: useSession, usePeers, useTracks,
// usePublication, useSubscription) at runtime in Chromium: react/app.jsx, bundled with
// react-dom by lib/bundle-react.js, in pages/react.html. Two pages (alice in
// <StrictMode>, bob not) join one room; each publishes its fake camera + mic through
// usePublication and renders a <video>/<audio> per remote track through useTracks +
// useSubscription. Asserted from the DOM, the SDK's state and getStats:
//  1. each page lists the other peer (only) and its two tracks, over one connection
//     (StrictMode's mount/unmount/mount must not connect twice);
//  2. the hook's <video> decodes the other's camera (framesDecoded grows, frameWidth and
//     videoWidth = its width), its <audio> plays;
//  3. pause through the hook (null source): the hook returns no stream (the <video> goes),
//     the receiver gets no more packets; resume: frames again on the same receiver; no
//     renegotiation either way;
//  4. bob's camera off (usePublication with null): alice's track list shrinks and its
//     <video> goes; camera on again: the track and a decoding <video> come back;
//  5. unmount while the hook's request is in flight (a component mounted and unmounted
//     in one go): bob's second publication ends unpublished, alice's subscriptions end;
//  6. unmounting bob's <Room> (a "leave" click) leaves the room: alice's lists empty;
//     mounting it again rejoins: both play each other again;
//  7. root.unmount() of alice's whole tree: bob's lists empty;
//  8. React said nothing (console.error/warn: invalid hook calls, uncached getSnapshot,
//     ...) and no render error.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { sleep } from '../lib/server.js';
import { useChromium } from '../lib/fixtures.js';
import { waitFor } from '../lib/media.js';
import { ensureReactBundle } from '../lib/bundle-react.js';

const chromium = useChromium({ pages: true });
before(async () => { await ensureReactBundle(); });

const WAIT = 15000;
const ROOM = 'react-room';
const ALICE = { id: 'alice', width: 320, height: 240, strict: true };
const BOB = { id: 'bob', width: 400, height: 300, strict: false };
const tracksOf = (p) => [`${p.id}/audio_main`, `${p.id}/video_main`];

async function openReactPage(open, label) {
  const page = await open.page(label, `${chromium.web.base}/react.html`);
  await page.waitForFunction(() => window.rx?.ready === true, null, { timeout: WAIT })
    .catch((e) => { throw new Error(`${label}: react.html did not load /build/react-app.js: ${e.message}` + page.describe()); });
  return page;
}

const short = (u) => u.replace(/^https?:\/\/[^/]+/, '');

/** Text describing a React page for failure messages. */
async function rxContext(page, { events = 50 } = {}) {
  let d;
  try { d = await page.evaluate(() => window.rx.debug()); } catch (e) { return `\n--- ${page.label}: debug failed: ${e.message}` + page.describe(); }
  const kv = (o) => Object.entries(o).filter(([k]) => k !== 't' && k !== 'type').map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(' ');
  return `\n--- ${page.label} (React): session state=${d.state} conn_id=${JSON.stringify(d.connId)} sessions=${d.sessions} pc=${JSON.stringify(d.pc)} negotiations=${JSON.stringify(d.negotiations)}` +
    `\n--- ${page.label} DOM: ${JSON.stringify(d.dom)}` +
    `\n--- ${page.label} SDK room state: peers=${JSON.stringify(d.peers.map((p) => p.peer))} tracks=${JSON.stringify(d.remoteTracks.map((t) => `${t.peer}/${t.track}`))}` +
    `\n--- ${page.label} receivers: ${d.receiverSlots.map((r) => `${r.name}(${r.kind}) <- ${r.source ? `${r.source.peer}/${r.source.track}` : '-'}${r.busy ? ' busy' : ''}`).join(' ; ') || '(none)'}` +
    `\n--- ${page.label} subscriptions: ${JSON.stringify(d.subscriptions)}` +
    `\n--- ${page.label} publications: ${JSON.stringify(d.publications)} from usePublication: ${JSON.stringify(d.hookPublications)}` +
    `\n--- ${page.label} renders: ${JSON.stringify(d.renders)} render errors: ${JSON.stringify(d.errors)}` +
    `\n--- ${page.label} console.error/warn: ${d.console.map((c) => `\n  ${c.t} ${c.level}: ${c.text.slice(0, 400)}`).join('') || '(none)'}` +
    `\n--- ${page.label} HTTP: ${d.http.map((h) => `${h.method} ${short(h.url)} -> ${h.status ?? h.error ?? 'pending'}`).join(' ; ') || '(none)'}` +
    `\n--- ${page.label} events (last ${events}):\n${d.events.slice(-events).map((e) => `  ${e.t} ${e.type} ${kv(e)}`).join('\n') || '  (none)'}` +
    page.describe();
}

const dom = (page) => page.evaluate(() => window.rx.dom());
const players = (page) => page.evaluate(() => window.rx.players());
const sorted = (a) => JSON.stringify([...a].sort());

test('react hooks: two React pages join, publish, play each other, pause/resume, unpublish/republish, unmount leaves the room', { timeout: 60000 }, () => chromium.withMediaMesh('react-hooks', {}, async (server, open) => {
  const pages = {};
  for (const p of [ALICE, BOB]) pages[p.id] = await openReactPage(open, p.id);
  const A = pages.alice;
  const B = pages.bob;
  const ctx = async () => (await rxContext(A)) + (await rxContext(B));

  // Cameras biggest first (one fake device shared by the pages), then mount the apps.
  for (const p of [BOB, ALICE]) {
    const got = await pages[p.id].evaluate((o) => window.rx.camera(o), { width: p.width, height: p.height });
    assert.deepEqual([got.width, got.height], [p.width, p.height], `${p.id}: fake camera size`);
  }
  for (const p of [ALICE, BOB]) {
    const token = await server.token('webrtc', ROOM, p.id);
    await pages[p.id].evaluate((o) => window.rx.mount(o), { url: server.base, token, room: ROOM, peer: p.id, strict: p.strict });
  }

  /** Waits until `page`'s DOM satisfies `pred`. */
  const domWait = (page, what, pred, timeoutMs = WAIT) =>
    waitFor(`${page.label}: ${what}`, () => dom(page), pred, { timeoutMs, intervalMs: 100, context: ctx });

  /** Waits until the hook-rendered player of `source` decodes (video: at `width`). */
  const decoding = async (page, source, { width = null, minFrames = 10, minSamples = 16000 } = {}) => {
    const video = source.endsWith('video_main');
    let start = null;
    return waitFor(`${page.label}: the <${video ? 'video' : 'audio'}> of ${source} to ${video ? `decode ${minFrames} more frames at width ${width} (element videoWidth too)` : `play ${minSamples} more samples`}`,
      async () => (await players(page))[source],
      (r) => {
        if (!r?.receiver) return false;
        start ??= r;
        if (!video) return r.totalSamplesReceived >= start.totalSamplesReceived + minSamples;
        return r.framesDecoded >= start.framesDecoded + minFrames && r.frameWidth === width && r.videoWidth === width && r.presented > 0;
      },
      { timeoutMs: WAIT, context: ctx });
  };

  // 1. useSession connects; usePeers / useTracks list the other peer and its tracks.
  for (const [me, other] of [[ALICE, BOB], [BOB, ALICE]]) {
    const page = pages[me.id];
    await domWait(page, `state "connected", peers [${other.id}], tracks ${tracksOf(other).join(', ')}, a player for each`,
      (d) => d.state === 'connected' && sorted(d.peers) === sorted([other.id]) &&
        sorted(d.tracks.map((t) => t.source)) === sorted(tracksOf(other)) && sorted(d.players) === sorted(tracksOf(other)));
  }
  for (const [page, p] of [[A, ALICE], [B, BOB]]) {
    const d = await page.evaluate(() => window.rx.debug());
    // StrictMode really ran each new player's effects twice (mount, unmount, mount).
    assert.equal(d.mounts.Media, p.strict ? 4 : 2, `${page.label}: effect runs of the two players (StrictMode ${p.strict})` + await ctx());
    const connects = d.http.filter((h) => h.method === 'POST' && h.url.endsWith('/webrtc/connect'));
    assert.equal(connects.length, 1, `${page.label}: useSession must connect once per mount, got ${connects.length} POST /webrtc/connect` + await ctx());
  }

  // 2. useSubscription's streams decode in the rendered elements.
  for (const [me, other] of [[ALICE, BOB], [BOB, ALICE]]) {
    await decoding(pages[me.id], `${other.id}/video_main`, { width: other.width });
    await decoding(pages[me.id], `${other.id}/audio_main`);
  }

  // 3. Pause through the hook (alice, bob's video): the source goes null, the hook returns
  //    no stream (the <video> goes) and the receiver gets no more media; then resume.
  const neg0 = (await A.evaluate(() => window.rx.debug())).negotiations;
  const trackId = (await players(A))['bob/video_main'].trackId;
  await A.click('li[data-source="bob/video_main"] button.pause');
  await domWait(A, 'bob/video_main paused: placeholder instead of a <video>',
    (d) => d.tracks.some((t) => t.source === 'bob/video_main' && t.paused && !t.stream) && !d.players.includes('bob/video_main'));
  await sleep(700);
  const r0 = (await A.evaluate(() => window.rx.receivers()))[trackId];
  await sleep(1500);
  const r1 = (await A.evaluate(() => window.rx.receivers()))[trackId];
  // No media: payload bytes and frames stay. (packetsReceived may still grow: the
  // server's bandwidth probes are padding-only packets, counted there and in
  // headerBytesReceived, not in bytesReceived.)
  assert.ok(r0 && r1 && r1.bytesReceived === r0.bytesReceived && r1.framesReceived === r0.framesReceived,
    `alice: the receiver of bob/video_main (track ${trackId}) still gets media 0.7-2.2 s after the pause: ${JSON.stringify({ r0, r1 })}` + await ctx() + server.describe());
  await A.click('li[data-source="bob/video_main"] button.pause');
  await domWait(A, 'bob/video_main resumed: a <video> again', (d) => d.players.includes('bob/video_main'));
  await decoding(A, 'bob/video_main', { width: BOB.width });
  const r2 = (await players(A))['bob/video_main'];
  assert.equal(r2.trackId, trackId, 'alice: resume plays on the same receiver');
  assert.ok(r2.bytesReceived > r1.bytesReceived && r2.framesReceived > r1.framesReceived, `alice: media again after resume: ${JSON.stringify({ r1, r2 })}`);
  const neg1 = (await A.evaluate(() => window.rx.debug())).negotiations;
  assert.deepEqual(neg1, neg0, 'alice: pause/resume through useSubscription renegotiated' + await ctx());

  // 4. bob's camera off (usePublication with a null track: unpublish): alice's track list
  //    shrinks and its <video> of bob goes; camera on again: both come back and decode.
  await B.click('#camera');
  await domWait(A, 'after bob\'s camera off: tracks [bob/audio_main] only, no <video> of bob',
    (d) => sorted(d.tracks.map((t) => t.source)) === sorted(['bob/audio_main']) && sorted(d.players) === sorted(['bob/audio_main']));
  assert.deepEqual((await B.evaluate(() => window.rx.debug())).publications.map((p) => [p.name, p.published]).sort(),
    [['audio_main', true], ['video_main', false]], 'bob: publications after camera off' + await ctx());
  await B.click('#camera');
  await domWait(A, 'after bob\'s camera on: tracks and players of bob/audio_main and bob/video_main',
    (d) => sorted(d.tracks.map((t) => t.source)) === sorted(tracksOf(BOB)) && sorted(d.players) === sorted(tracksOf(BOB)));
  await decoding(A, 'bob/video_main', { width: BOB.width });

  // 5. Unmount while a hook's request is in flight: both clicks run before the request
  //    starts. bob: mount + unmount <Publish name="video_extra"> (a publish that
  //    renegotiates); it must end unpublished and alice must end with bob's two tracks.
  const mounts = async (page) => (await page.evaluate(() => window.rx.debug())).mounts;
  const extra0 = (await mounts(B)).video_extra ?? 0;
  await B.evaluate(() => { const x = document.getElementById('extra'); x.click(); x.click(); });
  assert.ok(((await mounts(B)).video_extra ?? 0) > extra0, 'bob: the "second camera" blink did not mount <Publish video_extra>' + await ctx());
  await waitFor('bob: video_extra unpublished after <Publish> mounted and unmounted at once (usePublication must stop what it published after unmount)',
    async () => (await B.evaluate(() => window.rx.debug())).publications.find((p) => p.name === 'video_extra') ?? null,
    (p) => p && p.published === false, { timeoutMs: WAIT, context: ctx });
  await domWait(A, 'bob\'s two tracks only (no video_extra) after bob\'s blink',
    (d) => sorted(d.tracks.map((t) => t.source)) === sorted(tracksOf(BOB)) && sorted(d.players) === sorted(tracksOf(BOB)));
  //    alice: stop playing (unsubscribes), then mount + unmount the players at once: no
  //    subscription may be left, every receiver free; then play again.
  const subsState = async () => { const d = await A.evaluate(() => window.rx.debug()); return { subs: d.subscriptions, busy: d.receiverSlots.filter((r) => r.busy || r.source) }; };
  await A.click('#watch');
  await waitFor('alice: no subscription and no busy receiver after "play remote tracks" off', subsState,
    (x) => x.subs.length === 0 && x.busy.length === 0, { timeoutMs: WAIT, context: ctx });
  const media0 = (await mounts(A)).Media;
  await A.evaluate(() => { const x = document.getElementById('watch'); x.click(); x.click(); });
  assert.ok((await mounts(A)).Media > media0, 'alice: the "play remote tracks" blink did not mount the players' + await ctx());
  await sleep(500);
  await waitFor('alice: no subscription and no busy receiver after the players mounted and unmounted at once (useSubscription must end what it subscribed after unmount)', subsState,
    (x) => x.subs.length === 0 && x.busy.length === 0, { timeoutMs: WAIT, context: ctx });
  await A.click('#watch');
  await domWait(A, 'players of bob\'s two tracks again', (d) => sorted(d.players) === sorted(tracksOf(BOB)));
  await decoding(A, 'bob/video_main', { width: BOB.width });

  // 6. bob clicks "leave": <Room> unmounts, useSession closes the session: alice's lists empty.
  await B.click('#leave');
  await domWait(B, 'the lobby after leave', (d) => d.lobby && !d.room);
  await domWait(A, 'after bob left: no peers, no tracks, no players',
    (d) => d.peers.length === 0 && d.tracks.length === 0 && d.players.length === 0);
  assert.equal((await B.evaluate(() => window.rx.debug())).state, 'closed', 'bob: the session after <Room> unmounted' + await ctx());
  // ... and "join" mounts it again: a new session, seen and played by alice.
  await B.click('#leave');
  await domWait(A, 'after bob joined again: peers [bob] and bob\'s two tracks with players',
    (d) => sorted(d.peers) === sorted(['bob']) && sorted(d.players) === sorted(tracksOf(BOB)));
  await decoding(A, 'bob/video_main', { width: BOB.width });
  await domWait(B, 'after joining again: peers [alice] and alice\'s two players',
    (d) => d.state === 'connected' && sorted(d.peers) === sorted(['alice']) && sorted(d.players) === sorted(tracksOf(ALICE)));
  await decoding(B, 'alice/video_main', { width: ALICE.width });

  // 7. root.unmount() of alice's whole tree leaves the room too.
  await A.evaluate(() => window.rx.unmount());
  await domWait(B, 'after alice\'s root unmounted: no peers, no tracks, no players',
    (d) => d.peers.length === 0 && d.tracks.length === 0 && d.players.length === 0);
  assert.equal((await A.evaluate(() => window.rx.debug())).state, 'closed', 'alice: the session after root.unmount()' + await ctx());

  // 8. React said nothing: no hook warnings, no render errors.
  for (const page of [A, B]) {
    const d = await page.evaluate(() => window.rx.debug());
    assert.deepEqual({ console: d.console, errors: d.errors }, { console: [], errors: [] }, `${page.label}: React warnings or render errors` + await rxContext(page));
  }
}));
