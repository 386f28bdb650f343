// A lossy link on loopback, for a machine whose kernel has neither netem nor a tc
// action that drops at random (`tc ... netem` and `action gact ... random` both fail
// here). The relay stands between one WebRTC client and the server's media port: the
// client is given the relay's port as the server's ICE candidate (pages/simulcast.html
// via()), the relay forwards each client address through a socket of its own (to the
// server the client looks like a peer behind a NAT) and drops RTP/RTCP datagrams
// towards the client (`down`) and from it (`up`) with the probabilities set. STUN and
// DTLS always pass, so only media suffers. The random draws come from a seeded
// generator: a run's pattern repeats.
import dgram from 'node:dgram';

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

export class LossyRelay {
  /** Forwards to `target` ({host, port}), without loss until setLoss(). */
  constructor({ host = '127.0.0.1', target, seed = 1 }) {
    Object.assign(this, { host, target });
    this.loss = { down: 0, up: 0 };
    this.random = prng(seed);
    this.peers = new Map();
    this.counts = { up: 0, down: 0, droppedDown: 0, droppedUp: 0 };
  }

  /** Drop probabilities towards the client (`down`) and from it (`up`). */
  setLoss({ down = 0, up = 0 }) { this.loss = { down, up }; }

  async start() {
    this.udp = dgram.createSocket('udp4');
    this.udp.on('message', (msg, from) => {
      const key = `${from.address}:${from.port}`;
      let s = this.peers.get(key);
      if (!s) {
        s = dgram.createSocket('udp4');
        s.on('message', (reply) => {
          if (isRtp(reply) && this.random() < this.loss.down) { this.counts.droppedDown += 1; return; }
          this.counts.down += 1;
          this.udp.send(reply, from.port, from.address);
        });
        s.on('error', () => {});
        this.peers.set(key, s);
      }
      if (isRtp(msg) && this.random() < this.loss.up) { this.counts.droppedUp += 1; return; }
      this.counts.up += 1;
      s.send(msg, this.target.port, this.target.host);
    });
    this.udp.on('error', () => {});
    await new Promise((resolve, reject) => {
      this.udp.once('error', reject);
      this.udp.bind(0, this.host, resolve);
    });
    this.port = this.udp.address().port;
    return this;
  }

  stop() {
    for (const s of this.peers.values()) s.close();
    try { this.udp?.close(); } catch {}
  }
}
