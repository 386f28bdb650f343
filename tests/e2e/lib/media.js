// Bounded waits on getStats() numbers of harness sessions in Chromium pages.
import { sleep } from './server.js';

export const WAIT_MS = 20000;

/**
 * Polls `probe()` until `pred(value)` holds, at most `timeoutMs`.
 * On timeout throws with `what`, the last value, and `context()` text.
 */
export async function waitFor(what, probe, pred, { timeoutMs = WAIT_MS, intervalMs = 250, context = async () => '' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  let lastErr;
  while (true) {
    try {
      last = await probe();
      lastErr = undefined;
      if (pred(last)) return last;
    } catch (e) { lastErr = e; }
    if (Date.now() >= deadline) break;
    await sleep(intervalMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last value: ${JSON.stringify(last)}` +
    (lastErr ? `; last error: ${lastErr.message}` : '') + await context());
}

export const statsOf = (page, name) => page.evaluate((n) => window.mm.stats(n), name);

/** Text describing a harness session for failure messages. */
export async function sessionContext(page, name, { sdp = false, pageLog = true } = {}) {
  let d;
  try { d = await page.evaluate((n) => window.mm.debug(n), name); } catch (e) { return `\n--- ${page.label}/${name}: debug failed: ${e.message}`; }
  let s = `\n--- ${page.label}/${name} states: ${d.states.join(' | ') || '(none)'}` +
    `\n--- ${page.label} HTTP: ${d.http.map((h) => `${h.method} ${h.url.replace(/^https?:\/\/[^/]+/, '')} -> ${h.status ?? h.error}` +
      (h.body ? ` "${h.body}"` : '')).join(' ; ') || '(none)'}`;
  if (sdp) s += `\n--- ${name} local SDP:\n${d.local}\n--- ${name} remote SDP:\n${d.remote}`;
  return s + (pageLog ? page.describe() : '');
}

/**
 * Asserts that a viewing session decodes video (framesDecoded grows by `minFrames`)
 * and audio (totalSamplesReceived grows by `minSamples`), optionally at `width`.
 */
export async function expectFlowing(page, name, { minFrames = 10, minSamples = 24000, width = null, context = async () => '', timeoutMs = WAIT_MS } = {}) {
  const ctx = async () => (await sessionContext(page, name)) + (await context());
  const start = await statsOf(page, name);
  const f0 = start?.video?.framesDecoded ?? 0;
  const s0 = start?.audio?.totalSamplesReceived ?? 0;
  const v = await waitFor(`${page.label}/${name}: video framesDecoded to rise by ${minFrames} from ${f0}` + (width ? ` at frameWidth ${width}` : ''),
    () => statsOf(page, name),
    (st) => st?.video && st.video.framesDecoded >= f0 + minFrames && (!width || st.video.frameWidth === width),
    { timeoutMs, context: ctx });
  const a = await waitFor(`${page.label}/${name}: audio totalSamplesReceived to rise by ${minSamples} from ${s0}`,
    () => statsOf(page, name),
    (st) => st?.audio && st.audio.totalSamplesReceived >= s0 + minSamples,
    { timeoutMs, context: ctx });
  return { video: v.video, audio: a.audio, conn: a.conn, firstFrameMs: a.firstFrameMs };
}
