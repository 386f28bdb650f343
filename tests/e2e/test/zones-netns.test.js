// Two zones and a client that is far from the gateway it calls. A network namespace
// (lib/netns.js) is the far client's host (address X.2); every MediaMesh node binds an
// address of the root side of its link (X.11..X.23), so both the namespace and the root
// namespace reach them:
//   zone eu (Frankfurt): gateway g1 X.11, media m1a X.12, m1b X.13 (dial g1)
//   zone ap (Singapore): gateway g2 X.21, media m2a X.22, m2b X.23 (dial g2)
//   g2 dials g1 through a DelayProxy on X.20 (20 ms each way: 40 ms RTT between zones;
//   this machine's kernel has no netem, so the delay is a userspace proxy).
// A GeoIP database the test makes itself (lib/make-geoip.py, MaxMind format) puts X.2
// in Singapore and everything else in Frankfurt. Both gateways load it.
// Asserted:
//   1. the far client (Chromium in the namespace) connects to zone eu's gateway g1 and
//      is placed in zone ap; a near client (Chromium in the root namespace) on g1 is
//      placed in zone eu; with @mediamesh/sdk in one room, each decodes the other.
//   2. each stream crosses the inter-zone link once: a third peer (sg2, viewing only)
//      joins through g2 and lands on the other ap node, so the eu peer's stream goes to
//      both ap nodes; yet the bytes through the inter-zone proxy stay about one copy of
//      each stream (eu peer's node bytes_out + ap peer's node bytes_out), while both ap
//      nodes receive the eu stream in full (cluster bytes_in of GET /api/node).
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freeTcpPort, sleep } from '../lib/server.js';
import { startStaticServer } from '../lib/static.js';
import { launchBrowser, newPage } from '../lib/browser.js';
import { waitFor } from '../lib/media.js';
import { ensureOurBundle, openOurPage, mmContext, expectSubReceiving } from '../lib/mediamesh-sdk.js';
import { ClusterNode } from '../lib/cluster.js';
import { DelayProxy } from '../lib/delay-proxy.js';
import { createNetns, ip } from '../lib/netns.js';
import { VENV_PYTHON } from '../lib/proc.js';
import { E2E_DIR } from '../lib/server.js';

before(() => { ensureOurBundle(); });

const FRANKFURT = '50.11,8.68';
const SINGAPORE = '1.35,103.82';
const ONE_WAY_MS = 20;
const rand = () => Math.random().toString(36).slice(2);
const nodeOfConn = (connId) => String(connId).split('.').slice(0, -2).join('.');

test('zones-netns: a client near zone ap calling zone eu\'s gateway is placed in ap; a room across the zones plays both ways and each stream crosses the inter-zone link once', { timeout: 300000 }, async () => {
  const ns = createNetns();
  const X = ns.subnet;
  const dir = mkdtempSync(join(tmpdir(), 'mm-zones-'));
  const browsers = [];
  const nodes = {};
  let proxy = null;
  let web = null;
  const context = async () => {
    const out = [ns.describe()];
    for (const n of Object.values(nodes)) out.push(`--- node ${n.id} /api/node: ${await n.info().then(JSON.stringify, (e) => e.message)}`);
    return out.join('\n') + Object.values(nodes).map((n) => n.describeShort(20)).join('');
  };
  try {
    const hosts = { g1: 11, m1a: 12, m1b: 13, proxy: 20, g2: 21, m2a: 22, m2b: 23 };
    for (const h of Object.values(hosts)) ip('addr', 'add', `${X}.${h}/32`, 'dev', ns.rootIf);
    const at = (id) => `${X}.${hosts[id]}`;

    const db = join(dir, 'zones.mmdb');
    execFileSync(VENV_PYTHON, [join(E2E_DIR, 'lib', 'make-geoip.py'), db,
      `${X}.0/24=${FRANKFURT},DE`, `${X}.2/32=${SINGAPORE},SG`, `127.0.0.0/8=${FRANKFURT},DE`], { timeout: 30000, stdio: 'pipe' });

    const secret = 'zones-' + rand();
    const common = { secret, clusterSecret: 'zones-cluster-' + rand() };
    const g1Port = await freeTcpPort(at('g1'));
    const g2Port = await freeTcpPort(at('g2'));
    proxy = new DelayProxy({ host: at('proxy'), port: await freeTcpPort(at('proxy')), target: { host: at('g1'), port: g1Port }, delayMs: ONE_WAY_MS });
    await proxy.start();
    const zone = (z, loc) => ['--zone', z, '--zone-location', loc];
    const gw = ['--gateway', 'true', '--geoip-db', db];
    const mk = (id, opts) => { nodes[id] = new ClusterNode(`zones-${id}`, { id, host: at(id), ...common, ...opts }); };
    mk('g1', { listen: [`tcp/${at('g1')}:${g1Port}`], extraArgs: [...zone('eu', FRANKFURT), ...gw] });
    mk('g2', { listen: [`tcp/${at('g2')}:${g2Port}`], connect: [`tcp/${at('proxy')}:${proxy.port}`], extraArgs: [...zone('ap', SINGAPORE), ...gw] });
    for (const id of ['m1a', 'm1b']) mk(id, { connect: [`tcp/${at('g1')}:${g1Port}`], extraArgs: zone('eu', FRANKFURT) });
    for (const id of ['m2a', 'm2b']) mk(id, { connect: [`tcp/${at('g2')}:${g2Port}`], extraArgs: zone('ap', SINGAPORE) });
    for (const n of Object.values(nodes)) await n.start();
    const media = ['m1a', 'm1b', 'm2a', 'm2b'];
    for (const g of ['g1', 'g2']) {
      await waitFor(`gateway ${g}: load reports of the four media nodes`, () => nodes[g].info(),
        (i) => Object.keys(i.loads || {}).sort().join() === media.join(), { timeoutMs: 30000, context });
    }

    web = await startStaticServer({ host: ns.rootAddr });
    const secure = `--unsafely-treat-insecure-origin-as-secure=${web.base}`;
    const farBrowser = await launchBrowser({ executablePath: ns.chromium, extraArgs: [secure] });
    browsers.push(farBrowser);
    const nearBrowser = await launchBrowser({ extraArgs: [secure] });
    browsers.push(nearBrowser);
    const opener = (b) => ({ page: async (label, url) => { const p = await newPage(b, label); await p.goto(url); return p; } });
    const pages = {
      sg: await openOurPage(opener(farBrowser), web, 'sg (far, in the namespace)'),
      de: await openOurPage(opener(nearBrowser), web, 'de (near)'),
    };
    const all = async () => (await mmContext(pages.sg, { pageLog: false })) + (await mmContext(pages.de, { pageLog: false })) + await context();
    for (const [p, w] of [['sg', 400], ['de', 320]]) {
      const got = await pages[p].evaluate((o) => window.mm2.camera(o), { width: w, height: w * 3 / 4 });
      assert.equal(got.width, w);
    }

    // 1. Both call zone eu's gateway.
    const room = 'room-zones';
    const placed = {};
    for (const peer of ['sg', 'de']) {
      const token = await nodes.g1.token('webrtc', room, peer);
      const res = await pages[peer].evaluate((o) => window.mm2.join(o), { url: nodes.g1.base, token, room, peer });
      assert.equal(res.state, 'connected', `${peer}: ${JSON.stringify(res)}` + await all());
      placed[peer] = nodeOfConn(res.connId);
    }
    console.log(`# placed through g1 (eu): sg -> ${placed.sg}, de -> ${placed.de}`);
    assert.ok(['m2a', 'm2b'].includes(placed.sg), `the client at ${ns.nsAddr} (Singapore by the GeoIP db) is placed in zone ap, not on ${placed.sg}` + await all());
    assert.ok(['m1a', 'm1b'].includes(placed.de), `the client in Frankfurt is placed in zone eu, not on ${placed.de}` + await all());
    await expectSubReceiving(pages.de, 'sg/video_main', { what: 'ap -> eu', width: 400, context: all });
    await expectSubReceiving(pages.sg, 'de/video_main', { what: 'eu -> ap', width: 320, context: all });
    await expectSubReceiving(pages.de, 'sg/audio_main', { what: 'ap -> eu', context: all });
    await expectSubReceiving(pages.sg, 'de/audio_main', { what: 'eu -> ap', context: all });

    // 2. A second subscriber of de's stream in zone ap (through g2: the other ap node).
    pages.sg2 = await openOurPage(opener(farBrowser), web, 'sg2 (far, viewer)');
    const other = placed.sg === 'm2a' ? 'm2b' : 'm2a';
    const token = await nodes.g2.token('webrtc', room, 'sg2');
    const res = await pages.sg2.evaluate((o) => window.mm2.join(o), { url: nodes.g2.base, token, room, peer: 'sg2', publish: false });
    assert.equal(nodeOfConn(res.connId), other, `sg2 (through g2) goes to the less loaded ap node: ${res.connId}` + await all());
    await expectSubReceiving(pages.sg2, 'de/video_main', { what: 'eu -> ap, second ap node', width: 320, context: all });
    await sleep(1000);
    const counters = async () => Object.fromEntries(await Promise.all(['m1a', 'm1b', 'm2a', 'm2b'].map(async (id) => [id, (await nodes[id].info()).cluster])));
    const c0 = await counters();
    const b0 = proxy.bytes;
    await sleep(5000);
    const c1 = await counters();
    const crossed = proxy.bytes - b0;
    const d = (id, f) => c1[id][f] - c0[id][f];
    const euOut = d(placed.de, 'bytes_out');
    const apOut = d(placed.sg, 'bytes_out');
    // m2x (sg's node) takes de's stream; the other ap node takes de's and sg's.
    const inA = d(placed.sg, 'bytes_in');
    const inB = d(other, 'bytes_in');
    console.log(`METRIC zones_interzone_bytes=${crossed} eu_stream_bytes=${euOut} ap_stream_bytes=${apOut} ap_nodes_in=${inA},${inB} ratio=${(crossed / (euOut + apOut)).toFixed(3)}`);
    assert.ok(inA >= 0.8 * euOut && inA <= 1.2 * euOut, `${placed.sg} receives the eu stream: ${inA} of ${euOut} bytes` + await all());
    assert.ok(inB >= 0.8 * (euOut + apOut), `${other} receives the eu and the ap stream: ${inB} of ${euOut} + ${apOut} bytes` + await all());
    assert.ok(crossed < 1.3 * (euOut + apOut), `the inter-zone link carried ${crossed} bytes for streams of ${euOut} (eu) + ${apOut} (ap): more than one copy each` + await all());
    assert.ok(crossed > 0.7 * (euOut + apOut), `the inter-zone link carried only ${crossed} bytes for ${euOut + apOut} of streams: the media took another path?` + await all());
  } finally {
    for (const b of browsers) await b.close().catch(() => {});
    for (const n of Object.values(nodes)) await n.stop().catch(() => {});
    proxy?.stop();
    await web?.close().catch(() => {});
    ns.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
});
