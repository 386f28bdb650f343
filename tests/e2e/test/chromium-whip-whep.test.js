// Chromium publishes by WHIP (whip-whep's WHIPClient) and Chromium pages play by
// WHEP (whip-whep's WHEPClient with trickle, and a plain non-trickle client):
// late and early viewers, publisher replacement without viewer reconnects.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sleep } from '../lib/server.js';
import { useChromium } from '../lib/fixtures.js';
import { waitFor, statsOf, sessionContext, expectFlowing } from '../lib/media.js';

const chromium = useChromium({ pages: true });

async function httpLog(page) {
  return page.evaluate(() => window.mm.httpLog);
}

test('chromium-whip-whep: WHIPClient publishes, WHEPClient and plain WHEP viewers decode; publisher replaced without viewer reconnect', { timeout: 240000 }, () => chromium.withMediaMesh('chromium-whip-whep', {}, async (server, open) => {
  const room = 'room-chromium';
  const whip = `${server.base}/whip/endpoint`;
  const whep = `${server.base}/whep/endpoint`;

  const pubPage = await open.harness('publisher');
  const earlyPage = await open.harness('viewer-early');
  const latePage = await open.harness('viewer-late');
  const ctx = (page, name) => async () => sessionContext(page, name);
  const allCtx = async () => (await sessionContext(pubPage, 'pub1', { pageLog: false })) + (await sessionContext(pubPage, 'pub2'));

  // 1. A viewer (whip-whep WHEPClient, trickle) arrives before any publisher.
  const earlyTok = await server.token('whep', room, 'viewer-early');
  await earlyPage.evaluate((o) => window.mm.view(o), { name: 'A', endpoint: whep, token: earlyTok, mode: 'library' })
    .catch(async (e) => { throw new Error(`WHEP view before publisher failed: ${e.message}` + await sessionContext(earlyPage, 'A', { sdp: true })); });
  await waitFor('viewer A (no publisher yet) to reach connectionState "connected"', () => statsOf(earlyPage, 'A'),
    (s) => s.conn === 'connected', { context: ctx(earlyPage, 'A') });

  // 2. The publisher (whip-whep WHIPClient, trickle) at 320x240.
  const pubTok = await server.token('whip', room, 'publisher-1');
  await pubPage.evaluate((o) => window.mm.publish(o), { name: 'pub1', endpoint: whip, token: pubTok, width: 320, height: 240 })
    .catch(async (e) => { throw new Error(`WHIP publish failed: ${e.message}` + await sessionContext(pubPage, 'pub1', { sdp: true })); });
  await waitFor('publisher 1 to reach connectionState "connected"', () => statsOf(pubPage, 'pub1'),
    (s) => s.conn === 'connected', { context: ctx(pubPage, 'pub1') });
  await waitFor('publisher 1 to send video packets', () => statsOf(pubPage, 'pub1'),
    (s) => s.outVideo?.packetsSent > 20, { context: ctx(pubPage, 'pub1') });

  // 3. Late viewers on one page: B with WHEPClient (timed), C with a plain non-trickle POST.
  const tokB = await server.token('whep', room, 'viewer-late-b');
  await latePage.evaluate((o) => window.mm.view(o), { name: 'B', endpoint: whep, token: tokB, mode: 'library' })
    .catch(async (e) => { throw new Error(`WHEP view (B) failed: ${e.message}` + await sessionContext(latePage, 'B', { sdp: true })); });
  const firstB = await waitFor('viewer B first decoded frame', () => statsOf(latePage, 'B'),
    (s) => s.firstFrameMs !== null, { context: async () => (await ctx(latePage, 'B')()) + await allCtx() });
  console.log(`METRIC whep_first_frame_ms=${firstB.firstFrameMs}`);

  const tokC = await server.token('whep', room, 'viewer-late-c');
  await latePage.evaluate((o) => window.mm.view(o), { name: 'C', endpoint: whep, token: tokC, mode: 'plain' })
    .catch(async (e) => { throw new Error(`plain WHEP view (C) failed: ${e.message}` + await sessionContext(latePage, 'C', { sdp: true })); });
  const firstC = await waitFor('viewer C first decoded frame', () => statsOf(latePage, 'C'),
    (s) => s.firstFrameMs !== null, { context: ctx(latePage, 'C') });
  console.log(`METRIC whep_first_frame_ms_nontrickle=${firstC.firstFrameMs}`);

  // 4. All three viewers decode video at 320 wide and receive audio.
  const viewers = [[earlyPage, 'A'], [latePage, 'B'], [latePage, 'C']];
  for (const [page, name] of viewers) {
    await expectFlowing(page, name, { width: 320, context: allCtx });
  }

  // 5. Publisher 1 leaves (whip-whep stop(): pc.close() + DELETE).
  await pubPage.evaluate(() => window.mm.stop('pub1'));
  const del = (await httpLog(pubPage)).filter((h) => h.method === 'DELETE');
  assert.equal(del.length, 1, 'publisher stop() sends one DELETE');
  assert.equal(del[0].status, 200, `DELETE ${del[0].url} -> ${del[0].status} (expected 200)`);
  await sleep(2000);
  const stalled = {};
  for (const [page, name] of viewers) stalled[name] = (await statsOf(page, name)).video.framesDecoded;
  await sleep(1500);
  for (const [page, name] of viewers) {
    const s = await statsOf(page, name);
    assert.equal(s.video.framesDecoded, stalled[name], `viewer ${name}: no frames decoded after the only publisher left`);
    assert.notEqual(s.conn, 'closed', `viewer ${name} must stay open when the publisher leaves`);
  }

  // 6. A new publisher (another peer, 256x192) in the same room: the same viewer
  //    sessions decode again, at the new resolution, without reconnecting.
  const pub2Tok = await server.token('whip', room, 'publisher-2');
  await pubPage.evaluate((o) => window.mm.publish(o), { name: 'pub2', endpoint: whip, token: pub2Tok, width: 256, height: 192 })
    .catch(async (e) => { throw new Error(`second WHIP publish failed: ${e.message}` + await sessionContext(pubPage, 'pub2', { sdp: true })); });
  await waitFor('publisher 2 to reach connectionState "connected"', () => statsOf(pubPage, 'pub2'),
    (s) => s.conn === 'connected', { context: ctx(pubPage, 'pub2') });
  for (const [page, name] of viewers) {
    await expectFlowing(page, name, { width: 256, context: allCtx });
  }
  for (const [page, name] of viewers) {
    const st = await statsOf(page, name);
    console.log(`# viewer ${name} after publisher switch: ${JSON.stringify({ video: st.video, audio: st.audio })}`);
    // Loopback loses nothing; a large count means broken sequence-number rewriting at the switch.
    for (const kind of ['video', 'audio']) {
      const { packetsLost, packetsReceived } = st[kind];
      assert.ok(packetsLost <= Math.max(20, packetsReceived * 0.1),
        `viewer ${name} ${kind}: packetsLost ${packetsLost} of ${packetsReceived} received across the publisher switch`);
    }
  }
  const viewerPosts = [...await httpLog(earlyPage), ...await httpLog(latePage)].filter((h) => h.method === 'POST' && h.url.includes('/whep/endpoint'));
  assert.equal(viewerPosts.length, 3, `viewers made exactly 3 WHEP POSTs (no reconnect): ${JSON.stringify(viewerPosts)}`);

  // 7. Trickle PATCHes sent by whip-whep were accepted (204), then everybody leaves.
  await pubPage.evaluate(() => window.mm.stop('pub2'));
  for (const [page, name] of viewers) await page.evaluate((n) => window.mm.stop(n), name);
  const all = [...await httpLog(pubPage), ...await httpLog(earlyPage), ...await httpLog(latePage)];
  const summary = all.map((h) => `${h.method} ${h.url.replace(server.base, '')} -> ${h.status ?? h.error}`).join('\n');
  for (const h of all) {
    if (h.method === 'POST' && /\/wh[ie]p\/endpoint/.test(h.url)) {
      assert.equal(h.status, 201, `POST -> ${h.status}\n${summary}`);
      assert.match(h.location || '', /^\/wh[ie]p\/conn\/[^/]+$/, `POST Location header "${h.location}"\n${summary}`);
      assert.ok(h.etag, `POST response has an ETag\n${summary}`);
    }
    if (h.method === 'PATCH') assert.equal(h.status, 204, `PATCH (trickle-ice-sdpfrag) -> ${h.status}\n${summary}`);
    if (h.method === 'DELETE') assert.equal(h.status, 200, `DELETE -> ${h.status}\n${summary}`);
  }
  assert.ok(all.some((h) => h.method === 'PATCH'), `whip-whep sent trickle PATCHes\n${summary}`);
  console.log(`# http exchanges:\n${summary.replace(/^/gm, '#   ')}`);
}));

test('chromium-whip-whep: ICE restart (PATCH If-Match: *) keeps media flowing, by hand and by the whip-whep clients', { timeout: 120000 }, () => chromium.withMediaMesh('chromium-ice-restart', {}, async (server, open) => {
  const room = 'room-ice-restart';
  const pubPage = await open.harness('publisher');
  const viewPage = await open.harness('viewer');
  const ctx = async () => (await sessionContext(pubPage, 'pub', { pageLog: false })) +
    (await sessionContext(viewPage, 'V', { pageLog: false })) + (await sessionContext(viewPage, 'P'));
  await pubPage.evaluate((o) => window.mm.publish(o), { name: 'pub', endpoint: `${server.base}/whip/endpoint`,
    token: await server.token('whip', room, 'publisher'), width: 320, height: 240 });
  await viewPage.evaluate((o) => window.mm.view(o), { name: 'V', endpoint: `${server.base}/whep/endpoint`,
    token: await server.token('whep', room, 'viewer-lib'), mode: 'library' });
  await viewPage.evaluate((o) => window.mm.view(o), { name: 'P', endpoint: `${server.base}/whep/endpoint`,
    token: await server.token('whep', room, 'viewer-plain'), mode: 'plain' });
  await expectFlowing(viewPage, 'V', { width: 320, context: ctx });
  await expectFlowing(viewPage, 'P', { width: 320, context: ctx });

  const steps = [
    [viewPage, 'P', 'WHEP (by hand)', 'plainRestart'],
    [viewPage, 'V', 'WHEP (whip-whep WHEPClient.restart)', 'restart'],
    [pubPage, 'pub', 'WHIP (whip-whep WHIPClient.restart)', 'restart'],
  ];
  for (const [page, name, what, fn] of steps) {
    const r = await page.evaluate(([n, f]) => window.mm[f](n), [name, fn])
      .catch(async (e) => { throw new Error(`${what} ICE restart threw: ${e.message}` + await ctx()); });
    const patch = r.http.find((h) => h.method === 'PATCH');
    const show = JSON.stringify(r);
    assert.ok(patch, `${what}: restart sent a PATCH: ${show}`);
    assert.equal(patch.ifMatch, '*', `${what}: restart PATCH carries If-Match: *`);
    assert.equal(patch.status, 200, `${what}: ICE restart PATCH -> ${patch.status} (expected 200 with an sdpfrag answer): ${show}`);
    assert.notEqual(r.after.local, r.before.local, `${what}: the client's ICE ufrag changed: ${show}`);
    assert.notEqual(r.after.remote, r.before.remote, `${what}: the server answered with a new ICE ufrag: ${show}`);
    await waitFor(`${what}: session connected after ICE restart`, () => statsOf(page, name),
      (s) => s.conn === 'connected' && (s.ice === 'connected' || s.ice === 'completed'), { context: ctx });
    for (const v of ['P', 'V']) await expectFlowing(viewPage, v, { width: 320, context: ctx });
  }
  await pubPage.evaluate(() => window.mm.stop('pub'));
  await viewPage.evaluate(() => window.mm.stop('V'));
  await viewPage.evaluate(() => window.mm.stop('P'));
}));
