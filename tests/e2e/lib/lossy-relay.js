// A lossy link on loopback, for a machine whose kernel has neither netem nor a tc
// action that drops at random (`tc ... netem` and `action gact ... random` both fail
// here). The relay stands between one WebRTC client and the server's media port: the
// client is given the relay's port as the server's ICE candidate (pages/simulcast.html
// via()), the relay forwards each client address through a socket of its own (to the
// server the client looks like a peer behind a NAT) and drops RTP/RTCP datagrams
// towards the client with probability `loss`. STUN and DTLS always pass, so only media
// suffers. The random draws come from a seeded generator: a run's pattern repeats.
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
  /** Forwards to `target` ({host, port}); `loss` is the drop probability towards the client. */
  constructor({ host = '127.0.0.1', target, loss = 0, seed = 1 }) {
    Object.assign(this, { host, target, loss });
    this.random = prng(seed);
    this.peers = new Map();
    this.counts = { up: 0, down: 0, dropped: 0 };
  }

  setLoss(p) { this.loss = p; }

  async start() {
    this.udp = dgram.createSocket('udp4');
    this.udp.on('message', (msg, from) => {
      const key = `${from.address}:${from.port}`;
      let s = this.peers.get(key);
      if (!s) {
        s = dgram.createSocket('udp4');
        s.on('message', (reply) => {
          if (isRtp(reply) && this.random() < this.loss) { this.counts.dropped += 1; return; }
          this.counts.down += 1;
          this.udp.send(reply, from.port, from.address);
        });
        s.on('error', () => {});
        this.peers.set(key, s);
      }
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
