// examples/multi-zone: run.sh starts 2 zones x (1 gateway + 2 media nodes) on loopback
// addresses 127.0.0.11-13 (eu) and 127.0.0.21-23 (ap); stop.sh stops them. Run with the
// debug binary, a temporary state directory and ports free on every address:
//  - run.sh returns once the cluster is formed, and then every node lists all 6, each
//    with its zone; both gateways have the load reports of the 4 media nodes with their
//    zones and zone locations (Frankfurt, Singapore), and only gateways say gateway.
//  - a token minted by gateway eu works at gateway ap; a client the GeoIP database does
//    not know (this machine's 127.0.0.1) is placed in the zone of the gateway it asks,
//    and, with the database run.sh makes from tests/e2e/.venv, a client that a trusted
//    proxy says is in Tokyo (X-Forwarded-For) is placed in ap by gateway eu. Sessions
//    are WHEP offers that never connect; each is deleted through the other gateway
//    (routed by the node its connection id names).
//  - stop.sh stops every process. Whatever happens, no process outlives the test.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { createSocket } from 'node:dgram';
import { tmpdir, constants } from 'node:os';
import { join } from 'node:path';
import { MEDIAMESH_BIN, REPO_DIR, freeTcpPort, sleep } from '../lib/server.js';
import { runProcess } from '../lib/proc.js';
import { waitFor } from '../lib/media.js';

const EXAMPLE = join(REPO_DIR, 'examples', 'multi-zone');
const OFFER = readFileSync(join(REPO_DIR, 'crates', 'webrtc', 'tests', 'data', 'chrome-recvonly-offer.sdp'), 'utf8');

const NODES = {
  'eu-gw': { host: '127.0.0.11', zone: 'eu' }, 'eu-m1': { host: '127.0.0.12', zone: 'eu' }, 'eu-m2': { host: '127.0.0.13', zone: 'eu' },
  'ap-gw': { host: '127.0.0.21', zone: 'ap' }, 'ap-m1': { host: '127.0.0.22', zone: 'ap' }, 'ap-m2': { host: '127.0.0.23', zone: 'ap' },
};
const IDS = Object.keys(NODES).sort();
const MEDIA = IDS.filter((id) => !id.endsWith('-gw'));
const LOCATION = { eu: [50.11, 8.68], ap: [1.35, 103.82] };
const HOSTS = Object.values(NODES).map((n) => n.host);

const nodeOfConn = (id) => String(id).split('.').slice(0, -2).join('.');

function canBind(host, port, proto) {
  return new Promise((ok) => {
    if (proto === 'tcp') {
      const s = createServer();
      s.once('error', () => ok(false));
      s.listen({ host, port, exclusive: true }, () => s.close(() => ok(true)));
    } else {
      const s = createSocket('udp4');
      s.once('error', () => { s.close(); ok(false); });
      s.bind({ host, port, exclusive: true }, () => s.close(() => ok(true)));
    }
  });
}

/** A port that `protos` can bind on every one of `hosts` and that is not in `taken`. */
async function commonPort(hosts, protos, taken) {
  for (let i = 0; i < 50; i++) {
    const p = await freeTcpPort(hosts[0]);
    if (taken.includes(p)) continue;
    let all = true;
    for (const h of hosts) for (const proto of protos) if (all && !(await canBind(h, p, proto))) all = false;
    if (all) return p;
  }
  throw new Error(`no port free on ${hosts.join(', ')} (${protos.join('+')}) after 50 tries`);
}

/** Whether node `id`'s process (pid) runs: not gone, not a zombie, still that node's command line. */
function alive(pid, id) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) return false;
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').includes(`--node-id ${id} `);
  } catch { return false; }
}

function pidIn(state, id) {
  try { return Number(readFileSync(join(state, `${id}.pid`), 'utf8').trim()) || null; } catch { return null; }
}

// The nodes run in sessions of their own (run.sh detaches them), so neither this
// process's end nor a Ctrl-C reaches them: if the test is cut short (timeout,
// signal), SIGKILL whatever the pid files name that still runs.
let liveState = null;
function killLeftovers() {
  if (!liveState) return;
  for (const id of IDS) {
    const pid = pidIn(liveState, id);
    if (pid && alive(pid, id)) { try { process.kill(pid, 'SIGKILL'); } catch {} }
  }
}
process.on('exit', killLeftovers);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(sig, () => { killLeftovers(); process.exit(128 + constants.signals[sig]); });
}

test('multi-zone example: run.sh forms 2 zones x (gateway + 2 media nodes); gateways see every node, load and zone, place by zone; stop.sh stops all', { timeout: 60000 }, async () => {
  const t0 = Date.now();
  const state = mkdtempSync(join(tmpdir(), 'mediamesh-multi-zone-test-'));
  const taken = [];
  const httpPort = await commonPort(HOSTS, ['tcp'], taken); taken.push(httpPort);
  const mediaPort = await commonPort(HOSTS, ['udp'], taken); taken.push(mediaPort);
  // Every node listens for cluster links (TCP) and RTT echoes (UDP); media nodes for RTMP.
  const clusterPort = await commonPort(HOSTS, ['tcp', 'udp'], taken); taken.push(clusterPort);
  const rtmpPort = await commonPort(HOSTS, ['tcp'], taken); taken.push(rtmpPort);
  const sipPort = await commonPort(HOSTS, ['udp', 'tcp'], taken);
  const env = {
    MEDIAMESH_BIN, MULTI_ZONE_STATE_DIR: state, MULTI_ZONE_WAIT_S: '20', MULTI_ZONE_STOP_WAIT_S: '5',
    MULTI_ZONE_HTTP_PORT: String(httpPort), MULTI_ZONE_MEDIA_PORT: String(mediaPort), MULTI_ZONE_CLUSTER_PORT: String(clusterPort),
    MULTI_ZONE_RTMP_PORT: String(rtmpPort), MULTI_ZONE_SIP_PORT: String(sipPort),
    // The script makes its own secrets; none from the test's environment, nor limits.
    MEDIAMESH_SECRET: '', MEDIAMESH_CLUSTER_SECRET: '', MULTI_ZONE_MEDIA_ARGS: '',
  };
  const pidOf = (id) => pidIn(state, id);
  liveState = state;
  const logTails = (lines = 20) => IDS.map((id) => {
    let text;
    try { text = readFileSync(join(state, `${id}.log`), 'utf8').split('\n').slice(-lines - 1).join('\n'); } catch (e) { text = `(${e.code})`; }
    return `\n--- ${id} (pid ${pidOf(id)}) log tail (${join(state, `${id}.log`)}):\n${text}`;
  }).join('');
  let ok = false;
  try {
    const run = await runProcess(join(EXAMPLE, 'run.sh'), [], { label: 'run.sh', env, timeoutMs: 30000 });
    const runMs = Date.now() - t0;
    assert.ok(!run.timedOut && run.code === 0, `run.sh exited ${run.code} (timed out: ${run.timedOut})` + run.describe() + logTails());
    console.log(`# run.sh: cluster formed, script returned after ${runMs} ms`);
    const vars = Object.fromEntries(readFileSync(join(state, 'env'), 'utf8').trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
    const secret = vars.SECRET;
    assert.match(secret, /^[0-9a-f]{48}$/, 'run.sh generates an app secret');
    assert.equal(readFileSync(join(state, 'secret'), 'utf8').trim(), secret);
    const gw = { eu: vars.GATEWAY_EU, ap: vars.GATEWAY_AP };
    assert.equal(gw.eu, `http://127.0.0.11:${httpPort}`);
    assert.equal(gw.ap, `http://127.0.0.21:${httpPort}`);
    for (const u of [gw.eu, gw.ap]) {
      for (const page of ['/demo/whip', '/demo/whep', '/demo/room']) assert.ok(run.stdout.includes(u + page), `run.sh prints ${u}${page}:\n${run.stdout}`);
    }
    assert.ok(run.stdout.includes(secret), 'run.sh prints the app secret');
    for (const id of IDS) assert.ok(alive(pidOf(id), id), `node ${id} runs (pid file ${join(state, `${id}.pid`)})` + logTails());

    const get = async (base, path, headers = {}) => {
      const r = await fetch(base + path, { headers: { Authorization: `Bearer ${secret}`, ...headers }, signal: AbortSignal.timeout(3000) });
      const text = await r.text();
      assert.equal(r.status, 200, `GET ${base}${path}: ${text.slice(0, 300)}`);
      return JSON.parse(text);
    };
    const base = (id) => `http://${NODES[id].host}:${httpPort}`;

    // Membership, zones, roles; load reports with zones and locations on the gateways.
    for (const id of IDS) {
      const info = await get(base(id), '/api/node');
      const ctx = `\nGET ${base(id)}/api/node: ${JSON.stringify(info)}` + logTails();
      assert.equal(info.node, id, ctx);
      assert.equal(info.zone, NODES[id].zone, ctx);
      assert.deepEqual([...info.cluster.nodes].sort(), IDS, `${id} sees every node` + ctx);
      assert.equal(info.gateway, id.endsWith('-gw'), ctx);
      if (!info.gateway) { assert.equal(info.loads, undefined, ctx); continue; }
      assert.deepEqual(Object.keys(info.loads).sort(), MEDIA, `${id} has the load reports of the media nodes only` + ctx);
      for (const [m, load] of Object.entries(info.loads)) {
        assert.equal(load.zone, NODES[m].zone, `${id}: zone of ${m}` + ctx);
        assert.deepEqual(load.location, LOCATION[load.zone], `${id}: location of ${m}` + ctx);
        assert.equal(load.draining, false, ctx);
        assert.deepEqual(load.limits, {}, `${id}: ${m} runs without limits` + ctx);
      }
    }

    // Placement. One whep token from gateway eu, used at both gateways.
    const tr = await fetch(`${gw.eu}/token/whep`, {
      method: 'POST', headers: { Authorization: `Bearer ${secret}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ room: 'multi-zone-test', ttl: 600 }), signal: AbortSignal.timeout(3000),
    });
    const token = (await tr.json())?.data?.token;
    assert.equal(tr.status, 200);
    assert.equal(typeof token, 'string');
    const whep = async (zone, headers = {}) => {
      const r = await fetch(`${gw[zone]}/whep/endpoint`, {
        method: 'POST', body: OFFER, signal: AbortSignal.timeout(5000),
        headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/sdp', ...headers },
      });
      const text = await r.text();
      assert.equal(r.status, 201, `WHEP offer at gateway ${zone} ${JSON.stringify(headers)}: ${text.slice(0, 300)}` + logTails());
      const location = r.headers.get('location');
      assert.match(location, /^\/whep\/conn\/[^/]+$/);
      return { zone, location, node: nodeOfConn(location.split('/').pop()) };
    };
    const placed = [];
    for (const zone of ['eu', 'ap']) {
      const s = await whep(zone);
      placed.push(s);
      assert.ok(MEDIA.includes(s.node) && NODES[s.node].zone === zone,
        `a client without a location (127.0.0.1 is not in any GeoIP database here) is placed in the zone of gateway ${zone}: got ${s.location}`);
    }
    const geoip = vars.GEOIP_DB;
    if (geoip && existsSync(geoip)) {
      const s = await whep('eu', { 'X-Forwarded-For': '203.0.113.7' });
      placed.push(s);
      assert.equal(NODES[s.node]?.zone, 'ap', `gateway eu places a client located in Tokyo (X-Forwarded-For from the trusted 127.0.0.1) in ap: got ${s.location}`);
      const u = await whep('eu', { 'X-Forwarded-For': '192.0.2.1' });
      placed.push(u);
      assert.equal(NODES[u.node]?.zone, 'eu', `gateway eu places a client its database does not know in eu: got ${u.location}`);
    } else {
      console.log('# run.sh made no GeoIP database (no tests/e2e/.venv, or MULTI_ZONE_GEOIP=off): located placement not checked');
    }
    console.log(`# placed: ${placed.map((s) => `gateway ${s.zone} -> ${s.node}`).join(', ')}`);
    for (const s of placed) {
      const other = s.zone === 'eu' ? gw.ap : gw.eu;
      const r = await fetch(`${other}${s.location}`, { method: 'DELETE', headers: { Authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(3000) });
      assert.equal(r.status, 200, `DELETE ${s.location} through the other gateway: ${await r.text()}`);
    }
    await waitFor('every media node to have 0 sessions after the DELETEs',
      () => Promise.all(MEDIA.map(async (m) => [m, (await get(base(m), '/healthz')).sessions])),
      (all) => all.every(([, n]) => n === 0), { timeoutMs: 3000, intervalMs: 100 });

    // stop.sh
    const pids = Object.fromEntries(IDS.map((id) => [id, pidOf(id)]));
    const t1 = Date.now();
    const stop = await runProcess(join(EXAMPLE, 'stop.sh'), [state], { label: 'stop.sh', env: { MULTI_ZONE_STOP_WAIT_S: '5' }, timeoutMs: 15000 });
    assert.ok(!stop.timedOut && stop.code === 0, `stop.sh exited ${stop.code}` + stop.describe() + logTails());
    const left = IDS.filter((id) => alive(pids[id], id));
    assert.deepEqual(left, [], 'every node exited after stop.sh' + logTails());
    assert.ok(!/SIGKILL/.test(stop.stderr), `every node stopped on SIGTERM:\n${stop.stderr}`);
    for (const id of IDS) assert.match(readFileSync(join(state, `${id}.log`), 'utf8'), /INFO mediamesh: stopped/, `${id} logged a clean stop` + logTails());
    console.log(`# stop.sh: ${Date.now() - t1} ms; test total ${Date.now() - t0} ms`);
    ok = true;
  } finally {
    // Nothing outlives the test: stop.sh, then SIGKILL by pid for anything left.
    const running = IDS.filter((id) => pidOf(id) && alive(pidOf(id), id));
    if (running.length) {
      await runProcess(join(EXAMPLE, 'stop.sh'), [state], { label: 'stop.sh', env: { MULTI_ZONE_STOP_WAIT_S: '3' }, timeoutMs: 10000 }).catch(() => {});
      for (const id of running) {
        if (alive(pidOf(id), id)) { try { process.kill(pidOf(id), 'SIGKILL'); } catch {} }
      }
      await sleep(200);
    }
    liveState = null;
    if (ok) rmSync(state, { recursive: true, force: true });
    else console.log(`# multi-zone example: logs kept in ${state}`);
  }
});
