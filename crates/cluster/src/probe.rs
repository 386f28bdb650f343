//! Measuring a link: the time a TCP handshake to the far node's endpoint
//! takes (SYN to SYN-ACK: one round trip, no data, nothing for zenoh to
//! handle beyond an accept and a close).

use std::time::{Duration, Instant};

use crate::links::PROBE_SAMPLES;

/// Gives up on one handshake after this.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// `HOST:PORT` of a `tcp/...` or `tls/...` endpoint (zenoh endpoints may
/// carry `?config` or `#metadata` after the address).
fn address(endpoint: &str) -> Option<&str> {
    let (_, rest) = endpoint.split_once('/')?;
    Some(rest.split(['?', '#']).next().unwrap_or(rest))
}

/// The median of a few handshake times to `endpoint`, `None` when it does
/// not answer.
pub async fn rtt(endpoint: &str) -> Option<Duration> {
    let addr = address(endpoint)?;
    let mut samples = Vec::with_capacity(PROBE_SAMPLES);
    for _ in 0..PROBE_SAMPLES {
        let t = Instant::now();
        match tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                samples.push(t.elapsed());
                drop(stream);
            }
            _ => continue,
        }
    }
    samples.sort();
    samples.get(samples.len() / 2).copied()
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

    #[tokio::test]
    async fn a_listening_endpoint_has_an_rtt_and_a_closed_one_none() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let r = rtt(&format!("tcp/127.0.0.1:{port}")).await;
        assert!(r.is_some_and(|r| r < Duration::from_secs(1)), "{r:?}");
        drop(l);
        assert_eq!(rtt(&format!("tcp/127.0.0.1:{port}")).await, None);
    }
}
