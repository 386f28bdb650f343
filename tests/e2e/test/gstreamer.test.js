// GStreamer webrtcbin (RSA DTLS certificate, AES-128-ICM SRTP) publishes
// videotestsrc VP8 + audiotestsrc Opus by WHIP; Chromium plays by WHEP.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { E2E_DIR } from '../lib/server.js';
import { useChromium } from '../lib/fixtures.js';
import { startProcess, requireFile, SYSTEM_PYTHON } from '../lib/proc.js';
import { waitFor, statsOf, sessionContext, expectFlowing } from '../lib/media.js';

const chromium = useChromium({ pages: true });

test('gstreamer: webrtcbin publishes VP8 + Opus by WHIP, Chromium plays by WHEP', { timeout: 180000 }, async () => {
  requireFile(SYSTEM_PYTHON, 'Debian python3 with gi is needed (scripts/install-test-deps.sh)');
  await chromium.withMediaMesh('gstreamer', {}, async (server, open) => {
    let gst = null;
    try {
      const room = 'room-gst';
      let publishing = false;
      gst = startProcess(SYSTEM_PYTHON, [join(E2E_DIR, 'python', 'gst_whip.py'), '--base', server.base,
        '--secret', server.secret, '--room', room, '--timeout', '20', '--duration', '150'],
      { label: 'gst_whip.py', onLine: (l) => { if (l === 'PUBLISHING') publishing = true; } });
      const gstCtx = async () => gst.describe();
      await waitFor('gst_whip.py to print PUBLISHING (webrtcbin connection-state connected)',
        async () => ({ publishing, exited: gst.child.exitCode }),
        (s) => s.publishing || s.exited !== null, { context: gstCtx });
      assert.ok(publishing, `gst_whip.py exited (code ${gst.child.exitCode}) before it was connected` + gst.describe());
      await waitFor('gst_whip.py to report two outbound RTP streams (video, audio) with packets sent',
        async () => (gst.out.stdout.match(/^SENT .*$/gm) || []).pop() || '',
        (l) => { const m = /streams=2 packets=(\d+),(\d+)/.exec(l); return m && +m[1] > 20 && +m[2] > 20; },
        { context: gstCtx });

      const page = await open.harness('gst-viewer');
      const token = await server.token('whep', room, 'chromium-viewer');
      await page.evaluate((o) => window.mm.view(o), { name: 'V', endpoint: `${server.base}/whep/endpoint`, token, mode: 'library' })
        .catch(async (e) => { throw new Error(`WHEP view failed: ${e.message}` + await sessionContext(page, 'V', { sdp: true })); });
      const first = await waitFor('Chromium viewer first decoded frame of the GStreamer stream', () => statsOf(page, 'V'),
        (s) => s.firstFrameMs !== null, { context: async () => (await sessionContext(page, 'V')) + gst.describe() });
      console.log(`METRIC gst_whep_first_frame_ms=${first.firstFrameMs}`);
      await expectFlowing(page, 'V', { width: 320, minFrames: 15, context: gstCtx });

      await page.evaluate(() => window.mm.stop('V'));
      const r = await gst.stop('SIGINT', 8000);
      assert.equal(r.code, 0, `gst_whip.py exit code after SIGINT` + gst.describe());
      assert.match(r.stdout, /^DELETE 200$/m, 'gst_whip.py DELETE of its WHIP session -> 200' + gst.describe());
    } finally {
      if (gst) await gst.stop('SIGKILL', 2000);
    }
  });
});
