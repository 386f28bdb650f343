// Our own SDK (sdk/, `@mediamesh/sdk`, browser bundle sdk/dist/mediamesh-sdk.js) in
// Chromium (pages/mediamesh.html):
//  (a) three peers in one room publish mic + camera (different sizes) and play each
//      other; the receiver pool starts at 1 audio + 1 video, so the second subscription
//      of each kind adds a receiver by renegotiation (UpdateSdp). Then a subscription is
//      switched to another source (no renegotiation), paused (no more packets) and resumed.
//  (b) a mixed room: the published atm0s SDK, ours and a whip-whep WHIP publisher all
//      see and play each other (WHIP tracks are named `audio` / `video`).
//  (c) a message channel: 20 numbered messages from one peer reach the two others in order,
//      sent after an ICE restart of that peer (session.restartIce()).
//  (d) Publication stop/republish, setLimits, leave + join on one connection, manual mode.
//  (e) automatic ICE restart after the connection went disconnected (server SIGSTOPped).
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { sleep } from '../lib/server.js';
import { useChromium } from '../lib/fixtures.js';
import { waitFor, statsOf, sessionContext } from '../lib/media.js';
import { ensureAtm0sBundle } from '../lib/bundle.js';
import { openSdkPage, sdkContext, expectReceiving } from '../lib/atm0s.js';
import { ensureOurBundle, openOurPage, mmContext, mmStats, expectSubReceiving } from '../lib/mediamesh-sdk.js';

const chromium = useChromium({ pages: true });
before(async () => { ensureOurBundle(); await ensureAtm0sBundle(); });

const PEERS = [
  { id: 'alice', width: 320, height: 240 },
  { id: 'bob', width: 400, height: 300 },
  { id: 'carol', width: 480, height: 360 },
];
const WIDTH = Object.fromEntries(PEERS.map((p) => [p.id, p.width]));

async function joinOurs(page, server, room, peer, extra = {}) {
  const token = await server.token('webrtc', room, peer);
  const res = await page.evaluate((o) => window.mm2.join(o), { url: server.base, token, room, peer, ...extra })
    .catch(async (e) => { throw new Error(`${peer}: connect/publish with @mediamesh/sdk failed: ${e.message}` + await mmContext(page, { sdp: true })); });
  assert.equal(res.state, 'connected', `${peer}: session state after connect ${JSON.stringify(res)}` + await mmContext(page, { sdp: true }));
  console.log(`# ${peer} connected (@mediamesh/sdk): conn_id=${JSON.stringify(res.connId)} ice_lite=${res.iceLite}`);
  return res;
}

const sameSdp = async (page, a, b, what) => {
  assert.equal(b.updateSdp, a.updateSdp, `${page.label}: an UpdateSdp renegotiation happened during ${what}` + await mmContext(page));
  assert.equal(b.signalingChanges, a.signalingChanges, `${page.label}: signaling state changed during ${what}` + await mmContext(page));
  assert.equal(b.transceivers, a.transceivers, `${page.label}: transceiver count changed during ${what}`);
  assert.equal(b.local, a.local, `${page.label}: local description changed during ${what}`);
  assert.equal(b.remote, a.remote, `${page.label}: remote description changed during ${what}`);
};

test('mediamesh-sdk (a): three @mediamesh/sdk peers play each other; receivers added on demand; switch, pause and resume a subscription', { timeout: 300000 }, () => chromium.withMediaMesh('mediamesh-sdk-room', {}, async (server, open) => {
  const room = 'room-mm';
  const pages = {};
  for (const p of PEERS) pages[p.id] = await openOurPage(open, chromium.web, p.id);
  const [A] = PEERS.map((p) => pages[p.id]);
  const all = async () => (await Promise.all(Object.values(pages).map((pg) => mmContext(pg, { pageLog: false })))).join('');

  // Cameras biggest first (one fake device shared by the pages).
  for (const p of [...PEERS].sort((x, y) => y.width - x.width)) {
    const got = await pages[p.id].evaluate((o) => window.mm2.camera(o), { width: p.width, height: p.height });
    assert.deepEqual([got.width, got.height], [p.width, p.height], `${p.id}: fake camera size`);
  }
  // Default pool: one audio and one video receiver; publish adds two send m-lines (UpdateSdp).
  for (const p of PEERS) await joinOurs(pages[p.id], server, room, p.id);

  // Each page subscribed to the two others' audio_main + video_main on trackStarted.
  for (const p of PEERS) {
    const page = pages[p.id];
    const want = PEERS.filter((o) => o.id !== p.id).flatMap((o) => [`${o.id}/audio_main`, `${o.id}/video_main`]).sort();
    await waitFor(`${p.id}: subscriptions to ${want.join(', ')} after trackStarted`,
      () => page.evaluate(() => window.mm2.subKeys()),
      (keys) => JSON.stringify([...keys].sort()) === JSON.stringify(want),
      { context: async () => (await mmContext(page)) + (await all()) });
  }
  for (const pg of Object.values(pages)) await pg.evaluate(() => window.mm2.setAuto(false));
  for (const p of PEERS) {
    const d = await pages[p.id].evaluate(() => window.mm2.debug());
    assert.equal(d.receivers.length, 4, `${p.id}: 2 receivers per kind (1 up front + 1 on demand): ${JSON.stringify(d.receivers)}`);
    assert.ok(d.negotiations.updateSdp >= 2, `${p.id}: expected UpdateSdp renegotiations for publish and the extra receivers: ${JSON.stringify(d.negotiations)}`);
  }

  // Everybody decodes both others: video at the source's width, audio samples.
  for (const p of PEERS) {
    const page = pages[p.id];
    for (const o of PEERS.filter((x) => x.id !== p.id)) {
      await expectSubReceiving(page, `${o.id}/video_main`, { width: o.width, context: all });
      await expectSubReceiving(page, `${o.id}/audio_main`, { context: all });
    }
  }

  // Switch: alice's subscription playing bob's video now plays carol's: one attach on the
  // same receiver, no renegotiation; frames at carol's width on the same MediaStream.
  const neg0 = await A.evaluate(() => window.mm2.negotiation());
  const before1 = await mmStats(A);
  const sw = await A.evaluate(([k, s]) => window.mm2.switchTo(k, s), ['bob/video_main', { peer: 'carol', track: 'video_main' }])
    .catch(async (e) => { throw new Error(`alice: switchTo(carol/video_main) from bob/video_main failed: ${e.message}` + await mmContext(A) + await all()); });
  before1.subs[sw] = before1.subs['bob/video_main'];
  const switched = await expectSubReceiving(A, sw, { what: 'switched from bob/video_main', width: WIDTH.carol, from: before1, context: all });
  console.log(`# alice ${sw} after switch: ${JSON.stringify(switched)}`);
  await sameSdp(A, neg0, await A.evaluate(() => window.mm2.negotiation()), 'the switch');

  // Pause: no more packets on that receiver while the other video subscription goes on.
  await A.evaluate((k) => window.mm2.pause(k), sw)
    .catch(async (e) => { throw new Error(`alice: pause() of ${sw} failed: ${e.message}` + await mmContext(A)); });
  await sleep(1000);
  const p0 = await mmStats(A);
  await sleep(2000);
  const p1 = await mmStats(A);
  assert.equal(p1.subs[sw].packetsReceived, p0.subs[sw].packetsReceived,
    `alice: ${sw} still receives packets 1-3 s after pause(): ${JSON.stringify({ at1s: p0.subs[sw], at3s: p1.subs[sw] })}` + await mmContext(A) + server.describe());
  assert.ok(p1.subs['carol/video_main'].framesDecoded > p0.subs['carol/video_main'].framesDecoded,
    `alice: carol/video_main must keep decoding while ${sw} is paused: ${JSON.stringify({ before: p0.subs['carol/video_main'], after: p1.subs['carol/video_main'] })}` + await mmContext(A));
  // Resume: packets and frames again, still without renegotiation.
  await A.evaluate((k) => window.mm2.resume(k), sw)
    .catch(async (e) => { throw new Error(`alice: resume() of ${sw} failed: ${e.message}` + await mmContext(A)); });
  await expectSubReceiving(A, sw, { what: 'resumed', width: WIDTH.carol, from: p1, context: all });
  const r1 = await mmStats(A);
  assert.ok(r1.subs[sw].packetsReceived > p1.subs[sw].packetsReceived, `alice: packetsReceived rises again after resume()`);
  await sameSdp(A, neg0, await A.evaluate(() => window.mm2.negotiation()), 'pause/resume');

  // Close: the others see the peer leave.
  const C = pages.carol;
  assert.equal(await C.evaluate(() => window.mm2.close()), 'closed');
  for (const page of [pages.alice, pages.bob]) {
    await waitFor(`${page.label}: peerLeft carol and trackStopped for carol's two tracks`,
      () => page.evaluate(() => window.mm2.debug().events),
      (evs) => evs.some((e) => e.type === 'peerLeft' && e.peer === 'carol') &&
        ['audio_main', 'video_main'].every((t) => evs.some((e) => e.type === 'trackStopped' && e.peer === 'carol' && e.track === t)),
      { context: async () => mmContext(page) });
  }
}));

test('mediamesh-sdk (b): a mixed room: atm0s SDK peer, @mediamesh/sdk peer and a WHIP publisher see and play each other', { timeout: 240000 }, () => chromium.withMediaMesh('mediamesh-sdk-mixed', {}, async (server, open) => {
  const room = 'room-mixed';
  const atm0s = { id: 'alice', width: 320, height: 240 };
  const ours = { id: 'bob', width: 400, height: 300 };
  const whip = { id: 'whip-carol', width: 480, height: 360 };
  const aPage = await openSdkPage(open, chromium.web, 'alice-atm0s');
  const bPage = await openOurPage(open, chromium.web, 'bob-mediamesh');
  const wPage = await open.harness('carol-whip');
  const all = async () => (await sdkContext(aPage, { pageLog: false })) + (await mmContext(bPage, { pageLog: false })) + (await sessionContext(wPage, 'whip', { pageLog: false }));

  // Biggest camera first: the WHIP publisher (480), then ours (400), then atm0s (320).
  const wTok = await server.token('whip', room, whip.id);
  await wPage.evaluate((o) => window.mm.publish(o), { name: 'whip', endpoint: `${server.base}/whip/endpoint`, token: wTok, width: whip.width, height: whip.height })
    .catch(async (e) => { throw new Error(`WHIP publish failed: ${e.message}` + await sessionContext(wPage, 'whip', { sdp: true })); });
  await waitFor('WHIP publisher to send video', () => statsOf(wPage, 'whip'), (s) => s?.conn === 'connected' && s.outVideo?.packetsSent > 0,
    { context: async () => sessionContext(wPage, 'whip') });
  assert.deepEqual(Object.values(await bPage.evaluate((o) => window.mm2.camera(o), { width: ours.width, height: ours.height })), [ours.width, ours.height]);
  const got = await aPage.evaluate((o) => window.sdk.camera(o), { width: atm0s.width, height: atm0s.height });
  assert.deepEqual([got.width, got.height], [atm0s.width, atm0s.height]);

  // The atm0s peer joins (2 audio + 2 video receivers attached on room.track.started), then ours.
  const aTok = await server.token('webrtc', room, atm0s.id);
  const res = await aPage.evaluate((o) => window.sdk.join(o), { gateway: server.base, token: aTok, room, peer: atm0s.id })
    .catch(async (e) => { throw new Error(`alice (atm0s): join failed: ${e.message}` + await sdkContext(aPage, { sdp: true })); });
  assert.equal(res.state, 'connected', `alice (atm0s): state ${res.state}` + await sdkContext(aPage, { sdp: true }));
  await joinOurs(bPage, server, room, ours.id);

  // atm0s sees and plays bob (ours) and the WHIP publisher.
  const wantA = [`${ours.id}/audio_main`, `${ours.id}/video_main`, `${whip.id}/audio`, `${whip.id}/video`].sort();
  const assign = await waitFor(`alice (atm0s): receivers attached to ${wantA.join(', ')}`,
    () => aPage.evaluate(() => window.sdk.assign()),
    (a) => JSON.stringify(Object.values(a).filter((x) => x.status === 'ok').map((x) => `${x.peer}/${x.track}`).sort()) === JSON.stringify(wantA),
    { context: all });
  for (const [name, src] of Object.entries(assign)) {
    const width = src.track.startsWith('video') ? (src.peer === ours.id ? ours.width : whip.width) : null;
    await expectReceiving(aPage, name, { what: `playing ${src.peer}/${src.track}`, width, context: all });
  }
  // Ours sees and plays the atm0s peer and the WHIP publisher.
  const wantB = [`${atm0s.id}/audio_main`, `${atm0s.id}/video_main`, `${whip.id}/audio`, `${whip.id}/video`].sort();
  await waitFor(`bob (@mediamesh/sdk): subscriptions to ${wantB.join(', ')}`,
    () => bPage.evaluate(() => window.mm2.subKeys()),
    (keys) => JSON.stringify([...keys].sort()) === JSON.stringify(wantB),
    { context: all });
  await expectSubReceiving(bPage, `${atm0s.id}/video_main`, { width: atm0s.width, context: all });
  await expectSubReceiving(bPage, `${atm0s.id}/audio_main`, { context: all });
  await expectSubReceiving(bPage, `${whip.id}/video`, { width: whip.width, context: all });
  await expectSubReceiving(bPage, `${whip.id}/audio`, { context: all });
  // Peer events: each SDK peer was told about the two others.
  const bEvents = (await bPage.evaluate(() => window.mm2.debug())).events;
  for (const peer of [atm0s.id, whip.id]) {
    assert.ok(bEvents.some((e) => e.type === 'peerJoined' && e.peer === peer), `bob: peerJoined ${peer}` + await mmContext(bPage));
  }
}));

test('mediamesh-sdk (c): after an ICE restart, a message channel delivers 20 numbered messages from one peer to the two others, in order', { timeout: 120000 }, () => chromium.withMediaMesh('mediamesh-sdk-messages', {}, async (server, open) => {
  const room = 'room-chat';
  const pages = {};
  for (const p of PEERS) {
    pages[p.id] = await openOurPage(open, chromium.web, p.id);
    await joinOurs(pages[p.id], server, room, p.id, { publish: false });
  }
  const all = async () => (await Promise.all(Object.values(pages).map((pg) => mmContext(pg, { pageLog: false })))).join('');
  for (const [id, page] of Object.entries(pages)) {
    await page.evaluate(() => window.mm2.openChannel('chat'))
      .catch(async (e) => { throw new Error(`${id}: messageChannel("chat") sub/start_pub failed: ${e.message}` + await mmContext(page)); });
  }
  // ICE restart on the publisher first (session.restartIce(): new ufrag, same conn_id);
  // the data channel (SCTP over the same DTLS) must survive it.
  const ice = await pages.alice.evaluate(() => window.mm2.restartIce())
    .catch(async (e) => { throw new Error(`alice: session.restartIce() failed: ${e.message}` + await mmContext(pages.alice)); });
  assert.notEqual(ice.after.local, ice.before.local, `alice: local ufrag unchanged by restartIce(): ${JSON.stringify(ice)}`);
  assert.notEqual(ice.after.remote, ice.before.remote, `alice: the server's answer kept its ufrag: ${JSON.stringify(ice)}`);
  assert.equal(ice.after.connId, ice.before.connId, `alice: conn_id changed by restart-ice on the same node: ${JSON.stringify(ice)}`);
  await waitFor('alice: connectionState "connected" after the ICE restart', () => pages.alice.evaluate(() => window.mm2.debug().pc),
    (pc) => pc.conn === 'connected', { context: all });
  const texts = Array.from({ length: 20 }, (_, i) => `msg-${i + 1}`);
  await pages.alice.evaluate((t) => window.mm2.publishMany('chat', t), texts)
    .catch(async (e) => { throw new Error(`alice: publishing 20 messages failed: ${e.message}` + await mmContext(pages.alice)); });
  for (const id of ['bob', 'carol']) {
    const got = await waitFor(`${id}: 20 messages from alice on "chat"`,
      () => pages[id].evaluate(() => window.mm2.received('chat')),
      (msgs) => msgs.filter((m) => m.peer === 'alice').length >= 20,
      { context: all });
    assert.deepEqual(got.filter((m) => m.peer === 'alice').map((m) => m.text), texts, `${id}: messages from alice out of order or duplicated`);
  }
  const echo = (await pages.alice.evaluate(() => window.mm2.received('chat'))).filter((m) => m.peer === 'alice').length;
  console.log(`# alice got ${echo} of her own messages back (server echo policy)`);
}));

test('mediamesh-sdk (d): publication stop/republish, setLimits, leave + join on the same connection, manual mode with subscribePeer', { timeout: 180000 }, () => chromium.withMediaMesh('mediamesh-sdk-rooms', {}, async (server, open) => {
  const room = 'room-life';
  const A = await openOurPage(open, chromium.web, 'alice');
  const B = await openOurPage(open, chromium.web, 'bob');
  const C = await openOurPage(open, chromium.web, 'carol');
  const all = async () => (await Promise.all([A, B, C].map((pg) => mmContext(pg, { pageLog: false })))).join('');
  const events = (page) => page.evaluate(() => window.mm2.debug().events);
  const count = (evs, type, pred = () => true) => evs.filter((e) => e.type === type && pred(e)).length;
  const waitEvent = (page, what, type, pred, n = 1) => waitFor(`${page.label}: ${what}`, () => events(page), (evs) => count(evs, type, pred) >= n, { context: all });

  assert.deepEqual(Object.values(await A.evaluate((o) => window.mm2.camera(o), { width: 320, height: 240 })), [320, 240]);
  await joinOurs(A, server, room, 'alice');
  await joinOurs(B, server, room, 'bob', { publish: false });
  await waitFor('bob: subscribed to alice/audio_main and alice/video_main', () => B.evaluate(() => window.mm2.subKeys()),
    (k) => k.includes('alice/audio_main') && k.includes('alice/video_main'), { context: all });
  await expectSubReceiving(B, 'alice/video_main', { width: 320, context: all });

  // setLimits: receiver.config answered; media goes on.
  const lim = await B.evaluate(() => window.mm2.setLimits('alice/video_main', { priority: 2, maxSpatial: 0, maxTemporal: 0 }))
    .catch(async (e) => { throw new Error(`bob: setLimits failed: ${e.message}` + await all()); });
  assert.deepEqual([lim.priority, lim.maxSpatial, lim.maxTemporal], [2, 0, 0]);
  await expectSubReceiving(B, 'alice/video_main', { what: 'after setLimits', width: 320, context: all });

  // Publication stop (sender.detach): bob sees trackStopped; republish (sender.attach): trackStarted
  // again and bob's subscription, still attached to alice/video_main, plays again.
  assert.deepEqual(await A.evaluate(() => window.mm2.stopPub('video_main')), { published: false });
  await waitEvent(B, 'trackStopped alice/video_main after Publication.stop()', 'trackStopped', (e) => e.peer === 'alice' && e.track === 'video_main');
  const s0 = await mmStats(B);
  assert.deepEqual(await A.evaluate(() => window.mm2.republish('video_main')), { published: true });
  await waitEvent(B, 'a second trackStarted alice/video_main after republish', 'trackStarted', (e) => e.peer === 'alice' && e.track === 'video_main', 2);
  await expectSubReceiving(B, 'alice/video_main', { what: 'after alice republished video_main', width: 320, from: s0, context: all });

  // Leave + join on the same connection: alice sees bob leave and come back; bob's
  // subscriptions ended at leave and are made again from the new trackStarted events.
  const left = await B.evaluate(() => window.mm2.leave())
    .catch(async (e) => { throw new Error(`bob: leave() failed: ${e.message}` + await all()); });
  assert.equal(left.room, null);
  assert.ok(left.subs.every((st) => st === 'ended'), `bob: subscriptions after leave: ${JSON.stringify(left.subs)}`);
  await waitEvent(A, 'peerLeft bob after bob.leave()', 'peerLeft', (e) => e.peer === 'bob');
  const tokB = await server.token('webrtc', room, 'bob');
  await B.evaluate(([i, t]) => window.mm2.rejoin(i, t), [{ room, peer: 'bob' }, tokB])
    .catch(async (e) => { throw new Error(`bob: join() after leave failed: ${e.message}` + await all()); });
  await waitEvent(A, 'peerJoined bob again after bob.join()', 'peerJoined', (e) => e.peer === 'bob', 2);
  await waitFor('bob: subscribed again to alice/video_main after the re-join', () => B.evaluate(() => window.mm2.subKeys()),
    (k) => k.includes('alice/video_main') && k.includes('alice/audio_main'), { context: all });
  await expectSubReceiving(B, 'alice/video_main', { what: 'after leave + join', width: 320, context: all });

  // Manual mode: carol hears of nobody until subscribePeer("alice").
  await joinOurs(C, server, room, 'carol', { publish: false, mode: 'manual' });
  await sleep(1500);
  const quiet = await events(C);
  assert.equal(count(quiet, 'trackStarted') + count(quiet, 'peerJoined'), 0, `carol (manual): no room events before subscribePeer: ${JSON.stringify(quiet.filter((e) => e.type.startsWith('peer') || e.type.startsWith('track')))}`);
  await C.evaluate(() => window.mm2.subscribePeer('alice'))
    .catch(async (e) => { throw new Error(`carol: subscribePeer("alice") failed: ${e.message}` + await all()); });
  await waitEvent(C, 'trackStarted alice/video_main after subscribePeer', 'trackStarted', (e) => e.peer === 'alice' && e.track === 'video_main');
  await waitFor('carol: subscribed to alice/video_main', () => C.evaluate(() => window.mm2.subKeys()), (k) => k.includes('alice/video_main'), { context: all });
  await expectSubReceiving(C, 'alice/video_main', { what: 'manual mode', width: 320, context: all });
  const cEv = await events(C);
  assert.equal(count(cEv, 'trackStarted', (e) => e.peer === 'bob'), 0, 'carol (manual): no events about bob (not subscribed)');
}));

test('mediamesh-sdk (e): automatic ICE restart when the connection goes disconnected (server frozen with SIGSTOP until the SDK reports reconnecting, plus 3 s)', { timeout: 120000 }, () => chromium.withMediaMesh('mediamesh-sdk-autorestart', {}, async (server, open) => {
  const room = 'room-ice';
  const A = await openOurPage(open, chromium.web, 'alice');
  const B = await openOurPage(open, chromium.web, 'bob');
  const all = async () => (await Promise.all([A, B].map((pg) => mmContext(pg, { pageLog: false })))).join('');
  assert.deepEqual(Object.values(await A.evaluate((o) => window.mm2.camera(o), { width: 320, height: 240 })), [320, 240]);
  await joinOurs(A, server, room, 'alice');
  await joinOurs(B, server, room, 'bob', { publish: false });
  await waitFor('bob: subscribed to alice/video_main', () => B.evaluate(() => window.mm2.subKeys()), (k) => k.includes('alice/video_main'), { context: all });
  await expectSubReceiving(B, 'alice/video_main', { width: 320, context: all });

  // Freeze the server (our own child process, by pid): no STUN answers, no media.
  // Chromium reports "disconnected"; after 2 s the SDK POSTs restart-ice, which the
  // server answers once it runs again.
  process.kill(server.proc.pid, 'SIGSTOP');
  try {
    await waitFor('alice: connectionState event "reconnecting" while the server is frozen',
      () => A.evaluate(() => window.mm2.debug().events), (evs) => evs.some((e) => e.type === 'connectionState' && e.value === 'reconnecting'),
      { timeoutMs: 15000, context: all });
    await sleep(3000);
  } finally {
    process.kill(server.proc.pid, 'SIGCONT');
  }
  for (const page of [A, B]) {
    await waitFor(`${page.label}: an automatic ICE restart completed and the session is connected again`,
      () => page.evaluate(() => window.mm2.debug()),
      (d) => d.negotiations.iceRestarts >= 1 && d.state === 'connected' && d.pc.conn === 'connected', { context: all });
  }
  const s0 = await mmStats(B);
  await expectSubReceiving(B, 'alice/video_main', { what: 'after the automatic ICE restart', width: 320, from: s0, context: all });
}));
