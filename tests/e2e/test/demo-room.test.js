// The demo room app a person uses, served by MediaMesh at /demo/room (web/demo/room.html on
// the embedded SDK bundle /demo/mediamesh-sdk.js): two people join a room, see and hear
// each other, share a screen, switch a tile's source, pause a tile, turn the camera off
// and leave. Everything is driven through the page's own buttons; the numbers come from
// the page's tiles (data-* attributes and window.mmRoom, a read-only debug view).
// getDisplayMedia works in headless Chromium with --use-fake-ui-for-media-stream (a fake
// 1280×720 "screen"); the fake camera is 640×480 (a new publication starts at 320×240 for
// some seconds while the sender's bandwidth estimate ramps up), so a tile's decoded width
// tells the two sources apart.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { mkdirSync } from 'node:fs';
import { LOG_DIR, sleep } from '../lib/server.js';
import { useChromium } from '../lib/fixtures.js';
import { waitFor } from '../lib/media.js';

const chromium = useChromium();

const text = (page, sel) => page.locator(sel).innerText();
const tilesOf = (page) => page.evaluate(() => window.mmRoom.tiles());

async function pageCtx(page) {
  let s = '';
  try {
    s = `\n--- ${page.label} shows: state="${await text(page, '#state')}" error="${await text(page, '#error')}" ` +
      `tiles=${JSON.stringify(await tilesOf(page))}`;
  } catch (e) { s = `\n--- ${page.label}: could not read the page: ${e.message}`; }
  return s + page.describe();
}

async function screenshot(page, name) {
  mkdirSync(LOG_DIR, { recursive: true });
  await page.screenshot({ path: join(LOG_DIR, name), fullPage: true }).catch(() => {});
}

async function joinRoom(page, name, server, others) {
  await page.fill('#name', name);
  await page.click('#join');
  await waitFor(`${page.label}: state "connected" after Join`, () => text(page, '#state'), (s) => s === 'connected',
    { context: async () => (await pageCtx(page)) + server.describe() });
  await page.locator('#room-card').waitFor({ state: 'visible' });
  await waitFor(`${page.label}: camera and mic published`, () => page.evaluate(() => window.mmRoom.session.publications.map((p) => p.name).sort().join(',')),
    (s) => s === 'camera,mic', { context: async () => pageCtx(page) + (await Promise.all(others.map(pageCtx))).join('') });
  return page.evaluate(() => window.mmRoom.me.peer);
}

test('demo-room: two people join /demo/room, see each other, share a screen, switch, pause, leave', { timeout: 180000 }, () => chromium.withMediaMesh('demo-room', { secret: null }, async (server, open) => {
  const room = 'x';
  const alice = await open.page('room-alice', `${server.base}/demo/room?room=${room}`);
  const bob = await open.page('room-bob', `${server.base}/demo/room?room=${room}`);
  assert.equal(await alice.locator('#room').inputValue(), room, 'the room input takes ?room=');
  const looks = await alice.evaluate(() => ({
    sheets: [...document.styleSheets].map((x) => x.href).filter(Boolean).map((h) => new URL(h).pathname),
    cardRadius: getComputedStyle(document.querySelector('.card')).borderRadius,
  }));
  assert.ok(looks.sheets.includes('/demo/demo.css') && looks.cardRadius === '8px', `demo.css applied: ${JSON.stringify(looks)}`);
  await screenshot(alice, 'demo-room-join.png');

  const ctx = async () => (await pageCtx(alice)) + (await pageCtx(bob)) + server.describe();
  const alicePeer = await joinRoom(alice, 'Alice', server, [bob]);
  const bobPeer = await joinRoom(bob, 'Bob', server, [alice]);

  // Waits for `page`'s tile matching `pick` to decode `n` more frames (optionally at `width`).
  const tile = (pick) => async (page) => (await tilesOf(page)).find(pick);
  async function decodes(page, pick, what, { n = 15, width = (w) => w > 0, widthText = '' } = {}) {
    const t0 = await tile(pick)(page);
    const f0 = t0?.frames ?? 0;
    return waitFor(`${page.label}: ${what} to decode ${n} frames from ${f0}` + widthText,
      tile(pick).bind(null, page), (t) => t && t.frames >= f0 + n && width(t.width), { context: ctx, timeoutMs: 25000 });
  }

  // Each sees the other's camera in one tile, with the other's name on it, and gets their mic.
  for (const [page, other, name] of [[alice, bobPeer, 'Bob'], [bob, alicePeer, 'Alice']]) {
    await waitFor(`${page.label}: one tile, for ${other}/camera`, () => tilesOf(page),
      (ts) => ts.length === 1 && ts[0].peer === other && ts[0].track === 'camera', { context: ctx });
    await decodes(page, (t) => t.track === 'camera', `${other}/camera`);
    const caption = await text(page, '.tile.remote .cap');
    assert.ok(caption.includes(name) && caption.includes('camera'), `${page.label}: tile caption names the peer and track, got "${caption}"`);
    await waitFor(`${page.label}: ${other}/mic plays in an <audio>`, () => page.evaluate(() => {
      const a = document.querySelector('#audio audio');
      return a ? { src: a.dataset.source, paused: a.paused, live: a.srcObject?.getAudioTracks()[0]?.readyState } : null;
    }), (a) => a && a.src === `${other}/mic` && !a.paused && a.live === 'live', { context: ctx });
  }
  assert.equal(await text(alice, '#peer-count'), '1');

  // Alice shares her screen: Bob gets a second tile that decodes the 1280-wide screen.
  await alice.click('#screen');
  await waitFor('alice: the screen button turns into "Stop sharing"', () => text(alice, '#screen'), (s) => s === 'Stop sharing', { context: ctx });
  await waitFor('bob: a second tile, for alice/screen', () => tilesOf(bob),
    (ts) => ts.length === 2 && ts.some((t) => t.peer === alicePeer && t.track === 'screen'), { context: ctx });
  const SCREEN = { width: (w) => w === 1280, widthText: ' at width 1280 (the screen)' };
  const CAMERA = { width: (w) => w > 0 && w <= 640, widthText: ' at width <= 640 (the camera)' };
  await decodes(bob, (t) => t.track === 'screen', 'alice/screen', SCREEN);
  assert.equal(await alice.locator('.tile.self').count(), 2, 'alice sees her own camera and screen');
  await screenshot(alice, 'demo-room-alice.png');
  await screenshot(bob, 'demo-room-bob.png');

  // A click on the camera tile switches it to the next source (the screen) on the same
  // receiver, no renegotiation; another click switches it back.
  const updates0 = await bob.evaluate(() => window.mmRoom.session.negotiations.updateSdp);
  const camTile = bob.locator('.tile.remote').first();
  assert.equal(await camTile.getAttribute('data-track'), 'camera');
  await camTile.click({ position: { x: 40, y: 40 } });
  await waitFor('bob: the first tile now shows alice/screen', () => camTile.getAttribute('data-track'), (t) => t === 'screen', { context: ctx });
  await decodes(bob, (t, i) => i === 0, 'the switched tile', SCREEN);
  await camTile.click({ position: { x: 40, y: 40 } });
  await decodes(bob, (t, i) => i === 0 && t.track === 'camera', 'the tile switched back to the camera', CAMERA);
  assert.equal(await bob.evaluate(() => window.mmRoom.session.negotiations.updateSdp), updates0, 'switching did not renegotiate');

  // Pause stops the tile's frames; Resume brings them back.
  await camTile.locator('.tile-pause').click();
  await waitFor('bob: the tile is paused', () => camTile.getAttribute('data-status'), (s) => s === 'paused', { context: ctx });
  assert.equal(await camTile.getAttribute('data-track'), 'camera', 'the pause button does not switch the tile');
  await sleep(1500);
  const p0 = (await tilesOf(bob))[0].frames;
  await sleep(2500);
  const p1 = (await tilesOf(bob))[0].frames;
  assert.ok(p1 - p0 <= 2, `a paused tile decodes no frames (${p0} -> ${p1})`);
  await screenshot(bob, 'demo-room-bob-paused.png');
  await camTile.locator('.tile-pause').click();
  await decodes(bob, (t, i) => i === 0, 'the resumed tile');

  // Alice turns her camera off: Bob's camera tile stops decoding; on again: it decodes again.
  await alice.click('#cam');
  await waitFor('alice: the camera button reads "Camera on"', () => text(alice, '#cam'), (s) => s === 'Camera on', { context: ctx });
  await sleep(1500);
  const c0 = (await tilesOf(bob)).find((t) => t.track === 'camera').frames;
  await sleep(2500);
  const c1 = (await tilesOf(bob)).find((t) => t.track === 'camera').frames;
  assert.ok(c1 - c0 <= 2, `with alice's camera off bob decodes no camera frames (${c0} -> ${c1})`);
  await waitFor('bob: the camera tile says there is no video', () => text(bob, '.tile.remote[data-track="camera"] .over'),
    (s) => s.startsWith('no video'), { context: ctx });
  await screenshot(bob, 'demo-room-bob-camera-off.png');
  await alice.click('#cam');
  await waitFor('alice: the camera button reads "Camera off"', () => text(alice, '#cam'), (s) => s === 'Camera off', { context: ctx });
  await decodes(bob, (t) => t.track === 'camera', 'alice/camera after camera on');

  // Mic mute toggles the publication.
  await alice.click('#mic');
  await waitFor('alice: mic muted', () => alice.evaluate(() => window.mmRoom.session.publications.find((p) => p.name === 'mic').paused), (p) => p === true, { context: ctx });
  await alice.click('#mic');
  await waitFor('alice: mic unmuted', () => text(alice, '#mic'), (s) => s === 'Mute mic', { context: ctx });

  // Stop sharing: Bob's screen tile goes away.
  await alice.click('#screen');
  await waitFor('bob: back to one tile (alice/camera)', () => tilesOf(bob),
    (ts) => ts.length === 1 && ts[0].track === 'camera', { context: ctx });

  // Alice leaves: her tile disappears on Bob's page, and Alice is back at the join form.
  await alice.click('#leave');
  await alice.locator('#join-card').waitFor({ state: 'visible' });
  await waitFor('bob: no tile left after alice left', () => tilesOf(bob), (ts) => ts.length === 0, { context: ctx });
  await waitFor('bob: no audio left after alice left', () => bob.evaluate(() => document.querySelectorAll('#audio audio').length), (n) => n === 0, { context: ctx });
  await bob.locator('#empty').waitFor({ state: 'visible' });
  assert.equal(await text(bob, '#peer-count'), '0');
  await screenshot(bob, 'demo-room-bob-alone.png');

  // The same page joins again (a new peer id): Bob sees her camera again.
  const alicePeer2 = await joinRoom(alice, 'Alice', server, [bob]);
  await waitFor(`bob: one tile, for ${alicePeer2}/camera`, () => tilesOf(bob),
    (ts) => ts.length === 1 && ts[0].peer === alicePeer2 && ts[0].track === 'camera', { context: ctx });
  await decodes(bob, (t) => t.track === 'camera', 'alice/camera after she joined again', CAMERA);
  assert.equal(await alice.locator('.tile.self').count(), 1, 'after joining again alice sees only her camera');
  await alice.click('#leave');
  await bob.click('#leave');
}));

test('demo-room: with a custom --secret the page asks for a token and joins with a pasted one', { timeout: 90000 }, () => chromium.withMediaMesh('demo-room-secret', {}, async (server, open) => {
  const room = 'room-secret';
  const page = await open.page('room-token', `${server.base}/demo/room?room=${room}`);
  await page.fill('#name', 'Carol');
  await page.click('#join');
  await page.locator('#token-box').waitFor({ state: 'visible', timeout: 10000 });
  assert.match(await text(page, '#token-reason'), /demo tokens are disabled/);
  await page.fill('#token', await server.token('webrtc', room, 'carol-1'));
  await page.click('#join');
  await waitFor('state "connected" with the pasted token', () => text(page, '#state'), (s) => s === 'connected',
    { context: async () => (await pageCtx(page)) + server.describe() });
  assert.equal(await page.evaluate(() => window.mmRoom.me.peer), 'carol-1', 'the peer id comes from the pasted token');
  await page.click('#leave');
}));
