// Video codecs end to end: a Chromium WHIP publisher offers one video codec only
// (setCodecPreferences) and a Chromium WHEP viewer (all codecs offered, Chromium's
// order) must decode it. VP8 is the known-good baseline; VP9, H264 and AV1 follow,
// one room after another on one server. A codec that this Chromium cannot encode or
// decode (RTCRtpSender/RTCRtpReceiver.getCapabilities) is skipped with the reason;
// one it can send and the server does not deliver fails.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useChromium } from '../lib/fixtures.js';
import { waitFor, statsOf, sessionContext, expectFlowing } from '../lib/media.js';

const CODECS = ['VP8', 'VP9', 'H264', 'AV1'];
const chromium = useChromium({ pages: true });

const lists = (page, kind) => page.evaluate((k) => {
  const caps = (k === 'send' ? RTCRtpSender : RTCRtpReceiver).getCapabilities('video');
  return caps.codecs.map((c) => c.mimeType.toLowerCase());
}, kind);

test('codecs: Chromium publishes VP8, VP9, H264 and AV1 by WHIP (one at a time), a Chromium WHEP viewer decodes each', { timeout: 150000 }, async (t) => {
  await chromium.withMediaMesh('codecs', {}, async (server, open) => {
    const pubPage = await open.harness('publisher');
    const viewPage = await open.harness('viewer');
    const canSend = await lists(pubPage, 'send');
    const canDecode = await lists(viewPage, 'recv');

    for (const codec of CODECS) {
      const mime = `video/${codec}`.toLowerCase();
      await t.test(codec, { timeout: 60000 }, async (st) => {
        if (!canSend.includes(mime)) { st.skip(`this Chromium cannot send ${codec} (RTCRtpSender.getCapabilities: ${[...new Set(canSend)].join(', ')})`); return; }
        if (!canDecode.includes(mime)) { st.skip(`this Chromium cannot decode ${codec} (RTCRtpReceiver.getCapabilities: ${[...new Set(canDecode)].join(', ')})`); return; }
        const room = `room-codec-${codec.toLowerCase()}`;
        const pub = `pub-${codec}`;
        const view = `view-${codec}`;
        const ctx = async () => (await sessionContext(pubPage, pub, { sdp: true, pageLog: false })) +
          (await sessionContext(viewPage, view, { sdp: true }));

        await pubPage.evaluate((o) => window.mm.publish(o), { name: pub, endpoint: `${server.base}/whip/endpoint`,
          token: await server.token('whip', room, `publisher-${codec}`), width: 320, height: 240, fps: 15, videoCodec: mime })
          .catch(async (e) => { throw new Error(`${codec}: WHIP publish failed: ${e.message}` + await sessionContext(pubPage, pub, { sdp: true })); });
        const sent = await waitFor(`${codec} publisher: connected and encoding ${codec} (outbound-rtp codec)`,
          () => statsOf(pubPage, pub),
          (s) => s.conn === 'connected' && s.outVideo?.framesEncoded > 5 && s.outVideo.packetsSent > 20,
          { context: async () => sessionContext(pubPage, pub, { sdp: true }) });
        assert.equal(sent.outVideo.codec?.split(' ')[0].toLowerCase(), mime,
          `${codec} publisher: outbound video codec is ${sent.outVideo.codec} (the offer carried only ${codec})` + await ctx());

        await viewPage.evaluate((o) => window.mm.view(o), { name: view, endpoint: `${server.base}/whep/endpoint`,
          token: await server.token('whep', room, `viewer-${codec}`), mode: 'library' })
          .catch(async (e) => { throw new Error(`${codec}: WHEP view failed: ${e.message}` + await ctx()); });
        const first = await waitFor(`${codec} viewer: first decoded frame`, () => statsOf(viewPage, view),
          (s) => s.firstFrameMs !== null, { context: ctx });
        console.log(`METRIC codec_first_frame_ms_${codec.toLowerCase()}=${first.firstFrameMs}`);

        const flow = await expectFlowing(viewPage, view, { width: 320, minFrames: 10, context: ctx });
        assert.equal(flow.video.codec?.split(' ')[0].toLowerCase(), mime,
          `${codec} viewer: inbound video codec is ${flow.video.codec}, expected ${codec}` + await ctx());
        const end = await statsOf(pubPage, pub);
        console.log(`# ${codec}: sent ${end.outVideo.codec} (${end.outVideo.encoder}), ` +
          `decoded ${flow.video.codec} ${flow.video.frameWidth}x${flow.video.frameHeight}, ` +
          `${flow.video.framesDecoded} frames, ${flow.video.packetsLost} of ${flow.video.packetsReceived} packets lost, audio ${flow.audio.codec}`);

        await viewPage.evaluate((n) => window.mm.stop(n), view);
        await pubPage.evaluate((n) => window.mm.stop(n), pub);
      });
    }
  });
});
