// MediaMesh single-node measurement with real browsers: one Chromium publisher
// (camera + microphone, fake devices) and N Chromium WHEP viewers on one node.
// Prints, per viewer, the time from the WHEP POST to the first decoded frame,
// then the server's CPU (from /proc/PID/stat) and RSS over a steady window.
//
//   node bench/single-node.mjs [--viewers 2] [--seconds 30] [--width 640 --height 480]
//
// MEDIAMESH_BIN picks the server binary (default target/release/mediamesh).
// Uses the e2e harness in tests/e2e (run scripts/install-test-deps.sh first).
import { readFileSync } from 'node:fs';
import { resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
process.env.MEDIAMESH_BIN ||= resolve(here, '..', 'target', 'release', 'mediamesh');
const e2e = resolve(here, '..', 'tests', 'e2e', 'lib');
const { MediaMesh, sleep } = await import(`${e2e}/server.js`);
const { startStaticServer } = await import(`${e2e}/static.js`);
const { launchBrowser, newPage } = await import(`${e2e}/browser.js`);
const { waitFor, statsOf } = await import(`${e2e}/media.js`);

const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const viewers = arg('viewers', 2);
const seconds = arg('seconds', 30);
const width = arg('width', 640);
const height = arg('height', 480);

const TICK = 100; // USER_HZ on Linux
function cpuSeconds(pid) {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(rest[11]) + Number(rest[12])) / TICK; // utime + stime
}
function rssMiB(pid) {
  const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+) kB/);
  return m ? Number(m[1]) / 1024 : NaN;
}
async function health(server) {
  return (await fetch(`${server.base}/healthz`)).json();
}

const web = await startStaticServer();
const browser = await launchBrowser();
const server = new MediaMesh('bench-single-node');
const result = { viewers, seconds, width, height, first_frame_ms: [] };
try {
  await server.start();
  const pid = server.proc.pid;
  const open = async (label) => {
    const p = await newPage(browser, label);
    await p.goto(`${web.base}/harness.html`);
    await p.waitForFunction(() => window.mm?.ready === true);
    return p;
  };
  const pub = await open('publisher');
  const tok = await server.token('whip', 'bench', 'publisher');
  await pub.evaluate((o) => window.mm.publish(o), { name: 'p', endpoint: `${server.base}/whip/endpoint`, token: tok, width, height, fps: 30 });
  await sleep(2000); // let the publisher's bandwidth estimate ramp up
  const pages = [];
  for (let i = 0; i < viewers; i++) {
    const page = await open(`viewer-${i}`);
    const t = await server.token('whep', 'bench', `viewer-${i}`);
    await page.evaluate((o) => window.mm.view(o), { name: 'v', endpoint: `${server.base}/whep/endpoint`, token: t, mode: 'library' });
    const s = await waitFor(`viewer ${i} first frame`, () => statsOf(page, 'v'), (s) => s.firstFrameMs !== null);
    result.first_frame_ms.push(s.firstFrameMs);
    pages.push(page);
  }
  await sleep(3000);
  const c0 = cpuSeconds(pid); const h0 = await health(server); const t0 = Date.now();
  await sleep(seconds * 1000);
  const c1 = cpuSeconds(pid); const h1 = await health(server); const t1 = Date.now();
  const wall = (t1 - t0) / 1000;
  const vstats = await Promise.all(pages.map((p) => statsOf(p, 'v')));
  result.server_cpu_percent = +(100 * (c1 - c0) / wall).toFixed(2);
  result.server_rss_mib = +rssMiB(pid).toFixed(1);
  result.datagrams_in_per_s = Math.round((h1.packets_in - h0.packets_in) / wall);
  result.datagrams_out_per_s = Math.round((h1.packets_out - h0.packets_out) / wall);
  result.cpu_us_per_datagram = +((c1 - c0) * 1e6 / ((h1.packets_in - h0.packets_in) + (h1.packets_out - h0.packets_out))).toFixed(1);
  result.viewer_frame_width = vstats.map((s) => s.video?.frameWidth);
  result.viewer_packets_lost = vstats.map((s) => s.video?.packetsLost);
  console.log(`first decoded frame after WHEP POST (ms): ${result.first_frame_ms.join(', ')}`);
  console.log(`server CPU: ${result.server_cpu_percent}% of one core over ${wall.toFixed(1)} s; RSS ${result.server_rss_mib} MiB`);
  console.log(`datagrams/s in ${result.datagrams_in_per_s}, out ${result.datagrams_out_per_s}; ${result.cpu_us_per_datagram} µs CPU per datagram handled`);
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
  await web.close();
  await server.stop();
}
