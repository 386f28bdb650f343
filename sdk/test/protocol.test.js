// Unit tests of the protocol layer with a fake data channel (no browser, no server).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { create, toBinary, fromBinary } from '@bufbuild/protobuf';
import { ControlProtocol, MediaMeshError, buildTracks, mapMLines } from '../dist/index.js';
import { ClientEventSchema, ServerEventSchema } from '../dist/gen/session_pb.js';
import { TracksSchema, Kind } from '../dist/gen/shared_pb.js';
import { ConnectRequestSchema, ConnectResponseSchema } from '../dist/gen/gateway_pb.js';
import { postProtobuf } from '../dist/http.js';

class FakeChannel {
  constructor(open = true) { this.readyState = open ? 'open' : 'connecting'; this.binaryType = 'blob'; this.sent = []; this.l = { open: new Set(), close: new Set(), message: new Set() }; }
  send(d) { if (this.readyState !== 'open') throw new Error('send on a channel that is not open'); this.sent.push(fromBinary(ClientEventSchema, d)); }
  addEventListener(t, f) { this.l[t].add(f); }
  removeEventListener(t, f) { this.l[t].delete(f); }
  fire(t, ev = {}) { for (const f of [...this.l[t]]) f(ev); }
  open() { this.readyState = 'open'; this.fire('open'); }
  close() { this.readyState = 'closed'; this.fire('close'); }
  /** Delivers a ServerEvent built from `init` as an ArrayBuffer, as a browser does. */
  server(init) {
    const b = toBinary(ServerEventSchema, create(ServerEventSchema, init));
    this.fire('message', { data: b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) });
  }
  respond(reqId, body) { this.server({ seq: 1, event: { case: 'response', value: { reqId, body } } }); }
}

const setup = (timeoutMs = 1000, open = true) => {
  const ch = new FakeChannel(open);
  const p = new ControlProtocol(ch, timeoutMs);
  const events = [];
  const warnings = [];
  p.on('event', (e) => events.push(e));
  p.on('warning', (w) => warnings.push(w));
  return { ch, p, events, warnings };
};

test('requests: seq and req_id start at 1 and grow together; binaryType set to arraybuffer', async () => {
  const { ch, p } = setup();
  assert.equal(ch.binaryType, 'arraybuffer');
  const a = p.request('receiver', { name: 'video_1', action: { case: 'detach', value: {} } });
  const b = p.request('sender', { name: 'audio_main', action: { case: 'detach', value: {} } });
  assert.deepEqual(ch.sent.map((e) => [e.seq, e.event.value.reqId]), [[1, 1], [2, 2]]);
  assert.equal(ch.sent[0].event.value.group.case, 'receiver');
  assert.equal(ch.sent[0].event.value.group.value.name, 'video_1');
  assert.equal(ch.sent[0].event.value.group.value.action.case, 'detach');
  // Answers out of order: matched by req_id only.
  ch.respond(2, { case: 'sender', value: { action: { case: 'detach', value: {} } } });
  ch.respond(1, { case: 'receiver', value: { action: { case: 'detach', value: {} } } });
  assert.equal((await b).action.case, 'detach');
  assert.equal((await a).action.case, 'detach');
  assert.equal(p.pendingCount, 0);
});

test('an error response rejects with MediaMeshError {code, message}', async () => {
  const { ch, p } = setup();
  const r = p.request('receiver', { name: 'video_1', action: { case: 'attach', value: { source: { peer: 'x', track: 'y' }, config: { priority: 1, maxSpatial: 2, maxTemporal: 2 } } } });
  ch.respond(1, { case: 'error', value: { code: 404, message: 'track not found' } });
  await assert.rejects(r, (e) => e instanceof MediaMeshError && e.code === 404 && e.message === 'track not found' && e.fromServer === true);
});

test('a response of another group rejects with INVALID_RESPONSE', async () => {
  const { ch, p } = setup();
  const r = p.request('session', { action: { case: 'leave', value: {} } });
  ch.respond(1, { case: 'receiver', value: {} });
  await assert.rejects(r, (e) => e.code === 'INVALID_RESPONSE' && /receiver instead of session/.test(e.message));
});

test('an empty group is still a valid response (session { leave {} })', async () => {
  const { ch, p } = setup();
  const r = p.request('session', { action: { case: 'leave', value: {} } });
  ch.respond(1, { case: 'session', value: {} });
  assert.ok(await r);
});

test('timeouts reject with REQUEST_TIMEOUT; a late response is a warning, not an error', async () => {
  const { ch, p, warnings } = setup(50);
  const r = p.request('messageChannel', { label: 'chat', action: { case: 'sub', value: {} } });
  await assert.rejects(r, (e) => e.code === 'REQUEST_TIMEOUT' && /messageChannel chat sub \(req_id 1\): no response within 50 ms/.test(e.message));
  ch.respond(1, { case: 'messageChannel', value: { label: 'chat' } });
  assert.equal(warnings.length, 1);
  assert.match(warnings[0], /unknown req_id 1/);
});

test('requests made before the channel opens are sent on open; close fails pending requests', async () => {
  const { ch, p } = setup(1000, false);
  const r = p.request('session', { action: { case: 'leave', value: {} } });
  assert.equal(ch.sent.length, 0);
  ch.open();
  assert.equal(ch.sent.length, 1);
  ch.close();
  await assert.rejects(r, (e) => e.code === 'CLOSED');
  await assert.rejects(p.request('session', { action: { case: 'leave', value: {} } }), (e) => e.code === 'CLOSED');
});

test('server events decode to typed SDK events (absent proto3 defaults included)', () => {
  const { ch, events, warnings } = setup();
  ch.server({ seq: 1, event: { case: 'room', value: { event: { case: 'peerJoined', value: { peer: 'bob', metadata: 'm' } } } } });
  ch.server({ seq: 2, event: { case: 'room', value: { event: { case: 'trackStarted', value: { peer: 'bob', track: 'video_main', kind: Kind.VIDEO } } } } });
  ch.server({ seq: 3, event: { case: 'room', value: { event: { case: 'trackStopped', value: { peer: 'bob', track: 'audio_main' } } } } });
  ch.server({ seq: 4, event: { case: 'room', value: { event: { case: 'peerLeaved', value: { peer: 'bob' } } } } });
  ch.server({ seq: 5, event: { case: 'sender', value: { name: 'audio_main', event: { case: 'state', value: {} } } } });
  ch.server({ seq: 6, event: { case: 'receiver', value: { name: 'video_1', event: { case: 'state', value: {} } } } });
  ch.server({ seq: 7, event: { case: 'receiver', value: { name: 'video_1', event: { case: 'state', value: { status: 1 } } } } });
  ch.server({ seq: 8, event: { case: 'receiver', value: { name: 'audio_0', event: { case: 'voiceActivity', value: { audioLevel: -30 } } } } });
  ch.server({ seq: 9, event: { case: 'messageChannel', value: { label: 'chat', event: { case: 'message', value: { peer: 'bob', message: new TextEncoder().encode('hi') } } } } });
  ch.server({ seq: 10, event: { case: 'room', value: { event: { case: 'peerUpdated', value: { peer: 'bob' } } } } });
  ch.fire('message', { data: new Uint8Array([0xff, 0xff, 0xff]).buffer });
  ch.fire('message', { data: 'text frame' });
  const msg = events.find((e) => e.type === 'message');
  assert.deepEqual(events.filter((e) => e.type !== 'message'), [
    { type: 'peerJoined', peer: { peer: 'bob', metadata: 'm' } },
    { type: 'trackStarted', track: { peer: 'bob', track: 'video_main', kind: 'video' } },
    { type: 'trackStopped', track: { peer: 'bob', track: 'audio_main', kind: 'audio' } },
    { type: 'peerLeft', peer: 'bob' },
    { type: 'senderState', name: 'audio_main', status: 'active' },
    { type: 'receiverState', name: 'video_1', status: 'waiting' },
    { type: 'receiverState', name: 'video_1', status: 'active' },
    { type: 'voiceActivity', name: 'audio_0', level: -30 },
    { type: 'peerUpdated', peer: { peer: 'bob' } },
  ]);
  assert.equal(msg.label, 'chat');
  assert.equal(msg.peer, 'bob');
  assert.equal(new TextDecoder().decode(msg.data), 'hi');
  assert.equal(warnings.length, 2);
});

test('the simulcast streams subscribers may want decode to senderLayers', () => {
  const { ch, events } = setup();
  ch.server({ seq: 1, event: { case: 'sender', value: { name: 'video_main', event: { case: 'layers', value: { maxSpatial: 1 } } } } });
  ch.server({ seq: 2, event: { case: 'sender', value: { name: 'video_main', event: { case: 'layers', value: {} } } } });
  assert.deepEqual(events, [
    { type: 'senderLayers', name: 'video_main', maxSpatial: 1 },
    { type: 'senderLayers', name: 'video_main', maxSpatial: 0 },
  ]);
});

test('receiver stats decode with the quality-control fields when the server sends them', () => {
  const { ch, events } = setup();
  const transmit = { spatial: 0, temporal: 2, bitrateKbps: 140, targetSpatial: 0, targetTemporal: 2, targetKbps: 150, estimateKbps: 260 };
  ch.server({ seq: 1, event: { case: 'receiver', value: { name: 'video_1', event: { case: 'stats', value: { transmit, source: { bitrateKbps: 2900, rtt: 1, lost: 0, jitter: 0.5 } } } } } });
  // An atm0s server's stats (no fields 4-7).
  ch.server({ seq: 2, event: { case: 'receiver', value: { name: 'video_1', event: { case: 'stats', value: { transmit: { spatial: 1, temporal: 0, bitrateKbps: 300 } } } } } });
  assert.deepEqual(events, [
    { type: 'receiverStats', name: 'video_1', stats: { transmit, source: { bitrateKbps: 2900, rtt: 1, lost: 0, jitter: 0.5 } } },
    { type: 'receiverStats', name: 'video_1', stats: { transmit: { spatial: 1, temporal: 0, bitrateKbps: 300 } } },
  ]);
});

test('Tracks: creation order, receiver names, empty state for unattached receivers, sender sources', () => {
  const senders = [
    { kind: 'audio', name: 'audio_main', priority: 1, bitrate: 'dynamic', source: { id: 'mic-1' } },
    { kind: 'video', name: 'video_main', priority: 2, bitrate: 'max', source: { id: 'cam-1', metadata: 'front' } },
    { kind: 'video', name: 'screen', priority: 1, bitrate: 'dynamic' },
  ];
  const receivers = [
    { kind: 'audio', name: 'audio_0', limits: {} },
    { kind: 'video', name: 'video_1', limits: { maxSpatial: 1 }, source: { peer: 'bob', track: 'video_main' } },
    { kind: 'video', name: 'video_2', limits: {} },
  ];
  const t = buildTracks(senders, receivers);
  // Round trip through the wire format.
  const w = fromBinary(TracksSchema, toBinary(TracksSchema, t));
  assert.deepEqual(w.senders.map((s) => [s.kind, s.name]), [[Kind.AUDIO, 'audio_main'], [Kind.VIDEO, 'video_main'], [Kind.VIDEO, 'screen']]);
  assert.equal(w.senders[0].state.source.id, 'mic-1');
  assert.equal(w.senders[0].state.source.metadata, undefined);
  assert.equal(w.senders[1].state.source.metadata, 'front');
  assert.equal(w.senders[1].state.config.priority, 2);
  assert.equal(w.senders[1].state.config.bitrate, 1);
  assert.equal(w.senders[2].state.source, undefined);
  assert.deepEqual(w.receivers.map((r) => [r.kind, r.name]), [[Kind.AUDIO, 'audio_0'], [Kind.VIDEO, 'video_1'], [Kind.VIDEO, 'video_2']]);
  assert.ok(w.receivers[0].state, 'state present even when empty');
  assert.equal(w.receivers[0].state.config, undefined);
  assert.equal(w.receivers[0].state.source, undefined);
  assert.deepEqual([w.receivers[1].state.source.peer, w.receivers[1].state.source.track], ['bob', 'video_main']);
  const c = w.receivers[1].state.config;
  assert.deepEqual([c.priority, c.maxSpatial, c.maxTemporal, c.minSpatial, c.minTemporal], [1, 1, 2, undefined, undefined]);
});

test('m-line order: the i-th sendonly/recvonly section of a kind maps to the i-th slot of that kind', () => {
  const sdp = [
    'v=0', 'o=- 1 2 IN IP4 127.0.0.1', 's=-', 't=0 0', 'a=group:BUNDLE 0 1 2 3 4 5',
    'm=audio 9 UDP/TLS/RTP/SAVPF 111', 'a=mid:0', 'a=recvonly',
    'm=video 9 UDP/TLS/RTP/SAVPF 96', 'a=mid:1', 'a=recvonly',
    'm=application 9 UDP/DTLS/SCTP webrtc-datachannel', 'a=mid:2',
    'm=audio 9 UDP/TLS/RTP/SAVPF 111', 'a=mid:3', 'a=sendonly',
    'm=video 9 UDP/TLS/RTP/SAVPF 96', 'a=mid:4', 'a=sendonly',
    'm=video 9 UDP/TLS/RTP/SAVPF 96', 'a=mid:5', 'a=recvonly',
    'm=video 9 UDP/TLS/RTP/SAVPF 96', 'a=mid:6', 'a=recvonly', '',
  ].join('\r\n');
  const tracks = create(TracksSchema, {
    senders: [{ kind: Kind.AUDIO, name: 'audio_main' }, { kind: Kind.VIDEO, name: 'video_main' }],
    receivers: [{ kind: Kind.AUDIO, name: 'audio_0' }, { kind: Kind.VIDEO, name: 'video_1' }, { kind: Kind.VIDEO, name: 'video_2' }],
  });
  assert.deepEqual(mapMLines(sdp, tracks).map((m) => `${m.mid}:${m.direction}:${m.slot}`), [
    '0:recvonly:audio_0', '1:recvonly:video_1', '3:sendonly:audio_main', '4:sendonly:video_main', '5:recvonly:video_2', '6:recvonly:null',
  ]);
});

test('HTTP: raw protobuf body with the token; a non-2xx reply rejects with MediaMeshError(status)', async () => {
  const calls = [];
  const ok = async (url, init) => {
    calls.push({ url, init });
    return new Response(toBinary(ConnectResponseSchema, create(ConnectResponseSchema, { connId: 'c1', sdp: 'v=0', iceLite: true })), { status: 200 });
  };
  const res = await postProtobuf('http://h/webrtc/connect', ConnectRequestSchema, create(ConnectRequestSchema, { version: 'x', sdp: 'offer' }), ConnectResponseSchema, { token: 't', timeoutMs: 1000, fetchImpl: ok });
  assert.deepEqual([res.connId, res.sdp, res.iceLite], ['c1', 'v=0', true]);
  assert.equal(calls[0].init.headers.Authorization, 'Bearer t');
  assert.equal(calls[0].init.headers['Content-Type'], 'application/grpc');
  assert.equal(fromBinary(ConnectRequestSchema, calls[0].init.body).sdp, 'offer');
  const denied = async () => new Response('{"status":false,"error":"INVALID_TOKEN"}', { status: 401 });
  await assert.rejects(postProtobuf('http://h/webrtc/connect', ConnectRequestSchema, create(ConnectRequestSchema, {}), ConnectResponseSchema, { timeoutMs: 1000, fetchImpl: denied }),
    (e) => e instanceof MediaMeshError && e.code === 401 && /INVALID_TOKEN/.test(e.message));
  const hang = (url, init) => new Promise((_, rej) => init.signal.addEventListener('abort', () => rej(new Error('aborted'))));
  await assert.rejects(postProtobuf('http://h/webrtc/connect', ConnectRequestSchema, create(ConnectRequestSchema, {}), ConnectResponseSchema, { timeoutMs: 30, fetchImpl: hang }),
    (e) => e.code === 'REQUEST_TIMEOUT');
});
