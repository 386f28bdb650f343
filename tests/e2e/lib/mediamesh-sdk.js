// Helpers for pages/mediamesh.html: room peers written with our own SDK (sdk/, served
// from sdk/dist at /sdk/ by lib/static.js).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_DIR } from './server.js';
import { waitFor, WAIT_MS } from './media.js';

export const OUR_BUNDLE = join(REPO_DIR, 'sdk', 'dist', 'mediamesh-sdk.js');

/** Throws unless sdk/dist/mediamesh-sdk.js exists (scripts/install-test-deps.sh builds it). */
export function ensureOurBundle() {
  if (!existsSync(OUR_BUNDLE)) throw new Error(`${OUR_BUNDLE} not found: run scripts/install-test-deps.sh (npm ci && npm run build in sdk/)`);
}

export const mmStats = (page) => page.evaluate(() => window.mm2.stats());

/** Opens pages/mediamesh.html and waits for `window.mm2`. */
export async function openOurPage(open, web, label) {
  const page = await open.page(label, `${web.base}/mediamesh.html`);
  await page.waitForFunction(() => window.mm2?.ready === true, null, { timeout: 20000 })
    .catch((e) => { throw new Error(`${label}: mediamesh.html did not load /sdk/mediamesh-sdk.js: ${e.message}` + page.describe()); });
  return page;
}

const short = (u) => u.replace(/^https?:\/\/[^/]+/, '');

/** Text describing one of our SDK's peers for failure messages. */
export async function mmContext(page, { sdp = false, pageLog = true, events = 60 } = {}) {
  let d;
  try { d = await page.evaluate(() => window.mm2.debug()); } catch (e) { return `\n--- ${page.label}: debug failed: ${e.message}` + (pageLog ? page.describe() : ''); }
  const kv = (o) => Object.entries(o).filter(([k]) => k !== 't' && k !== 'type').map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(' ');
  const http = [];
  for (const h of d.http) {
    const line = `${h.method} ${short(h.url)} -> ${h.status ?? h.error ?? 'pending'}${h.body ? ` "${h.body}"` : ''}`;
    const last = http[http.length - 1];
    if (last && last.line === line) last.n += 1; else http.push({ line, n: 1 });
  }
  let s = `\n--- ${page.label} (@mediamesh/sdk): peer=${d.peer} state=${d.state} conn_id=${JSON.stringify(d.connId)} ice_lite=${d.iceLite} pc=${JSON.stringify(d.pc)} negotiations=${JSON.stringify(d.negotiations)}` +
    `\n--- ${page.label} receivers: ${d.receivers.map((r) => `${r.name}(${r.kind}) <- ${r.source ? `${r.source.peer}/${r.source.track}` : '-'}`).join(' ; ') || '(none)'}` +
    `\n--- ${page.label} subscriptions: ${JSON.stringify(d.subs)} failed: ${JSON.stringify(d.subErr)}` +
    `\n--- ${page.label} HTTP: ${http.map((x) => x.line + (x.n > 1 ? ` (x${x.n})` : '')).join(' ; ') || '(none)'}` +
    `\n--- ${page.label} SDK events (last ${events}):\n${d.events.slice(-events).map((e) => `  ${e.t} ${e.type} ${kv(e)}`).join('\n') || '  (none)'}` +
    `\n--- ${page.label} RTCPeerConnection: ${d.states.join(' | ') || '(no state change)'}`;
  if (sdp) s += `\n--- ${page.label} local SDP:\n${d.local}\n--- ${page.label} remote SDP:\n${d.remote}`;
  return s + (pageLog ? page.describe() : '');
}

/**
 * Waits until subscription `key` ("peer/track") on `page` decodes: video framesDecoded
 * grows by `minFrames` (at `width` if given), audio totalSamplesReceived by `minSamples`.
 */
export async function expectSubReceiving(page, key, { what = '', width = null, minFrames = 10, minSamples = 24000, from = null, context = async () => '', timeoutMs = WAIT_MS } = {}) {
  const start = from || await mmStats(page);
  const r0 = start?.subs?.[key] || {};
  const label = `${page.label}/${key}${what ? ` (${what})` : ''}`;
  const ctx = async () => (await mmContext(page)) + (await context());
  if (r0.kind === 'video' || key.endsWith('video_main') || /\/video(#|$)/.test(key)) {
    const f0 = r0.framesDecoded ?? 0;
    return waitFor(`${label}: inbound-rtp framesDecoded to rise by ${minFrames} from ${f0}` + (width ? ` with frameWidth ${width}` : ''),
      async () => (await mmStats(page)).subs[key],
      (r) => r?.inbound && r.framesDecoded >= f0 + minFrames && (!width || r.frameWidth === width),
      { timeoutMs, context: ctx });
  }
  const s0 = r0.totalSamplesReceived ?? 0;
  return waitFor(`${label}: inbound-rtp totalSamplesReceived to rise by ${minSamples} from ${s0}`,
    async () => (await mmStats(page)).subs[key],
    (r) => r?.inbound && r.totalSamplesReceived >= s0 + minSamples,
    { timeoutMs, context: ctx });
}
