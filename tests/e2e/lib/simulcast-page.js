// Helpers for subscriber pages of pages/simulcast.html (`window.sc`), whose inbound-rtp
// samples (every 250 ms, wall clock) the tests read back.
import { sleep } from './server.js';

/**
 * Polls (until `since + timeoutMs`) for the first sample from `since` at frameWidth
 * `width` whose last second was all at that width with at least `minFps` decoded
 * frames per second; null when none came.
 */
export async function fullRateAt(page, width, minFps, since, timeoutMs) {
  const deadline = since + timeoutMs;
  while (true) {
    const s = (await page.evaluate((x) => window.sc.samples(x), since - 1500)).filter((x) => x.inbound);
    const hit = s.find((x, i) => {
      if (x.at < since || x.at > deadline || x.frameWidth !== width) return false;
      let j = i;
      while (j > 0 && s[j - 1].at > x.at - 1000) j -= 1;
      const w = s[j - 1];
      return w && s.slice(j, i + 1).every((y) => y.frameWidth === width) && ((x.framesDecoded - w.framesDecoded) * 1000) / (x.at - w.at) >= minFps;
    });
    if (hit || Date.now() > deadline + 300) return hit ?? null;
    await sleep(200);
  }
}

/**
 * The frame rate a publisher's `pubStats()` shows for its top stream (rid "2", or
 * the one SVC stream when `svc`), at most `cameraFps`: framesPerSecond can read
 * above the camera's rate for a moment (CI read 27 at 20).
 */
export function topFps(stats, svc, cameraFps) {
  const x = svc ? Object.values(stats.rids)[0] : stats.rids['2'];
  return Math.min(x?.fps || cameraFps, cameraFps);
}
