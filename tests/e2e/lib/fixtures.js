// What every test file sets up: one MediaMesh per test (stopped at the end, also on
// failure, with its log tail in any error) and one Chromium per test file.
import { before, after } from 'node:test';
import { MediaMesh, withServerContext } from './server.js';
import { startStaticServer } from './static.js';
import { launchBrowser, newPage } from './browser.js';

/**
 * Starts `new MediaMesh(name, options)`, runs `fn(server)` so that errors carry the
 * server's log tail, and stops the server afterwards.
 */
export async function withMediaMesh(name, options, fn) {
  const server = new MediaMesh(name, options);
  try {
    await server.start();
    return await withServerContext(server, () => fn(server));
  } finally {
    await server.stop();
  }
}

/**
 * Registers before/after hooks for one headless Chromium in this test file and, with
 * `pages: true`, the static server of tests/e2e/pages (the harness). Returns an object
 * whose `withMediaMesh(name, options, fn)` calls `fn(server, open)`; `open` makes pages
 * that are closed when `fn` ends:
 *   open.page(label, url)   a page at `url`
 *   open.harness(label)     pages/harness.html, once `window.mm` is ready
 */
export function useChromium({ pages = false } = {}) {
  const env = { browser: null, web: null };
  before(async () => {
    if (pages) env.web = await startStaticServer();
    env.browser = await launchBrowser();
  });
  after(async () => {
    await env.browser?.close();
    await env.web?.close();
  });

  env.withMediaMesh = (name, options, fn) => withMediaMesh(name, options, async (server) => {
    const opened = [];
    const page = async (label, url) => {
      const p = await newPage(env.browser, label);
      opened.push(p);
      if (url) await p.goto(url);
      return p;
    };
    const harness = async (label) => {
      if (!env.web) throw new Error('useChromium({ pages: true }) is needed for the harness page');
      const p = await page(label, `${env.web.base}/harness.html`);
      await p.waitForFunction(() => window.mm?.ready === true);
      return p;
    };
    try {
      return await fn(server, { page, harness });
    } finally {
      for (const p of opened) await p.context().close().catch(() => {});
    }
  });
  return env;
}
