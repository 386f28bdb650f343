// The fastest path across the cluster: link weights follow measured RTT
// (--cluster-rtt-weights). Three nodes a, b, c on 127.0.0.1/.2/.3 and three links
// a-b, b-c, a-c, each through a DelayProxy on 127.0.0.4 (TCP for zenoh, UDP for the
// RTT echo), because this machine's kernel has no netem. b dials a; c dials a and b.
// mediamesh-bench (str0m: WHIP to a, WHEP from c, packets stamped with their send
// time) measures the one-way latency a -> c, which tells the path:
//   1. a-c slow (40 ms each way), a-b and b-c fast (1 ms): media goes a -> b -> c.
//   2. the delays swap (a-b slow, a-c fast): media goes a -> c directly.
// The weights themselves are read from GET /api/node (cluster.link_weights, 0.1 ms of
// RTT), and the relay's proxy byte counters corroborate the path.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { dirname, join } from 'node:path';
import { MEDIAMESH_BIN, freeTcpPort } from '../lib/server.js';
import { waitFor } from '../lib/media.js';
import { ClusterNode } from '../lib/cluster.js';
import { DelayProxy } from '../lib/delay-proxy.js';

const BENCH = join(dirname(MEDIAMESH_BIN), 'mediamesh-bench');
const SLOW = 40;
const FAST = 1;

function bench(args) {
  return new Promise((resolve, reject) => {
    execFile(BENCH, args, { timeout: 60000 }, (e, stdout, stderr) => {
      if (e) return reject(new Error(`mediamesh-bench ${args.join(' ')} failed: ${e.message}\n${stderr}`));
      try { resolve(JSON.parse(stdout).at(-1)); } catch (x) { reject(new Error(`mediamesh-bench printed no JSON: ${stdout}\n${stderr}`)); }
    });
  });
}

test('cluster paths: media takes the lower-RTT path (a -> b -> c while a-c is slow, a -> c once it is fast), following RTT measured by the nodes', { timeout: 240000 }, async () => {
  const secret = 'paths-' + Math.random().toString(36).slice(2);
  const proxyHost = '127.0.0.4';
  const port = (h) => freeTcpPort(h);
  const aForB = await port('127.0.0.1');
  const aForC = await port('127.0.0.1');
  const bForC = await port('127.0.0.2');
  const proxies = {
    ab: new DelayProxy({ host: proxyHost, port: await port(proxyHost), target: { host: '127.0.0.1', port: aForB }, delayMs: FAST }),
    ac: new DelayProxy({ host: proxyHost, port: await port(proxyHost), target: { host: '127.0.0.1', port: aForC }, delayMs: SLOW }),
    bc: new DelayProxy({ host: proxyHost, port: await port(proxyHost), target: { host: '127.0.0.2', port: bForC }, delayMs: FAST }),
  };
  const via = (p) => `tcp/${proxyHost}:${p.port}`;
  const common = { secret, clusterSecret: 'paths-cluster', extraArgs: ['--cluster-rtt-weights', 'true'] };
  const nodes = {
    a: new ClusterNode('cluster-paths-a', { id: 'a', host: '127.0.0.1', listen: [`tcp/127.0.0.1:${aForB}`, `tcp/127.0.0.1:${aForC}`], ...common }),
    b: new ClusterNode('cluster-paths-b', { id: 'b', host: '127.0.0.2', listen: [`tcp/127.0.0.2:${bForC}`], connect: [via(proxies.ab)], ...common }),
    c: new ClusterNode('cluster-paths-c', { id: 'c', host: '127.0.0.3', connect: [via(proxies.ac), via(proxies.bc)], ...common }),
  };
  const context = async () => {
    const out = [];
    for (const n of Object.values(nodes)) {
      out.push(`--- node ${n.id}: ${await n.info().then(JSON.stringify, (e) => e.message)}`);
      out.push(n.describeShort(25));
    }
    return '\n' + out.join('\n');
  };
  try {
    for (const p of Object.values(proxies)) await p.start();
    for (const n of Object.values(nodes)) await n.start();
    const weights = async () => ({ b: (await nodes.b.info()).cluster.link_weights, c: (await nodes.c.info()).cluster.link_weights });

    const measure = async (phase) => {
      const before = proxies.bc.bytes;
      const r = await bench(['--url', nodes.a.base, '--whep-url', `${nodes.c.base}/whep/endpoint`, '--secret', secret, '--json',
        '--video-kbps', '300', 'fanout', '--publishers', '1', '--subscribers', '1', '--step-secs', '4', '--warmup-secs', '1']);
      const relayed = proxies.bc.bytes - before;
      console.log(`METRIC cluster_paths_${phase}_p50_ms=${r.latency_ms.p50.toFixed(2)}`);
      console.log(`METRIC cluster_paths_${phase}_relay_bytes=${relayed}`);
      assert.ok(r.packets_received > 100, `${phase}: the viewer on c received ${r.packets_received} packets` + await context());
      return { p50: r.latency_ms.p50, relayed };
    };

    // 1. a-c slow: b and c measure it and reopen their sessions with the weights.
    const t1 = Date.now();
    await waitFor('phase 1: c weighs a-c slow (>= 400) and b-c fast (<= 100); b weighs a-b fast (<= 100)', weights,
      (w) => w.c?.a >= 400 && w.c?.b <= 100 && w.b?.a <= 100, { timeoutMs: 30000, intervalMs: 500, context });
    console.log(`METRIC cluster_paths_weights_ms=${Date.now() - t1}`);
    await waitFor('phase 1: every node sees the two others', async () => Promise.all(Object.values(nodes).map(async (n) => (await n.info()).cluster.nodes.length)),
      (l) => l.every((x) => x === 3), { timeoutMs: 20000, context });
    const p1 = await measure('slow_direct');
    assert.ok(p1.p50 < SLOW / 2, `phase 1: one-way latency a -> c is ${p1.p50} ms: media took the slow direct link (${SLOW} ms), not a -> b -> c (~${2 * FAST} ms)` + await context());
    assert.ok(p1.relayed > 50000, `phase 1: only ${p1.relayed} bytes crossed b-c: b did not relay the media` + await context());

    // 2. The delays swap: a-b slow, a-c fast.
    proxies.ab.setDelay(SLOW);
    proxies.ac.setDelay(FAST);
    const t2 = Date.now();
    await waitFor('phase 2: c weighs a-c fast (<= 100); b weighs a-b slow (>= 400)', weights,
      (w) => w.c?.a <= 100 && w.b?.a >= 400, { timeoutMs: 30000, intervalMs: 500, context });
    console.log(`METRIC cluster_paths_reweigh_ms=${Date.now() - t2}`);
    await waitFor('phase 2: every node sees the two others', async () => Promise.all(Object.values(nodes).map(async (n) => (await n.info()).cluster.nodes.length)),
      (l) => l.every((x) => x === 3), { timeoutMs: 20000, context });
    const p2 = await measure('fast_direct');
    assert.ok(p2.p50 < SLOW / 2, `phase 2: one-way latency a -> c is ${p2.p50} ms: media did not take the now fast direct link` + await context());
    assert.ok(p2.relayed < p1.relayed / 4, `phase 2: ${p2.relayed} bytes still crossed b-c (phase 1: ${p1.relayed})` + await context());
  } finally {
    for (const n of Object.values(nodes)) await n.stop().catch(() => {});
    for (const p of Object.values(proxies)) p.stop();
  }
});
