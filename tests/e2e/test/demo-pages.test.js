// The demo pages a person uses, served by MediaMesh itself at /demo/whip and
// /demo/whep: click Start/Play and see frames decoded, as a person would.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { mkdirSync } from 'node:fs';
import { LOG_DIR } from '../lib/server.js';
import { useChromium } from '../lib/fixtures.js';
import { waitFor } from '../lib/media.js';

const chromium = useChromium();

const text = (page, sel) => page.locator(sel).innerText();
const num = async (page, sel) => Number((await text(page, sel)).replace(/[^0-9]/g, '') || 0);

async function pageCtx(page) {
  let s = '';
  try {
    s = `\n--- ${page.label} shows: state="${await text(page, '#state')}" ice="${await text(page, '#ice')}" error="${await text(page, '#error')}"`;
  } catch (e) { s = `\n--- ${page.label}: could not read the page: ${e.message}`; }
  return s + page.describe();
}

async function expectPageDecodes(page, server, others = []) {
  const ctx = async () => (await pageCtx(page)) + (await Promise.all(others.map(pageCtx))).join('') + server.describe();
  const f0 = await num(page, '#stat-frames');
  await waitFor(`${page.label}: "frames decoded" on the page to rise by 15 from ${f0}`,
    () => num(page, '#stat-frames'), (f) => f >= f0 + 15, { context: ctx });
  const res = await text(page, '#stat-resolution');
  assert.match(res, /^\d+×\d+$/, `${page.label}: the page shows a video resolution, got "${res}"`);
  const a0 = await num(page, '#stat-audio');
  await waitFor(`${page.label}: "audio samples received" on the page to rise from ${a0}`,
    () => num(page, '#stat-audio'), (a) => a >= a0 + 24000, { context: ctx });
  const vid = await page.evaluate(() => {
    const v = document.getElementById('video');
    return { w: v.videoWidth, h: v.videoHeight, paused: v.paused, t: v.currentTime };
  });
  assert.ok(vid.w > 0 && !vid.paused, `${page.label}: the <video> element plays (${JSON.stringify(vid)})`);
}

// The shared /demo/demo.css is applied (the shared demo.js is what makes the page work at all).
async function expectSharedStyles(page) {
  const looks = await page.evaluate(() => ({
    sheets: [...document.styleSheets].map((x) => x.href),
    cardRadius: getComputedStyle(document.querySelector('.card')).borderRadius,
  }));
  assert.ok(looks.sheets.some((h) => h && new URL(h).pathname === '/demo/demo.css') && looks.cardRadius === '8px',
    `${page.label}: /demo/demo.css is loaded and applied (${JSON.stringify(looks)})` + page.describe());
}

async function screenshot(page, name) {
  mkdirSync(LOG_DIR, { recursive: true });
  await page.screenshot({ path: join(LOG_DIR, name), fullPage: true }).catch(() => {});
}

test('demo-pages: /demo/whip publishes and /demo/whep plays with demo tokens (default loopback setup)', { timeout: 120000 }, () => chromium.withMediaMesh('demo-pages-default', { secret: null }, async (server, open) => {
  const room = 'demo-e2e';
  const r = await fetch(`${server.base}/demo/token/whip?room=${room}&peer=probe`);
  const body = await r.text();
  assert.equal(r.status, 200, `GET /demo/token/whip in the default loopback setup -> ${r.status} ${body}`);

  const pub = await open.page('demo-whip', `${server.base}/demo/whip?room=${room}`);
  assert.equal(await pub.locator('#room').inputValue(), room, 'room input takes ?room= from the query string');
  await expectSharedStyles(pub);
  await pub.click('#start');
  await waitFor('/demo/whip to show state "connected"', () => text(pub, '#state'), (s) => s === 'connected',
    { context: async () => (await pageCtx(pub)) + server.describe() });
  assert.equal(await text(pub, '#start'), 'Stop');

  const view = await open.page('demo-whep', `${server.base}/demo/whep?room=${room}`);
  await expectSharedStyles(view);
  await view.click('#start');
  await expectPageDecodes(view, server, [pub]);
  await waitFor('/demo/whip to show frames sent', () => text(pub, '#sent'), (s) => /\d+ frames/.test(s),
    { context: async () => pageCtx(pub) });

  // Mute toggle.
  assert.equal(await view.evaluate(() => document.getElementById('video').muted), true, 'video starts muted');
  await view.click('#mute');
  assert.equal(await view.evaluate(() => document.getElementById('video').muted), false, 'Unmute unmutes');
  assert.equal(await text(view, '#mute'), 'Mute');

  await screenshot(pub, 'demo-whip.png');
  await screenshot(view, 'demo-whep.png');

  // Stop on both pages sends DELETE (200) and shows "stopped".
  const del = pub.waitForResponse((resp) => resp.request().method() === 'DELETE', { timeout: 10000 });
  await pub.click('#start');
  assert.equal((await del).status(), 200, 'DELETE of the WHIP session');
  assert.equal(await text(pub, '#state'), 'stopped');
  const del2 = view.waitForResponse((resp) => resp.request().method() === 'DELETE', { timeout: 10000 });
  await view.click('#start');
  assert.equal((await del2).status(), 200, 'DELETE of the WHEP session');
}));

test('demo-pages: with a custom --secret the demo token is refused and the pages take a pasted token', { timeout: 120000 }, () => chromium.withMediaMesh('demo-pages-secret', {}, async (server, open) => {
  const room = 'demo-e2e-secret';
  const r = await fetch(`${server.base}/demo/token/whip?room=${room}&peer=probe`);
  const reason = (await r.text()).trim();
  assert.equal(r.status, 403, `GET /demo/token/whip with a custom --secret must be refused, got ${r.status} ${reason}`);
  assert.ok(reason.length > 0 && !reason.includes('\n'), `403 carries a one-line reason, got "${reason}"`);

  // The viewer comes first here, then the publisher.
  const view = await open.page('demo-whep', `${server.base}/demo/whep?room=${room}`);
  await view.click('#start');
  await view.locator('#token-box').waitFor({ state: 'visible', timeout: 10000 });
  assert.ok((await text(view, '#token-reason')).includes(reason), 'the page shows the server\'s reason');
  await screenshot(view, 'demo-whep-token-needed.png');
  await view.fill('#token', await server.token('whep', room, 'demo-viewer'));
  await view.click('#start');

  const pub = await open.page('demo-whip', `${server.base}/demo/whip?room=${room}`);
  await pub.click('#start');
  await pub.locator('#token-box').waitFor({ state: 'visible', timeout: 10000 });
  await pub.fill('#token', await server.token('whip', room, 'demo-publisher'));
  await pub.click('#start');
  await waitFor('/demo/whip to show state "connected"', () => text(pub, '#state'), (s) => s === 'connected',
    { context: async () => (await pageCtx(pub)) + server.describe() });
  await expectPageDecodes(view, server, [pub]);
  await pub.click('#start');
  await view.click('#start');
}));
