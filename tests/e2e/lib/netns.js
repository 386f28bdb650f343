// A second "host" on this machine: a network namespace joined to the root namespace
// by a veth pair (root side X.1/24, namespace side X.2/24), for tests where a client's
// network changes under it. Needs root (`ip netns`, `ip link`). Traffic stays on this
// machine: the namespace has no default route, only the /24 of its veth.
//
// Names carry the test process's pid (namespace `mm-ice-<pid>`, root-side veth
// `mmice<pid>`, namespace side `mmice<pid>n`): setup first removes those left by
// earlier runs whose process is gone; destroy() (and a process 'exit' hook) removes
// this run's.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CHROMIUM } from './browser.js';

const NS_PREFIX = 'mm-ice-';
const IF_PREFIX = 'mmice';
// Private /24s tried in turn; the first one no route or address of the root namespace uses.
const SUBNETS = ['10.213.0', '10.213.7', '10.231.5', '172.29.213'];

/** Runs `ip ARGS` (bounded); throws with the command, exit status and stderr. */
export function ip(...args) {
  try {
    return execFileSync('ip', args, { encoding: 'utf8', timeout: 10000, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    throw new Error(`\`ip ${args.join(' ')}\` failed (status ${e.status ?? e.signal ?? e.code}): ${(e.stderr || e.message || '').toString().trim()}`);
  }
}
const tryIp = (...args) => { try { ip(...args); return true; } catch { return false; } };

const alive = (pid) => {
  try { process.kill(pid, 0); return true; } catch (e) { return e.code === 'EPERM'; }
};

/** Deletes namespaces and root-side veths of earlier runs whose test process is gone. */
export function removeLeftovers() {
  const removed = [];
  for (const line of ip('netns', 'list').split('\n')) {
    const name = line.trim().split(/\s+/)[0];
    const m = name && name.startsWith(NS_PREFIX) && /^(\d+)$/.exec(name.slice(NS_PREFIX.length));
    if (m && !alive(Number(m[1]))) { if (tryIp('netns', 'del', name)) removed.push(`netns ${name}`); }
  }
  for (const line of ip('-o', 'link', 'show').split('\n')) {
    const m = /^\d+:\s+([^:@\s]+)/.exec(line);
    const name = m?.[1];
    const pid = name?.startsWith(IF_PREFIX) && /^(\d+)n?$/.exec(name.slice(IF_PREFIX.length));
    if (pid && !alive(Number(pid[1]))) { if (tryIp('link', 'del', name)) removed.push(`link ${name}`); }
  }
  return removed;
}

function pickSubnet() {
  const used = ip('-4', 'route', 'show', 'table', 'all') + ip('-4', '-o', 'addr', 'show');
  const free = SUBNETS.find((s) => !used.includes(`${s}.`));
  if (!free) throw new Error(`no free private /24 among ${SUBNETS.join(', ')} (all appear in \`ip route\`/\`ip addr\`):\n${used}`);
  return free;
}

/**
 * Creates the namespace and veth pair; returns
 *   { name, rootIf, nsIf, subnet, rootAddr, nsAddr, chromium, exec(...argv), setAddress(newHost), describe(), destroy() }
 * `chromium` is a launcher script (`exec ip netns exec NAME /usr/bin/chromium "$@"`)
 * for playwright's executablePath. On any setup error everything made so far is removed.
 */
export function createNetns() {
  const removed = removeLeftovers();
  const pid = process.pid;
  const name = `${NS_PREFIX}${pid}`;
  const rootIf = `${IF_PREFIX}${pid}`;
  const nsIf = `${IF_PREFIX}${pid}n`;
  const subnet = pickSubnet();
  const rootAddr = `${subnet}.1`;
  const ns = {
    name, rootIf, nsIf, subnet, rootAddr, nsAddr: `${subnet}.2`, removedLeftovers: removed, dir: null, chromium: null, destroyed: false,
    /** `ip -n NAME ARGS` */
    ip: (...args) => ip('-n', name, ...args),
    /** Adds `host` to the namespace's veth, then deletes the current address (the old 5-tuples die). */
    setAddress(host) {
      const old = ns.nsAddr;
      ip('-n', name, 'addr', 'add', `${host}/24`, 'dev', nsIf);
      ip('-n', name, 'addr', 'del', `${old}/24`, 'dev', nsIf);
      ns.nsAddr = host;
    },
    describe() {
      const safe = (f) => { try { return f().trim(); } catch (e) { return e.message; } };
      return `\n--- netns ${name}: addr: ${safe(() => ip('-n', name, '-4', '-o', 'addr', 'show')).replace(/\n/g, ' | ')}` +
        `\n--- netns ${name}: route: ${safe(() => ip('-n', name, '-4', 'route', 'show')).replace(/\n/g, ' | ')}` +
        `\n--- root ${rootIf}: ${safe(() => ip('-4', '-o', 'addr', 'show', 'dev', rootIf))}; neigh: ${safe(() => ip('neigh', 'show', 'dev', rootIf)).replace(/\n/g, ' | ') || '(none)'}`;
    },
    /** Removes the veth pair, the namespace and the launcher; idempotent, never throws. Returns what failed. */
    destroy() {
      if (ns.destroyed) return [];
      ns.destroyed = true;
      process.removeListener('exit', onExit);
      const errors = [];
      if (ip('-o', 'link', 'show').includes(` ${rootIf}@`)) { try { ip('link', 'del', rootIf); } catch (e) { errors.push(e.message); } }
      if (ip('netns', 'list').split('\n').some((l) => l.split(/\s+/)[0] === name)) { try { ip('netns', 'del', name); } catch (e) { errors.push(e.message); } }
      if (ns.dir) rmSync(ns.dir, { recursive: true, force: true });
      return errors;
    },
  };
  const onExit = () => { try { ns.destroy(); } catch {} };
  process.on('exit', onExit);
  try {
    ip('netns', 'add', name);
    ip('link', 'add', rootIf, 'type', 'veth', 'peer', 'name', nsIf);
    ip('link', 'set', nsIf, 'netns', name);
    ip('addr', 'add', `${rootAddr}/24`, 'dev', rootIf);
    ip('link', 'set', rootIf, 'up');
    // Keep a second address of the subnet when the first is deleted (the default
    // deletes all "secondary" addresses of a subnet with its primary one).
    execFileSync('ip', ['netns', 'exec', name, 'sysctl', '-q', '-w', 'net.ipv4.conf.all.promote_secondaries=1', 'net.ipv4.conf.default.promote_secondaries=1'], { timeout: 10000, stdio: 'pipe' });
    execFileSync('ip', ['netns', 'exec', name, 'sysctl', '-q', '-w', `net.ipv4.conf.${nsIf}.promote_secondaries=1`], { timeout: 10000, stdio: 'pipe' });
    ip('-n', name, 'addr', 'add', `${ns.nsAddr}/24`, 'dev', nsIf);
    ip('-n', name, 'link', 'set', nsIf, 'up');
    ip('-n', name, 'link', 'set', 'lo', 'up');
    ns.dir = mkdtempSync(join(tmpdir(), 'mm-netns-'));
    ns.chromium = join(ns.dir, 'chromium-in-netns');
    writeFileSync(ns.chromium, `#!/bin/sh\nexec ip netns exec ${name} ${CHROMIUM} "$@"\n`, { mode: 0o755 });
  } catch (e) {
    const errs = ns.destroy();
    e.message = `network namespace setup failed: ${e.message}` + (errs.length ? `; cleanup: ${errs.join('; ')}` : '');
    throw e;
  }
  return ns;
}
