// Code shared by the demo pages (/demo/whip and /demo/whep), an ES module without a
// build step: room/peer/token inputs, the demo token (or a pasted one), the WHIP/WHEP
// POST of the offer, trickle ICE by PATCH, DELETE on stop, and the state/ICE/error
// display. Each page passes what is its own (media, statistics) to demoPage().

export const $ = (id) => document.getElementById(id);

export function setState(s) {
  const el = $('state');
  el.textContent = s;
  el.className = 'state-' + s.split(' ')[0];
}

export function showError(msg) { $('error').textContent = msg || ''; }

function waitGathering(pc, ms) {
  return new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') return resolve();
    const t = setTimeout(resolve, ms);
    pc.addEventListener('icegatheringstatechange', () => {
      if (pc.iceGatheringState === 'complete') { clearTimeout(t); resolve(); }
    });
  });
}

// Candidates found after the POST go to the session by PATCH (trickle ICE).
async function trickle(s, cand) {
  if (!s.resource) { s.pending.push(cand); return; }
  const sdp = s.pc.localDescription.sdp;
  const ufrag = (sdp.match(/a=ice-ufrag:(.*)\r\n/) || [])[1];
  const pwd = (sdp.match(/a=ice-pwd:(.*)\r\n/) || [])[1];
  const first = s.pc.getTransceivers()[0];
  let frag = 'a=ice-ufrag:' + ufrag + '\r\na=ice-pwd:' + pwd + '\r\nm=' + first.receiver.track.kind +
    ' 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:' + first.mid + '\r\n';
  frag += cand ? 'a=' + cand.candidate + '\r\n' : 'a=end-of-candidates\r\n';
  await fetch(s.resource, { method: 'PATCH', body: frag,
    headers: { 'Content-Type': 'application/trickle-ice-sdpfrag', Authorization: 'Bearer ' + s.token } }).catch(() => {});
}

/**
 * Wires a demo page and returns { start, stop }.
 *   kind          'whip' or 'whep'
 *   startLabel    text of the #start button while idle ('Start', 'Play')
 *   peerPrefix    prefix of the random default peer name
 *   link          { id, page }: the link to the other demo page, kept on the same room
 *   connect(s)    makes s.pc, an RTCPeerConnection with its transceivers (may set s.stream, ...)
 *   tick(s)       every second once the POST was answered (statistics)
 *   cleanup(s)    on stop, after s.pc.close()
 */
export function demoPage({ kind, startLabel, peerPrefix, link, connect, tick, cleanup }) {
  const KIND = kind.toUpperCase();
  const q = new URLSearchParams(location.search);
  // Root of the server, so the page also works behind a path prefix.
  const base = location.pathname.replace(new RegExp('/demo/' + kind + '/?$'), '');
  const endpoint = new URL(base + '/' + kind + '/endpoint', location.href).toString();

  $('room').value = q.get('room') || 'demo';
  $('peer').value = q.get('peer') || peerPrefix + Math.random().toString(36).slice(2, 7);
  if (q.get('token')) { $('token').value = q.get('token'); $('token-box').hidden = false; }
  const updateLink = () => { $(link.id).href = link.page + '?room=' + encodeURIComponent($('room').value); };
  $('room').addEventListener('input', updateLink);
  updateLink();

  let session = null; // { pc, resource, token, pending, timer, ... what connect() adds }

  async function getToken(room, peer) {
    const manual = $('token').value.trim();
    if (manual) return manual;
    const r = await fetch(base + '/demo/token/' + kind + '?room=' + encodeURIComponent(room) + '&peer=' + encodeURIComponent(peer));
    if (r.status === 403) {
      const reason = (await r.text()).trim();
      $('token-box').hidden = false;
      $('token-reason').textContent = 'The server did not hand out a demo token' +
        (reason ? ': ' + reason.replace(/\.?$/, '.') : '.') + ' Paste a ' + KIND + ' token for room "' + room +
        '" (made by POST /token/' + kind + ' with the app secret) and press ' + startLabel + ' again.';
      $('token').focus();
      return null;
    }
    const body = await r.json().catch(() => null);
    if (!r.ok || !body || !body.data || !body.data.token) throw new Error('demo token: HTTP ' + r.status);
    return body.data.token;
  }

  async function start() {
    showError('');
    const room = $('room').value.trim(), peer = $('peer').value.trim();
    if (!room || !peer) { showError('Room and peer are required.'); return; }
    $('start').disabled = true;
    const s = session = { pending: [], resource: null };
    try {
      setState('token');
      s.token = await getToken(room, peer);
      if (!s.token) { setState('idle'); session = null; return; }
      await connect(s);
      const pc = s.pc;
      pc.addEventListener('connectionstatechange', () => { if (session === s) setState(pc.connectionState); });
      pc.addEventListener('iceconnectionstatechange', () => { $('ice').textContent = pc.iceConnectionState; });
      let posted = false;
      pc.addEventListener('icecandidate', (e) => { if (posted) trickle(s, e.candidate); });
      await pc.setLocalDescription(await pc.createOffer());
      await waitGathering(pc, 1500);
      setState('connecting');
      posted = true;
      const r = await fetch(endpoint, { method: 'POST', body: pc.localDescription.sdp,
        headers: { 'Content-Type': 'application/sdp', Authorization: 'Bearer ' + s.token } });
      const text = await r.text();
      if (r.status !== 201) throw new Error(KIND + ' POST failed: HTTP ' + r.status + (text ? ' – ' + text.trim().slice(0, 200) : ''));
      const loc = r.headers.get('Location');
      if (!loc) throw new Error(KIND + ' POST: no Location header in the 201 response');
      s.resource = new URL(loc, endpoint).toString();
      await pc.setRemoteDescription({ type: 'answer', sdp: text });
      for (const c of s.pending.splice(0)) trickle(s, c);
      s.timer = setInterval(() => tick(s), 1000);
      $('start').textContent = 'Stop';
      $('start').className = 'stop';
    } catch (e) {
      showError(String(e.message || e));
      await stop(true);
      setState('error');
    } finally {
      $('start').disabled = false;
    }
  }

  async function stop(keepState) {
    const s = session;
    session = null;
    if (!s) return;
    clearInterval(s.timer);
    if (s.pc) s.pc.close();
    cleanup(s);
    if (s.resource) {
      await fetch(s.resource, { method: 'DELETE', headers: { Authorization: 'Bearer ' + s.token } }).catch(() => {});
    }
    $('start').textContent = startLabel;
    $('start').className = '';
    $('ice').textContent = '–';
    if (!keepState) setState('stopped');
  }

  $('start').addEventListener('click', () => (session ? stop() : start()));
  window.addEventListener('pagehide', () => {
    if (session && session.resource) {
      fetch(session.resource, { method: 'DELETE', keepalive: true, headers: { Authorization: 'Bearer ' + session.token } });
    }
  });
  return { start, stop };
}
