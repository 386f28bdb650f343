// SIP: a phone (SIPp) calls into a room.
//  (1) SIPp (`sip/call-room.xml`) calls sip:ROOM@server with a sip token in
//      X-MediaMesh-Token, offers G.711 A-law + telephone-event, plays SIPp's A-law speech
//      pcap, then DTMF 2, 4, 7 (RFC 4733), then BYE. A Chromium WHEP viewer of the room
//      receives the phone's audio with energy (inbound-rtp audioLevel); an @mediamesh/sdk
//      peer in the room gets the digits on the room's `dtmf` message channel, from the
//      phone's peer; after the BYE the room no longer has the phone.
//  (2) Malformed SIP gets a 400 with a reason (over UDP and TCP; a TCP stream that cannot
//      be framed is closed), and the server still answers OPTIONS and calls; a call
//      without a token is refused with 403.
//  (3) Dial-out: to a SIPp UAS; to one that sends early media (183 with SDP) before its
//      200; through a configured trunk that challenges with digest.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import { join } from 'node:path';
import { useChromium } from '../lib/fixtures.js';
import { E2E_DIR, freeUdpPort } from '../lib/server.js';
import { startProcess } from '../lib/proc.js';
import { waitFor, statsOf, sessionContext } from '../lib/media.js';
import { ensureOurBundle, openOurPage, mmContext } from '../lib/mediamesh-sdk.js';

const chromium = useChromium({ pages: true });
before(() => { ensureOurBundle(); });
const SCENARIO = join(E2E_DIR, 'sip', 'call-room.xml');

/** Sends one UDP datagram to the server's SIP port and returns the first answer (text), or null. */
function sipExchange(server, text, timeoutMs = 3000) {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    const done = (v) => { clearTimeout(t); s.close(); resolve(v); };
    const t = setTimeout(() => done(null), timeoutMs);
    s.on('message', (m) => done(m.toString()));
    s.bind(0, server.host, () => s.send(Buffer.from(text), server.sipPort, server.host));
  });
}

const roomView = async (server, room) => (await fetch(`${server.base}/api/rooms/${room}`, { headers: { Authorization: `Bearer ${server.secret}` } })).json();

test('sip: SIPp calls a room with G.711 and DTMF; a WHEP viewer hears it, an SDK peer gets the digits, BYE removes the phone', { timeout: 120000 }, async () => {
  await chromium.withMediaMesh('sip', {}, async (server, open) => {
    const room = 'room-sip';
    // An SDK peer listening on the room's dtmf channel (it publishes nothing).
    const sdk = await openOurPage(open, chromium.web, 'sdk');
    const wtoken = await server.token('webrtc', room, 'agent');
    const joined = await sdk.evaluate((o) => window.mm2.join(o), { url: server.base, token: wtoken, room, peer: 'agent', publish: false });
    assert.equal(joined.state, 'connected');
    await sdk.evaluate(() => window.mm2.openChannel('dtmf'));

    const token = await server.token('sip', room, 'phone1');
    const sipp = startProcess('sipp', ['-sf', SCENARIO, '-s', room, '-key', 'token', token, '-m', '1',
      '-i', server.host, '-mi', server.host, '-p', '0', '-mp', '0', '-nostdin', '-trace_err', `${server.host}:${server.sipPort}`],
    { label: 'sipp' });
    const ctx = async () => sipp.describe() + (await mmContext(sdk, { pageLog: false }));
    try {
      await waitFor('the phone in the room with an audio track', () => roomView(server, room),
        (v) => (v.peers || []).some((p) => p.peer === 'phone1' && (p.tracks || []).some((t) => t.kind === 'audio')), { context: ctx });
      const viewer = await open.harness('viewer');
      const vtoken = await server.token('whep', room);
      await viewer.evaluate((o) => window.mm.view(o), { name: 'V', endpoint: `${server.base}/whep/endpoint`, token: vtoken });
      await waitFor('the WHEP viewer to receive the phone\'s audio', () => statsOf(viewer, 'V'),
        (st) => st?.audio?.totalSamplesReceived > 48000, { timeoutMs: 15000, context: async () => (await sessionContext(viewer, 'V')) + await ctx() });
      const heard = await waitFor('energy in the phone\'s audio at the viewer (speech: RMS over -50 dBFS)',
        () => viewer.evaluate(() => window.mm.energy('V', { ms: 1000 })), (e) => e.rmsDb > -50,
        { timeoutMs: 8000, intervalMs: 0, context: async () => (await sessionContext(viewer, 'V')) + await ctx() });
      console.log(`METRIC sip_phone_audio_rms_dbfs=${heard.rmsDb.toFixed(1)}`);
      await waitFor('the SDK peer to get DTMF 2, 4, 7 from phone1 on the dtmf channel', () => sdk.evaluate(() => window.mm2.received('dtmf')),
        (got) => got.map((m) => `${m.peer}:${m.text}`).join(',') === 'phone1:2,phone1:4,phone1:7', { timeoutMs: 20000, context: ctx });
      const r = await Promise.race([sipp.done, new Promise((res) => setTimeout(() => res(null), 15000))]);
      assert.ok(r && r.code === 0, `SIPp ends its call with BYE/200 (exit ${JSON.stringify(r && r.code)})` + sipp.describe());
      await waitFor('the phone to leave the room after BYE', () => roomView(server, room), (v) => !(v.peers || []).some((p) => p.peer === 'phone1'), { context: ctx });
    } finally {
      await sipp.stop('SIGKILL', 1000);
    }
  });
});

test('sip: malformed messages get 400 and change nothing; OPTIONS is answered; a call without a token gets 403', { timeout: 60000 }, async () => {
  await chromium.withMediaMesh('sip-bad', {}, async (server) => {
    const host = server.host;
    const branch = () => `z9hG4bK${Math.random().toString(36).slice(2)}`;
    const ok = (tag, callId) => `From: <sip:a@${host}>;tag=${tag}\r\nTo: <sip:room@${host}>\r\nCall-ID: ${callId}\r\n`;
    // Without the headers a response is built from there is nobody to answer: dropped.
    for (const [what, text] of [
      ['garbage', 'this is not sip\r\n\r\n'],
      ['binary', '\u0000\u0001\u00ff\u00fe'.repeat(40)],
      ['missing headers', `INVITE sip:room@${host} SIP/2.0\r\nVia: SIP/2.0/UDP ${host}:1;rport;branch=${branch()}\r\nContent-Length: 0\r\n\r\n`],
    ]) {
      const answer = await sipExchange(server, text, 1000);
      assert.ok(answer === null || /^SIP\/2\.0 400 /.test(answer), `${what}: nothing or a 400, got ${JSON.stringify(answer)}`);
    }
    // With them: 400 and the reason.
    for (const [what, text] of [
      ['bad Max-Forwards', `OPTIONS sip:room@${host} SIP/2.0\r\nVia: SIP/2.0/UDP ${host}:1;rport;branch=${branch()}\r\n${ok(1, 'x1')}CSeq: 1 OPTIONS\r\nMax-Forwards: many\r\nContent-Length: 0\r\n\r\n`],
      ['bad Content-Length', `OPTIONS sip:room@${host} SIP/2.0\r\nVia: SIP/2.0/UDP ${host}:1;rport;branch=${branch()}\r\n${ok(2, 'x2')}CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: -5\r\n\r\n`],
      ['CSeq method mismatch', `OPTIONS sip:room@${host} SIP/2.0\r\nVia: SIP/2.0/UDP ${host}:1;rport;branch=${branch()}\r\n${ok(3, 'x3')}CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n`],
    ]) {
      const answer = await sipExchange(server, text);
      assert.match(answer || '', /^SIP\/2\.0 400 \S/, `${what}: a 400 with a reason, got ${JSON.stringify(answer)}`);
      console.log(`# ${what}: ${answer.split('\r\n')[0]}`);
    }
    const options = `OPTIONS sip:room@${host}:${server.sipPort} SIP/2.0\r\nVia: SIP/2.0/UDP ${host}:1;rport;branch=${branch()}\r\nFrom: <sip:a@${host}>;tag=1\r\nTo: <sip:room@${host}>\r\nCall-ID: opt1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n`;
    assert.match(await sipExchange(server, options) || '', /^SIP\/2\.0 200 /, 'OPTIONS still answered 200');
    const sdp = `v=0\r\no=x 1 1 IN IP4 ${host}\r\ns=-\r\nc=IN IP4 ${host}\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n`;
    const invite = `INVITE sip:room@${host}:${server.sipPort} SIP/2.0\r\nVia: SIP/2.0/UDP ${host}:1;rport;branch=${branch()}\r\nFrom: <sip:a@${host}>;tag=2\r\nTo: <sip:room@${host}>\r\nCall-ID: inv1\r\nCSeq: 1 INVITE\r\nContact: <sip:a@${host}:1>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: ${sdp.length}\r\n\r\n${sdp}`;
    const refused = await new Promise((resolve) => {
      const s = dgram.createSocket('udp4');
      const got = [];
      const t = setTimeout(() => { s.close(); resolve(got); }, 3000);
      s.on('message', (m) => { got.push(m.toString()); if (/^SIP\/2\.0 [3-6]\d\d/.test(m.toString())) { clearTimeout(t); s.close(); resolve(got); } });
      s.bind(0, host, () => s.send(Buffer.from(invite), server.sipPort, host));
    });
    assert.ok(refused.some((m) => /^SIP\/2\.0 403 /.test(m)), `an INVITE without a token: ${JSON.stringify(refused.map((m) => m.split('\r\n')[0]))}`);
    assert.match(server.tail.text(), /SIP call refused \(403\)/);
    // Over TCP: a bad header gets a 400 on the connection; a message the stream cannot be
    // split after (no Content-Length) closes it; a new connection is served.
    const tcpBranch = () => `z9hG4bK${Math.random().toString(36).slice(2)}`;
    const tcpOptions = (mf, callId) => `OPTIONS sip:room@${host}:${server.sipPort} SIP/2.0\r\nVia: SIP/2.0/TCP ${host}:1;rport;branch=${tcpBranch()}\r\n${ok(9, callId)}CSeq: 1 OPTIONS\r\nMax-Forwards: ${mf}\r\nContent-Length: 0\r\n\r\n`;
    const conn = net.connect(server.sipPort, host);
    const got = [];
    let closed = false;
    conn.on('data', (d) => got.push(d.toString()));
    conn.on('close', () => { closed = true; });
    conn.on('error', () => {});
    await new Promise((r) => conn.once('connect', r));
    conn.write(tcpOptions('many', 't1'));
    await waitFor('a 400 over TCP', async () => got.join(''), (t) => /^SIP\/2\.0 400 \S/.test(t), { timeoutMs: 3000 });
    conn.write(`OPTIONS sip:room@${host} SIP/2.0\r\nVia: SIP/2.0/TCP ${host}:1;branch=${tcpBranch()}\r\n${ok(10, 't2')}CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n\r\n`);
    await waitFor('the server to close a TCP stream it cannot frame', async () => closed, (c) => c, { timeoutMs: 3000 });
    const conn2 = net.connect(server.sipPort, host);
    const got2 = [];
    conn2.on('data', (d) => got2.push(d.toString()));
    conn2.on('error', () => {});
    await new Promise((r) => conn2.once('connect', r));
    conn2.write(tcpOptions('70', 't3'));
    await waitFor('OPTIONS over a new TCP connection answered 200', async () => got2.join(''), (t) => /^SIP\/2\.0 200 /.test(t), { timeoutMs: 3000 });
    conn2.destroy();
  });
});

test('sip: POST /api/sip/dial calls a SIPp UAS; when it answers the callee joins the room', { timeout: 60000 }, async () => {
  await chromium.withMediaMesh('sip-dial', {}, async (server) => {
    const room = 'room-dial';
    const uasPort = await freeUdpPort(server.host);
    const uas = startProcess('sipp', ['-sn', 'uas', '-i', server.host, '-p', String(uasPort), '-mi', server.host, '-m', '1', '-nostdin', '-trace_err'],
      { label: 'sipp uas' });
    try {
      await new Promise((r) => setTimeout(r, 300));
      const r = await fetch(`${server.base}/api/sip/dial`, {
        method: 'POST', headers: { Authorization: `Bearer ${server.secret}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ room, peer: 'callee1', to: `sip:service@${server.host}:${uasPort}` }),
      });
      const body = await r.text();
      assert.equal(r.status, 202, `dial: ${r.status} ${body}`);
      // SIPp's uas scenario answers and sends no RTP: the callee is in the room (its
      // audio track appears with its first packet).
      await waitFor('the callee in the room', () => roomView(server, room),
        (v) => (v.peers || []).some((p) => p.peer === 'callee1'),
        { timeoutMs: 10000, context: async () => uas.describe() });
      assert.match(server.tail.text(), /SIP dial-out answered/);
      // Bad requests: a clear 400, nothing dialled.
      const bad = await fetch(`${server.base}/api/sip/dial`, {
        method: 'POST', headers: { Authorization: `Bearer ${server.secret}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ room, peer: 'x', to: 'not a uri' }),
      });
      assert.equal(bad.status, 400, await bad.text());
      const noAuth = await fetch(`${server.base}/api/sip/dial`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' });
      assert.equal(noAuth.status, 401);
    } finally {
      await uas.stop('SIGKILL', 1000);
    }
  });
});

test('sip: a dialled callee\'s early media (183 with SDP) reaches the room before it answers; its BYE ends the call', { timeout: 60000 }, async () => {
  await chromium.withMediaMesh('sip-early', {}, async (server, open) => {
    const room = 'room-early';
    const viewer = await open.harness('viewer');
    await viewer.evaluate((o) => window.mm.view(o), { name: 'V', endpoint: `${server.base}/whep/endpoint`, token: await server.token('whep', room) });
    const uasPort = await freeUdpPort(server.host);
    const uas = startProcess('sipp', ['-sf', join(E2E_DIR, 'sip', 'uas-early-media.xml'), '-i', server.host, '-p', String(uasPort),
      '-mi', server.host, '-mp', '0', '-m', '1', '-nostdin', '-trace_err'], { label: 'sipp uas' });
    const ctx = async () => uas.describe() + (await sessionContext(viewer, 'V')) + '\n--- server:\n' + server.tail.text().slice(-3000);
    try {
      await new Promise((r) => setTimeout(r, 300));
      const r = await fetch(`${server.base}/api/sip/dial`, {
        method: 'POST', headers: { Authorization: `Bearer ${server.secret}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ room, peer: 'callee', to: `sip:callee@${server.host}:${uasPort}` }),
      });
      assert.equal(r.status, 202, await r.text());
      await waitFor('the WHEP viewer to receive the callee\'s early media', () => statsOf(viewer, 'V'),
        (st) => st?.audio?.totalSamplesReceived > 24000, { timeoutMs: 6000, context: ctx });
      const heard = await viewer.evaluate(() => window.mm.energy('V', { ms: 800 }));
      console.log(`METRIC sip_early_media_rms_dbfs=${heard.rmsDb.toFixed(1)}`);
      assert.ok(heard.rmsDb > -50, `energy in the early media: ${heard.rmsDb.toFixed(1)} dBFS` + await ctx());
      assert.match(server.tail.text(), /SIP dial-out: early media/);
      assert.doesNotMatch(server.tail.text(), /SIP dial-out answered/, 'all this before the 200');
      await waitFor('the answer', async () => server.tail.text(), (t) => /SIP dial-out answered/.test(t), { timeoutMs: 10000, context: ctx });
      const done = await Promise.race([uas.done, new Promise((res) => setTimeout(() => res(null), 10000))]);
      assert.ok(done && done.code === 0, `SIPp hangs up with BYE/200 (exit ${JSON.stringify(done && done.code)})` + uas.describe());
      await waitFor('the callee to leave the room after its BYE', () => roomView(server, room), (v) => !(v.peers || []).some((p) => p.peer === 'callee'), { context: ctx });
    } finally {
      await uas.stop('SIGKILL', 1000);
    }
  });
});

test('sip: dial-out through a configured trunk answers its digest challenge (SIPp verifies the credentials)', { timeout: 60000 }, async () => {
  const trunkPort = await freeUdpPort('127.0.0.1');
  await chromium.withMediaMesh('sip-trunk', {
    extraArgs: ['--sip-trunk', `sip:127.0.0.1:${trunkPort}`, '--sip-trunk-username', 'mm-trunk', '--sip-trunk-password', 'trunk-secret'],
  }, async (server) => {
    const room = 'room-trunk';
    const trunk = startProcess('sipp', ['-sf', join(E2E_DIR, 'sip', 'uas-digest.xml'), '-i', server.host, '-p', String(trunkPort),
      '-mi', server.host, '-mp', '0', '-m', '1', '-nostdin', '-trace_err'], { label: 'sipp trunk' });
    const ctx = async () => trunk.describe() + '\n--- server:\n' + server.tail.text().slice(-3000);
    try {
      await new Promise((r) => setTimeout(r, 300));
      // The target's host is a name: only the trunk can route it.
      const r = await fetch(`${server.base}/api/sip/dial`, {
        method: 'POST', headers: { Authorization: `Bearer ${server.secret}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ room, peer: 'pstn', to: 'sip:+15550100@trunk.example' }),
      });
      assert.equal(r.status, 202, await r.text());
      await waitFor('the callee in the room', () => roomView(server, room), (v) => (v.peers || []).some((p) => p.peer === 'pstn'),
        { timeoutMs: 10000, context: ctx });
      const done = await Promise.race([trunk.done, new Promise((res) => setTimeout(() => res(null), 10000))]);
      assert.ok(done && done.code === 0, `the trunk accepted the credentials and hung up (exit ${JSON.stringify(done && done.code)})` + await ctx());
      await waitFor('the callee to leave after the trunk\'s BYE', () => roomView(server, room), (v) => !(v.peers || []).some((p) => p.peer === 'pstn'), { context: ctx });
    } finally {
      await trunk.stop('SIGKILL', 1000);
    }
  });
});
