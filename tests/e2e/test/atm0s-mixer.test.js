// The audio mixer feature of the published atm0s SDK (@atm0s-media-sdk/core, join
// features.mixer) against MediaMesh. Three Chromium peers publish a sine of known
// loudness instead of the fake microphone: alice (the listener) the loudest, bob
// loud, carol quiet. Alice joins with mixer AUTO and one output slot, attaches no
// receivers of her own, and must hear the loudest *other* speaker on that slot:
// bob, then carol once bob goes silent, then nothing once carol leaves. Proven by
// the SDK's slot events (features.mixer.slot_set/unset), its voice-activity events,
// (and, for a fourth listener on our SDK, `connect({ mixer })` / `session.mixer`),
// and the frequency of what the output receiver plays (WebAudio analyser).
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { useChromium } from '../lib/fixtures.js';
import { waitFor } from '../lib/media.js';
import { ensureAtm0sBundle } from '../lib/bundle.js';
import { openSdkPage, sdkContext } from '../lib/atm0s.js';
import { ensureOurBundle, openOurPage, mmContext } from '../lib/mediamesh-sdk.js';

const chromium = useChromium({ pages: true });
before(async () => { await ensureAtm0sBundle(); ensureOurBundle(); });

const PEERS = [
  { id: 'bob', tone: { freq: 440, gain: 0.5 } },
  { id: 'carol', tone: { freq: 880, gain: 0.05 } },
  { id: 'alice', tone: { freq: 660, gain: 0.9 }, mixer: { mode: 'auto', outputs: 1 } },
];

test('atm0s-mixer: AUTO mixer slot follows the loudest other speaker (never the listener), switches when it goes silent, empties when the last speaker leaves', { timeout: 120000 }, () => chromium.withMediaMesh('atm0s-mixer', {}, async (server, open) => {
  const room = 'room-mixer';
  const pages = {};
  for (const p of PEERS) pages[p.id] = await openSdkPage(open, chromium.web, p.id);
  // Dave listens with our SDK (connect({ mixer })), publishing nothing.
  const dave = await openOurPage(open, chromium.web, 'dave');
  const all = async () => (await Promise.all(Object.values(pages).map((pg) => sdkContext(pg, { pageLog: false, events: 30 })))).join('')
    + await mmContext(dave, { pageLog: false, events: 30 });
  const A = pages.alice;

  for (const p of PEERS) {
    const page = pages[p.id];
    await page.evaluate((o) => window.sdk.camera(o), { width: 320, height: 240, fps: 10, tone: p.tone });
    await page.evaluate(() => window.sdk.setAuto(false)); // no receivers of their own: only the mixer
    const token = await server.token('webrtc', room, p.id);
    const res = await page.evaluate((o) => window.sdk.join(o), { gateway: server.base, token, room, peer: p.id, mixer: p.mixer ?? null })
      .catch(async (e) => { throw new Error(`${p.id}: join failed: ${e.message}` + await sdkContext(page, { sdp: true })); });
    assert.equal(res.state, 'connected', `${p.id}: state ${res.state}` + await sdkContext(page, { sdp: true }));
  }

  const dTok = await server.token('webrtc', room, 'dave');
  const dRes = await dave.evaluate((o) => window.mm2.join(o), { url: server.base, token: dTok, room, peer: 'dave', publish: false, mixer: { mode: 'auto', outputs: 1 } })
    .catch(async (e) => { throw new Error(`dave: join failed: ${e.message}` + await all()); });
  assert.equal(dRes.state, 'connected', `dave: ${JSON.stringify(dRes)}` + await all());
  const daveMixer = () => dave.evaluate(() => window.mm2.mixerState());

  const slot = (m) => (m?.slots?.[0]?.source ? `${m.slots[0].source.peer}/${m.slots[0].source.track}` : null);
  const mixer = () => A.evaluate(() => window.sdk.mixerState());

  // 1. The slot carries bob (louder than carol; alice's own louder voice is excluded),
  //    and the output receiver decodes audio with a level.
  await waitFor('alice: mixer slot 0 = bob/audio_main', mixer, (m) => slot(m) === 'bob/audio_main', { context: all });
  const tone = () => A.evaluate(() => window.sdk.outputTone(0));
  const near = (t, hz) => Math.abs(t.hz - hz) <= 12 && t.db > -70;
  const heard = await waitFor('alice: the mixer output plays bob\'s 440 Hz tone', tone, (t) => near(t, 440), { context: all });
  console.log(`# alice hears bob on the mixer output: ${heard.hz} Hz at ${heard.db} dB`);
  // Our SDK: for dave, who publishes nothing, the loudest other speaker is alice (660 Hz).
  const d1 = await waitFor('dave (@mediamesh/sdk): mixer slot 0 = alice/audio_main playing 660 Hz', daveMixer,
    (m) => m?.slots?.[0]?.peer === 'alice' && near(m.tones[0], 660), { context: all });
  console.log(`# dave (@mediamesh/sdk) hears alice: ${d1.tones[0].hz} Hz at ${d1.tones[0].db} dB`);
  await waitFor('alice: a mixer voice-activity event for bob', () => A.evaluate(() => window.sdk.events()),
    (ev) => ev.some((e) => e.type === 'mixer.voice_activity' && e.peer === 'bob' && e.active), { context: all });

  // 2. Bob goes silent: carol takes the slot, on the same receiver (no renegotiation).
  const neg0 = await A.evaluate(() => window.sdk.negotiation());
  await pages.bob.evaluate(() => window.sdk.setToneGain(0));
  const t0 = Date.now();
  await waitFor('alice: mixer slot 0 = carol/audio_main after bob went silent', mixer, (m) => slot(m) === 'carol/audio_main', { timeoutMs: 10000, context: all });
  console.log(`# slot moved to carol ${Date.now() - t0} ms after bob went silent`);
  const heard2 = await waitFor('alice: the mixer output plays carol\'s 880 Hz tone', tone, (t) => near(t, 880), { context: all });
  console.log(`# then carol: ${heard2.hz} Hz at ${heard2.db} dB`);
  const neg1 = await A.evaluate(() => window.sdk.negotiation());
  assert.equal(neg1.signalingChanges, neg0.signalingChanges, 'alice: the slot switch renegotiated' + await all());

  // 3. attach/detach requests are answered (AUTO mode mixes the room whatever is attached).
  assert.equal(await A.evaluate(() => window.sdk.mixerAttach([{ peer: 'bob', track: 'audio_main' }])), true);
  assert.equal(await A.evaluate(() => window.sdk.mixerDetach([{ peer: 'bob', track: 'audio_main' }])), true);

  // 4. Carol leaves and bob is silent: the slot is unset.
  await pages.carol.evaluate(() => window.sdk.disconnect());
  await waitFor('alice: mixer slot 0 unset after carol left', mixer, (m) => slot(m) === null, { timeoutMs: 10000, context: all });
  // Alice goes silent too: dave's slot is unset (nobody speaks).
  await A.evaluate(() => window.sdk.setToneGain(0));
  await waitFor('dave (@mediamesh/sdk): mixer slot 0 unset once nobody speaks', daveMixer, (m) => m?.slots?.[0] === null, { timeoutMs: 10000, context: all });
  const changes = (await A.evaluate(() => window.sdk.events())).filter((e) => e.type === 'mixer.output_changed')
    .map((e) => e.outputs[0]?.source ? `${e.outputs[0].source.peer}/${e.outputs[0].source.track}` : '-');
  assert.ok(!changes.includes('alice/audio_main'), `alice heard herself: ${changes.join(' -> ')}`);
  console.log(`# alice's slot 0: ${changes.join(' -> ')}`);
}));
