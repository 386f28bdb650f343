// One headless Chromium per test file; several contexts/pages inside it.
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';

export const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
  '--allow-loopback-in-peer-connection', '--disable-features=WebRtcHideLocalIpsWithMdns',
  '--autoplay-policy=no-user-gesture-required',
];

/**
 * Launches Chromium (playwright gives it a fresh temporary user-data-dir).
 * `executablePath`: another launcher (e.g. a wrapper that runs Chromium in a network
 * namespace); `extraArgs` are added to CHROMIUM_ARGS.
 */
export async function launchBrowser({ executablePath = CHROMIUM, extraArgs = [] } = {}) {
  return chromium.launch({ executablePath, headless: true, args: [...CHROMIUM_ARGS, ...extraArgs], timeout: 20000 });
}

/** A new context + page whose console output is kept for failure messages. */
export async function newPage(browser, label) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(20000);
  const log = [];
  const push = (s) => { log.push(`[${label}] ${s}`); if (log.length > 80) log.shift(); };
  page.on('console', (m) => push(`console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => push(`pageerror: ${e.message}`));
  page.on('requestfailed', (r) => push(`requestfailed: ${r.method()} ${r.url()} ${r.failure()?.errorText}`));
  page.on('response', (r) => { if (!r.url().includes('/node_modules/')) push(`http: ${r.request().method()} ${r.url()} -> ${r.status()}`); });
  page.describe = () => `\n--- ${label} page log:\n${log.join('\n') || '(empty)'}`;
  page.label = label;
  return page;
}
