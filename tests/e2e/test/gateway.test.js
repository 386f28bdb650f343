// Gateways (--gateway true): clients talk to a gateway only; it places each new session
// on a media node of the cluster and forwards every later request about it to the node
// its connection id names. Nodes on loopback addresses (lib/cluster.js).
//  (1) session migration: alice and bob join one room with @mediamesh/sdk through
//      gateway g; the gateway spreads them over media nodes a and b. kill -9 of alice's
//      node: alice's SDK notices (connection "reconnecting"), restarts ICE through g, g
//      sees the node gone and connects her on the live node with the same peer, tracks
//      and subscriptions (new connection id). Asserted: within 5 s of alice's SDK
//      noticing, bob decodes alice's video again (same peer id) and alice decodes bob's;
//      a WHEP player arriving after the death is placed on the live node.
//  (2) load placement and gateways are many and equal: with node a at its
//      --max-sessions, new WHEP viewers through either gateway go to b; kill -9 of
//      gateway g1 leaves the media of the sessions placed through it flowing, and g2
//      routes a DELETE for one of them (its connection id names its node).
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { useChromium } from '../lib/fixtures.js';
import { waitFor, expectFlowing } from '../lib/media.js';
import { ensureOurBundle, openOurPage, mmContext, mmStats, expectSubReceiving } from '../lib/mediamesh-sdk.js';
import { withCluster, peersOn, whipPublish, whepView } from '../lib/cluster.js';

const chromium = useChromium({ pages: true });
before(() => { ensureOurBundle(); });

// Media must flow again this soon after the client noticed its node died.
const RESUME_BOUND_MS = 5000;

const nodeOfConn = (connId) => String(connId).split('.').slice(0, -2).join('.');

test('gateway (1): kill -9 of the media node holding an SDK session: the SDK restarts ICE through the gateway and resumes on the live node (same peer) within 5 s', { timeout: 240000 }, () => withCluster(chromium, 'gateway-migrate', [
  { id: 'g', host: '127.0.0.1', listen: true, extra: ['--gateway', 'true'] },
  { id: 'a', host: '127.0.0.2', connect: ['g'] },
  { id: 'b', host: '127.0.0.3', connect: ['g'] },
], async (cluster, open) => {
  const g = cluster.node('g');
  const room = 'room-migrate';
  const pages = {
    alice: await openOurPage(open, chromium.web, 'alice'),
    bob: await openOurPage(open, chromium.web, 'bob'),
  };
  const all = async () => (await Promise.all(Object.values(pages).map((p) => mmContext(p, { pageLog: false })))).join('') + (await cluster.context());
  for (const [p, w] of [['alice', 400], ['bob', 320]]) {
    const got = await pages[p].evaluate((o) => window.mm2.camera(o), { width: w, height: w * 3 / 4 });
    assert.equal(got.width, w);
  }
  // Load reports come every second: let the gateway have them before placing.
  await waitFor('gateway g to have the load reports of a and b', () => g.info(), (i) => i.gateway && Object.keys(i.loads || {}).sort().join() === 'a,b', { context: all });
  const joined = {};
  for (const peer of ['alice', 'bob']) {
    const token = await g.token('webrtc', room, peer);
    joined[peer] = await pages[peer].evaluate((o) => window.mm2.join(o), { url: g.base, token, room, peer });
    assert.equal(joined[peer].state, 'connected', `${peer} via gateway: ${JSON.stringify(joined[peer])}` + await all());
  }
  const home = { alice: nodeOfConn(joined.alice.connId), bob: nodeOfConn(joined.bob.connId) };
  console.log(`# placed: alice on ${home.alice}, bob on ${home.bob}`);
  assert.ok(['a', 'b'].includes(home.alice) && ['a', 'b'].includes(home.bob), `sessions on media nodes: ${JSON.stringify(home)}`);
  assert.notEqual(home.alice, home.bob, 'the gateway spreads two sessions over two idle nodes');
  await expectSubReceiving(pages.bob, 'alice/video_main', { what: 'before', width: 400, context: all });
  await expectSubReceiving(pages.alice, 'bob/video_main', { what: 'before', width: 320, context: all });

  const victim = cluster.node(home.alice);
  const survivor = home.bob;
  const bobBefore = await mmStats(pages.bob);
  await victim.kill();
  const tKill = Date.now();
  // alice's SDK notices (connection state "reconnecting") and restarts ICE by itself.
  const noticedEvs = await waitFor('alice: SDK connectionState reconnecting after her node died',
    () => pages.alice.evaluate(() => window.mm2.debug().events.filter((e) => e.type === 'connectionState')),
    (evs) => evs.find((e) => e.value === 'reconnecting'), { timeoutMs: 30000, context: all });
  const noticedAt = Date.now();
  console.log(`METRIC gateway_migrate_noticed_ms=${noticedAt - tKill}`);
  await waitFor('alice: a new connection id on the live node', () => pages.alice.evaluate(() => window.mm2.debug().connId),
    (id) => nodeOfConn(id) === survivor, { timeoutMs: RESUME_BOUND_MS + 2000, context: all });
  await expectSubReceiving(pages.bob, 'alice/video_main', { what: 'after the move', width: 400, from: bobBefore, timeoutMs: RESUME_BOUND_MS + 5000, context: all });
  const bobResumed = Date.now() - noticedAt;
  await expectSubReceiving(pages.alice, 'bob/video_main', { what: 'after the move', width: 320, timeoutMs: RESUME_BOUND_MS + 5000, context: all });
  const aliceResumed = Date.now() - noticedAt;
  console.log(`METRIC gateway_migrate_bob_sees_alice_ms=${bobResumed} gateway_migrate_alice_sees_bob_ms=${aliceResumed} (from alice noticing at ${noticedEvs.find((e) => e.value === 'reconnecting')?.t} ms into her page)`);
  const view = await cluster.node(survivor).room(room);
  assert.deepEqual(peersOn(view, survivor).map((p) => p.peer).sort(), ['alice', 'bob'], `room on ${survivor}: ${JSON.stringify(view)}`);
  assert.ok(bobResumed <= RESUME_BOUND_MS + 1000, `bob decoded alice again ${bobResumed} ms after alice noticed (bound ${RESUME_BOUND_MS} ms + 1 s for 10 frames)`);
  assert.ok(aliceResumed <= RESUME_BOUND_MS + 1000, `alice decoded bob again ${aliceResumed} ms after she noticed`);

  // A WHEP player arriving now is placed on the live node too, and plays alice.
  const player = await open.harness('player');
  const v = await whepView(player, g, { name: 'w', room, context: all });
  assert.equal(nodeOfConn(v.resourceURL.split('/').pop()), survivor, `WHEP viewer placed on the live node: ${v.resourceURL}`);
  await expectFlowing(player, 'w', { context: all });
}));

test('gateway (2): a node at its --max-sessions gets no new sessions; gateways are equal: kill -9 of one leaves the sessions placed through it playing, and another routes their DELETE', { timeout: 240000 }, () => withCluster(chromium, 'gateway-load', [
  // a listens; everyone links to it, so no gateway is a cut vertex.
  { id: 'a', host: '127.0.0.2', listen: true, extra: ['--max-sessions', '1'] },
  { id: 'b', host: '127.0.0.3', connect: ['a'] },
  { id: 'g1', host: '127.0.0.1', connect: ['a'], extra: ['--gateway', 'true'] },
  { id: 'g2', host: '127.0.0.4', connect: ['a'], extra: ['--gateway', 'true'] },
], async (cluster, open) => {
  const [g1, g2, a, b] = ['g1', 'g2', 'a', 'b'].map((id) => cluster.node(id));
  const room = 'room-load';
  const all = async () => cluster.context();
  for (const g of [g1, g2]) {
    await waitFor(`gateway ${g.id} to have the load reports of a and b`, () => g.info(),
      (i) => i.gateway && Object.keys(i.loads || {}).sort().join() === 'a,b', { context: all });
  }
  const pub = await open.harness('publisher');
  const viewers = await open.harness('viewers');
  // Both idle: the tie goes to a (by name), which is then at its limit of one session.
  const published = await whipPublish(pub, g1, { name: 'pub', room, peer: 'cam', context: all });
  assert.equal(nodeOfConn(published.resourceURL.split('/').pop()), 'a', `publisher placed on a: ${published.resourceURL}`);
  await waitFor('a to report 1 session (its limit)', () => g2.info(), (i) => i.loads?.a?.sessions === 1, { context: all });
  // Three viewers through both gateways: all on b (a is full), all decode.
  const views = {};
  for (const [name, g] of [['v1', g1], ['v2', g1], ['v3', g2]]) {
    views[name] = await whepView(viewers, g, { name, room, context: all });
    assert.equal(nodeOfConn(views[name].resourceURL.split('/').pop()), 'b', `${name} via ${g.id} placed on b: ${views[name].resourceURL}`);
  }
  for (const name of Object.keys(views)) await expectFlowing(viewers, name, { context: all });
  assert.equal((await a.info()).sessions, 1, 'a stays at its one session');
  assert.equal((await b.info()).sessions, 3, 'b has the three viewers');

  // Gateway g1 dies: the media of the sessions it placed does not go through it.
  await g1.kill();
  for (const name of ['v1', 'v2', 'v3']) await expectFlowing(viewers, name, { what: 'after g1 died', context: all });
  // g2 routes a DELETE of a session placed through g1: its id names node b.
  const path = new URL(views.v1.resourceURL).pathname;
  const token = await g2.token('whep', room);
  const r = await fetch(`${g2.base}${path}`, { method: 'DELETE', headers: { Authorization: `Bearer ${token}` } });
  assert.equal(r.status, 200, `DELETE ${path} via g2: ${r.status} ${await r.text()}`);
  await waitFor('b to end the deleted session (2 left)', () => b.info(), (i) => i.sessions === 2, { context: all });
  // An id naming no live node: 404, not a hang.
  const gone = await fetch(`${g2.base}/whep/conn/nowhere.0.0123456789abcdef0123456789abcdef`, { method: 'DELETE', headers: { Authorization: `Bearer ${token}` } });
  assert.equal(gone.status, 404, `DELETE of a session on an unknown node: ${gone.status}`);
  const junk = await fetch(`${g2.base}/whep/conn/not-an-id`, { method: 'DELETE', headers: { Authorization: `Bearer ${token}` } });
  assert.equal(junk.status, 404);
}));
