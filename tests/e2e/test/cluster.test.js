// A MediaMesh cluster (nodes on zenoh, lib/cluster.js) with real clients. Every node
// runs on its own loopback address (a 127.0.0.1, b 127.0.0.2, c 127.0.0.3) with the
// same app secret, so a token minted by any node is valid on all; clients talk to
// their own node only, media crosses the cluster.
//  (1) fan-out: Chromium publishes by WHIP to a; three WHEP viewers on b (one page) and
//      one on c decode it. b pulls each packet from the cluster once, not once per
//      viewer: its packets_in delta matches a's packets_out delta (GET /api/node);
//      when the viewers leave, b and c unsubscribe and a stops sending.
//  (2) chain a <- b <- c (c knows only b): a viewer on c decodes a publisher on a.
//  (3) no ghost state: a publisher on a, an @mediamesh/sdk viewer on b. kill -9 a: b's
//      GET /api/rooms and the SDK (peerLeft, trackStopped) forget a's peer within 5 s;
//      a restarted with the same flags rejoins and the viewer plays the new publisher.
//      Then a frozen by SIGSTOP: the same cleanup; after SIGCONT the cluster heals and
//      b's view of the room is a's view again.
//  (4) an @mediamesh/sdk room across three nodes: each peer publishes and plays the two
//      others; every node's GET /api/rooms shows the same room; a leave is seen everywhere.
//  (5) a node with a wrong --cluster-secret never joins: absent from the others'
//      cluster.nodes and rooms, and it sees none of theirs.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { sleep } from '../lib/server.js';
import { useChromium } from '../lib/fixtures.js';
import { waitFor, statsOf, sessionContext, expectFlowing } from '../lib/media.js';
import { ensureOurBundle, openOurPage, mmContext, mmStats, expectSubReceiving } from '../lib/mediamesh-sdk.js';
import { withCluster, whipPublish, whepView, roomSummary, peersOn } from '../lib/cluster.js';

const chromium = useChromium({ pages: true });
before(() => { ensureOurBundle(); });

const HOST = { a: '127.0.0.1', b: '127.0.0.2', c: '127.0.0.3' };
// A node that dies or freezes is forgotten by the others (rooms, SDK events) within this.
const GHOST_BOUND_MS = 5000;

const kinds = (p) => (p.tracks || []).map((t) => t.kind).sort().join(',');
/** Whether a GET /api/rooms answer lists `peer` on node `id` with an audio and a video track. */
const hasPublisher = (view, peer, id) => peersOn(view, id).some((p) => p.peer === peer && kinds(p) === 'audio,video');
const delta = (s0, s1, f) => f(s1) - f(s0);

async function joinOurs(page, node, room, peer, extra = {}) {
  const token = await node.token('webrtc', room, peer);
  const res = await page.evaluate((o) => window.mm2.join(o), { url: node.base, token, room, peer, ...extra })
    .catch(async (e) => { throw new Error(`${peer}: connect/publish with @mediamesh/sdk on node ${node.id} (${node.base}) failed: ${e.message}` + await mmContext(page, { sdp: true })); });
  assert.equal(res.state, 'connected', `${peer}: session state after connect to node ${node.id}: ${JSON.stringify(res)}` + await mmContext(page, { sdp: true }));
  return res;
}

const sdkEvents = (page, from = 0) => page.evaluate((n) => window.mm2.debug().events.slice(n), from);
const eventCount = (page) => page.evaluate(() => window.mm2.debug().events.length);

test('cluster (1): WHIP publisher on node a, three WHEP viewers on b and one on c; b pulls each packet once however many viewers', { timeout: 240000 }, () => withCluster(chromium, 'cluster-fanout', [
  { id: 'a', host: HOST.a, listen: true },
  { id: 'b', host: HOST.b, connect: ['a'] },
  { id: 'c', host: HOST.c, connect: ['a'] },
], async (cluster, open) => {
  const A = cluster.node('a');
  const B = cluster.node('b');
  const C = cluster.node('c');
  const room = 'room-fanout';
  const info = await A.info();
  assert.equal(info.node, 'a', `GET /api/node on a: ${JSON.stringify(info)}`);
  assert.equal(info.zone, 'default', `GET /api/node on a: zone (no --zone given): ${JSON.stringify(info)}`);

  const pubPage = await open.harness('publisher-a');
  const bPage = await open.harness('viewers-b');
  const cPage = await open.harness('viewer-c');
  const viewers = [[bPage, 'b1', B], [bPage, 'b2', B], [bPage, 'b3', B], [cPage, 'c1', C]];
  const ctx = async () => (await sessionContext(pubPage, 'pub', { pageLog: false })) +
    (await sessionContext(bPage, 'b1', { pageLog: false })) + (await sessionContext(cPage, 'c1', { pageLog: false })) + (await cluster.context());

  await whipPublish(pubPage, A, { name: 'pub', room, peer: 'publisher', context: () => cluster.context() });
  await waitFor(`node a: GET /api/rooms/${room} lists "publisher" on node a with an audio and a video track`,
    () => A.room(room), (v) => hasPublisher(v, 'publisher', 'a'), { context: ctx });

  // Viewer tokens minted by a, used on b and c: one app secret on every node.
  for (const [page, name, node] of viewers) {
    await whepView(page, node, { name, room, peer: `viewer-${name}`, tokenFrom: A, context: ctx });
    const first = await waitFor(`${page.label}/${name} (WHEP on node ${node.id}): first decoded frame`, () => statsOf(page, name),
      (s) => s?.firstFrameMs !== null, { context: async () => (await sessionContext(page, name)) + (await ctx()) });
    console.log(`METRIC cluster_whep_first_frame_ms_${name}=${first.firstFrameMs}`);
  }
  for (const [page, name] of viewers) await expectFlowing(page, name, { width: 320, context: ctx });
  for (const n of [B, C]) {
    await waitFor(`node ${n.id}: GET /api/rooms/${room} lists "publisher" on node a with an audio and a video track`,
      () => n.room(room), (v) => hasPublisher(v, 'publisher', 'a'), { context: ctx });
  }

  // Counters over a 5 s window, every node and the publisher read at once.
  const sample = async () => {
    const [a, b, c, pub, ...v] = await Promise.all([A.info(), B.info(), C.info(), statsOf(pubPage, 'pub'),
      ...viewers.map(([page, name]) => statsOf(page, name))]);
    return { t: Date.now(), a: a.cluster, b: b.cluster, c: c.cluster, sent: pub.outVideo.packetsSent + (pub.outAudio?.packetsSent ?? 0),
      frames: Object.fromEntries(viewers.map(([, name], i) => [name, v[i]?.video?.framesDecoded ?? 0])) };
  };
  const s0 = await sample();
  await sleep(5000);
  const s1 = await sample();
  const out = delta(s0, s1, (s) => s.a.packets_out);
  const inB = delta(s0, s1, (s) => s.b.packets_in);
  const inC = delta(s0, s1, (s) => s.c.packets_in);
  const sent = delta(s0, s1, (s) => s.sent);
  const frames = Object.fromEntries(viewers.map(([, name]) => [name, s1.frames[name] - s0.frames[name]]));
  console.log(`METRIC cluster_fanout_window_ms=${s1.t - s0.t}`);
  console.log(`METRIC cluster_publisher_packets_sent=${sent}`);
  console.log(`METRIC cluster_a_packets_out=${out}`);
  console.log(`METRIC cluster_b_packets_in=${inB}`);
  console.log(`METRIC cluster_c_packets_in=${inC}`);
  console.log(`METRIC cluster_b_in_per_a_out=${out ? (inB / out).toFixed(3) : 'NaN'}`);
  console.log(`METRIC cluster_a_out_per_publisher_sent=${sent ? (out / sent).toFixed(3) : 'NaN'}`);
  console.log(`# channels: a out=${s1.a.channels_out} in=${s1.a.channels_in}; b out=${s1.b.channels_out} in=${s1.b.channels_in}; ` +
    `c out=${s1.c.channels_out} in=${s1.c.channels_in}; frames decoded in the window: ${JSON.stringify(frames)}`);
  const show = `\n(5 s window: publisher sent ${sent}, a packets_out ${out}, b packets_in ${inB}, c packets_in ${inC}; ` +
    `samples ${JSON.stringify({ s0, s1 })})`;
  for (const name of ['b1', 'b2', 'b3']) {
    assert.ok(frames[name] >= 20, `viewer ${name} on b decoded only ${frames[name]} frames in the 5 s window` + show + await ctx());
  }
  assert.ok(sent > 100, `the publisher sent only ${sent} packets in 5 s` + show);
  assert.ok(out >= 0.75 * sent && out <= 1.35 * sent,
    `a's packets_out delta should count each packet of its published tracks once (about what the publisher sent), whatever the number of subscriber nodes` + show);
  for (const [id, got] of [['b', inB], ['c', inC]]) {
    assert.ok(Math.abs(got - out) <= Math.max(0.05 * out, 10),
      `node ${id}'s packets_in delta should be a's packets_out delta within 5 % (one copy per packet from the cluster${id === 'b' ? ', not one per each of the 3 viewers' : ''})` + show);
  }
  assert.equal(s1.a.channels_out, 2, `a publishes 2 tracks (audio, video) to the cluster: channels_out` + show);
  assert.equal(s1.b.channels_in, 2, `b subscribes 2 tracks from the cluster for its 3 viewers: channels_in` + show);
  assert.equal(s1.c.channels_in, 2, `c subscribes 2 tracks from the cluster: channels_in` + show);

  // The viewers leave: b and c unsubscribe, a stops sending into the cluster (its
  // channels stay declared while its publisher is live); the publisher leaves: a's
  // channels close.
  for (const [page, name] of viewers) await page.evaluate((n) => window.mm.stop(n), name);
  let t0 = Date.now();
  await waitFor('b and c channels_in back to 0 after every viewer left',
    async () => ({ b: (await B.info()).cluster, c: (await C.info()).cluster }),
    (x) => x.b.channels_in === 0 && x.c.channels_in === 0, { context: ctx });
  console.log(`METRIC cluster_unsubscribe_ms=${Date.now() - t0}`);
  await waitFor('a to stop sending into the cluster once no node subscribes (packets_out still over 1 s)',
    async () => { const p0 = (await A.info()).cluster.packets_out; await sleep(1000); return (await A.info()).cluster.packets_out - p0; },
    (d) => d === 0, { timeoutMs: 15000, context: ctx });
  console.log(`METRIC cluster_out_stopped_ms=${Date.now() - t0}`);
  await pubPage.evaluate(() => window.mm.stop('pub'));
  t0 = Date.now();
  await waitFor('a channels_out back to 0 after its publisher left', async () => (await A.info()).cluster,
    (x) => x.channels_out === 0, { context: ctx });
  console.log(`METRIC cluster_channels_closed_ms=${Date.now() - t0}`);
}));

test('cluster (2): chain a <- b <- c (c connects to b only): a WHEP viewer on c decodes a WHIP publisher on a', { timeout: 180000 }, () => withCluster(chromium, 'cluster-chain', [
  { id: 'a', host: HOST.a, listen: true },
  { id: 'b', host: HOST.b, listen: true, connect: ['a'] },
  { id: 'c', host: HOST.c, connect: ['b'] },
], async (cluster, open) => {
  const A = cluster.node('a');
  const B = cluster.node('b');
  const C = cluster.node('c');
  const room = 'room-chain';
  const pubPage = await open.harness('publisher-a');
  const cPage = await open.harness('viewer-c');
  const ctx = async () => (await sessionContext(pubPage, 'pub', { pageLog: false })) + (await sessionContext(cPage, 'c1')) + (await cluster.context());

  await whipPublish(pubPage, A, { name: 'pub', room, peer: 'publisher', context: () => cluster.context() });
  await whepView(cPage, C, { name: 'c1', room, peer: 'viewer-c1', context: ctx });
  const first = await waitFor('viewer on c: first decoded frame of the publisher on a (two hops)', () => statsOf(cPage, 'c1'),
    (s) => s?.firstFrameMs !== null, { context: ctx });
  console.log(`METRIC cluster_chain_first_frame_ms=${first.firstFrameMs}`);
  await expectFlowing(cPage, 'c1', { width: 320, context: ctx });
  await waitFor(`node c: GET /api/rooms/${room} lists "publisher" on node a with an audio and a video track`,
    () => C.room(room), (v) => hasPublisher(v, 'publisher', 'a'), { context: ctx });

  const [a, b, c] = await Promise.all([A.info(), B.info(), C.info()]);
  console.log(`# chain counters: a ${JSON.stringify(a.cluster)}; b ${JSON.stringify(b.cluster)}; c ${JSON.stringify(c.cluster)}`);
  assert.equal(a.cluster.channels_out, 2, `a publishes its 2 tracks to the cluster: ${JSON.stringify(a.cluster)}`);
  assert.equal(c.cluster.channels_in, 2, `c subscribes 2 tracks from the cluster: ${JSON.stringify(c.cluster)}`);
  await cPage.evaluate(() => window.mm.stop('c1'));
  await pubPage.evaluate(() => window.mm.stop('pub'));
}));

test('cluster (3): no ghost state: node a killed (-9) or frozen (SIGSTOP) is forgotten by b within 5 s; a restarted rejoins and its publisher plays again', { timeout: 300000 }, () => withCluster(chromium, 'cluster-ghost', [
  { id: 'a', host: HOST.a, listen: true },
  { id: 'b', host: HOST.b, connect: ['a'] },
], async (cluster, open) => {
  const A = cluster.node('a');
  const B = cluster.node('b');
  const room = 'room-ghost';
  const peer = 'publisher';
  const pubPage = await open.harness('publisher-a');
  const V = await openOurPage(open, chromium.web, 'viewer-b');
  const ctx = async () => (await mmContext(V, { pageLog: false })) + (await cluster.context());

  await joinOurs(V, B, room, 'viewer', { publish: false });
  await whipPublish(pubPage, A, { name: 'pub1', room, peer, context: ctx });
  await waitFor('viewer on b: subscribed to publisher/audio and publisher/video (trackStarted across the cluster)',
    () => V.evaluate(() => window.mm2.subKeys()), (k) => k.includes(`${peer}/audio`) && k.includes(`${peer}/video`), { context: ctx });
  await expectSubReceiving(V, `${peer}/video`, { width: 320, context: ctx });
  await expectSubReceiving(V, `${peer}/audio`, { context: ctx });
  await waitFor(`node b: GET /api/rooms/${room} lists "${peer}" on node a`, () => B.room(room), (v) => hasPublisher(v, peer, 'a'), { context: ctx });

  // From t0, poll b's room and cluster views and the viewer's SDK events (bounded) and
  // note when each first shows node a gone.
  const watchCleanup = async (t0, evFrom, timeoutMs = 20000) => {
    const seen = { room: null, nodes: null, sdk: null };
    const last = {};
    const gone = (evs) => evs.some((e) => e.type === 'peerLeft' && e.peer === peer) &&
      ['audio', 'video'].every((t) => evs.some((e) => e.type === 'trackStopped' && e.peer === peer && e.track === t));
    while (Object.values(seen).some((v) => v === null) && Date.now() - t0 < timeoutMs) {
      if (seen.room === null) {
        try { last.room = await B.room(room); if (peersOn(last.room, 'a').length === 0) seen.room = Date.now() - t0; } catch (e) { last.room = e.message; }
      }
      if (seen.nodes === null) {
        try { last.nodes = (await B.info()).cluster.nodes; if (!last.nodes.includes('a')) seen.nodes = Date.now() - t0; } catch (e) { last.nodes = e.message; }
      }
      if (seen.sdk === null) {
        last.events = await sdkEvents(V, evFrom);
        if (gone(last.events)) seen.sdk = Date.now() - t0;
      }
      await sleep(100);
    }
    return { seen, last };
  };
  const describeCleanup = (what, r) => `${what}: b forgot node a after ${JSON.stringify(r.seen)} ms (null: not within the watch)` +
    `\n  b's last GET /api/rooms/${room}: ${JSON.stringify(r.last.room)}\n  b's last cluster.nodes: ${JSON.stringify(r.last.nodes)}` +
    `\n  viewer's SDK events since: ${JSON.stringify((r.last.events || []).filter((e) => e.type.startsWith('peer') || e.type.startsWith('track')))}`;
  const checkCleanup = async (what, r) => {
    assert.ok(r.seen.room !== null && r.seen.room <= GHOST_BOUND_MS,
      `${what}: node b's GET /api/rooms/${room} still lists a peer of node a after ${GHOST_BOUND_MS} ms. ` + describeCleanup(what, r) + await ctx());
    assert.ok(r.seen.sdk !== null && r.seen.sdk <= GHOST_BOUND_MS,
      `${what}: the SDK viewer on b did not get peerLeft "${peer}" and trackStopped ${peer}/audio, ${peer}/video within ${GHOST_BOUND_MS} ms. ` + describeCleanup(what, r) + await ctx());
    assert.ok(r.seen.nodes !== null && r.seen.nodes <= GHOST_BOUND_MS,
      `${what}: node b still lists a in cluster.nodes after ${GHOST_BOUND_MS} ms. ` + describeCleanup(what, r) + await ctx());
  };

  // 1. kill -9 a.
  let evFrom = await eventCount(V);
  let t0 = Date.now();
  await A.kill();
  const killed = await watchCleanup(t0, evFrom);
  console.log(`METRIC cluster_kill9_room_cleanup_ms=${killed.seen.room}`);
  console.log(`METRIC cluster_kill9_sdk_events_ms=${killed.seen.sdk}`);
  console.log(`METRIC cluster_kill9_node_gone_ms=${killed.seen.nodes}`);
  await checkCleanup('after kill -9 of node a', killed);
  const vState = await V.evaluate(() => window.mm2.debug().state);
  assert.equal(vState, 'connected', `the viewer's session on b survives the death of node a` + await ctx());
  await pubPage.evaluate(() => window.mm.stop('pub1')).catch(() => {}); // its node is gone: DELETE fails

  // 2. a again, same flags and ports: it rejoins, a new publisher (same peer name) plays
  //    on the viewer's subscription, which stayed attached to publisher/video.
  t0 = Date.now();
  await A.restart();
  const rejoin = await cluster.waitMembers(['a', 'b'], { what: 'after node a restarted' });
  console.log(`METRIC cluster_restart_rejoin_ms=${Date.now() - t0}`);
  console.log(`# a answered /healthz and both nodes saw each other ${rejoin} ms later`);
  evFrom = await eventCount(V);
  const before2 = await mmStats(V);
  await whipPublish(pubPage, A, { name: 'pub2', room, peer, context: ctx });
  await waitFor('viewer on b: trackStarted publisher/video after node a restarted and the publisher came back',
    () => sdkEvents(V, evFrom), (evs) => evs.some((e) => e.type === 'trackStarted' && e.peer === peer && e.track === 'video'), { context: ctx });
  await expectSubReceiving(V, `${peer}/video`, { what: 'publisher back on the restarted node a', width: 320, from: before2, context: ctx });
  await expectSubReceiving(V, `${peer}/audio`, { what: 'publisher back on the restarted node a', from: before2, context: ctx });

  // 3. a frozen (SIGSTOP): its TCP connections stay open, only silence tells.
  evFrom = await eventCount(V);
  t0 = Date.now();
  A.signal('SIGSTOP');
  let frozen;
  try {
    frozen = await watchCleanup(t0, evFrom);
  } finally {
    A.signal('SIGCONT');
  }
  console.log(`METRIC cluster_sigstop_room_cleanup_ms=${frozen.seen.room}`);
  console.log(`METRIC cluster_sigstop_sdk_events_ms=${frozen.seen.sdk}`);
  console.log(`METRIC cluster_sigstop_node_gone_ms=${frozen.seen.nodes}`);
  console.log(`# a was frozen for ${Date.now() - t0} ms`);

  // 4. After SIGCONT: a and b see each other again and b's view of a's peers is a's own
  //    view (a peer a still has is back on b, one it dropped is not a ghost on b).
  //    Checked before the SIGSTOP bounds so that both results are reported.
  const healT0 = Date.now();
  await cluster.waitMembers(['a', 'b'], { what: 'after SIGCONT on node a', timeoutMs: 30000 });
  const views = await waitFor(`node b's view of node a's peers in ${room} to equal node a's own`,
    async () => ({ a: roomSummary({ peers: peersOn(await A.room(room), 'a') }), b: roomSummary({ peers: peersOn(await B.room(room), 'a') }) }),
    (v) => JSON.stringify(v.a) === JSON.stringify(v.b), { timeoutMs: 20000, context: ctx });
  console.log(`METRIC cluster_sigcont_heal_ms=${Date.now() - healT0}`);
  const pubConn = (await statsOf(pubPage, 'pub2'))?.conn;
  console.log(`# after SIGCONT: a's peers as seen by a and b: ${JSON.stringify(views.a)}; the WHIP publisher's connectionState: ${pubConn}`);
  if (views.a.some((s) => s.startsWith(`${peer}@a[`))) {
    const s0 = await mmStats(V);
    await expectSubReceiving(V, `${peer}/video`, { what: 'after node a resumed (SIGCONT)', width: 320, from: s0, context: ctx });
  }
  await checkCleanup('while node a was frozen (SIGSTOP)', frozen);
}));

test('cluster (4): an @mediamesh/sdk room across three nodes: each peer publishes on its node and plays the two others', { timeout: 300000 }, () => withCluster(chromium, 'cluster-sdk-room', [
  { id: 'a', host: HOST.a, listen: true },
  { id: 'b', host: HOST.b, connect: ['a'] },
  { id: 'c', host: HOST.c, connect: ['a'] },
], async (cluster, open) => {
  const room = 'room-sdk';
  const PEERS = [
    { id: 'alice', node: 'a', width: 320, height: 240 },
    { id: 'bob', node: 'b', width: 400, height: 300 },
    { id: 'carol', node: 'c', width: 480, height: 360 },
  ];
  const pages = {};
  for (const p of PEERS) pages[p.id] = await openOurPage(open, chromium.web, `${p.id}-${p.node}`);
  const all = async () => (await Promise.all(Object.values(pages).map((pg) => mmContext(pg, { pageLog: false })))).join('') + (await cluster.context());

  // Cameras biggest first (one fake device shared by the pages).
  for (const p of [...PEERS].sort((x, y) => y.width - x.width)) {
    const got = await pages[p.id].evaluate((o) => window.mm2.camera(o), { width: p.width, height: p.height });
    assert.deepEqual([got.width, got.height], [p.width, p.height], `${p.id}: fake camera size`);
  }
  for (const p of PEERS) await joinOurs(pages[p.id], cluster.node(p.node), room, p.id);
  const t0 = Date.now();

  for (const p of PEERS) {
    const page = pages[p.id];
    const want = PEERS.filter((o) => o.id !== p.id).flatMap((o) => [`${o.id}/audio_main`, `${o.id}/video_main`]).sort();
    await waitFor(`${p.id} (node ${p.node}): subscriptions to ${want.join(', ')} after trackStarted`,
      () => page.evaluate(() => window.mm2.subKeys()),
      (keys) => JSON.stringify([...keys].sort()) === JSON.stringify(want), { context: all });
  }
  for (const p of PEERS) {
    for (const o of PEERS.filter((x) => x.id !== p.id)) {
      await expectSubReceiving(pages[p.id], `${o.id}/video_main`, { what: `node ${o.node} -> node ${p.node}`, width: o.width, context: all });
      await expectSubReceiving(pages[p.id], `${o.id}/audio_main`, { what: `node ${o.node} -> node ${p.node}`, context: all });
    }
  }
  console.log(`METRIC cluster_sdk_room_all_playing_ms=${Date.now() - t0}`);

  // Every node shows the same room: each peer on its own node with its two tracks.
  const want = PEERS.map((p) => `${p.id}@${p.node}[audio_main:audio,video_main:video]`).sort();
  for (const n of cluster.list) {
    await waitFor(`node ${n.id}: GET /api/rooms/${room} to be ${JSON.stringify(want)}`,
      async () => roomSummary(await n.room(room)), (s) => JSON.stringify(s) === JSON.stringify(want), { context: all });
  }
  const counters = await Promise.all(cluster.list.map(async (n) => `${n.id} ${JSON.stringify((await n.info()).cluster)}`));
  console.log(`# counters: ${counters.join('; ')}`);

  // carol (node c) leaves: alice and bob are told, a and b forget her.
  const evFrom = { alice: await eventCount(pages.alice), bob: await eventCount(pages.bob) };
  const tLeave = Date.now();
  assert.equal(await pages.carol.evaluate(() => window.mm2.close()), 'closed');
  for (const id of ['alice', 'bob']) {
    await waitFor(`${id}: peerLeft carol and trackStopped for carol's two tracks (carol was on node c)`,
      () => sdkEvents(pages[id], evFrom[id]),
      (evs) => evs.some((e) => e.type === 'peerLeft' && e.peer === 'carol') &&
        ['audio_main', 'video_main'].every((t) => evs.some((e) => e.type === 'trackStopped' && e.peer === 'carol' && e.track === t)),
      { context: all });
  }
  console.log(`METRIC cluster_sdk_leave_seen_ms=${Date.now() - tLeave}`);
  // Node c included: with no peer of its own left there, it still sees the room.
  const left = want.filter((s) => !s.startsWith('carol@'));
  for (const n of cluster.list) {
    await waitFor(`node ${n.id}: GET /api/rooms/${room} without carol`, async () => roomSummary(await n.room(room)),
      (s) => JSON.stringify(s) === JSON.stringify(left), { context: all });
  }
}));

test('cluster (5): a node with a wrong --cluster-secret never joins: not in the others\' cluster.nodes, its room invisible to them and theirs to it', { timeout: 180000 }, () => withCluster(chromium, 'cluster-secret', [
  { id: 'a', host: HOST.a, listen: true },
  { id: 'b', host: HOST.b, connect: ['a'] },
  { id: 'x', host: HOST.c, connect: ['a'], clusterSecret: 'not-the-cluster-secret' },
], async (cluster, open) => {
  const A = cluster.node('a');
  const B = cluster.node('b');
  const X = cluster.node('x');
  const room = 'room-secret';
  await cluster.waitMembers(['a', 'b'], { what: 'x, with a wrong secret, must not be one of them' });
  const pubPage = await open.harness('publishers');
  const ctx = async () => (await sessionContext(pubPage, 'pubA', { pageLog: false })) + (await sessionContext(pubPage, 'pubX')) + (await cluster.context());

  // One publisher on a and one on x in the same room, and a WHEP viewer on b so that
  // every node has a peer of its own there (b sees alice-a: the cluster works).
  await whipPublish(pubPage, A, { name: 'pubA', room, peer: 'alice-a', context: ctx });
  await whipPublish(pubPage, X, { name: 'pubX', room, peer: 'mallory-x', context: ctx });
  await whepView(pubPage, B, { name: 'viewB', room, peer: 'viewer-b', context: ctx });
  await waitFor(`node b: GET /api/rooms/${room} lists alice-a on node a`, () => B.room(room), (v) => hasPublisher(v, 'alice-a', 'a'), { context: ctx });
  await waitFor(`node x: GET /api/rooms/${room} lists its own mallory-x`, () => X.room(room), (v) => hasPublisher(v, 'mallory-x', 'x'), { context: ctx });

  // For 5 s: x stays outside.
  const t0 = Date.now();
  let polls = 0;
  while (Date.now() - t0 < 5000) {
    const [ia, ib, ix, ra, rb, rx] = await Promise.all([A.info(), B.info(), X.info(), A.room(room), B.room(room), X.room(room)]);
    const state = `\n  a: nodes ${JSON.stringify(ia.cluster.nodes)} room ${JSON.stringify(roomSummary(ra))}` +
      `\n  b: nodes ${JSON.stringify(ib.cluster.nodes)} room ${JSON.stringify(roomSummary(rb))}` +
      `\n  x: nodes ${JSON.stringify(ix.cluster.nodes)} room ${JSON.stringify(roomSummary(rx))}`;
    const at = `${Date.now() - t0} ms after both publishers were seen:`;
    assert.deepEqual([...ia.cluster.nodes].sort(), ['a', 'b'], `${at} node a's cluster.nodes` + state);
    assert.deepEqual([...ib.cluster.nodes].sort(), ['a', 'b'], `${at} node b's cluster.nodes` + state);
    assert.deepEqual(ix.cluster.nodes, ['x'], `${at} node x (wrong cluster secret) sees other nodes` + state);
    for (const [id, v] of [['a', ra], ['b', rb]]) {
      assert.ok(!(v.peers || []).some((p) => p.node === 'x' || p.peer === 'mallory-x'), `${at} node ${id} shows x's peer` + state);
    }
    assert.ok(!(rx.peers || []).some((p) => p.node !== 'x' || p.peer === 'alice-a'), `${at} node x shows a peer of another node` + state);
    polls += 1;
    await sleep(250);
  }
  console.log(`# x stayed outside the cluster for ${Date.now() - t0} ms (${polls} checks of every node's /api/node and /api/rooms)`);
  for (const n of ['viewB', 'pubA', 'pubX']) await pubPage.evaluate((x) => window.mm.stop(x), n);
}, { formed: false }));
