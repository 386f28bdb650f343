// A tiny static HTTP server on 127.0.0.1 for the test pages (a secure context
// for getUserMedia) and the unchanged whip-whep ES modules from node_modules.
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
  ['/web/demo/', join(REPO_DIR, 'web', 'demo')],
  ['/', join(E2E_DIR, 'pages')],
];

export async function startStaticServer() {
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
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  return { server, base: `http://127.0.0.1:${server.address().port}`, close: () => new Promise((r) => server.close(r)) };
}
