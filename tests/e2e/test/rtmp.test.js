// RTMP ingest with real publishers, WebRTC (WHEP) viewers in Chromium.
//  (1) ffmpeg (Debian's, libx264 + its AAC encoder) publishes video whose frames carry
//      the wall clock of their making (lib/frame-clock.js, piped in raw) and a 1 kHz
//      sine over RTMP with an rtmp token as the stream key. A Chromium WHEP viewer
//      decodes H264 at 320x240 and hears the tone (WebAudio spectrum peak at 1 kHz);
//      glass-to-glass latency (frame made -> Chromium presents it) is measured:
//      `METRIC rtmp_glass_to_glass_ms`.
//  (2) a viewer who joins in the middle of a 10 s GOP (5 s after a keyframe) decodes
//      its first frame within 1 s of its WHEP POST (the server's GOP cache).
//  (3) ffmpeg is killed (-9, the TCP connection drops mid-stream): the viewer's tracks
//      stop (room view empty); a new ffmpeg with the same key resumes the same peer and
//      tracks and the viewer plays again without reconnecting.
//  (4) a wrong key is refused (ffmpeg fails, the server logs why) and a stream with
//      B-frames gets a clear error naming them, while the good stream plays on.
//  (5) GStreamer rtmp2sink (x264enc + voaacenc) publishes too.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { useChromium } from '../lib/fixtures.js';
import { trackChild, sleep } from '../lib/server.js';
import { startProcess } from '../lib/proc.js';
import { waitFor, statsOf, sessionContext, expectFlowing } from '../lib/media.js';
import { feedFrames, WIDTH, HEIGHT } from '../lib/frame-clock.js';

const chromium = useChromium({ pages: true });
const FFMPEG = '/usr/bin/ffmpeg';

/** ffmpeg publishing stamped frames (from our pipe) and a 1 kHz sine to `url`. */
function ffmpegPublish(url, { bframes = 0, gop = 250, label = 'ffmpeg' } = {}) {
  const args = ['-hide_banner', '-loglevel', 'warning',
    '-f', 'rawvideo', '-pix_fmt', 'yuv420p', '-s', `${WIDTH}x${HEIGHT}`, '-r', '25', '-i', 'pipe:0',
    '-re', '-f', 'lavfi', '-i', 'sine=frequency=1000:sample_rate=44100',
    '-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-g', String(gop),
    ...(bframes ? ['-profile:v', 'main', '-bf', String(bframes), '-x264-params', 'b-adapt=0'] : ['-profile:v', 'baseline', '-bf', '0']),
    '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-ar', '44100', '-ac', '2', '-b:a', '96k',
    '-f', 'flv', url];
  const child = trackChild(spawn(FFMPEG, args, { stdio: ['pipe', 'pipe', 'pipe'] }));
  const out = { stderr: '' };
  child.stderr.on('data', (d) => { out.stderr += d.toString(); });
  child.stdout.on('data', () => {});
  const feed = feedFrames(child.stdin, 25);
  const done = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  return {
    child, done, out,
    describe: () => `\n--- ${label} (${FFMPEG} ${args.join(' ')}) stderr:\n${out.stderr.slice(-3000) || '(empty)'}`,
    async stop(signal = 'SIGINT') {
      feed.stop();
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return Promise.race([done, sleep(5000).then(() => { child.kill('SIGKILL'); return done; })]);
    },
  };
}

const median = (a) => { const s = [...a].sort((x, y) => x - y); return s[Math.floor(s.length / 2)]; };

test('rtmp: ffmpeg publishes H264 + AAC, Chromium plays it by WHEP (video, 1 kHz tone, glass-to-glass latency); a late viewer starts at once; a dropped connection resumes with the same key; bad key and B-frames get clear errors', { timeout: 240000 }, async () => {
  await chromium.withMediaMesh('rtmp', {}, async (server, open) => {
    const room = 'room-rtmp';
    const key = await server.token('rtmp', room, 'obs');
    const pubs = [];
    try {
      let ff = ffmpegPublish(server.rtmpUrl(key));
      pubs.push(ff);
      const ctx = async () => ff.describe();
      await waitFor('the server to show the RTMP peer with audio and video in the room', async () => {
        const r = await fetch(`${server.base}/api/rooms/${room}`, { headers: { Authorization: `Bearer ${server.secret}` } });
        return r.json();
      }, (v) => (v.peers || []).some((p) => p.peer === 'obs' && (p.tracks || []).length === 2), { context: ctx });
      const tStart = Date.now();

      // (1) A WHEP viewer: H264 video, the tone, the latency.
      const page = await open.harness('viewer');
      const token = await server.token('whep', room);
      await page.evaluate((o) => window.mm.view(o), { name: 'V', endpoint: `${server.base}/whep/endpoint`, token });
      await expectFlowing(page, 'V', { width: WIDTH, minFrames: 25, context: ctx });
      const st = await statsOf(page, 'V');
      assert.match(st.video.codec || '', /H264/i, `video codec: ${JSON.stringify(st.video)}`);
      assert.match(st.audio.codec || '', /opus/i, `audio codec: ${JSON.stringify(st.audio)}`);
      const tone = await page.evaluate(() => window.mm.tone('V', { freq: 1000, ms: 1500 }));
      console.log(`METRIC rtmp_tone_peak_hz=${tone.peakHz} rtmp_tone_ratio_db=${tone.ratioDb.toFixed(1)}`);
      assert.ok(Math.abs(tone.peakHz - 1000) <= 30 && tone.ratioDb > 20, `the viewer hears the 1 kHz sine: ${JSON.stringify(tone)}` + await ctx());
      const lat = await page.evaluate(() => window.mm.frameClock('V', { count: 75 }));
      console.log(`METRIC rtmp_glass_to_glass_ms_p50=${median(lat)} min=${Math.min(...lat)} max=${Math.max(...lat)} n=${lat.length}`);
      assert.ok(median(lat) < 2000, `glass-to-glass latency median ${median(lat)} ms: ${lat.join(',')}`);

      // (2) A viewer who comes in the middle of a 10 s GOP (keyframes every 250 frames
      //     at 25 fps from the stream's start): without the GOP cache it would wait ~5 s.
      const into = (Date.now() - tStart) % 10000;
      await sleep((15000 - into) % 10000);
      const late = await open.harness('late viewer');
      await late.evaluate((o) => window.mm.view(o), { name: 'L', endpoint: `${server.base}/whep/endpoint`, token });
      const first = await waitFor('the late viewer\'s first decoded frame', () => statsOf(late, 'L'), (s) => s.firstFrameMs !== null,
        { context: async () => (await sessionContext(late, 'L')) + await ctx() });
      console.log(`METRIC rtmp_late_viewer_first_frame_ms=${first.firstFrameMs} (joined ~${(Date.now() - tStart) % 10000} ms into a 10 s GOP)`);
      assert.ok(first.firstFrameMs < 1000, `late viewer's first frame ${first.firstFrameMs} ms after its POST (GOP cache)`);

      // (3) The TCP connection drops: the peer leaves; the same key resumes it.
      await ff.stop('SIGKILL');
      const roomOf = async () => (await (await fetch(`${server.base}/api/rooms/${room}`, { headers: { Authorization: `Bearer ${server.secret}` } })).json());
      await waitFor('the RTMP peer to leave the room after its connection died', roomOf, (v) => !(v.peers || []).some((p) => p.peer === 'obs'), { context: ctx });
      const before = await statsOf(page, 'V');
      ff = ffmpegPublish(server.rtmpUrl(key), { label: 'ffmpeg again' });
      pubs.push(ff);
      await waitFor('the viewer to decode the resumed stream', () => statsOf(page, 'V'),
        (s) => s.video.framesDecoded > before.video.framesDecoded + 25, { timeoutMs: 20000, context: async () => (await sessionContext(page, 'V')) + await ff.describe() });

      // (4) A wrong key; B-frames. The good stream plays on.
      const bad = ffmpegPublish(server.rtmpUrl('not-a-token'), { label: 'ffmpeg wrong key' });
      pubs.push(bad);
      const badExit = await Promise.race([bad.done, sleep(15000).then(() => null)]);
      assert.ok(badExit && badExit.code !== 0, `ffmpeg with a wrong key must fail: ${JSON.stringify(badExit)}` + bad.describe());
      await waitFor('the server to log the refused key', async () => server.tail.text(), (t) => /RTMP publish refused/.test(t), { timeoutMs: 5000 });
      const bkey = await server.token('rtmp', room, 'bframes');
      const bf = ffmpegPublish(server.rtmpUrl(bkey), { bframes: 2, label: 'ffmpeg B-frames' });
      pubs.push(bf);
      const bfExit = await Promise.race([bf.done, sleep(15000).then(() => null)]);
      assert.ok(bfExit, 'ffmpeg with B-frames is stopped by the server' + bf.describe());
      assert.match(server.tail.text(), /B-frames/, 'the server says why' + bf.describe());
      await expectFlowing(page, 'V', { width: WIDTH, context: ctx });
    } finally {
      for (const p of pubs) await p.stop('SIGKILL').catch(() => {});
    }
  });
});

test('rtmp: GStreamer rtmp2sink publishes H264 + AAC, Chromium plays it', { timeout: 120000 }, async () => {
  await chromium.withMediaMesh('rtmp-gst', {}, async (server, open) => {
    const room = 'room-rtmp-gst';
    const key = await server.token('rtmp', room, 'gst');
    const pipeline = ['-q', 'videotestsrc', 'is-live=true', '!', 'video/x-raw,format=I420,width=320,height=240,framerate=25/1', '!',
      'x264enc', 'tune=zerolatency', 'key-int-max=50', 'bframes=0', 'speed-preset=ultrafast', '!', 'h264parse', '!',
      'flvmux', 'streamable=true', 'name=m', '!', 'rtmp2sink', `location=${server.rtmpUrl(key)}`,
      'audiotestsrc', 'is-live=true', 'freq=1000', '!', 'audioconvert', '!', 'audioresample', '!', 'audio/x-raw,rate=48000,channels=2', '!',
      'avenc_aac', '!', 'aacparse', '!', 'm.'];
    const gst = startProcess('gst-launch-1.0', pipeline, { label: 'gst-launch rtmp2sink' });
    try {
      const page = await open.harness('viewer');
      const token = await server.token('whep', room);
      await waitFor('the GStreamer peer in the room with two tracks', async () => (await (await fetch(`${server.base}/api/rooms/${room}`, { headers: { Authorization: `Bearer ${server.secret}` } })).json()),
        (v) => (v.peers || []).some((p) => p.peer === 'gst' && (p.tracks || []).length === 2), { context: async () => gst.describe() });
      await page.evaluate((o) => window.mm.view(o), { name: 'V', endpoint: `${server.base}/whep/endpoint`, token });
      await expectFlowing(page, 'V', { width: 320, context: async () => gst.describe() });
      const tone = await page.evaluate(() => window.mm.tone('V', { freq: 1000, ms: 1000 }));
      assert.ok(Math.abs(tone.peakHz - 1000) <= 30 && tone.ratioDb > 20, `the viewer hears GStreamer's 1 kHz tone: ${JSON.stringify(tone)}` + gst.describe());
    } finally {
      await gst.stop('SIGINT', 3000);
    }
  });
});
