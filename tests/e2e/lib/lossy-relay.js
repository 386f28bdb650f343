// A lossy link on loopback, for a machine whose kernel has neither netem nor a tc
// action that drops at random (`tc ... netem` and `action gact ... random` both fail
// here). The relay stands between one WebRTC client and the server's media port: the
// client is given the relay's port as the server's ICE candidate (pages/simulcast.html
// via()), the relay forwards each client address through a socket of its own (to the
// server the client looks like a peer behind a NAT) and drops RTP/RTCP datagrams
// towards the client (`down`) and from it (`up`) with the probabilities set. STUN and
// DTLS always pass, so only media suffers. The random draws come from a seeded
// generator: a run's pattern repeats.
//
// The relay runs in a worker thread with an event loop of its own: in the test's
// thread, Playwright calls and stats polling stall the loop for up to ~110 ms
// (measured with monitorEventLoopDelay), and a relay there delays packets by as much,
// which a sender's delay-based bandwidth estimate reads as congestion. Loss settings
// and counters live in shared memory, so setLoss() takes effect at once and `counts`
// reads without a round trip.
import dgram from 'node:dgram';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';

/** mulberry32: a small seeded PRNG, uniform in [0, 1). */
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** RTP and RTCP start with version 2 (first byte 128-191, RFC 7983). */
const isRtp = (d) => d.length > 0 && d[0] >= 128 && d[0] <= 191;

// Shared memory layout: loss probabilities (Float64: down, up) and counters (Int32).
const LOSS_DOWN = 0, LOSS_UP = 1;
const COUNTS = ['up', 'down', 'droppedDown', 'droppedUp'];

export class LossyRelay {
  /** Forwards to `target` ({host, port}), without loss until setLoss(). */
  constructor({ host = '127.0.0.1', target, seed = 1 }) {
    Object.assign(this, { host, target, seed });
    this.loss = new Float64Array(new SharedArrayBuffer(2 * 8));
    this.countArray = new Int32Array(new SharedArrayBuffer(COUNTS.length * 4));
  }

  /** Drop probabilities towards the client (`down`) and from it (`up`). */
  setLoss({ down = 0, up = 0 }) {
    this.loss[LOSS_DOWN] = down;
    this.loss[LOSS_UP] = up;
  }

  /** Datagrams forwarded and dropped each way so far. */
  get counts() {
    return Object.fromEntries(COUNTS.map((k, i) => [k, Atomics.load(this.countArray, i)]));
  }

  async start() {
    this.worker = new Worker(new URL(import.meta.url), {
      workerData: { host: this.host, target: this.target, seed: this.seed, loss: this.loss, counts: this.countArray },
    });
    this.port = await new Promise((resolve, reject) => {
      this.worker.once('message', (m) => (m.error ? reject(new Error(`lossy relay: ${m.error}`)) : resolve(m.port)));
      this.worker.once('error', reject);
    });
    return this;
  }

  stop() {
    this.worker?.terminate();
    this.worker = undefined;
  }
}

/** The worker: one socket for the clients, one per client towards the target. */
function relay({ host, target, seed, loss, counts }) {
  const random = prng(seed);
  const count = (k) => Atomics.add(counts, COUNTS.indexOf(k), 1);
  const drop = (d, p) => isRtp(d) && p > 0 && random() < p;
  const peers = new Map();
  const udp = dgram.createSocket('udp4');
  udp.on('message', (msg, from) => {
    const key = `${from.address}:${from.port}`;
    let s = peers.get(key);
    if (!s) {
      s = dgram.createSocket('udp4');
      s.on('message', (reply) => {
        if (drop(reply, loss[LOSS_DOWN])) { count('droppedDown'); return; }
        count('down');
        udp.send(reply, from.port, from.address);
      });
      s.on('error', () => {});
      peers.set(key, s);
    }
    if (drop(msg, loss[LOSS_UP])) { count('droppedUp'); return; }
    count('up');
    s.send(msg, target.port, target.host);
  });
  udp.once('error', (e) => parentPort.postMessage({ error: e.message }));
  udp.bind(0, host, () => {
    udp.on('error', () => {});
    parentPort.postMessage({ port: udp.address().port });
  });
}

if (!isMainThread && workerData?.counts) relay(workerData);
