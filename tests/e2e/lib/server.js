// Starts a MediaMesh process on free loopback ports and stops it again.
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { createSocket } from 'node:dgram';
import { existsSync, mkdirSync, createWriteStream } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
export const E2E_DIR = resolve(HERE, '..');
export const REPO_DIR = resolve(E2E_DIR, '..', '..');
export const LOG_DIR = join(E2E_DIR, 'logs');

export const MEDIAMESH_BIN = process.env.MEDIAMESH_BIN
  ? resolve(process.env.MEDIAMESH_BIN)
  : join(REPO_DIR, 'target', 'debug', 'mediamesh');

// Children still running when this test process exits (a test timed out, an
// exception escaped) are killed so that no server or client outlives its test.
const liveChildren = new Set();
process.on('exit', () => { for (const c of liveChildren) { try { c.kill('SIGKILL'); } catch {} } });
export function trackChild(child) {
  liveChildren.add(child);
  child.on('exit', () => liveChildren.delete(child));
  return child;
}

export function freeTcpPort(host = '127.0.0.1') {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.unref();
    s.on('error', fail);
    s.listen(0, host, () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

export function freeUdpPort(host = '127.0.0.1') {
  return new Promise((ok, fail) => {
    const s = createSocket('udp4');
    s.on('error', fail);
    s.bind(0, host, () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

/**
 * A port free for both UDP and TCP on `host` (SIP listens on both). A UDP port the
 * kernel hands out comes from the ephemeral range, where outgoing TCP connections
 * take their source ports too: seen in CI, the server could not bind SIP over TCP.
 */
export async function freeUdpTcpPort(host = '127.0.0.1') {
  for (let i = 0; i < 50; i++) {
    const port = await freeUdpPort(host);
    const tcpFree = await new Promise((ok) => {
      const s = createServer();
      s.unref();
      s.once('error', () => ok(false));
      s.listen({ port, host, exclusive: true }, () => s.close(() => ok(true)));
    });
    if (tcpFree) return port;
  }
  throw new Error(`no port free for UDP and TCP on ${host} after 50 tries`);
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
/** A sleep that does not keep the process alive (for races against other events). */
export const sleepUnref = (ms) => new Promise((r) => setTimeout(r, ms).unref());

/** Keeps the last `max` lines of a stream. */
class Tail {
  constructor(max = 80) { this.max = max; this.lines = []; this.partial = ''; }
  push(chunk) {
    const parts = (this.partial + chunk.toString()).split('\n');
    this.partial = parts.pop();
    for (const l of parts) { this.lines.push(l); if (this.lines.length > this.max) this.lines.shift(); }
  }
  text() { return [...this.lines, this.partial].filter(Boolean).join('\n'); }
}

export class MediaMesh {
  /**
   * `secret: null` starts the server with its built-in development secret (no --secret).
   * `host`: the IPv4 address both listeners bind to (HTTP and media; the media one is
   * then the ICE candidate), loopback unless a test made another one (a veth).
   * `extraArgs`: more flags for every start.
   */
  constructor(name, { secret = 'e2e-secret-' + Math.random().toString(36).slice(2), host = '127.0.0.1', extraArgs = [] } = {}) {
    this.name = name;
    this.secret = secret;
    this.host = host;
    this.startArgs = extraArgs;
    this.tail = new Tail(120);
    this.proc = null;
    this.exited = null;
  }

  get base() { return `http://${this.host}:${this.httpPort}`; }
  /** `rtmp://HOST:PORT/live/KEY` of this server. */
  rtmpUrl(key) { return `rtmp://${this.host}:${this.rtmpPort}/live/${key}`; }

  /**
   * Spawns the server and waits (bounded) for GET /healthz == 200. `samePorts`: a
   * restart on the ports of the previous run, its log appended to the same file.
   */
  async start(opts = {}) {
    // Ports are checked free and then bound by the server: another process can take
    // one in between. Fresh ports are chosen again (twice at most) when that happened.
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.startOnce(opts);
      } catch (e) {
        const restart = opts.samePorts && this.httpPort !== undefined;
        if (restart || attempt >= 3 || !this.exited || !/Address already in use/.test(this.describe())) throw e;
        console.log(`# ${this.name}: a port was taken before the server bound it; starting again on other ports`);
        this.httpPort = undefined;
        this.tail = new Tail(120);
      }
    }
  }

  async startOnce({ timeoutMs = 20000, extraArgs = [], samePorts = false } = {}) {
    if (!existsSync(MEDIAMESH_BIN)) {
      throw new Error(`mediamesh binary not found at ${MEDIAMESH_BIN} ` +
        '(build it with `cargo build`, or set MEDIAMESH_BIN)');
    }
    const restart = samePorts && this.httpPort !== undefined;
    if (!restart) {
      this.httpPort = await freeTcpPort(this.host);
      this.mediaPort = await freeUdpPort(this.host);
      this.rtmpPort = await freeTcpPort(this.host);
      this.sipPort = await freeUdpTcpPort(this.host);
    }
    this.exited = null;
    mkdirSync(LOG_DIR, { recursive: true });
    this.logPath = join(LOG_DIR, `${this.name}.mediamesh.log`);
    const logFile = createWriteStream(this.logPath, { flags: restart ? 'a' : 'w' });
    if (restart) {
      const mark = `===== restarted on the same ports at ${new Date().toISOString()} =====\n`;
      logFile.write('\n' + mark);
      this.tail.push(mark);
    }
    const args = ['--http-listen', `${this.host}:${this.httpPort}`,
      '--media-listen', `${this.host}:${this.mediaPort}`,
      '--rtmp-listen', `${this.host}:${this.rtmpPort}`,
      '--sip-listen', `${this.host}:${this.sipPort}`,
      ...(this.secret ? ['--secret', this.secret] : []), ...(this.startArgs || []), ...extraArgs];
    this.cmdline = `${MEDIAMESH_BIN} ${args.join(' ')}`;
    this.proc = spawn(MEDIAMESH_BIN, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      // No inherited MEDIAMESH_* settings: each test says what it runs with.
      env: { RUST_BACKTRACE: '1', ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('MEDIAMESH_'))) },
    });
    trackChild(this.proc);
    const onData = (d) => { this.tail.push(d); logFile.write(d); };
    this.proc.stdout.on('data', onData);
    this.proc.stderr.on('data', onData);
    this.exitPromise = new Promise((r) => this.proc.on('exit', (code, signal) => {
      this.exited = { code, signal }; logFile.end(); r(this.exited);
    }));
    this.proc.on('error', (e) => { this.tail.push(`spawn error: ${e.message}\n`); });

    const deadline = Date.now() + timeoutMs;
    let last = 'no answer';
    while (Date.now() < deadline) {
      if (this.exited) {
        throw new Error(`mediamesh exited before it was ready (${JSON.stringify(this.exited)})` + this.describe());
      }
      try {
        const r = await fetch(`${this.base}/healthz`, { signal: AbortSignal.timeout(1000) });
        if (r.status === 200) return this;
        last = `status ${r.status}`;
      } catch (e) { last = e.cause?.code || e.message; }
      await sleep(100);
    }
    throw new Error(`mediamesh not ready: GET /healthz gave ${last} for ${timeoutMs} ms` + this.describe());
  }

  /** Text appended to failure messages: command line and the server's log tail. */
  describe() {
    const t = this.tail.text();
    return `\n--- mediamesh: ${this.cmdline || '(not started)'}` +
      (this.exited ? `\n--- exited: ${JSON.stringify(this.exited)}` : '') +
      `\n--- stderr tail (full log: ${this.logPath}):\n${t || '(empty)'}\n--- end of mediamesh stderr`;
  }

  async token(kind, room, peer, ttl = 3600) {
    const r = await fetch(`${this.base}/token/${kind}`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${this.secret}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ room, peer, ttl }),
      signal: AbortSignal.timeout(5000),
    });
    const text = await r.text();
    let body;
    try { body = JSON.parse(text); } catch { body = null; }
    if (r.status !== 200 || !body?.status || typeof body?.data?.token !== 'string') {
      throw new Error(`POST /token/${kind} {"room":"${room}","peer":"${peer}"} -> ${r.status} ${text.slice(0, 300)}` + this.describe());
    }
    return body.data.token;
  }

  async stop() {
    if (!this.proc || this.exited) return;
    this.proc.kill('SIGTERM');
    const t = await Promise.race([this.exitPromise, sleepUnref(3000).then(() => null)]);
    if (!t) { this.proc.kill('SIGKILL'); await Promise.race([this.exitPromise, sleepUnref(2000)]); }
  }
}

/** Wraps an async fn so that any error carries the server's log tail. */
export async function withServerContext(server, fn) {
  try { return await fn(); } catch (e) {
    if (server && !String(e.message).includes('--- end of mediamesh stderr')) {
      const old = e.message;
      e.message += server.describe();
      // The test reporter prints `stack`, captured at construction: for an
      // AssertionError it does not follow `message`, so patch it too.
      if (typeof e.stack === 'string' && old && e.stack.includes(old) && !e.stack.includes('--- end of mediamesh stderr')) {
        e.stack = e.stack.replace(old, () => e.message);
      }
    }
    throw e;
  }
}
