// ICE restart after a real network change, make before break. The "mover" is a
// Chromium running inside a network namespace (lib/netns.js: veth X.2/24 <-> root
// X.1/24, where MediaMesh, the page server and its ICE candidate live); the "watcher"
// is a Chromium in the root namespace. Both are apps written with the published atm0s
// SDK (pages/atm0s.html): each publishes mic + camera and plays the other's tracks.
//
// The network change is the one phones make from Wi-Fi to cellular: the new interface
// is up before the old path dies. A second link with X.3/24 comes up in the namespace
// (a separate interface: Chromium gathers on one IPv4 address per interface, so a
// second address on the first one would not be used while X.2 exists). Once Chromium
// knows it (a throwaway RTCPeerConnection in the mover's page gathers a host candidate
// on X.3, ~2.2 s later; bounded wait), media must still use X.2. Then X.2 is deleted
// (the old 5-tuple is dead in both directions) and the app calls session.restartIce()
// right away, as an app does on a network change (the SDK never does it by itself).
// Measured from that call: decoded video resumes in both directions (getStats every
// 100 ms) within 2 s and keeps coming. Also asserted: restartIce() resolves with the
// same conn_id (the server answered restart-ice 200, once, on the live session), the
// restart gathered on X.3 at once, the watcher sees no room.peer.leaved /
// room.track.stopped (nor a new join), the mover's ICE path is now X.3, audio and video
// keep flowing at the right sizes.
//
// Why make before break: Chromium on Linux tells its WebRTC stack about an address
// change only 2 s after it (net::NetworkChangeNotifierLinux, ip_address_online/
// offline_delay_ = 2000 ms). With break before make (X.3 added and X.2 deleted at the
// call) the restart can only gather on the stale list, the host candidate on X.3 comes
// ~2 s after the call and media came back 2.2-2.6 s after it (measured with an earlier
// version of this test), purely because of that debounce: the server answers the
// restart in ~50-90 ms. Here the new link is known before the old path breaks, so what
// is measured is the restart itself.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { sleep } from '../lib/server.js';
import { withMediaMesh } from '../lib/fixtures.js';
import { startStaticServer } from '../lib/static.js';
import { launchBrowser, newPage } from '../lib/browser.js';
import { waitFor } from '../lib/media.js';
import { ensureAtm0sBundle } from '../lib/bundle.js';
import { openSdkPage, sdkStats, sdkDebug, sdkContext, expectReceiving } from '../lib/atm0s.js';
import { createNetns, closeNetnsTest } from '../lib/netns.js';

before(async () => { await ensureAtm0sBundle(); });

const ROOM = 'room-ice-netns';
const PEERS = { mover: { width: 320, height: 240 }, watcher: { width: 400, height: 300 } };
const RECOVERY_LIMIT_MS = 2000;  // decoded video must resume this soon after session.restartIce() is called
const KNOWN_LIMIT_MS = 5000;     // Chromium's 2 s address-change delay, with margin
const CANDIDATE_LIMIT_MS = 1000; // the restart's host candidate on the new link (the list is up to date: at once)
const POLL_MS = 100;
const OBSERVE_MS = 8000;         // how long the samples are taken at most (bounded)
const STALL_MS = 300;            // no new decoded frame for this long = media stopped
const SUSTAIN_FRAMES = 15;       // after resuming, this many more frames (1 s at 15 fps)

/**
 * When decoded video came back, from samples [{t, v}] (t: ms since restartIce() was
 * called, v: framesDecoded) and `v0`, the count just before the old path broke.
 * With a stall (>= STALL_MS without a new frame) after the change: the first sample
 * after that stall with more frames. Without any stall (media never stopped): the
 * first sample 4 frames past v0 (more than the jitter buffer held at the change).
 */
function recovery(samples, v0) {
  let lastRise = { t: 0, v: v0 };
  let stall = null;
  let gap = 0;
  for (const s of samples) {
    if (s.v > lastRise.v) {
      const quiet = s.t - lastRise.t;
      gap = Math.max(gap, quiet);
      if (!stall && quiet >= STALL_MS) stall = { from: lastRise.t, resumedAt: s.t, v: s.v };
      lastRise = s;
    }
  }
  const tail = samples.length ? samples[samples.length - 1] : { t: 0, v: v0 };
  gap = Math.max(gap, tail.t - lastRise.t);
  if (stall) return { resumedAt: stall.resumedAt, stalledFrom: stall.from, resumedValue: stall.v, gap, last: tail };
  const first = samples.find((s) => s.v >= v0 + 4);
  if (first && tail.t - lastRise.t < STALL_MS) return { resumedAt: first.t, stalledFrom: null, resumedValue: first.v, gap, last: tail };
  return { resumedAt: null, stalledFrom: lastRise.t, resumedValue: null, gap, last: tail };
}

/**
 * Addresses of the host candidates a new RTCPeerConnection in `page` gathers (closed
 * after end-of-candidates, at most 1 s): what Chromium's WebRTC network list has now.
 */
const hostAddresses = (page) => page.evaluate(async () => {
  const pc = new RTCPeerConnection();
  try {
    pc.createDataChannel('probe');
    const got = new Set();
    const done = new Promise((resolve) => {
      pc.onicecandidate = (e) => { if (!e.candidate) resolve(); else if (e.candidate.type === 'host' && e.candidate.address) got.add(e.candidate.address); };
      setTimeout(resolve, 1000);
    });
    await pc.setLocalDescription();
    await done;
    return [...got];
  } finally {
    pc.close();
  }
});

const sustained = (r) => r.resumedAt !== null && r.last.v >= r.resumedValue + SUSTAIN_FRAMES;

test('ice-restart-netns: a client whose network changes (new link up, then the old path dies) calls restartIce() and keeps its session (same conn_id, peer, tracks); video resumes both ways within 2 s of the call', { timeout: 240000 }, async () => {
  const ns = createNetns();
  const oldAddr = ns.nsAddr;
  const newAddr = `${ns.subnet}.3`;
  if (ns.removedLeftovers.length) console.log(`# removed leftovers of earlier runs: ${ns.removedLeftovers.join(', ')}`);
  console.log(`# netns ${ns.name}: root ${ns.rootIf} ${ns.rootAddr}/24 <-> ${ns.nsIf} ${oldAddr}/24 (later a second link with ${newAddr}/24)`);
  let web = null;
  const browsers = [];
  let failed = true;
  try {
    web = await startStaticServer({ host: ns.rootAddr });
    // getUserMedia needs a secure context; http://X.1:PORT is not loopback.
    const secure = `--unsafely-treat-insecure-origin-as-secure=${web.base}`;
    const moverBrowser = await launchBrowser({ executablePath: ns.chromium, extraArgs: [secure] })
      .catch((e) => { throw new Error(`Chromium inside network namespace ${ns.name} (launcher ${ns.chromium}: ` +
        `exec ip netns exec ${ns.name} /usr/bin/chromium) did not start: ${e.message}` + ns.describe()); });
    browsers.push(moverBrowser);
    const watcherBrowser = await launchBrowser({ extraArgs: [secure] });
    browsers.push(watcherBrowser);
    const opener = (browser) => ({ page: async (label, url) => { const p = await newPage(browser, label); await p.goto(url); return p; } });

    await withMediaMesh('ice-restart-netns', { host: ns.rootAddr }, async (server) => {
      const mover = await openSdkPage(opener(moverBrowser), web, 'mover');
      const watcher = await openSdkPage(opener(watcherBrowser), web, 'watcher');
      const pages = { mover, watcher };
      const all = async () => (await sdkContext(mover, { pageLog: false })) + (await sdkContext(watcher, { pageLog: false })) +
        mover.describe() + watcher.describe() + ns.describe();

      // 1. Join: each publishes audio_main + video_main and attaches a receiver to each
      //    of the other's tracks on room.track.started.
      for (const [id, size] of Object.entries(PEERS)) {
        const got = await pages[id].evaluate((o) => window.sdk.camera(o), size);
        assert.deepEqual([got.width, got.height], [size.width, size.height], `${id}: fake camera size`);
      }
      const connIds = {};
      for (const id of Object.keys(PEERS)) {
        const page = pages[id];
        const token = await server.token('webrtc', ROOM, id);
        const res = await page.evaluate((o) => window.sdk.join(o), { gateway: server.base, token, room: ROOM, peer: id })
          .catch(async (e) => { throw new Error(`${id}: joining with the SDK failed: ${e.message}` + await sdkContext(page, { sdp: true }) + ns.describe()); });
        assert.equal(res.state, 'connected', `${id}: session.connect() ended in state "${res.state}"` + await sdkContext(page, { sdp: true }) + ns.describe());
        connIds[id] = res.connId;
        console.log(`# ${id} connected: conn_id=${JSON.stringify(res.connId)} ice_lite=${res.iceLite}`);
      }
      const other = { mover: 'watcher', watcher: 'mover' };
      const recv = {};  // recv[id][track] = receiver name on `id` playing other[id]/track
      for (const id of Object.keys(PEERS)) {
        const page = pages[id];
        const a = await waitFor(`${id}: receivers attached to ${other[id]}/audio_main and ${other[id]}/video_main after room.track.started`,
          () => page.evaluate(() => window.sdk.assign()),
          (as) => ['audio_main', 'video_main'].every((t) => Object.values(as).some((x) => x.peer === other[id] && x.track === t && x.status === 'ok')),
          { context: all });
        recv[id] = {};
        for (const [name, x] of Object.entries(a)) if (x.peer === other[id]) recv[id][x.track] = name;
        await page.evaluate(() => window.sdk.setAuto(false));
      }
      for (const id of Object.keys(PEERS)) {
        await expectReceiving(pages[id], recv[id].video_main, { what: `playing ${other[id]}/video_main`, width: PEERS[other[id]].width, context: all });
        await expectReceiving(pages[id], recv[id].audio_main, { what: `playing ${other[id]}/audio_main`, context: all });
      }
      const mediaAddr = `${ns.rootAddr}:${server.mediaPort}`;
      const path0 = await mover.evaluate(() => window.sdk.path());
      console.log(`# mover ICE path before: ${JSON.stringify(path0)}`);
      assert.ok(path0?.local?.startsWith(`${oldAddr}:`) && path0?.remote?.startsWith(`${mediaAddr}/`),
        `mover: selected candidate pair before the change should be ${oldAddr}:* -> ${mediaAddr}: ${JSON.stringify(path0)}` + await all());

      // 2. Make: a second link with the new address comes up; the old one stays. Wait
      //    (bounded) until Chromium knows it: a throwaway RTCPeerConnection in the
      //    mover's page gathers a host candidate on it (~2.2 s: the 2 s address-change
      //    delay). The session's own connection cannot tell: once connected, Chromium
      //    gathers nothing on networks that come later (only an ICE restart does).
      //    Media must still be on the old path.
      const evCount = { mover: (await sdkDebug(mover)).events.length, watcher: (await sdkDebug(watcher)).events.length };
      const tLink = Date.now();
      const link = ns.addLink(newAddr);
      console.log(`# link ${link.rootIf} <-> ${link.nsIf} ${newAddr}/24 up in ${Date.now() - tLink} ms; waiting for the mover's Chromium to know it`);
      await waitFor(`mover: a new RTCPeerConnection in the mover's page gathering a host candidate on the new link (${newAddr}) within ${KNOWN_LIMIT_MS} ms of it coming up`,
        () => hostAddresses(mover), (a) => a.includes(newAddr),
        { timeoutMs: KNOWN_LIMIT_MS, intervalMs: POLL_MS, context: async () => ns.describe() + await all() });
      const knownMs = Date.now() - tLink;
      console.log(`# the mover's Chromium gathers on ${newAddr} ${knownMs} ms after the link came up`);
      const pathMade = await mover.evaluate(() => window.sdk.path());
      console.log(`# mover ICE path with both links up: ${JSON.stringify(pathMade)}`);
      assert.ok(pathMade?.local?.startsWith(`${oldAddr}:`) && pathMade?.remote?.startsWith(`${mediaAddr}/`),
        `mover: with the new link up and the old one alive, the selected pair should still be ${oldAddr}:* -> ${mediaAddr}: ${JSON.stringify(pathMade)}` + await all());

      // 3. Break: the old address goes (its 5-tuple dies both ways) and right after it
      //    the app calls session.restartIce(). Everything below is timed from the call.
      const pre = { watcher: await sdkStats(watcher), mover: await sdkStats(mover) };
      const v0 = { watcher: pre.watcher.receivers[recv.watcher.video_main].framesDecoded, mover: pre.mover.receivers[recv.mover.video_main].framesDecoded };
      const tBreak = Date.now();
      ns.delAddress(oldAddr);
      const tCall = Date.now();
      const restart = mover.evaluate(() => window.sdk.restartIce())
        .then((r) => ({ ok: true, r, ms: Date.now() - tCall }), (e) => ({ ok: false, error: e.message, ms: Date.now() - tCall }));
      let restarted = null;
      restart.then((x) => { restarted = x; });
      console.log(`# ${oldAddr}/24 deleted in ${tCall - tBreak} ms; restartIce() called`);

      //    Every 100 ms: framesDecoded of the watcher's receiver playing the mover's
      //    video, and of the mover's receiver playing the watcher's video.
      const samples = [];
      const series = { watcher: [], mover: [] };
      let rec = { watcher: recovery([], v0.watcher), mover: recovery([], v0.mover) };
      for (let i = 1; ; i++) {
        const [w, m, mp] = await Promise.all([sdkStats(watcher), sdkStats(mover), mover.evaluate(() => window.sdk.path())]);
        const t = Date.now() - tCall;
        const wr = w.receivers[recv.watcher.video_main];
        const mr = m.receivers[recv.mover.video_main];
        samples.push({ t, w: wr.framesDecoded, wp: wr.packetsReceived, m: mr.framesDecoded, mp: mr.packetsReceived,
          sent: m.senders.video_main?.packetsSent, ice: m.ice, conn: m.conn, pair: `${mp?.local} -> ${mp?.remote} ${mp?.pairState}`,
          restart: restarted ? (restarted.ok ? 'ok' : 'failed') : 'pending' });
        series.watcher.push({ t, v: wr.framesDecoded });
        series.mover.push({ t, v: mr.framesDecoded });
        rec = { watcher: recovery(series.watcher, v0.watcher), mover: recovery(series.mover, v0.mover) };
        if (t >= OBSERVE_MS || (restarted && sustained(rec.watcher) && sustained(rec.mover))) break;
        await sleep(Math.max(0, tCall + i * POLL_MS - Date.now()));
      }
      const restartResult = restarted || await Promise.race([restart, sleep(12000).then(() => ({ ok: false, error: 'page.evaluate(restartIce) did not settle within 20 s', ms: null }))]);
      const table = () => `\n--- samples (t ms since restartIce() call; w/wp = watcher framesDecoded/packetsReceived of mover's video, ` +
        `m/mp = mover's of watcher's video; sent = mover video packetsSent; mover pc ice/conn, selected pair), before the break w=${v0.watcher} m=${v0.mover}:\n` +
        samples.map((s) => `  ${s.t}: w=${s.w} wp=${s.wp} m=${s.m} mp=${s.mp} sent=${s.sent} ${s.ice}/${s.conn} pair ${s.pair} restart=${s.restart}`).join('\n');
      const ctx = async () => table() + await all();
      console.log(`# restartIce(): ${JSON.stringify(restartResult)}`);
      console.log(`# recovery: watcher<-mover ${JSON.stringify(rec.watcher)}; mover<-watcher ${JSON.stringify(rec.mover)}`);

      // 4. Same session: restartIce() resolved, same conn_id, answered by the server.
      assert.ok(restartResult.ok, `mover: session.restartIce() failed: ${restartResult.error}` + await ctx());
      assert.equal(restartResult.r.connIdBefore, connIds.mover, 'mover: conn_id changed before restartIce() was called');
      assert.equal(restartResult.r.connId, connIds.mover,
        `mover: restart-ice answered with another conn_id (${restartResult.r.connId}, was ${connIds.mover}): the server made a new session` + await ctx());
      const http = (await sdkDebug(mover)).http.filter((h) => h.url.endsWith(`/webrtc/${connIds.mover}/restart-ice`));
      assert.ok(http.length === 1 && http[0].status === 200,
        `mover: POST /webrtc/${connIds.mover}/restart-ice should be answered 200 once: ${JSON.stringify(http)}` + await ctx());

      // 5. Video resumed, both ways, within 2 s of the call, and kept coming. The
      //    restart's host candidate on the new link is in the timeline (app-visible: pc
      //    icecandidate with the new ufrag): Chromium already knew the link.
      const dm = await sdkDebug(mover);
      const callIdx = dm.events.findIndex((e, i) => i >= evCount.mover && e.type === 'app.restart-ice');
      const callEv = callIdx >= 0 ? dm.events[callIdx] : null;
      const afterCall = callIdx >= 0 ? dm.events.slice(callIdx) : [];
      const candEv = afterCall.find((e) => e.type === 'pc.icecandidate' && e.candidate?.startsWith(`${newAddr}:`));
      const candAt = candEv && callEv ? candEv.t - callEv.t : null;
      console.log(`# timeline (ms from the restartIce() call): new link up ${tLink - tCall} (known to Chromium by ${tLink + knownMs - tCall}), ` +
        `${oldAddr} deleted ${tBreak - tCall}, restartIce() resolved ${restartResult.ms}, host candidate ${newAddr} gathered ${candAt ?? 'never'}, ` +
        `video resumed at the watcher ${rec.watcher.resumedAt ?? 'never'}, at the mover ${rec.mover.resumedAt ?? 'never'}`);
      for (const [id, what] of [['watcher', 'the mover\'s video at the watcher'], ['mover', 'the watcher\'s video at the mover']]) {
        const r = rec[id];
        assert.ok(r.resumedAt !== null && r.resumedAt <= RECOVERY_LIMIT_MS,
          `${what}: decoded frames did not resume within ${RECOVERY_LIMIT_MS} ms of restartIce() ` +
          `(resumed at ${r.resumedAt ?? 'never'} ms, stalled from ${r.stalledFrom} ms, observed until ${r.last.t} ms; restart's candidate on ${newAddr} at ${candAt ?? 'never'} ms): ${JSON.stringify(r)}` + await ctx());
        assert.ok(sustained(r), `${what}: after resuming at ${r.resumedAt} ms, fewer than ${SUSTAIN_FRAMES} more frames were decoded by ${r.last.t} ms: ${JSON.stringify(r)}` + await ctx());
      }
      assert.ok(candAt !== null && candAt <= CANDIDATE_LIMIT_MS,
        `mover: the restart gathered no host candidate on ${newAddr} within ${CANDIDATE_LIMIT_MS} ms of restartIce() ` +
        `(candidates after the call: ${afterCall.filter((e) => e.type === 'pc.icecandidate').map((e) => `${e.t - callEv.t} ms ${e.candidate}`).join(', ') || 'none'})` + await ctx());
      const until = Math.max(rec.watcher.resumedAt, rec.mover.resumedAt) + 150;
      console.log(`# samples from the call to the recovery:\n${samples.filter((x) => x.t <= until)
        .map((x) => `#   ${x.t}: w=${x.w} wp=${x.wp} m=${x.m} mp=${x.mp} sent=${x.sent} ${x.ice}/${x.conn} pair ${x.pair}`).join('\n')}`);
      console.log(`METRIC ice_restart_recovery_ms=${rec.watcher.resumedAt}`);
      console.log(`METRIC ice_restart_recovery_reverse_ms=${rec.mover.resumedAt}`);
      console.log(`METRIC ice_restart_call_ms=${restartResult.ms}`);
      console.log(`METRIC ice_restart_new_candidate_ms=${candAt}`);
      console.log(`METRIC ice_restart_new_link_known_ms=${knownMs}`);

      // 6. The mover's path is the new address; still the same media address at the server.
      const path1 = await waitFor(`mover: selected candidate pair ${newAddr}:* -> ${mediaAddr} after the restart`,
        () => mover.evaluate(() => window.sdk.path()),
        (p) => p?.local?.startsWith(`${newAddr}:`) && p?.remote?.startsWith(`${mediaAddr}/`),
        { timeoutMs: 5000, context: ctx });
      console.log(`# mover ICE path after: ${JSON.stringify(path1)}`);

      // 7. Same peer, same tracks: nobody left or (re)joined, no track stopped or
      //    (re)started, the same receivers play the same sources, the control data
      //    channel is open; audio and video flow at the sources' sizes.
      for (const id of Object.keys(PEERS)) {
        const d = await sdkDebug(pages[id]);
        const since = d.events.slice(evCount[id]);
        const bad = since.filter((e) => ['room.peer.leaved', 'room.track.stopped', 'room.peer.joined', 'room.track.started'].includes(e.type));
        assert.deepEqual(bad, [], `${id}: room events since the new link came up (expected none: the session lives on)` + await ctx());
        assert.equal(d.connId, connIds[id], `${id}: conn_id changed`);
        assert.equal(d.dcOpen, true, `${id}: the SDK's data channel is not open after the restart` + await ctx());
        for (const t of ['audio_main', 'video_main']) {
          assert.deepEqual([d.assign[recv[id][t]]?.peer, d.assign[recv[id][t]]?.track, d.assign[recv[id][t]]?.status], [other[id], t, 'ok'], `${id}: receiver ${recv[id][t]} assignment`);
        }
        await expectReceiving(pages[id], recv[id].video_main, { what: `playing ${other[id]}/video_main after the restart`, width: PEERS[other[id]].width, context: ctx });
        await expectReceiving(pages[id], recv[id].audio_main, { what: `playing ${other[id]}/audio_main after the restart`, context: ctx });
      }
      const serverSaw = server.tail.text().split('\n').filter((l) => /ICE restart/i.test(l));
      console.log(`# server log: ${serverSaw.join(' | ') || '(no "ICE restart" line)'}`);
      console.log(`# mover SDK events since the new link came up: ${(await sdkDebug(mover)).events.slice(evCount.mover).map((e) => `${e.t} ${e.type}${e.value !== undefined ? '=' + JSON.stringify(e.value) : ''}${e.candidate !== undefined ? ' ' + e.candidate : ''}${e.state ? ' ' + e.state : ''}`).join(', ')}`);
    });
    failed = false;
  } finally {
    await closeNetnsTest({ ns, browsers, web, failed });
  }
});
