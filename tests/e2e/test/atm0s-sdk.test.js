// Issue scenario 2: apps written for the published atm0s SDK (@atm0s-media-sdk/core
// 1.0.0-alpha.7, bundled unchanged by lib/bundle.js) work against MediaMesh. Three
// Chromium peers join one room (POST /webrtc/connect with a "webrtc" token, control
// over the SDK's data channel), publish mic + camera, and play each other through
// receivers attached on room.track.started. Then peer A switches a receiver to another
// source (no detach, no renegotiation), pauses one (detach) and resumes it, and peer C
// disconnects while A and B watch for room.peer.leaved / room.track.stopped.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { sleep } from '../lib/server.js';
import { useChromium } from '../lib/fixtures.js';
import { waitFor } from '../lib/media.js';
import { ensureAtm0sBundle } from '../lib/bundle.js';
import { openSdkPage, sdkStats, sdkDebug, sdkNegotiation, sdkContext, expectReceiving } from '../lib/atm0s.js';

const chromium = useChromium({ pages: true });
before(async () => { await ensureAtm0sBundle(); });

// Each peer's camera has its own size: a decoded frameWidth names its source.
const PEERS = [
  { id: 'alice', width: 320, height: 240 },
  { id: 'bob', width: 400, height: 300 },
  { id: 'carol', width: 480, height: 360 },
];
const WIDTH = Object.fromEntries(PEERS.map((p) => [p.id, p.width]));
const KIND = { audio_main: 0, video_main: 1 }; // shared.Kind: AUDIO = 0, VIDEO = 1

test('atm0s-sdk: three @atm0s-media-sdk/core peers in one room play each other; switch, pause/resume a receiver; a peer leaves', { timeout: 360000 }, () => chromium.withMediaMesh('atm0s-sdk', {}, async (server, open) => {
  const room = 'room-atm0s';
  const pages = {};
  for (const p of PEERS) pages[p.id] = await openSdkPage(open, chromium.web, p.id);
  const [A, B, C] = PEERS.map((p) => pages[p.id]);
  const all = async (opts = {}) => (await Promise.all(Object.values(pages).map((pg) => sdkContext(pg, { pageLog: false, ...opts })))).join('');
  const ctxOf = (page) => async () => (await sdkContext(page)) + (await all());

  // Cameras first, biggest first: Chromium's fake camera is one device shared by the
  // pages, and a page can only get a size up to the one it was first opened at.
  for (const p of [...PEERS].sort((x, y) => y.width - x.width)) {
    const got = await pages[p.id].evaluate((o) => window.sdk.camera(o), { width: p.width, height: p.height });
    assert.deepEqual([got.width, got.height], [p.width, p.height], `${p.id}: fake camera size`);
  }

  // 1. Join one after the other: new Session(base, {token, join}), two senders from
  //    fake getUserMedia, two audio + two video receivers, connect().
  for (const p of PEERS) {
    const page = pages[p.id];
    const token = await server.token('webrtc', room, p.id);
    const res = await page.evaluate((o) => window.sdk.join(o), { gateway: server.base, token, room, peer: p.id })
      .catch(async (e) => { throw new Error(`${p.id}: joining with the SDK failed: ${e.message}` + await sdkContext(page, { sdp: true })); });
    assert.equal(res.state, 'connected', `${p.id}: session.connect() ended in state "${res.state}" (expected "connected"; ` +
      `the SDK sets "error" when POST /webrtc/connect or the answer fails, and hides why)` + await sdkContext(page, { sdp: true }));
    assert.deepEqual(res.receivers.map((r) => r.name), ['audio_0', 'audio_1', 'video_2', 'video_3'], `${p.id}: receiver names`);
    console.log(`# ${p.id} connected: conn_id=${JSON.stringify(res.connId)} ice_lite=${res.iceLite}`);
  }

  // 2. On room.track.started every page attached its free receivers to the other two
  //    peers' audio_main / video_main (a receiver of the track's kind).
  for (const p of PEERS) {
    const page = pages[p.id];
    const want = PEERS.filter((o) => o.id !== p.id).flatMap((o) => ['audio_main', 'video_main'].map((track) => `${o.id}/${track}`)).sort();
    await waitFor(`${p.id}: receivers attached (attach request answered) to ${want.join(', ')} after room.track.started`,
      () => page.evaluate(() => window.sdk.assign()),
      (a) => {
        const got = Object.entries(a).filter(([, x]) => x.status === 'ok');
        return got.length === 4 && JSON.stringify(got.map(([, x]) => `${x.peer}/${x.track}`).sort()) === JSON.stringify(want) &&
          got.every(([name, x]) => name.startsWith(x.track === 'audio_main' ? 'audio_' : 'video_'));
      },
      { context: ctxOf(page) });
  }
  for (const pg of Object.values(pages)) await pg.evaluate(() => window.sdk.setAuto(false));

  // 3. Everybody decodes both others: video at the source's width, audio samples.
  const assignOf = async (page) => (await sdkDebug(page)).assign;
  for (const p of PEERS) {
    const page = pages[p.id];
    for (const [name, src] of Object.entries(await assignOf(page))) {
      await expectReceiving(page, name, { what: `playing ${src.peer}/${src.track}`, width: src.track === 'video_main' ? WIDTH[src.peer] : null, context: all });
    }
  }

  // 4. Switch: A's receiver that plays B's video is attached to C's video_main, without
  //    detaching first. Same m-line, no renegotiation; frames now at C's width.
  const aAssign = await assignOf(A);
  const rSwitch = Object.keys(aAssign).find((n) => aAssign[n].peer === 'bob' && aAssign[n].track === 'video_main');
  const rOther = Object.keys(aAssign).find((n) => aAssign[n].peer === 'carol' && aAssign[n].track === 'video_main');
  const neg0 = await sdkNegotiation(A);
  const before1 = await sdkStats(A);
  await A.evaluate(([n, s]) => window.sdk.attach(n, s), [rSwitch, { peer: 'carol', track: 'video_main' }])
    .catch(async (e) => { throw new Error(`alice: ${rSwitch}.attach({peer: "carol", track: "video_main"}) (switch from bob) failed: ${e.message}` + await ctxOf(A)()); });
  const switched = await expectReceiving(A, rSwitch, { what: 'switched from bob/video_main to carol/video_main', width: WIDTH.carol, from: before1, context: all });
  const afterSwitch = await sdkStats(A);
  await expectReceiving(A, rSwitch, { what: 'frames keep coming after the switch to carol/video_main', width: WIDTH.carol, from: afterSwitch, context: all });
  console.log(`# alice ${rSwitch} after switch: ${JSON.stringify(switched)}`);
  const neg1 = await sdkNegotiation(A);
  assert.equal(neg1.negotiationneeded, neg0.negotiationneeded, `alice: negotiationneeded fired during the receiver switch (${neg0.negotiationneeded} -> ${neg1.negotiationneeded})` + await sdkContext(A));
  assert.equal(neg1.signalingChanges, neg0.signalingChanges, `alice: signaling state changed during the receiver switch (a renegotiation)` + await sdkContext(A));
  assert.equal(neg1.transceivers, neg0.transceivers, 'alice: transceiver count changed during the switch');
  assert.equal(neg1.local, neg0.local, 'alice: local description changed during the receiver switch');
  assert.equal(neg1.remote, neg0.remote, 'alice: remote description changed during the receiver switch');

  // 5. Pause: A detaches that receiver: no more packets on it (the other video receiver,
  //    also on carol, goes on). Resume: attach it to bob/video_main again.
  await A.evaluate((n) => window.sdk.detach(n), rSwitch)
    .catch(async (e) => { throw new Error(`alice: ${rSwitch}.detach() failed: ${e.message}` + await ctxOf(A)()); });
  await sleep(1000);
  const p0 = await sdkStats(A);
  await sleep(2000);
  const p1 = await sdkStats(A);
  const pr = (s, n) => s.receivers[n];
  assert.equal(pr(p1, rSwitch).packetsReceived, pr(p0, rSwitch).packetsReceived,
    `alice: ${rSwitch} still receives packets 1-3 s after detach() (${pr(p0, rSwitch).packetsReceived} -> ${pr(p1, rSwitch).packetsReceived}): ` +
    `${JSON.stringify({ at1s: pr(p0, rSwitch), at3s: pr(p1, rSwitch) })}` + await sdkContext(A) + server.describe());
  assert.equal(pr(p1, rSwitch).framesDecoded, pr(p0, rSwitch).framesDecoded, `alice: ${rSwitch} still decodes frames after detach()`);
  assert.ok(pr(p1, rOther).framesDecoded > pr(p0, rOther).framesDecoded,
    `alice: the other video receiver ${rOther} (carol/video_main) must keep decoding while ${rSwitch} is detached: ${JSON.stringify({ before: pr(p0, rOther), after: pr(p1, rOther) })}` + await sdkContext(A));
  await A.evaluate(([n, s]) => window.sdk.attach(n, s), [rSwitch, { peer: 'bob', track: 'video_main' }])
    .catch(async (e) => { throw new Error(`alice: re-attach of ${rSwitch} to bob/video_main after detach failed: ${e.message}` + await ctxOf(A)()); });
  await expectReceiving(A, rSwitch, { what: 'resumed: re-attached to bob/video_main after detach', width: WIDTH.bob, from: p1, context: all });
  const neg2 = await sdkNegotiation(A);
  assert.equal(neg2.negotiationneeded, neg0.negotiationneeded, 'alice: negotiationneeded fired during detach/re-attach');
  assert.equal(neg2.signalingChanges, neg0.signalingChanges, 'alice: signaling state changed during detach/re-attach');
  assert.equal(neg2.local, neg0.local, 'alice: local description changed during detach/re-attach');
  assert.equal(neg2.remote, neg0.remote, 'alice: remote description changed during detach/re-attach');

  // 6. Leave: C disconnects (session.disconnect(): request answered, then pc.close()).
  const left = await C.evaluate(() => window.sdk.disconnect())
    .catch(async (e) => { throw new Error(`carol: session.disconnect() failed: ${e.message}` + await ctxOf(C)()); });
  assert.equal(left.state, 'disconnected', `carol: state after disconnect() ${JSON.stringify(left)}`);
  for (const page of [A, B]) {
    const has = (evs, type, pred) => evs.some((e) => e.type === type && pred(e));
    await waitFor(`${page.label}: room.peer.leaved {peer: "carol"} and room.track.stopped for carol/audio_main and carol/video_main`,
      () => page.evaluate(() => window.sdk.events()),
      (evs) => has(evs, 'room.peer.leaved', (e) => e.peer === 'carol') &&
        ['audio_main', 'video_main'].every((t) => has(evs, 'room.track.stopped', (e) => e.peer === 'carol' && e.track === t)),
      { context: ctxOf(page) });
    const evs = await page.evaluate(() => window.sdk.events());
    for (const e of evs.filter((x) => x.type === 'room.track.stopped' && x.peer === 'carol')) {
      assert.equal(e.kind ?? 0, KIND[e.track], `${page.label}: room.track.stopped for carol/${e.track} has kind ${e.kind} (expected ${KIND[e.track]})`);
    }
  }
  // A and B still play each other.
  for (const [page, peer] of [[A, 'bob'], [B, 'alice']]) {
    const as = await assignOf(page);
    for (const [name, src] of Object.entries(as).filter(([, s]) => s.peer === peer)) {
      await expectReceiving(page, name, { what: `playing ${src.peer}/${src.track} after carol left`, width: src.track === 'video_main' ? WIDTH[peer] : null, context: all });
    }
  }
  // For the log: what each app saw (status values: sender ACTIVE=0/INACTIVE=1, receiver WAITING=0/ACTIVE=1/INACTIVE=2).
  for (const [id, page] of Object.entries(pages)) {
    const counts = {};
    for (const e of (await sdkDebug(page)).events) {
      const k = e.type.endsWith('.status') ? `${e.type}=${e.status}` : e.type;
      counts[k] = (counts[k] || 0) + 1;
    }
    console.log(`# ${id} SDK events: ${JSON.stringify(counts)}`);
  }
}));
