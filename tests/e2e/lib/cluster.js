// Clusters of MediaMesh nodes (zenoh) for the end-to-end tests: every node on its own
// loopback address (127.0.0.1, .2, .3: Linux routes all of 127/8 to lo), the same app
// secret on all (a token minted by any node is valid on every node) and one cluster
// secret. `withCluster(chromium, name, specs, fn)` starts the nodes in order, waits
// until each sees all the others, runs `fn(cluster, open)` so that errors carry every
// node's log tail, then closes the pages and stops the nodes (also on failure). Full
// logs: logs/<name>-<node>.mediamesh.log.
import { MediaMesh, freeTcpPort, sleepUnref } from './server.js';
import { newPage } from './browser.js';
import { waitFor, statsOf, sessionContext } from './media.js';

const rand = () => Math.random().toString(36).slice(2);

/** One node: a MediaMesh started with the cluster flags. */
export class ClusterNode extends MediaMesh {
  /**
   * `id`: --node-id; `listen`/`connect`: zenoh endpoints (`tcp/127.0.0.1:7447`);
   * `clusterSecret`: --cluster-secret (none: the flag is left out); `role`, `zone`:
   * left out unless given (the defaults are router and "default").
   */
  constructor(name, { id, host, secret, clusterSecret = null, listen = [], connect = [], role = null, zone = null, extraArgs = [] }) {
    super(name, { secret, host });
    Object.assign(this, { id, clusterSecret, listen, connect, role, zone, extraArgs });
  }

  clusterArgs() {
    return ['--node-id', this.id,
      ...(this.zone ? ['--zone', this.zone] : []),
      ...(this.role ? ['--cluster-role', this.role] : []),
      ...this.listen.flatMap((e) => ['--cluster-listen', e]),
      ...this.connect.flatMap((e) => ['--cluster-connect', e]),
      ...(this.clusterSecret !== null ? ['--cluster-secret', this.clusterSecret] : []),
      // E2E_CLUSTER_EXTRA="--cluster-rtt-weights true": more flags for every node (experiments).
      ...(process.env.E2E_CLUSTER_EXTRA ? process.env.E2E_CLUSTER_EXTRA.trim().split(/\s+/) : []),
      ...this.extraArgs];
  }

  start(opts = {}) { return super.start({ ...opts, extraArgs: this.clusterArgs() }); }

  /** Starts the node again with the same flags and ports (after `kill`). */
  restart() { return this.start({ samePorts: true }); }

  get pid() { return this.proc?.pid; }
  get running() { return !!this.proc && !this.exited; }

  /** Sends `sig` to this node's process (our own child, by pid). */
  signal(sig) {
    process.kill(this.proc.pid, sig);
    if (sig === 'SIGSTOP') this.frozen = true;
    if (sig === 'SIGCONT') this.frozen = false;
  }

  /** kill -9 and wait (bounded) for the exit. */
  async kill() {
    if (!this.running) return;
    this.proc.kill('SIGKILL');
    const r = await Promise.race([this.exitPromise, sleepUnref(5000).then(() => null)]);
    if (!r) throw new Error(`node ${this.id} (pid ${this.pid}) did not exit within 5 s of SIGKILL`);
    this.frozen = false;
  }

  async stop() {
    if (this.running && this.frozen) { try { this.signal('SIGCONT'); } catch {} }
    return super.stop();
  }

  /** GET `path` with the app secret; the parsed JSON of a 200, else throws with status and body. */
  async api(path) {
    let r;
    try {
      r = await fetch(`${this.base}${path}`, { headers: { Authorization: `Bearer ${this.secret}` }, signal: AbortSignal.timeout(3000) });
    } catch (e) {
      throw new Error(`node ${this.id}: GET ${path} failed: ${e.cause?.code || e.message}`);
    }
    const text = await r.text();
    if (r.status !== 200) throw new Error(`node ${this.id}: GET ${path} -> ${r.status} ${text.slice(0, 300)}`);
    try { return JSON.parse(text); } catch { throw new Error(`node ${this.id}: GET ${path} -> 200 but not JSON: ${text.slice(0, 300)}`); }
  }

  /** GET /api/node: {node, zone, cluster: {nodes, packets_out, packets_in, channels_out, channels_in}}. */
  info() { return this.api('/api/node'); }

  /** GET /api/rooms/{room}: {room, peers: [{peer, node, tracks: [{track, kind}]}]}. */
  room(room) { return this.api(`/api/rooms/${encodeURIComponent(room)}`); }

  /** The last `lines` lines of this node's stderr for failure messages (one end marker per node). */
  describeShort(lines = 40) {
    const t = [...this.tail.lines.slice(-lines), this.tail.partial].filter(Boolean).join('\n');
    return `\n--- node ${this.id}: ${this.cmdline || '(not started)'}` +
      (this.exited ? `\n--- exited: ${JSON.stringify(this.exited)}` : this.frozen ? '\n--- (frozen: SIGSTOP)' : '') +
      `\n--- stderr tail of node ${this.id} (full log: ${this.logPath}):\n${t || '(empty)'}\n--- end of mediamesh stderr (node ${this.id})`;
  }
}

/** `peer@node[track:kind,...]` for each peer of a GET /api/rooms answer, sorted. */
export function roomSummary(view) {
  return (view?.peers || []).map((p) => `${p.peer}@${p.node}[${(p.tracks || []).map((t) => `${t.track}:${t.kind}`).sort().join(',')}]`).sort();
}

/** The peers of a GET /api/rooms answer that live on node `id`. */
export const peersOn = (view, id) => (view?.peers || []).filter((p) => p.node === id);

/**
 * Nodes described by `specs` ([{id, host, listen: bool, connect: [ids], clusterSecret?, zone?,
 * role?, extra?: [more flags]}],
 * started in that order; a node connects to the listen endpoint of each id in `connect`).
 * All share one app secret; all but those given their own `clusterSecret` share one cluster secret.
 */
export class Cluster {
  constructor(name, specs) {
    this.name = name;
    this.secret = 'e2e-secret-' + rand();
    this.clusterSecret = 'e2e-cluster-' + rand();
    this.specs = specs;
    this.nodes = {};
  }

  get list() { return Object.values(this.nodes); }
  node(id) {
    const n = this.nodes[id];
    if (!n) throw new Error(`no node ${id} in cluster ${this.name} (have ${Object.keys(this.nodes).join(', ')})`);
    return n;
  }

  /** Makes the nodes (ports and endpoints) without starting them. */
  async prepare() {
    for (const s of this.specs) {
      const listen = s.listen ? [`tcp/${s.host}:${await freeTcpPort(s.host)}`] : [];
      const connect = (s.connect || []).map((id) => {
        const to = this.node(id);
        if (!to.listen.length) throw new Error(`node ${s.id} connects to ${id}, which does not listen`);
        return to.listen[0];
      });
      this.nodes[s.id] = new ClusterNode(`${this.name}-${s.id}`, {
        id: s.id, host: s.host, secret: this.secret, listen, connect,
        clusterSecret: s.clusterSecret !== undefined ? s.clusterSecret : this.clusterSecret,
        role: s.role ?? null, zone: s.zone ?? null, extraArgs: s.extra || [],
      });
    }
  }

  /** Starts the nodes given (default: all, in spec order). */
  async start(ids = this.specs.map((s) => s.id)) {
    for (const id of ids) await this.node(id).start();
  }

  /**
   * Waits (bounded) until each node of `ids` reports exactly `ids` in /api/node
   * cluster.nodes. Returns the time it took.
   */
  async waitMembers(ids = Object.keys(this.nodes), { timeoutMs = 20000, what = '' } = {}) {
    const want = JSON.stringify([...ids].sort());
    const t0 = Date.now();
    await waitFor(`every node of ${want} to list exactly ${want} in GET /api/node cluster.nodes${what ? ` (${what})` : ''}`,
      () => Promise.all(ids.map(async (id) => [id, (await this.node(id).info()).cluster?.nodes])),
      (all) => all.every(([, nodes]) => Array.isArray(nodes) && JSON.stringify([...nodes].sort()) === want),
      { timeoutMs, intervalMs: 200, context: () => this.context() });
    return Date.now() - t0;
  }

  /** Every running node's /api/node, for failure messages. */
  async context() {
    const lines = [];
    for (const n of this.list) {
      if (!n.running) { lines.push(`--- node ${n.id}: not running${n.exited ? ` (exited ${JSON.stringify(n.exited)})` : ''}`); continue; }
      if (n.frozen) { lines.push(`--- node ${n.id}: frozen (SIGSTOP)`); continue; }
      try { lines.push(`--- node ${n.id} /api/node: ${JSON.stringify(await n.info())}`); } catch (e) { lines.push(`--- node ${n.id} /api/node: ${e.message}`); }
    }
    return '\n' + lines.join('\n');
  }

  /** Every node's command line and log tail. */
  describe(lines = 40) { return this.list.map((n) => n.describeShort(lines)).join(''); }

  async stop() {
    for (const n of this.list.reverse()) await n.stop().catch(() => {});
  }
}

/** Runs `fn` so that any error carries every node's log tail (like withServerContext). */
export async function withClusterContext(cluster, fn) {
  try { return await fn(); } catch (e) {
    if (!String(e.message).includes('--- end of mediamesh stderr')) {
      const old = e.message;
      e.message += cluster.describe();
      if (typeof e.stack === 'string' && old && e.stack.includes(old) && !e.stack.includes('--- end of mediamesh stderr')) {
        e.stack = e.stack.replace(old, () => e.message);
      }
    }
    throw e;
  }
}

/**
 * Starts a cluster of `specs` (see Cluster), waits until every node sees every other
 * (unless `formed: false`), runs `fn(cluster, open)` with `open.page(label, url)` and
 * `open.harness(label)` as in fixtures.js, then closes the pages and stops the nodes.
 * `chromium` is what useChromium() returned (its browser and page server).
 */
export async function withCluster(chromium, name, specs, fn, { formed = true } = {}) {
  const cluster = new Cluster(name, specs);
  const opened = [];
  const page = async (label, url) => {
    const p = await newPage(chromium.browser, label);
    opened.push(p);
    if (url) await p.goto(url);
    return p;
  };
  const harness = async (label) => {
    if (!chromium.web) throw new Error('useChromium({ pages: true }) is needed for the harness page');
    const p = await page(label, `${chromium.web.base}/harness.html`);
    await p.waitForFunction(() => window.mm?.ready === true);
    return p;
  };
  try {
    return await withClusterContext(cluster, async () => {
      await cluster.prepare();
      await cluster.start();
      if (formed) {
        const ms = await cluster.waitMembers();
        console.log(`# ${name}: nodes ${Object.keys(cluster.nodes).join(', ')} see each other ${ms} ms after the last one started`);
      }
      return await fn(cluster, { page, harness });
    });
  } finally {
    for (const p of opened) await p.context().close().catch(() => {});
    await cluster.stop();
  }
}

/**
 * Publishes the fake camera and microphone from harness `page` by WHIP to `node`
 * (session `name`, peer `peer`) and waits until video packets leave Chromium. Returns
 * {resourceURL, etag}.
 */
export async function whipPublish(page, node, { name, room, peer, width = 320, height = 240, tokenFrom = node, context = async () => '' }) {
  const token = await tokenFrom.token('whip', room, peer);
  const res = await page.evaluate((o) => window.mm.publish(o), { name, endpoint: `${node.base}/whip/endpoint`, token, width, height })
    .catch(async (e) => { throw new Error(`${page.label}/${name}: WHIP publish to node ${node.id} (${node.base}) failed: ${e.message}` + await sessionContext(page, name, { sdp: true }) + await context()); });
  await waitFor(`${page.label}/${name}: WHIP publisher on node ${node.id} connected and sending video`, () => statsOf(page, name),
    (s) => s?.conn === 'connected' && s.outVideo?.packetsSent > 20, { context: async () => (await sessionContext(page, name)) + (await context()) });
  return res;
}

/**
 * Plays `room` on `node` by WHEP from harness `page` (session `name`, whip-whep's WHEPClient
 * by default). Returns {resourceURL}.
 */
export async function whepView(page, node, { name, room, peer, mode = 'library', tokenFrom = node, context = async () => '' }) {
  const token = await tokenFrom.token('whep', room, peer);
  return page.evaluate((o) => window.mm.view(o), { name, endpoint: `${node.base}/whep/endpoint`, token, mode })
    .catch(async (e) => { throw new Error(`${page.label}/${name}: WHEP view on node ${node.id} (${node.base}) failed: ${e.message}` + await sessionContext(page, name, { sdp: true }) + await context()); });
}
