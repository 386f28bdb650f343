//! A minimal UDP driver for [`Endpoint`]: answers every call into
//! `sip:ROOM@<address>` with an SDP answer (no media flows: this shows the
//! signalling only) and hangs up after `HANGUP_AFTER` unless the caller
//! does first. Try it with SIPp or any phone:
//!
//! ```sh
//! cargo run -p mediamesh-sip --example sip_room -- 127.0.0.1:5070
//! sipp -sn uac -s room1 -m 1 127.0.0.1:5070
//! ```
//!
//! With a second argument it also dials that SIP URI (through its host and
//! port) once at start, e.g. against `sipp -sn uas -p 5072`:
//!
//! ```sh
//! cargo run -p mediamesh-sip --example sip_room -- 127.0.0.1:5070 sip:service@127.0.0.1:5072
//! ```

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::UdpSocket;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mediamesh_sip::sdp::{self, AudioConfig, Direction, LocalMedia};
use mediamesh_sip::{DialOptions, Endpoint, EndpointConfig, EndpointEvent, Peer, Uri};

const HANGUP_AFTER: Duration = Duration::from_secs(30);

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:5070".into());
    let sock = UdpSocket::bind(&addr)?;
    let local = sock.local_addr()?;
    // Example only: a real driver seeds from a CSPRNG.
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut seed = [0u8; 32];
    seed[..16].copy_from_slice(&nanos.to_le_bytes());
    seed[16..20].copy_from_slice(&std::process::id().to_le_bytes());
    let cfg = EndpointConfig {
        host: local.ip().to_string(),
        port: local.port(),
        ..Default::default()
    };
    let mut ep = Endpoint::new(cfg, seed);
    let media = LocalMedia {
        address: local.ip(),
        port: 40000,
        session_id: (nanos as u64) & 0xffff_ffff,
        session_version: 1,
        direction: Direction::SendRecv,
    };
    let mut hangups = BTreeMap::new();
    if let Some(target) = std::env::args().nth(2) {
        let target = Uri::parse(&target).map_err(std::io::Error::other)?;
        let next_hop = target
            .socket_addr()
            .ok_or_else(|| std::io::Error::other("the target's host must be an IP"))?;
        let opts = DialOptions {
            target,
            next_hop: Peer::udp(next_hop),
            from_user: "room1".into(),
            from_display: None,
            credentials: None,
            headers: Vec::new(),
        };
        let offer = sdp::offer(&media, &AudioConfig::default());
        let now = Instant::now();
        let call = ep.dial(opts, &offer, now).map_err(std::io::Error::other)?;
        hangups.insert(call, now + Duration::from_secs(3));
    }
    let mut buf = vec![0u8; 65_535];
    println!("listening on udp:{local}");
    loop {
        let now = Instant::now();
        let wait = ep
            .poll_timeout()
            .into_iter()
            .chain(hangups.values().copied())
            .min()
            .map_or(Duration::from_millis(500), |t| {
                t.saturating_duration_since(now)
            })
            .max(Duration::from_millis(1));
        sock.set_read_timeout(Some(wait))?;
        match sock.recv_from(&mut buf) {
            Ok((n, from)) => ep.handle_datagram(Peer::udp(from), &buf[..n], Instant::now()),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(e),
        }
        let now = Instant::now();
        ep.handle_timeout(now);
        let due: Vec<_> = hangups
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(c, _)| *c)
            .collect();
        for call in due {
            hangups.remove(&call);
            let _ = ep.hangup(call, now);
        }
        while let Some(e) = ep.poll_event() {
            println!("{e:?}");
            match e {
                EndpointEvent::IncomingCall { call, offer, .. } => {
                    let answer = match &offer {
                        Some(o) => sdp::answer(o, &media, &AudioConfig::default()).map(|(a, _)| a),
                        None => Ok(sdp::offer(&media, &AudioConfig::default())),
                    };
                    let _ = match answer {
                        Ok(a) => ep.accept(call, &a, now),
                        Err(_) => ep.reject(call, 488, now),
                    };
                    hangups.insert(call, now + HANGUP_AFTER);
                }
                EndpointEvent::Ended { call, .. } => {
                    hangups.remove(&call);
                }
                _ => {}
            }
        }
        while let Some(t) = ep.poll_transmit() {
            sock.send_to(&t.message.to_bytes(), t.to.addr)?;
        }
    }
}
