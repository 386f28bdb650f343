//! Measuring a link: a UDP echo to the address and port of a dialed
//! endpoint. Every node that listens for cluster links answers on UDP at
//! the same address and port, with its node id and current zenoh id, so the
//! prober learns both the round trip and who is at the far end (through
//! NAT or a proxy too).
//!
//! ```text
//! request: "MMRTT1" nonce(8)                                  14 bytes
//! answer:  "MMRTT1" nonce(8) zid_len(1) zid node              <= 14 + 1 + 32 + 64
//! ```
//!
//! An answer is never larger than 111 bytes and only goes to a request of
//! the right shape: nothing to amplify.

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::links::{Far, PROBE_SAMPLES};

const MAGIC: &[u8; 6] = b"MMRTT1";
const REQUEST: usize = 14;
/// Gives up on one echo after this.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// `HOST:PORT` of a `tcp/...` or `tls/...` endpoint (zenoh endpoints may
/// carry `?config` or `#metadata` after the address).
fn address(endpoint: &str) -> Option<&str> {
    let (_, rest) = endpoint.split_once('/')?;
    Some(rest.split(['?', '#']).next().unwrap_or(rest))
}

fn answer_to(request: &[u8], zid: &str, node: &str) -> Option<Vec<u8>> {
    if request.len() != REQUEST || &request[..6] != MAGIC || zid.len() > 32 || node.len() > 64 {
        return None;
    }
    let mut a = request.to_vec();
    // At most 32 (checked above).
    a.push(zid.len() as u8);
    a.extend_from_slice(zid.as_bytes());
    a.extend_from_slice(node.as_bytes());
    Some(a)
}

fn parse_answer(a: &[u8], nonce: &[u8; 8]) -> Option<Far> {
    let head = a.get(..REQUEST)?;
    if &head[..6] != MAGIC || &head[6..] != nonce {
        return None;
    }
    let len = usize::from(*a.get(REQUEST)?);
    let zid = std::str::from_utf8(a.get(REQUEST + 1..REQUEST + 1 + len)?).ok()?;
    let node = std::str::from_utf8(a.get(REQUEST + 1 + len..)?).ok()?;
    Some(Far {
        node: node.to_owned(),
        zid: zid.to_owned(),
    })
}

/// The median of a few echo round trips to `endpoint` and who answered;
/// `None` when nobody does. The socket work runs on tokio's blocking pool.
pub async fn rtt(endpoint: &str) -> Option<(Duration, Far)> {
    let endpoint = endpoint.to_owned();
    tokio::task::spawn_blocking(move || rtt_blocking(&endpoint, PROBE_TIMEOUT))
        .await
        .ok()
        .flatten()
}

/// The measurement itself, on the calling thread, waiting `timeout` per
/// sample. A node also runs it before it opens its first session (so that
/// session starts with link weights and needs no reopen).
pub fn rtt_blocking(endpoint: &str, timeout: Duration) -> Option<(Duration, Far)> {
    use std::net::ToSocketAddrs;
    let addr = address(endpoint)?.to_socket_addrs().ok()?.next()?;
    let bind = if addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = UdpSocket::bind(bind).ok()?;
    socket.connect(addr).ok()?;
    let mut samples = Vec::with_capacity(PROBE_SAMPLES);
    let mut far = None;
    let mut buf = [0u8; 256];
    for i in 0..PROBE_SAMPLES {
        let nonce: [u8; 8] = (rand_nonce() ^ i as u64).to_be_bytes();
        let mut req = MAGIC.to_vec();
        req.extend_from_slice(&nonce);
        let t = Instant::now();
        if socket.send(&req).is_err() {
            continue;
        }
        let deadline = t + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || socket.set_read_timeout(Some(left)).is_err() {
                break;
            }
            let Ok(n) = socket.recv(&mut buf) else {
                break;
            };
            if let Some(f) = parse_answer(&buf[..n], &nonce) {
                samples.push(t.elapsed());
                far = Some(f);
                break;
            }
        }
    }
    samples.sort();
    Some((samples.get(samples.len() / 2).copied()?, far?))
}

fn rand_nonce() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    // Unpredictable enough to tell our own answers apart; not a secret.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(Instant::now().elapsed().as_nanos() as u64);
    h.finish()
}

/// Answers echo requests on the UDP twins of this node's listen endpoints,
/// each on a small thread of its own, until dropped.
pub struct Responder {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Responder {
    /// `zid` is shared so a reopened session's new id is answered at once.
    pub fn start(listen: &[String], node: &str, zid: Arc<Mutex<String>>) -> Responder {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for endpoint in listen {
            let Some(addr) = address(endpoint) else {
                continue;
            };
            let socket = match UdpSocket::bind(addr) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(%endpoint, "cluster: no RTT echo on UDP {addr}: {e}");
                    continue;
                }
            };
            if socket
                .set_read_timeout(Some(Duration::from_millis(200)))
                .is_err()
            {
                continue;
            }
            let (stop, node, zid) = (stop.clone(), node.to_owned(), zid.clone());
            let t = std::thread::Builder::new()
                .name("cluster-echo".into())
                .spawn(move || {
                    let mut buf = [0u8; 64];
                    while !stop.load(Ordering::Relaxed) {
                        let Ok((n, from)) = socket.recv_from(&mut buf) else {
                            continue;
                        };
                        let zid = zid.lock().map(|z| z.clone()).unwrap_or_default();
                        if let Some(a) = answer_to(&buf[..n], &zid, &node) {
                            let _ = socket.send_to(&a, from);
                        }
                    }
                });
            if let Ok(t) = t {
                threads.push(t);
            }
        }
        Responder { stop, threads }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_give_their_address() {
        assert_eq!(address("tcp/10.0.0.1:7447"), Some("10.0.0.1:7447"));
        assert_eq!(address("tls/[::1]:7447?x=1"), Some("[::1]:7447"));
        assert_eq!(address("nonsense"), None);
    }

    #[test]
    fn answers_only_well_formed_requests_and_parse_back() {
        let nonce = *b"12345678";
        let mut req = MAGIC.to_vec();
        req.extend_from_slice(&nonce);
        let a = answer_to(&req, "abc", "node-1").unwrap();
        assert!(a.len() <= 111);
        assert_eq!(
            parse_answer(&a, &nonce),
            Some(Far {
                node: "node-1".into(),
                zid: "abc".into()
            })
        );
        assert_eq!(parse_answer(&a, b"87654321"), None);
        assert_eq!(answer_to(&req[..13], "abc", "n"), None);
        assert_eq!(answer_to(b"XXXXXX12345678", "abc", "n"), None);
        for n in 0..a.len() {
            let _ = parse_answer(&a[..n], &nonce);
        }
    }

    #[tokio::test]
    async fn a_responder_is_measured_and_named_and_silence_is_none() {
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let endpoint = format!("tcp/127.0.0.1:{port}");
        let zid = Arc::new(Mutex::new("z1".to_owned()));
        let r = Responder::start(std::slice::from_ref(&endpoint), "n1", zid.clone());
        let (took, far) = rtt(&endpoint).await.expect("an answer");
        assert!(took < Duration::from_secs(1));
        assert_eq!(
            far,
            Far {
                node: "n1".into(),
                zid: "z1".into()
            }
        );
        // A new id is answered at once; the blocking probe agrees.
        *zid.lock().unwrap() = "z2".into();
        assert_eq!(rtt(&endpoint).await.unwrap().1.zid, "z2");
        let e = endpoint.clone();
        let blocking =
            tokio::task::spawn_blocking(move || rtt_blocking(&e, Duration::from_millis(300)))
                .await
                .unwrap();
        assert_eq!(blocking.map(|b| b.1.node), Some("n1".to_owned()));
        drop(r);
        assert_eq!(rtt(&endpoint).await, None);
        let e = endpoint.clone();
        let silent =
            tokio::task::spawn_blocking(move || rtt_blocking(&e, Duration::from_millis(50)))
                .await
                .unwrap();
        assert_eq!(silent, None);
    }
}
