// baresip (Debian's baresip-core) as a phone: a config directory per instance, its
// microphone a WAV file (aufile), what it receives dumped to WAV files (sndfile), and
// commands and events over its ctrl_tcp socket (netstrings of JSON).
import { mkdtempSync, writeFileSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import { startProcess } from './proc.js';
import { freeTcpPort, freeUdpTcpPort, sleepUnref as sleep } from './server.js';

/** A mono 16-bit WAV of a sine (`freq` Hz, `seconds`, amplitude `gain` of full scale). */
export function sineWav(path, { freq, seconds = 30, rate = 8000, gain = 0.3 }) {
  const n = Math.round(seconds * rate);
  const b = Buffer.alloc(44 + 2 * n);
  b.write('RIFF', 0); b.writeUInt32LE(36 + 2 * n, 4); b.write('WAVE', 8);
  b.write('fmt ', 12); b.writeUInt32LE(16, 16); b.writeUInt16LE(1, 20); b.writeUInt16LE(1, 22);
  b.writeUInt32LE(rate, 24); b.writeUInt32LE(2 * rate, 28); b.writeUInt16LE(2, 32); b.writeUInt16LE(16, 34);
  b.write('data', 36); b.writeUInt32LE(2 * n, 40);
  for (let i = 0; i < n; i++) b.writeInt16LE(Math.round(gain * 32767 * Math.sin(2 * Math.PI * freq * i / rate)), 44 + 2 * i);
  writeFileSync(path, b);
}

/** The samples (floats, -1..1) and rate of a 16-bit PCM mono WAV file. */
export function readWav(path) {
  const b = readFileSync(path);
  if (b.toString('ascii', 0, 4) !== 'RIFF' || b.toString('ascii', 8, 12) !== 'WAVE') throw new Error(`${path}: not a WAV file`);
  let off = 12; let rate = 0; let bits = 0; let channels = 0;
  while (off + 8 <= b.length) {
    const id = b.toString('ascii', off, off + 4);
    let size = b.readUInt32LE(off + 4);
    if (id === 'fmt ') { channels = b.readUInt16LE(off + 10); rate = b.readUInt32LE(off + 12); bits = b.readUInt16LE(off + 22); }
    if (id === 'data') {
      if (bits !== 16 || channels !== 1) throw new Error(`${path}: ${bits}-bit ${channels}-channel audio (expected 16-bit mono)`);
      // A recorder killed before it finished leaves the size unset.
      if (size === 0 || off + 8 + size > b.length) size = b.length - off - 8;
      const n = Math.floor(size / 2);
      const samples = new Float32Array(n);
      for (let i = 0; i < n; i++) samples[i] = b.readInt16LE(off + 8 + 2 * i) / 32768;
      return { rate, samples };
    }
    off += 8 + size + (size & 1);
  }
  throw new Error(`${path}: no data chunk`);
}

/** The share of `samples`' energy at `freq` (Goertzel over the whole span, 0..1). */
export function toneShare(samples, rate, freq) {
  const w = 2 * Math.PI * freq / rate;
  const c = 2 * Math.cos(w);
  let s1 = 0; let s2 = 0; let total = 0;
  for (const x of samples) {
    const s0 = x + c * s1 - s2;
    s2 = s1; s1 = s0;
    total += x * x;
  }
  const power = s1 * s1 + s2 * s2 - c * s1 * s2;
  // A pure sine of amplitude A over N samples: power = (A N / 2)^2, energy = A^2 N / 2.
  return total > 0 ? (2 * power / samples.length) / total : 0;
}

/**
 * A baresip phone. `account`: the account line (e.g. `<sip:phone@127.0.0.1>;auth_pass=pw`);
 * `wav`: its microphone; `cafile`: certificates it trusts for SIP over TLS; `certificate`:
 * a PEM file with its own certificate and key, which makes it take calls over TLS too (on
 * `tlsPort`). `sipPort` is its UDP and TCP port. `events` collects ctrl_tcp events;
 * `command(cmd, params)` sends one.
 */
export async function startBaresip(label, { account, wav, host = '127.0.0.1', cafile = null, certificate = null }) {
  const dir = mkdtempSync(join(tmpdir(), `baresip-${label}-`));
  const sipPort = await freeUdpTcpPort(host);
  const ctrlPort = await freeTcpPort(host);
  const rtpBase = 20000 + Math.floor(Math.random() * 200) * 100;
  writeFileSync(join(dir, 'config'), [
    'poll_method epoll',
    `sip_listen ${host}:${sipPort}`,
    // Media and SIP on loopback only (baresip otherwise picks the first interface).
    `net_interface ${host}`,
    'audio_player aubridge,nil',
    `audio_source aufile,${wav}`,
    'audio_alert aubridge,nil',
    `rtp_ports ${rtpBase}-${rtpBase + 99}`,
    ...(cafile ? [`sip_cafile ${cafile}`] : []),
    ...(certificate ? [`sip_certificate ${certificate}`] : []),
    'module_path /usr/lib/baresip/modules',
    'module g711.so', 'module aufile.so', 'module aubridge.so', 'module sndfile.so',
    'module_app account.so', 'module_app menu.so', 'module_app ctrl_tcp.so',
    `ctrl_tcp_listen ${host}:${ctrlPort}`,
    `snd_path ${dir}`,
    '',
  ].join('\n'));
  writeFileSync(join(dir, 'accounts'), `${account}\n`);
  const proc = startProcess('baresip', ['-f', dir], { label: `baresip ${label}` });
  const events = [];
  let sock = null;
  for (let i = 0; i < 50 && !sock; i++) {
    sock = await new Promise((resolve) => {
      const s = net.connect(ctrlPort, host, () => resolve(s));
      s.on('error', () => resolve(null));
    });
    if (!sock) await sleep(100);
  }
  if (!sock) {
    await proc.stop('SIGKILL', 500);
    throw new Error(`baresip ${label}: its ctrl_tcp socket never opened` + proc.describe());
  }
  let buf = '';
  sock.on('data', (d) => {
    buf += d.toString();
    for (;;) {
      const colon = buf.indexOf(':');
      if (colon < 0) break;
      const len = Number(buf.slice(0, colon));
      if (buf.length < colon + 1 + len + 1) break;
      const msg = buf.slice(colon + 1, colon + 1 + len);
      buf = buf.slice(colon + 2 + len);
      try { events.push({ at: Date.now(), ...JSON.parse(msg) }); } catch { /* not JSON */ }
    }
  });
  sock.on('error', () => {});
  let token = 0;
  return {
    dir, proc, events, sipPort, tlsPort: certificate ? sipPort + 1 : null,
    command(command, params = '') {
      const j = JSON.stringify({ command, params, token: `t${++token}` });
      sock.write(`${Buffer.byteLength(j)}:${j},`);
    },
    /** The first event of `type` (CALL_ESTABLISHED, CALL_CLOSED, ...) after `since`, or null. */
    event(type, since = 0) { return events.find((e) => e.type === type && e.at >= since) || null; },
    describe() {
      return proc.describe() + `\n--- baresip ${label} events:\n` + events.map((e) => JSON.stringify(e)).slice(-20).join('\n');
    },
    /** What it received (`dec`) or sent (`enc`) in its last call, from sndfile's dumps. */
    recorded(which) {
      const f = readdirSync(dir).filter((n) => n.startsWith('dump-') && n.endsWith(`-${which}.wav`)).sort().pop();
      if (!f) throw new Error(`baresip ${label}: no ${which} recording in ${dir}`);
      return readWav(join(dir, f));
    },
    async stop() {
      if (proc.child.exitCode === null) {
        this.command('quit');
        await Promise.race([proc.done, sleep(3000)]);
      }
      sock.destroy();
      return proc.stop('SIGKILL', 500);
    },
  };
}
