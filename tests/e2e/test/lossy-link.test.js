// Loss, not congestion, on one subscriber's link (issue: quality control, "one
// subscriber behind a lossy or slow link gets lower layers; it never lowers what others
// receive"), end to end with real Chromium on loopback.
//
//   publisher  pages/simulcast.html (@mediamesh/sdk): fake camera 1280x720 at 20 fps,
//              VP8 simulcast (rids 0/1/2 = 320/640/1280 wide).
//   A          subscribes through lib/lossy-relay.js: the page is given the relay's port
//              as the server's ICE candidate, and the relay drops RTP/RTCP towards A at
//              random (seeded) while the test says so.
//   B          subscribes straight to the server.
//
// Steps: the publisher ramps (rid 2 targeting >= 1.2 Mbit/s); A and B both decode 1280
// at the full frame rate; then LOSS of the RTP/RTCP towards A is dropped for LOSS_MS.
// Checked: B decodes at its frame rate (frozen <= B_FREEZE_MS), loses nothing and stays at
// 1280 (>= TOP_SHARE_B of its samples: its own estimate dips now and then on this
// loaded machine) while A loses packets; A keeps decoding at >= a quarter of the
// frame rate (NACK/RTX repairs; before the server raised str0m's cap on resends, 15 %
// of the bytes sent, A decoded 3 frames/s at this loss), the server moves A to a lower
// layer (its loss-based estimate falls), and asks the publisher for keyframes at most
// once per KEYFRAME_BUDGET_MS on average (requests from a lossy subscriber are
// aggregated, not passed on one by one); after the loss ends A is back above the low
// layer within RECOVER_MS (the time back at 1280 is a METRIC: 7-12 s, or longer: str0m's
// estimate stays low for seconds after the loss). Numbers: `METRIC lossy_*`.
//
// Second test, the publisher's uplink: the publisher plays through the relay, which
// drops UP_LOSS of its RTP/RTCP towards the server for LOSS_MS; B subscribes straight.
// Checked: the publisher gets NACKs (from the server's receive side), and B decodes at
// its frame rate, frozen <= B_FREEZE_MS, with <= 1 % of its packets counted lost (the
// repairs the server gets from the publisher are forwarded into the gaps they fill).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { sleep } from '../lib/server.js';
import { useChromium } from '../lib/fixtures.js';
import { waitFor } from '../lib/media.js';
import { ensureOurBundle } from '../lib/mediamesh-sdk.js';
import { LossyRelay } from '../lib/lossy-relay.js';
import { fullRateAt, topFps } from '../lib/simulcast-page.js';

const env = useChromium({ pages: true });

const ROOM = 'room-lossy';
const CAMERA = { width: 1280, height: 720, fps: 20 };
const TOP = 1280;
const MIDDLE = 640;
const LOSS = 0.25;
const LOSS_MS = 12000;
const UP_LOSS = 0.05;           // the publisher's uplink, second test
const RAMP_LIMIT_MS = 30000;
const TOP_LIMIT_MS = 15000;     // A and B at 1280 (full rate) before the loss starts
const RECOVER_MS = 15000;       // A back at 640 or 1280 (full rate) after it ends (the loss-based estimate recovers slower than a lifted rate limit)
const KEYFRAME_BUDGET_MS = 2000;
const TOP_SHARE_B = 0.75;      // B's samples at 1280 while A loses packets
const B_FREEZE_MS = 1000;       // B's frozen time while A loses packets

if (!process.env.RUST_LOG) process.env.RUST_LOG = 'info,mediamesh=debug';

/** Keyframe requests to the publisher in the server's log, with their times. */
function keyframeRequestTimes(server) {
  let text = '';
  try { text = readFileSync(server.logPath, 'utf8'); } catch { return []; }
  return [...text.matchAll(/^(\S+Z) .*keyframe request to publisher .*stream=(\S+)/gm)].map((m) => ({ at: Date.parse(m[1]), stream: m[2] }));
}

/** Frames, frame rate, freezes, NACKs and widths of a run of samples. */
function summary(all) {
  const s = all.filter((x) => x.inbound);
  if (s.length < 2) return { n: s.length, frames: 0, fps: 0, freezes: 0, nacks: 0, lost: 0, widths: {} };
  const [a, b] = [s[0], s.at(-1)];
  const widths = {};
  for (const x of s) widths[x.frameWidth] = (widths[x.frameWidth] ?? 0) + 1;
  return { n: s.length, frames: b.framesDecoded - a.framesDecoded, fps: +(((b.framesDecoded - a.framesDecoded) * 1000) / (b.at - a.at)).toFixed(1),
    freezes: b.freezeCount - a.freezeCount, freezeMs: Math.round((b.totalFreezesDuration - a.totalFreezesDuration) * 1000),
    nacks: b.nackCount - a.nackCount, plis: b.pliCount - a.pliCount, lost: b.packetsLost - a.packetsLost, received: b.packetsReceived - a.packetsReceived, widths };
}

/** A pages/simulcast.html page. */
async function openPage(open, label) {
  const p = await open.page(label, `${env.web.base}/simulcast.html`);
  await p.waitForFunction(() => window.sc?.ready === true, null, { timeout: 20000 });
  return p;
}

async function joinRoom(server, p, peer, receivers) {
  const token = await server.token('webrtc', ROOM, peer);
  const r = await p.evaluate((o) => window.sc.join(o), { url: server.base, token, room: ROOM, peer, receivers });
  assert.equal(r.state, 'connected', `${peer}: ${JSON.stringify(r)}`);
}

/** The fake camera at CAMERA, joined as "publisher" and published with VP8 simulcast. */
async function publishCamera(server, pub) {
  const cam = await pub.evaluate((o) => window.sc.camera(o), CAMERA);
  assert.deepEqual([cam.width, cam.height], [CAMERA.width, CAMERA.height], `fake camera ${JSON.stringify(cam)}`);
  await joinRoom(server, pub, 'publisher', { audio: 0, video: 0 });
  await pub.evaluate(() => window.sc.publish({ simulcast: true }));
}

/** Waits until rid 2 is at 1280 targeting >= 1.2 Mbit/s; its frame rate. */
async function rampedFps(pub) {
  const ramped = await waitFor('publisher: rid 2 at 1280 targeting >= 1.2 Mbit/s', () => pub.evaluate(() => window.sc.pubStats()),
    (s) => s.rids['2']?.frameWidth === TOP && s.rids['2'].targetBitrate >= 1200000, { timeoutMs: RAMP_LIMIT_MS });
  return topFps(ramped, false, CAMERA.fps);
}

test(`lossy link: ${LOSS * 100} % loss towards one subscriber lowers nothing for the other; the lossy one gets a lower layer and keeps playing, repaired by NACK, without a keyframe storm`, { timeout: 120000 }, async () => {
  ensureOurBundle();
  await env.withMediaMesh('lossy-link', {}, async (server, open) => {
    const relay = await new LossyRelay({ target: { host: server.host, port: server.mediaPort }, seed: 7 }).start();
    try {
      const [pub, A, B] = [await openPage(open, 'publisher'), await openPage(open, 'A-lossy'), await openPage(open, 'B-direct')];
      const join = (p, peer, receivers) => joinRoom(server, p, peer, receivers);
      await publishCamera(server, pub);
      await A.evaluate((o) => window.sc.via(o), { from: server.mediaPort, to: relay.port });
      await Promise.all([join(A, 'A-lossy', { audio: 0, video: 1 }), join(B, 'B-direct', { audio: 0, video: 1 })]);
      assert.ok(relay.counts.up > 0 && relay.counts.down > 0, `A's session does not go through the relay: ${JSON.stringify(relay.counts)}`);
      for (const p of [A, B]) await p.evaluate(() => window.sc.subscribe({ peer: 'publisher', track: 'video_main' }));

      // The publisher ramps its top stream, then A and B play it at the full rate.
      const pubFps = await rampedFps(pub);
      const minFps = 0.75 * pubFps;
      const tTop = Date.now();
      const [topA, topB] = await Promise.all([A, B].map((p) => fullRateAt(p, TOP, minFps, tTop, TOP_LIMIT_MS)));
      assert.ok(topA && topB, `before the loss, A and B should decode ${TOP} at >= ${minFps} frames/s: A ${JSON.stringify(topA)}, B ${JSON.stringify(topB)}`);

      // Loss towards A.
      const pubBefore = await pub.evaluate(() => window.sc.pubStats());
      const tLoss = Date.now();
      relay.setLoss({ down: LOSS });
      const relayBefore = { ...relay.counts };
      await sleep(LOSS_MS);
      relay.setLoss({});
      const tEnd = Date.now();
      const pubAfter = await pub.evaluate(() => window.sc.pubStats());
      const dropped = relay.counts.droppedDown - relayBefore.droppedDown;
      const sent = dropped + relay.counts.down - relayBefore.down;
      const [sa, sb] = await Promise.all([A, B].map((p) => p.evaluate((x) => window.sc.samples(x), tLoss)));
      const lossA = summary(sa.filter((x) => x.at <= tEnd));
      const lossB = summary(sb.filter((x) => x.at <= tEnd));
      const requests = keyframeRequestTimes(server).filter((r) => r.at >= tLoss && r.at <= tEnd);
      const keyframes = Object.fromEntries(Object.keys(pubAfter.rids).map((rid) => [rid, (pubAfter.rids[rid].keyFramesEncoded ?? 0) - (pubBefore.rids[rid]?.keyFramesEncoded ?? 0)]));
      const statsA = (await A.evaluate((x) => window.sc.rstats(x), tLoss)).filter((r) => r.at <= tEnd);
      const targetsA = statsA.map((r) => r.target);
      const layersA = statsA.map((r) => `s${r.spatial}t${r.temporal}:${r.kbps}/target s${r.target} est ${r.estimateKbps}`).join(' ');
      console.log(`# relay: ${dropped} of ${sent} datagrams towards A dropped in ${LOSS_MS} ms`);
      console.log(`# A during the loss: ${JSON.stringify(lossA)}; server to A: ${layersA}`);
      const layersB = (await B.evaluate((x) => window.sc.rstats(x), tLoss)).filter((r) => r.at <= tEnd).map((r) => `s${r.spatial}t${r.temporal}:${r.kbps}/target s${r.target} est ${r.estimateKbps}`).join(' ');
      console.log(`# B during the loss: ${JSON.stringify(lossB)}; server to B: ${layersB}`);
      console.log(`# keyframe requests to the publisher during the loss: ${requests.length} (${requests.map((r) => `+${((r.at - tLoss) / 1000).toFixed(1)}s s${r.stream}`).join(' ')}); keyframes encoded per rid: ${JSON.stringify(keyframes)}`);
      console.log(`METRIC lossy_A_fps=${lossA.fps}`);
      console.log(`METRIC lossy_A_freezes=${lossA.freezes}`);
      console.log(`METRIC lossy_A_nacks=${lossA.nacks}`);
      console.log(`METRIC lossy_B_fps=${lossB.fps}`);
      console.log(`METRIC lossy_keyframe_requests=${requests.length}`);

      // After the loss: A moves up again (to the middle layer at least; the top is
      // recorded when it comes within RECOVER_MS).
      const [upA, backA] = await Promise.all([MIDDLE, TOP].map((w) => fullRateAt(A, w, minFps, tEnd, RECOVER_MS)));
      console.log(`METRIC lossy_A_back_to_top_ms=${backA ? backA.at - tEnd : `none within ${RECOVER_MS}`}`);

      const failures = [];
      const check = (ok, msg) => { if (!ok) failures.push(msg); };
      check(sent > 0 && dropped / sent > LOSS / 2, `the relay dropped ${dropped} of ${sent} datagrams towards A (want about ${LOSS * 100} %)`);
      // B's own estimate (str0m's, on this loaded loopback) dips now and then and moves it
      // down a layer for a few seconds, also with no loss anywhere (seen starting before
      // the loss did): most of the time at the top, and nothing of A's loss in its stream.
      const topShare = (lossB.widths[TOP] ?? 0) / Math.max(1, lossB.n);
      check(lossB.n >= 20 && topShare >= TOP_SHARE_B, `B at ${TOP} in ${Math.round(topShare * 100)} % of its samples while A's link lost packets (want >= ${TOP_SHARE_B * 100} %): ${JSON.stringify(lossB.widths)}`);
      // Each switch of A needs a keyframe of the stream it moves to, and the publisher's
      // encoder makes one on every stream: B's 1280 keyframe, paced at 1.1 x B's estimate
      // (str0m's pacer), can hold B's next frames for a few hundred ms.
      check(lossB.freezeMs <= B_FREEZE_MS && lossB.fps >= minFps && lossB.lost === 0 && lossB.nacks === 0,
        `B froze for more than ${B_FREEZE_MS} ms, slowed or lost packets while A's link lost packets: ${JSON.stringify(lossB)}`);
      check(lossA.nacks > 0, `A sent no NACK while ${dropped} packets towards it were dropped: ${JSON.stringify(lossA)}`);
      check(lossA.fps >= 0.25 * pubFps, `A decoded ${lossA.fps} frames/s through the loss (want >= ${0.25 * pubFps}): ${JSON.stringify(lossA)}`);
      check(targetsA.some((t) => t < 2), `the server kept A's target at the top layer through ${LOSS * 100} % loss: targets ${JSON.stringify(targetsA)}`);
      check(requests.length <= LOSS_MS / KEYFRAME_BUDGET_MS, `${requests.length} keyframe requests to the publisher in ${LOSS_MS} ms of loss towards one subscriber (want <= ${LOSS_MS / KEYFRAME_BUDGET_MS})`);
      check(upA || backA, `A not back at ${MIDDLE} or ${TOP} at >= ${minFps} frames/s within ${RECOVER_MS} ms of the loss ending`);
      if (failures.length) {
        const list = `${failures.length} check(s) failed:\n  - ${failures.join('\n  - ')}`;
        const rows = (s) => s.filter((x) => x.inbound).filter((_, i) => i % 4 === 0).map((x) => `+${((x.at - tLoss) / 1000).toFixed(1)}s w=${x.frameWidth} dec=${x.framesDecoded} frz=${x.freezeCount} nack=${x.nackCount} pli=${x.pliCount} lost=${x.packetsLost}`).join('\n  ');
        const [ra, rb] = await Promise.all([A, B].map((p) => p.evaluate((x) => window.sc.samples(x), tLoss)));
        throw new Error(`${list}\n--- A once a second from the loss:\n  ${rows(ra)}\n--- B:\n  ${rows(rb)}\n--- ${list}`);
      }
    } finally {
      relay.stop();
    }
  });
});

test(`lossy uplink: ${UP_LOSS * 100} % loss from the publisher is repaired by the server (NACK to the publisher) before its subscriber sees it`, { timeout: 120000 }, async () => {
  ensureOurBundle();
  await env.withMediaMesh('lossy-uplink', {}, async (server, open) => {
    const relay = await new LossyRelay({ target: { host: server.host, port: server.mediaPort }, seed: 11 }).start();
    try {
      const [pub, B] = [await openPage(open, 'publisher-lossy'), await openPage(open, 'B')];
      await pub.evaluate((o) => window.sc.via(o), { from: server.mediaPort, to: relay.port });
      await publishCamera(server, pub);
      assert.ok(relay.counts.up > 0, `the publisher's session does not go through the relay: ${JSON.stringify(relay.counts)}`);
      await joinRoom(server, B, 'B', { audio: 0, video: 1 });
      await B.evaluate(() => window.sc.subscribe({ peer: 'publisher', track: 'video_main' }));
      const pubFps = await rampedFps(pub);
      const minFps = 0.75 * pubFps;
      const tTop = Date.now();
      const topB = await fullRateAt(B, TOP, minFps, tTop, TOP_LIMIT_MS);
      if (!topB) {
        const [ps, bs] = [await pub.evaluate(() => window.sc.pubStats()), await B.evaluate((x) => window.sc.samples(x), tTop)];
        const rids = Object.entries(ps.rids).map(([r, x]) => `rid ${r} ${x.frameWidth} ${x.fps} fps target ${x.targetBitrate} ${x.qualityLimitationReason}`).join('; ');
        const widths = bs.filter((x) => x.inbound).filter((_, i) => i % 4 === 0).map((x) => `+${((x.at - tTop) / 1000).toFixed(1)}s ${x.frameWidth}`).join(' ');
        assert.fail(`before the loss, B should decode ${TOP} at >= ${minFps} frames/s within ${TOP_LIMIT_MS} ms; B once a second: ${widths}; publisher: ${rids}; relay ${JSON.stringify(relay.counts)}`);
      }

      const pubBefore = await pub.evaluate(() => window.sc.pubStats());
      const relayBefore = { ...relay.counts };
      const tLoss = Date.now();
      relay.setLoss({ up: UP_LOSS });
      await sleep(LOSS_MS);
      relay.setLoss({});
      const tEnd = Date.now();
      await sleep(1000);   // the last repairs
      const pubAfter = await pub.evaluate(() => window.sc.pubStats());
      const dropped = relay.counts.droppedUp - relayBefore.droppedUp;
      const sent = dropped + relay.counts.up - relayBefore.up;
      const nacked = Object.keys(pubAfter.rids).reduce((n, rid) => n + (pubAfter.rids[rid].nackCount ?? 0) - (pubBefore.rids[rid]?.nackCount ?? 0), 0);
      const samples = await B.evaluate((x) => window.sc.samples(x), tLoss);
      const during = summary(samples.filter((x) => x.at <= tEnd));
      const whole = summary(samples);
      console.log(`# relay: ${dropped} of ${sent} datagrams from the publisher dropped in ${LOSS_MS} ms; NACKs the publisher got: ${nacked}`);
      console.log(`# B during the loss: ${JSON.stringify(during)}; until 1 s after: ${JSON.stringify(whole)}`);
      console.log(`METRIC lossy_uplink_B_fps=${during.fps}`);
      console.log(`METRIC lossy_uplink_B_lost=${whole.lost}`);
      console.log(`METRIC lossy_uplink_publisher_nacks=${nacked}`);
      const failures = [];
      const check = (ok, msg) => { if (!ok) failures.push(msg); };
      check(sent > 0 && dropped / sent > UP_LOSS / 2, `the relay dropped ${dropped} of ${sent} datagrams from the publisher (want about ${UP_LOSS * 100} %)`);
      check(nacked > 0, `the publisher got no NACK while ${dropped} of its packets were dropped`);
      check(during.fps >= minFps && during.freezeMs <= B_FREEZE_MS, `B decoded ${during.fps} frames/s (want >= ${minFps}), frozen ${during.freezeMs} ms (want <= ${B_FREEZE_MS}): ${JSON.stringify(during)}`);
      check(whole.lost <= 0.01 * whole.received, `B counted ${whole.lost} of ${whole.received} packets lost: the server's repairs from the publisher should reach it (want <= 1 %)`);
      if (failures.length) throw new Error(`${failures.length} check(s) failed:\n  - ${failures.join('\n  - ')}`);
    } finally {
      relay.stop();
    }
  });
});
