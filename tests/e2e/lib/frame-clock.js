// Raw video frames that carry the wall clock of their making, for glass-to-glass
// latency: 320x240 yuv420p, the top 16 rows 20 blocks of 16x16 luma pixels (white 1,
// black 0, most significant bit left) holding Date.now() modulo 2^20 in milliseconds;
// the rest a slowly moving gradient (something for the encoder to code). The
// harness's frameClock() reads them back as Chromium presents them.
export const WIDTH = 320;
export const HEIGHT = 240;
const Y = WIDTH * HEIGHT;
const C = Y / 4;

export function stampedFrame(nowMs, n) {
  const f = Buffer.alloc(Y + 2 * C);
  const ms = nowMs % (1 << 20);
  for (let y = 0; y < HEIGHT; y++) {
    for (let x = 0; x < WIDTH; x++) {
      let l;
      if (y < 16) l = (ms >> (19 - Math.floor(x / 16))) & 1 ? 235 : 16;
      else l = 40 + ((x + y + n * 2) % 160);
      f[y * WIDTH + x] = l;
    }
  }
  f.fill(128, Y);
  return f;
}

/**
 * Writes stamped frames to `stream` (an encoder's stdin) at `fps` until stop() is
 * called; each frame is stamped when it is written.
 */
export function feedFrames(stream, fps = 25) {
  let n = 0;
  let stopped = false;
  const timer = setInterval(() => {
    if (stopped || stream.destroyed || stream.writableNeedDrain) return;
    stream.write(stampedFrame(Date.now(), n++));
  }, 1000 / fps);
  stream.on('error', () => {});
  return { stop: () => { stopped = true; clearInterval(timer); try { stream.end(); } catch {} }, get frames() { return n; } };
}
