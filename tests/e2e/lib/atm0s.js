// Helpers for pages/atm0s.html: room peers written with the published atm0s SDK.
import { waitFor, WAIT_MS } from './media.js';

export const sdkStats = (page) => page.evaluate(() => window.sdk.stats());
export const sdkDebug = (page) => page.evaluate(() => window.sdk.debug());
export const sdkNegotiation = (page) => page.evaluate(() => window.sdk.negotiation());

/** Opens pages/atm0s.html (needs useChromium({ pages: true })) and waits for `window.sdk`. */
export async function openSdkPage(open, web, label) {
  const page = await open.page(label, `${web.base}/atm0s.html`);
  await page.waitForFunction(() => window.sdk?.ready === true, null, { timeout: 20000 })
    .catch((e) => { throw new Error(`${label}: atm0s.html did not load the SDK bundle: ${e.message}` + page.describe()); });
  return page;
}

const short = (u) => u.replace(/^https?:\/\/[^/]+/, '');

// The SDK's HTTP exchanges, repeats (one trickle POST per candidate) folded.
function httpSummary(http) {
  const out = [];
  for (const h of http) {
    const line = `${h.method} ${short(h.url)} -> ${h.status ?? h.error ?? 'pending'}` +
      (h.url.endsWith('/ice-candidate') ? '' : ` (req ${h.reqBytes} B, res ${h.resBytes ?? '-'} B)`) + (h.body ? ` "${h.body}"` : '');
    const last = out[out.length - 1];
    if (last && last.line === line) last.n += 1; else out.push({ line, n: 1 });
  }
  return out.map((x) => x.line + (x.n > 1 ? ` (x${x.n})` : '')).join(' ; ') || '(none)';
}

/** Text describing one SDK peer for failure messages. */
export async function sdkContext(page, { sdp = false, pageLog = true, events = 60 } = {}) {
  let d;
  try { d = await sdkDebug(page); } catch (e) { return `\n--- ${page.label}: debug failed: ${e.message}` + (pageLog ? page.describe() : ''); }
  const kv = (o) => Object.entries(o).filter(([k]) => k !== 't' && k !== 'type').map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(' ');
  let s = `\n--- ${page.label}: peer=${d.peer} session=${d.state} conn_id=${JSON.stringify(d.connId)} ice_lite=${d.iceLite} ` +
    `pc=${JSON.stringify(d.pc)} datachannel open=${d.dcOpen} negotiationneeded=${d.negotiationneeded}` +
    `\n--- ${page.label} receivers: ${Object.entries(d.assign).map(([n, a]) => `${n} <- ${a.peer}/${a.track} (${a.status}${a.error ? ': ' + a.error : ''})`).join(' ; ') || '(none attached)'}` +
    `\n--- ${page.label} HTTP: ${httpSummary(d.http)}` +
    `\n--- ${page.label} SDK events (last ${events}):\n${d.events.slice(-events).map((e) => `  ${e.t} ${e.type} ${kv(e)}`).join('\n') || '  (none)'}` +
    `\n--- ${page.label} RTCPeerConnection: ${d.states.join(' | ') || '(no state change)'}; signaling: ${d.signaling.join(', ') || '(none)'}`;
  if (sdp) s += `\n--- ${page.label} local SDP:\n${d.local}\n--- ${page.label} remote SDP:\n${d.remote}`;
  return s + (pageLog ? page.describe() : '');
}

/**
 * Waits until receiver `name` on `page` decodes: video framesDecoded grows by
 * `minFrames` (at frameWidth `width` if given), audio totalSamplesReceived by `minSamples`.
 * `from` is a stats snapshot to count from (default: now).
 */
export async function expectReceiving(page, name, { what = '', width = null, minFrames = 10, minSamples = 24000, from = null, context = async () => '', timeoutMs = WAIT_MS } = {}) {
  const start = from || await sdkStats(page);
  const r0 = start?.receivers?.[name] || {};
  const video = r0.kind === 'video';
  const label = `${page.label}/${name}${what ? ` (${what})` : ''}`;
  if (video) {
    const f0 = r0.framesDecoded ?? 0;
    return (await waitFor(`${label}: inbound-rtp framesDecoded to rise by ${minFrames} from ${f0}` + (width ? ` with frameWidth ${width}` : ''),
      async () => (await sdkStats(page)).receivers[name],
      (r) => r?.inbound && r.framesDecoded >= f0 + minFrames && (!width || r.frameWidth === width),
      { timeoutMs, context: async () => (await sdkContext(page)) + (await context()) }));
  }
  const s0 = r0.totalSamplesReceived ?? 0;
  return (await waitFor(`${label}: inbound-rtp totalSamplesReceived to rise by ${minSamples} from ${s0}`,
    async () => (await sdkStats(page)).receivers[name],
    (r) => r?.inbound && r.totalSamplesReceived >= s0 + minSamples,
    { timeoutMs, context: async () => (await sdkContext(page)) + (await context()) }));
}
