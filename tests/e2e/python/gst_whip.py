#!/usr/bin/python3
"""GStreamer webrtcbin publishes videotestsrc (VP8) + audiotestsrc (Opus) to MediaMesh by WHIP.

Run with Debian's /usr/bin/python3 (it has the `gi` bindings):
    /usr/bin/python3 tests/e2e/python/gst_whip.py --base http://127.0.0.1:3000 --secret SECRET --room r1
or with a ready token: --token JWT.

webrtcbin keeps its defaults for DTLS (an RSA 2048 certificate) and SRTP. The offer is
sent once ICE gathering is complete (no trickle); the answer's candidates are added by
hand. Prints lines on stdout that a test can wait for:
    STATE ice=... / STATE conn=...     state changes
    PUBLISHING                         connection-state reached "connected"
    SENT streams=N packets=A,B         outbound RTP packets per stream, once per second
    DELETE <status>                    after SIGINT/SIGTERM, then exits 0
Exits 1 if not connected within --timeout seconds or on a pipeline/HTTP error.
"""
import argparse
import json
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("GstSdp", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

T0 = time.monotonic()


def out(*a):
    print(*a, flush=True)


def log(*a):
    print(f"[gst {time.monotonic() - T0:6.2f}s]", *a, file=sys.stderr, flush=True)


def http(method, url, token, body=None, ctype=None):
    headers = {"Authorization": f"Bearer {token}"}
    if ctype:
        headers["Content-Type"] = ctype
    req = urllib.request.Request(url, data=body.encode() if body is not None else None, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode(errors="replace")


def mint_token(base, secret, room, peer):
    body = json.dumps({"room": room, "peer": peer, "ttl": 600})
    status, _, text = http("POST", f"{base}/token/whip", secret, body, "application/json")
    if status != 200:
        raise RuntimeError(f"POST /token/whip -> {status} {text[:300]}")
    return json.loads(text)["data"]["token"]


PIPELINE = """
webrtcbin name=wb bundle-policy=max-bundle
videotestsrc is-live=true pattern=ball
  ! video/x-raw,width={w},height={h},framerate={fps}/1
  ! videoconvert ! queue ! vp8enc deadline=1 target-bitrate=300000 cpu-used=8
  ! rtpvp8pay pt=96 mtu=1200
  ! application/x-rtp,media=video,encoding-name=VP8,payload=96,clock-rate=90000 ! wb.
audiotestsrc is-live=true wave=sine freq=440 volume=0.3
  ! audioconvert ! audioresample ! queue ! opusenc
  ! rtpopuspay pt=111 mtu=1200
  ! application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000 ! wb.
"""


class Publisher:
    def __init__(self, args, token):
        self.args = args
        self.token = token
        self.endpoint = f"{args.base}/whip/endpoint"
        self.resource = None
        self.posted = False
        self.connected = False
        self.exit_code = 0
        self.loop = GLib.MainLoop()
        self.pipe = Gst.parse_launch(PIPELINE.format(w=args.width, h=args.height, fps=args.fps))
        self.wb = self.pipe.get_by_name("wb")
        # Loopback only: libnice would not offer 127.0.0.1 by itself. Keep the Python
        # wrapper of the agent alive: dropping it unrefs the agent once too often.
        self.ice = self.wb.get_property("ice-agent")
        self.ice.emit("add-local-ip-address", "127.0.0.1")
        i = 0
        while True:
            t = self.wb.emit("get-transceiver", i)
            if t is None:
                break
            t.set_property("direction", GstWebRTC.WebRTCRTPTransceiverDirection.SENDONLY)
            i += 1
        log(f"{i} transceiver(s) set to sendonly")
        self.wb.connect("on-negotiation-needed", self.on_negotiation_needed)
        self.wb.connect("notify::ice-gathering-state", self.on_gathering)
        self.wb.connect("notify::ice-connection-state", self.on_ice_state)
        self.wb.connect("notify::connection-state", self.on_conn_state)
        bus = self.pipe.get_bus()
        bus.add_signal_watch()
        bus.connect("message::error", self.on_error)

    # ---------------------------------------------------------------- negotiation
    def on_negotiation_needed(self, wb):
        log("negotiation needed: creating offer")
        promise = Gst.Promise.new_with_change_func(self.on_offer_created, None)
        wb.emit("create-offer", None, promise)

    def on_offer_created(self, promise, _):
        promise.wait()
        reply = promise.get_reply()
        offer = reply.get_value("offer") if reply is not None and reply.has_field("offer") else None
        if offer is None:
            GLib.idle_add(lambda: self.fail(f"create-offer failed: {reply.to_string() if reply else 'no reply'}"))
            return
        self.wb.emit("set-local-description", offer, Gst.Promise.new())

    def on_gathering(self, wb, _pspec):
        state = wb.get_property("ice-gathering-state")
        log("ice-gathering-state", state.value_nick)
        if state == GstWebRTC.WebRTCICEGatheringState.COMPLETE and not self.posted:
            self.posted = True
            GLib.idle_add(self.post_offer)

    def post_offer(self):
        sdp = self.wb.get_property("local-description").sdp.as_text()
        status, headers, answer = http("POST", self.endpoint, self.token, sdp, "application/sdp")
        headers = {k.lower(): v for k, v in headers.items()}
        if status != 201:
            return self.fail(f"WHIP POST -> {status} {answer[:300]}")
        loc = headers.get("location")
        if not loc:
            return self.fail("WHIP POST: 201 without a Location header")
        self.resource = urllib.parse.urljoin(self.endpoint, loc)
        log("WHIP 201, resource", self.resource)
        res, msg = GstSdp.SDPMessage.new_from_text(answer)
        if res != GstSdp.SDPResult.OK:
            return self.fail(f"cannot parse the answer SDP:\n{answer}")
        desc = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, msg)
        promise = Gst.Promise.new()
        self.wb.emit("set-remote-description", desc, promise)
        promise.wait()
        # Add the answer's candidates by hand (per m-line index).
        n = 0
        mline = -1
        for line in answer.splitlines():
            if line.startswith("m="):
                mline += 1
            elif line.startswith("a=candidate:") and mline >= 0:
                self.wb.emit("add-ice-candidate", mline, line[2:])
                n += 1
        log(f"answer set, {n} candidate(s) added")
        if n == 0:
            log("warning: the answer has no a=candidate lines")
        return False

    # ---------------------------------------------------------------- states
    def on_ice_state(self, wb, _pspec):
        s = wb.get_property("ice-connection-state").value_nick
        GLib.idle_add(lambda: out(f"STATE ice={s}") and False)
        if s == "failed":
            GLib.idle_add(lambda: self.fail("ICE failed"))

    def on_conn_state(self, wb, _pspec):
        s = wb.get_property("connection-state").value_nick
        GLib.idle_add(lambda: out(f"STATE conn={s}") and False)
        if s == "connected" and not self.connected:
            self.connected = True
            GLib.idle_add(lambda: out("PUBLISHING") and False)
        if s == "failed":
            GLib.idle_add(lambda: self.fail("connection-state failed (DTLS?)"))

    def on_error(self, _bus, msg):
        err, dbg = msg.parse_error()
        self.fail(f"pipeline error: {err.message} ({dbg})")

    def report_stats(self):
        promise = Gst.Promise.new_with_change_func(self.on_stats, None)
        self.wb.emit("get-stats", None, promise)
        return True

    def on_stats(self, promise, _):
        promise.wait()
        reply = promise.get_reply()
        sent = []

        def each(_field, value, _):
            # Each stats entry is a structure named after its type. (GStreamer 1.22
            # may label both outbound streams kind=audio, so count per SSRC.)
            if isinstance(value, Gst.Structure) and value.get_name() == "outbound-rtp" and value.has_field("packets-sent"):
                sent.append(value.get_value("packets-sent"))
            return True

        if reply is not None:
            reply.foreach(each, None)
        line = f"SENT streams={len(sent)} packets={','.join(str(n) for n in sorted(sent))}"
        GLib.idle_add(lambda: out(line) and False)

    def check_connected(self):
        if not self.connected:
            self.fail(f"not connected within {self.args.timeout:.0f} s")
        return False

    # ---------------------------------------------------------------- lifecycle
    def fail(self, why):
        out(f"FAIL {why}")
        log("FAIL", why)
        self.exit_code = 1
        self.shutdown()
        return False

    def shutdown(self, *_):
        if self.resource:
            try:
                status, _, text = http("DELETE", self.resource, self.token)
            except Exception as e:  # server gone
                status, text = f"error:{type(e).__name__}", str(e)
            out(f"DELETE {status}")
            log("DELETE", self.resource, "->", status, text.strip()[:200])
            self.resource = None
        self.loop.quit()
        return False

    def run(self):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, self.shutdown)
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, self.shutdown)
        GLib.timeout_add(int(self.args.timeout * 1000), self.check_connected)
        GLib.timeout_add(int(self.args.duration * 1000), self.shutdown)
        GLib.timeout_add(1000, self.report_stats)
        if self.pipe.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            out("FAIL pipeline did not start")
            return 1
        self.loop.run()
        # Stopping webrtcbin can hang after a DTLS error: do not wait for it forever.
        watchdog = threading.Timer(3.0, lambda: os._exit(self.exit_code))
        watchdog.daemon = True
        watchdog.start()
        self.pipe.set_state(Gst.State.NULL)
        return self.exit_code


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default="http://127.0.0.1:3000")
    ap.add_argument("--secret", help="app secret, to mint a WHIP token")
    ap.add_argument("--token", help="a ready WHIP token (instead of --secret)")
    ap.add_argument("--room", default="gst-room")
    ap.add_argument("--peer", default="gstreamer")
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--fps", type=int, default=15)
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds to reach connected")
    ap.add_argument("--duration", type=float, default=120.0, help="publish at most this many seconds")
    args = ap.parse_args()
    Gst.init(None)
    try:
        token = args.token or mint_token(args.base, args.secret, args.room, args.peer)
    except Exception as e:
        out(f"FAIL {e}")
        return 1
    return Publisher(args, token).run()


if __name__ == "__main__":
    sys.exit(main())
