// Child processes (Python clients) with bounded lifetimes and captured output.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { E2E_DIR, sleepUnref as sleep, trackChild } from './server.js';

export const VENV_PYTHON = join(E2E_DIR, '.venv', 'bin', 'python');
export const SYSTEM_PYTHON = '/usr/bin/python3';

export function requireFile(path, hint) {
  if (!existsSync(path)) throw new Error(`${path} not found: ${hint}`);
}

/** Spawns a process; `.done` resolves to {code, signal, stdout, stderr}. */
export function startProcess(cmd, args, { label = cmd, env = {}, onLine = null } = {}) {
  const child = trackChild(spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } }));
  const out = { stdout: '', stderr: '' };
  const lineBuf = { stdout: '', stderr: '' };
  for (const stream of ['stdout', 'stderr']) {
    child[stream].on('data', (d) => {
      out[stream] += d.toString();
      if (onLine) {
        const parts = (lineBuf[stream] + d.toString()).split('\n');
        lineBuf[stream] = parts.pop();
        for (const l of parts) onLine(l, stream);
      }
    });
  }
  const done = new Promise((resolve) => {
    child.on('error', (e) => { out.stderr += `spawn error: ${e.message}\n`; resolve({ code: -1, signal: null, ...out }); });
    child.on('exit', (code, signal) => setTimeout(() => resolve({ code, signal, ...out }), 50));
  });
  return {
    child, done, out, label,
    describe: () => `\n--- ${label} stdout:\n${out.stdout.slice(-4000) || '(empty)'}\n--- ${label} stderr:\n${out.stderr.slice(-6000) || '(empty)'}`,
    async stop(signal = 'SIGINT', graceMs = 5000) {
      if (child.exitCode !== null || child.signalCode !== null) return done;
      child.kill(signal);
      const r = await Promise.race([done, sleep(graceMs).then(() => null)]);
      if (r) return r;
      child.kill('SIGKILL');
      return done;
    },
  };
}

/** Runs to completion, killing it after `timeoutMs`. */
export async function runProcess(cmd, args, { timeoutMs, ...opts }) {
  const p = startProcess(cmd, args, opts);
  const r = await Promise.race([p.done, sleep(timeoutMs).then(() => null)]);
  if (r) return { ...r, describe: p.describe, timedOut: false };
  await p.stop('SIGKILL', 2000);
  return { ...(await p.done), describe: p.describe, timedOut: true };
}
