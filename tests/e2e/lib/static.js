// A tiny static HTTP server on 127.0.0.1 for the test pages (a secure context
// for getUserMedia), the unchanged whip-whep ES modules from node_modules and the
// browser bundle of the unchanged atm0s SDK (build/, see lib/bundle.js) and our own
// SDK's browser bundle (sdk/dist/mediamesh-sdk.js at /sdk/, built by `npm run build` in sdk/).
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { join, normalize, extname } from 'node:path';
import { E2E_DIR, REPO_DIR } from './server.js';

const TYPES = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8', '.css': 'text/css', '.json': 'application/json',
};

const ROOTS = [
  ['/node_modules/whip-whep/', join(E2E_DIR, 'node_modules', 'whip-whep')],
  ['/build/', join(E2E_DIR, 'build')],
  ['/sdk/', join(REPO_DIR, 'sdk', 'dist')],
  ['/web/demo/', join(REPO_DIR, 'web', 'demo')],
  ['/', join(E2E_DIR, 'pages')],
];

/** Serves the pages on `host` (loopback unless a test needs another address). */
export async function startStaticServer({ host = '127.0.0.1' } = {}) {
  const server = createServer(async (req, res) => {
    const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    if (path === '/favicon.ico') { res.writeHead(204); res.end(); return; }
    for (const [prefix, dir] of ROOTS) {
      if (!path.startsWith(prefix)) continue;
      const rel = normalize(path.slice(prefix.length) || 'index.html');
      if (rel.startsWith('..')) break;
      try {
        const body = await readFile(join(dir, rel));
        res.writeHead(200, { 'Content-Type': TYPES[extname(rel)] || 'application/octet-stream', 'Cache-Control': 'no-store' });
        res.end(body);
        return;
      } catch { break; }
    }
    res.writeHead(404, { 'Content-Type': 'text/plain' });
    res.end('not found\n');
  });
  await new Promise((ok, fail) => { server.once('error', fail); server.listen(0, host, ok); });
  return { server, base: `http://${host}:${server.address().port}`, close: () => new Promise((r) => server.close(r)) };
}
