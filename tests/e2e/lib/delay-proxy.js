// A link with a delay, for cluster tests on a machine whose kernel has no netem qdisc
// (`tc qdisc ... netem` -> "Specified qdisc kind is unknown" on this project's
// machines). One proxy stands for one cluster link: TCP (the zenoh link) and UDP (the
// RTT echo that nodes answer on the same port) are both forwarded to `target`, each
// chunk or datagram held `delayMs` in each direction. setDelay() changes it at run
// time; TCP chunks keep their order across a change (a chunk never leaves before the
// one queued ahead of it). Everything stays on loopback.
import net from 'node:net';
import dgram from 'node:dgram';

export class DelayProxy {
  /** Listens on `host:port` (TCP and UDP), forwards to `target` ({host, port}). */
  constructor({ host, port, target, delayMs = 0 }) {
    Object.assign(this, { host, port, target, delayMs });
    this.sockets = new Set();
    this.udpPeers = new Map();
    this.bytes = 0;
  }

  setDelay(ms) { this.delayMs = ms; }

  /** Runs `send` after the delay, never before what was queued ahead of it on `lane`. */
  later(lane, send) {
    const at = Math.max(Date.now() + this.delayMs, lane.last || 0);
    lane.last = at;
    setTimeout(send, at - Date.now());
  }

  async start() {
    this.tcp = net.createServer((client) => {
      const upstream = net.connect(this.target.port, this.target.host);
      const up = {}; const down = {};
      this.sockets.add(client); this.sockets.add(upstream);
      client.on('data', (d) => { this.bytes += d.length; this.later(up, () => upstream.writable && upstream.write(d)); });
      upstream.on('data', (d) => { this.bytes += d.length; this.later(down, () => client.writable && client.write(d)); });
      const close = () => { this.later(up, () => upstream.destroy()); this.later(down, () => client.destroy()); };
      client.on('close', close); upstream.on('close', close);
      client.on('error', () => {}); upstream.on('error', () => {});
    });
    await new Promise((resolve, reject) => {
      this.tcp.once('error', reject);
      this.tcp.listen(this.port, this.host, resolve);
    });
    this.udp = dgram.createSocket('udp4');
    this.udp.on('message', (msg, from) => {
      const key = `${from.address}:${from.port}`;
      let peer = this.udpPeers.get(key);
      if (!peer) {
        const s = dgram.createSocket('udp4');
        peer = { s, up: {}, down: {} };
        s.on('message', (reply) => this.later(peer.down, () => this.udp.send(reply, from.port, from.address)));
        s.on('error', () => {});
        this.udpPeers.set(key, peer);
      }
      this.later(peer.up, () => peer.s.send(msg, this.target.port, this.target.host));
    });
    await new Promise((resolve, reject) => {
      this.udp.once('error', reject);
      this.udp.bind(this.port, this.host, resolve);
    });
    return this;
  }

  stop() {
    for (const s of this.sockets) s.destroy();
    for (const p of this.udpPeers.values()) p.s.close();
    this.tcp?.close();
    try { this.udp?.close(); } catch {}
  }
}
