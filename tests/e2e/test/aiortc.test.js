// aiortc (an independent WebRTC stack) publishes by WHIP and plays by WHEP.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { E2E_DIR } from '../lib/server.js';
import { withMediaMesh } from '../lib/fixtures.js';
import { runProcess, requireFile, VENV_PYTHON } from '../lib/proc.js';

test('aiortc: WHIP publish (VP8 pattern + Opus tone) and WHEP play, frames decoded', { timeout: 180000 }, async () => {
  requireFile(VENV_PYTHON, 'run scripts/install-test-deps.sh (creates tests/e2e/.venv with aiortc)');
  await withMediaMesh('aiortc', {}, async (server) => {
    const script = join(E2E_DIR, 'python', 'aiortc_whip_whep.py');
    const r = await runProcess(VENV_PYTHON, [script, '--base', server.base, '--secret', server.secret,
      '--room', 'room-aiortc', '--timeout', '20'], { timeoutMs: 150000, label: 'aiortc_whip_whep.py' });
    for (const l of r.stdout.split('\n')) if (l.startsWith('METRIC ')) console.log(l);
    assert.ok(r.code === 0 && !r.timedOut,
      `aiortc_whip_whep.py exited with ${r.timedOut ? 'a timeout (killed)' : `code ${r.code}`}` + r.describe() + server.describe());
  });
});
