// A second "host" on this machine: a network namespace joined to the root namespace
// by a veth pair (root side X.1/24, namespace side X.2/24), for tests where a client's
// network changes under it. Needs root (`ip netns`, `ip link`). Traffic stays on this
// machine: the namespace has no default route, only the /24 of its links.
//
// addLink(X.3) gives the namespace a second link, as a phone has cellular next to its
// Wi-Fi: another veth pair whose namespace side has X.3/24 (a separate interface, so
// Chromium sees a separate network and gathers on it; a second address on the same
// interface would not be gathered while the first one exists: WebRTC gathers on one
// IPv4 address per network). What is sent from X.3 leaves by that link (a policy
// rule), what the root namespace sends to X.3 goes by it (a /32 route). delAddress(X.2)
// then kills the old path in both directions while the new one stays up.
//
// limit({ rate }) shapes what the root namespace sends into the namespace (a `tc tbf`
// qdisc on the root side of the first veth: a client behind a slow downlink);
// unlimit() lifts it. Deleting the veth (destroy()) removes the qdisc with it.
//
// Names carry the test process's pid (namespace `mm-ice-<pid>`, root-side veths
// `mmice<pid>` and `mmice<pid>b`, namespace sides `mmice<pid>n`, `mmice<pid>bn`):
// setup first removes those left by earlier runs whose process is gone; destroy()
// (and a process 'exit' hook) removes this run's.
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
/** Runs `tc ARGS` (bounded); throws with the command, exit status and stderr. */
export function tc(...args) {
  try {
    return execFileSync('tc', args, { encoding: 'utf8', timeout: 10000, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    throw new Error(`\`tc ${args.join(' ')}\` failed (status ${e.status ?? e.signal ?? e.code}): ${(e.stderr || e.message || '').toString().trim()}`);
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
    const pid = name?.startsWith(IF_PREFIX) && /^(\d+)b?n?$/.exec(name.slice(IF_PREFIX.length));
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
 *   { name, rootIf, nsIf, subnet, rootAddr, nsAddr, chromium, ip(...args), addLink(host), delAddress(host),
 *     limit({ rate, burst, latency }), unlimit(), qdisc(), describe(), destroy() }
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
    /** Second links made by addLink(): [{ rootIf, nsIf, host }]. */
    links: [],
    /**
     * A second link into the namespace, up before the first one goes away (make before
     * break): veth `mmice<pid>b` (root side, no address; route `host/32` by it) <->
     * `mmice<pid>bn` (namespace side, `host`/24; rule `from host` -> table 100: the /24
     * by this link). The first link keeps X.2 and its /24 route, which stays first in
     * the main table (sockets bound to no address keep using X.2 while it exists, then
     * this link's /24 route).
     */
    addLink(host) {
      if (ns.links.length) throw new Error('addLink(): only one extra link is supported');
      const link = { rootIf: `${rootIf}b`, nsIf: `${nsIf.slice(0, -1)}bn`, host };
      ip('link', 'add', link.rootIf, 'type', 'veth', 'peer', 'name', link.nsIf);
      ns.links.push(link);
      ip('link', 'set', link.nsIf, 'netns', name);
      // IPv4 only: an IPv6 link-local address would change again when its duplicate
      // address detection ends (~1 s), and Chromium waits 2 s after the last change.
      execFileSync('ip', ['netns', 'exec', name, 'sysctl', '-q', '-w', `net.ipv6.conf.${link.nsIf}.disable_ipv6=1`], { timeout: 10000, stdio: 'pipe' });
      ip('-n', name, 'link', 'set', link.nsIf, 'up');
      ip('link', 'set', link.rootIf, 'up');
      ip('route', 'add', `${host}/32`, 'dev', link.rootIf, 'src', rootAddr);
      ip('-n', name, 'addr', 'add', `${host}/24`, 'dev', link.nsIf);
      ip('-n', name, 'route', 'add', `${subnet}.0/24`, 'dev', link.nsIf, 'src', host, 'table', '100');
      ip('-n', name, 'rule', 'add', 'from', host, 'lookup', '100', 'pref', '100');
      return link;
    },
    /** Deletes `host` from whichever namespace link has it (its 5-tuples die both ways). */
    delAddress(host) {
      const dev = host === `${subnet}.2` ? nsIf : ns.links.find((l) => l.host === host)?.nsIf;
      if (!dev) throw new Error(`delAddress(${host}): not an address of ${name}`);
      ip('-n', name, 'addr', 'del', `${host}/24`, 'dev', dev);
    },
    /**
     * Limits what the root namespace sends into the namespace (server -> client: the
     * egress of the root-side veth `rootIf`) with a token bucket:
     * `tc qdisc replace dev ROOTIF root tbf rate RATE burst BURST latency LATENCY`.
     * The other direction and the namespace's own links stay unlimited.
     */
    limit({ rate = '300kbit', burst = '16kb', latency = '200ms' } = {}) {
      tc('qdisc', 'replace', 'dev', rootIf, 'root', 'tbf', 'rate', rate, 'burst', burst, 'latency', latency);
    },
    /** Removes the limit of limit() (back to the default qdisc); no-op without one. */
    unlimit() {
      if (tc('qdisc', 'show', 'dev', rootIf).includes('qdisc tbf')) tc('qdisc', 'del', 'dev', rootIf, 'root');
    },
    /** `tc -s qdisc show dev ROOTIF` (bytes sent, drops, overlimits of the limit). */
    qdisc() {
      try { return tc('-s', 'qdisc', 'show', 'dev', rootIf).trim(); } catch (e) { return e.message; }
    },
    describe() {
      const safe = (f) => { try { return f().trim(); } catch (e) { return e.message; } };
      const one = (s) => s.replace(/\\\s+/g, ' ').replace(/\n/g, ' | ');
      return `\n--- netns ${name}: addr: ${one(safe(() => ip('-n', name, '-4', '-o', 'addr', 'show')))}` +
        `\n--- netns ${name}: route: ${one(safe(() => ip('-n', name, '-4', 'route', 'show', 'table', 'all')))}` +
        `\n--- netns ${name}: rule: ${one(safe(() => ip('-n', name, '-4', 'rule', 'show')))}` +
        [rootIf, ...ns.links.map((l) => l.rootIf)].map((dev) => `\n--- root ${dev}: ${one(safe(() => ip('-4', '-o', 'addr', 'show', 'dev', dev))) || '(no address)'}; ` +
          `route: ${one(safe(() => ip('-4', 'route', 'show', 'dev', dev))) || '(none)'}; neigh: ${one(safe(() => ip('neigh', 'show', 'dev', dev))) || '(none)'}`).join('');
    },
    /** Removes the veth pairs, the namespace and the launcher; idempotent, never throws. Returns what failed. */
    destroy() {
      if (ns.destroyed) return [];
      ns.destroyed = true;
      process.removeListener('exit', onExit);
      const errors = [];
      const links = ip('-o', 'link', 'show');
      for (const dev of [rootIf, ...ns.links.map((l) => l.rootIf)]) {
        if (links.includes(` ${dev}@`)) { try { ip('link', 'del', dev); } catch (e) { errors.push(e.message); } }
      }
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

/**
 * Closes what a namespace test opened (its browsers, its page server) and removes the
 * namespace. A cleanup failure fails a test that passed; after a failure it is only
 * logged, so that it does not hide the test's own error.
 */
export async function closeNetnsTest({ ns, browsers = [], web = null, failed }) {
  for (const b of browsers) await b.close().catch(() => {});
  await web?.close().catch(() => {});
  const errs = ns.destroy();
  if (errs.length) {
    const msg = `cleanup of ${ns.name}/${ns.rootIf} failed: ${errs.join('; ')}`;
    if (!failed) throw new Error(msg);
    console.error(`# ${msg}`);
  }
}
