#!/usr/bin/env python3
"""aiortc publishes a test pattern (VP8) and a tone (Opus) to MediaMesh by WHIP;
another aiortc peer plays the room by WHEP and counts decoded frames.

Standalone:
    tests/e2e/.venv/bin/python tests/e2e/python/aiortc_whip_whep.py \
        --base http://127.0.0.1:3000 --secret SECRET
Exit code 0 when the viewer decoded at least --min-video-frames video frames of the
published size and --min-audio-frames audio frames within --timeout seconds each;
1 otherwise, with the reason on stderr. Prints `METRIC ...` lines on stdout.
"""
import argparse
import asyncio
import fractions
import math
import struct
import sys
import time

import aioice.ice

# aioice leaves out 127.0.0.1 when it lists host addresses; this test runs on loopback.
aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]

import aiohttp  # noqa: E402
import av  # noqa: E402
from yarl import URL  # noqa: E402
from aiortc import (  # noqa: E402
    MediaStreamTrack, RTCBundlePolicy, RTCConfiguration, RTCPeerConnection,
    RTCSessionDescription, VideoStreamTrack,
)

WIDTH, HEIGHT = 320, 240
T0 = time.monotonic()


def log(*a):
    print(f"[aiortc {time.monotonic() - T0:6.2f}s]", *a, file=sys.stderr, flush=True)


class Failure(Exception):
    pass


class PatternTrack(VideoStreamTrack):
    """Moving luma gradient, 320x240, 30 fps (VideoStreamTrack's clock)."""

    def __init__(self):
        super().__init__()
        self.n = 0

    async def recv(self):
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
        y, u, v = frame.planes
        shift = (self.n * 4) & 0xFF
        row = bytes(((x + shift) & 0xFF) for x in range(y.line_size))
        y.update(row * HEIGHT)
        u.update(bytes([90]) * u.buffer_size)
        v.update(bytes([170 if (self.n // 15) % 2 else 60]) * v.buffer_size)
        self.n += 1
        frame.pts, frame.time_base = pts, time_base
        return frame


class ToneTrack(MediaStreamTrack):
    """400 Hz sine, 48 kHz mono s16, 20 ms frames, paced in real time."""

    kind = "audio"
    RATE, SAMPLES = 48000, 960

    def __init__(self):
        super().__init__()
        period = [int(8000 * math.sin(2 * math.pi * 400 * i / self.RATE)) for i in range(self.SAMPLES)]
        self.payload = struct.pack(f"<{self.SAMPLES}h", *period)
        self.start = None
        self.ts = 0

    async def recv(self):
        if self.start is None:
            self.start = time.monotonic()
        else:
            self.ts += self.SAMPLES
            wait = self.start + self.ts / self.RATE - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        frame = av.AudioFrame(format="s16", layout="mono", samples=self.SAMPLES)
        frame.planes[0].update(self.payload)
        frame.sample_rate = self.RATE
        frame.pts, frame.time_base = self.ts, fractions.Fraction(1, self.RATE)
        return frame


def new_pc(name):
    # iceServers=[]: aiortc would otherwise use a public STUN server by default.
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    pc.states = []

    @pc.on("connectionstatechange")
    def _():
        pc.states.append(f"{time.monotonic() - T0:.2f}s {pc.connectionState}")
        log(name, "connectionState", pc.connectionState)

    return pc


async def token(http, base, secret, kind, room, peer):
    async with http.post(f"{base}/token/{kind}", json={"room": room, "peer": peer, "ttl": 600},
                         headers={"Authorization": f"Bearer {secret}"}) as r:
        text = await r.text()
        if r.status != 200:
            raise Failure(f"POST /token/{kind} -> {r.status} {text[:300]}")
        return (await r.json(content_type=None))["data"]["token"]


async def negotiate(http, pc, url, tok, what):
    """Non-trickle WHIP/WHEP: aiortc gathers all candidates in setLocalDescription."""
    await pc.setLocalDescription(await pc.createOffer())
    t = time.monotonic()
    async with http.post(url, data=pc.localDescription.sdp,
                         headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {tok}"}) as r:
        answer = await r.text()
        if r.status != 201:
            raise Failure(f"{what}: POST {url} -> {r.status} {answer[:300]}")
        loc = r.headers.get("Location")
        if not loc:
            raise Failure(f"{what}: 201 without a Location header")
        ctype = r.headers.get("Content-Type", "")
        if not ctype.startswith("application/sdp"):
            raise Failure(f"{what}: answer Content-Type is {ctype!r}, expected application/sdp")
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    resource = str(URL(url).join(URL(loc)))
    log(what, "201, resource", resource)
    return resource, t


async def wait_until(what, pred, timeout, detail):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise Failure(f"timed out after {timeout:.0f} s waiting for {what}; {detail()}")
        await asyncio.sleep(0.05)


async def run(args):
    stats = {"video": 0, "audio": 0, "sizes": set(), "first_video": None}
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        room = args.room
        whip_tok = await token(http, args.base, args.secret, "whip", room, "aiortc-publisher")
        whep_tok = await token(http, args.base, args.secret, "whep", room, "aiortc-viewer")

        pub = new_pc("publisher")
        pub.addTransceiver(PatternTrack(), direction="sendonly")
        pub.addTransceiver(ToneTrack(), direction="sendonly")
        view = new_pc("viewer")
        view.addTransceiver("audio", direction="recvonly")
        view.addTransceiver("video", direction="recvonly")
        tasks = []

        @view.on("track")
        def on_track(track):
            log("viewer got track", track.kind)

            async def consume():
                while True:
                    try:
                        frame = await track.recv()
                    except Exception:
                        return
                    if track.kind == "video":
                        if stats["first_video"] is None:
                            stats["first_video"] = time.monotonic()
                        stats["video"] += 1
                        stats["sizes"].add((frame.width, frame.height))
                    else:
                        stats["audio"] += 1

            tasks.append(asyncio.ensure_future(consume()))

        resources = []
        try:
            res, _ = await negotiate(http, pub, f"{args.base}/whip/endpoint", whip_tok, "WHIP")
            resources.append((res, whip_tok))
            await wait_until("publisher connectionState 'connected'", lambda: pub.connectionState == "connected",
                             args.timeout, lambda: f"publisher states {pub.states}")
            res, t_post = await negotiate(http, view, f"{args.base}/whep/endpoint", whep_tok, "WHEP")
            resources.append((res, whep_tok))
            detail = lambda: (f"viewer states {view.states}, video frames {stats['video']}, "  # noqa: E731
                              f"audio frames {stats['audio']}, sizes {sorted(stats['sizes'])}; publisher states {pub.states}")
            await wait_until("viewer connectionState 'connected'", lambda: view.connectionState == "connected",
                             args.timeout, detail)
            await wait_until(f"{args.min_video_frames} decoded video frames", lambda: stats["video"] >= args.min_video_frames,
                             args.timeout, detail)
            await wait_until(f"{args.min_audio_frames} decoded audio frames", lambda: stats["audio"] >= args.min_audio_frames,
                             args.timeout, detail)
            if (WIDTH, HEIGHT) not in stats["sizes"]:
                raise Failure(f"viewer decoded frames of sizes {sorted(stats['sizes'])}, expected {WIDTH}x{HEIGHT}")
            print(f"METRIC aiortc_whep_first_frame_ms={round((stats['first_video'] - t_post) * 1000)}", flush=True)
            print(f"METRIC aiortc_video_frames={stats['video']} aiortc_audio_frames={stats['audio']}", flush=True)
            # DELETE both sessions: 200 expected.
            for res, tok in reversed(resources):
                async with http.delete(res, headers={"Authorization": f"Bearer {tok}"}) as r:
                    if r.status != 200:
                        raise Failure(f"DELETE {res} -> {r.status} {(await r.text())[:200]}")
            resources.clear()
            log("ok:", stats["video"], "video frames,", stats["audio"], "audio frames, sizes", sorted(stats["sizes"]))
        finally:
            for res, tok in resources:
                try:
                    async with http.delete(res, headers={"Authorization": f"Bearer {tok}"}):
                        pass
                except Exception:
                    pass
            for t in tasks:
                t.cancel()
            await view.close()
            await pub.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default="http://127.0.0.1:3000", help="MediaMesh HTTP base URL")
    ap.add_argument("--secret", required=True, help="app secret, to mint tokens with POST /token/*")
    ap.add_argument("--room", default="aiortc-room")
    ap.add_argument("--min-video-frames", type=int, default=60)
    ap.add_argument("--min-audio-frames", type=int, default=100)
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds per wait")
    args = ap.parse_args()
    try:
        asyncio.run(asyncio.wait_for(run(args), timeout=args.timeout * 5 + 10))
    except Failure as e:
        print(f"FAIL: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    except asyncio.TimeoutError:
        print("FAIL: overall time limit reached", file=sys.stderr, flush=True)
        sys.exit(1)
    except Exception as e:  # connection refused, bad SDP, ...
        print(f"FAIL: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    print("PASS aiortc WHIP publish + WHEP play", flush=True)


if __name__ == "__main__":
    main()
