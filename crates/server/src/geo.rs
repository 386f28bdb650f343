//! Where a client is, for session placement: a gateway puts each new session on a
//! media node in the zone nearest to its client.
//!
//! - [`client_ip`]: the real client's address behind trusted reverse proxies
//!   (`X-Forwarded-For`), with [`IpNet`] for the list of trusted networks.
//! - [`GeoDb`]: a MaxMind-format database (`.mmdb`, GeoIP2 / GeoLite2 City layout)
//!   that the operator provides, loaded into memory; [`GeoDb::locate`] gives an
//!   address's coordinates and country.
//! - [`distance_km`]: the great-circle distance between two points, to rank zones;
//!   [`parse_lat_lon`] reads a zone's position from the configuration.
//!
//! An IPv4-mapped IPv6 address (`::ffff:192.0.2.1`, what a dual-stack socket reports
//! for an IPv4 peer) is the same client as its IPv4 form everywhere here.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use maxminddb::{path, LookupResult, Reader};
use serde::de::{self, Deserializer};
use serde::Deserialize;

/// Mean radius of the Earth (IUGG), in kilometres.
pub const EARTH_RADIUS_KM: f64 = 6371.0088;

// ------------------------------------------------------------------ GeoDb

/// Why a GeoIP database could not be opened. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    #[error("GeoIP database {}: no such file", .path.display())]
    Missing { path: PathBuf },
    #[error("GeoIP database {}: cannot read it: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("GeoIP database {}: not a MaxMind DB (.mmdb) file: {reason}", .path.display())]
    NotMmdb { path: PathBuf, reason: String },
}

/// Where an address is, as the database says.
#[derive(Debug, Clone, PartialEq)]
pub struct Location {
    /// Latitude in degrees, -90..=90.
    pub lat: f64,
    /// Longitude in degrees, -180..=180.
    pub lon: f64,
    /// ISO 3166-1 alpha-2 code of the country (`country.iso_code`), when known.
    pub country: Option<String>,
}

impl Location {
    /// `(lat, lon)`, as [`distance_km`] takes it.
    pub fn lat_lon(&self) -> (f64, f64) {
        (self.lat, self.lon)
    }
}

/// A MaxMind-format database in the GeoIP2 City layout, held in memory.
#[derive(Debug)]
pub struct GeoDb {
    reader: Reader<Vec<u8>>,
}

impl GeoDb {
    /// Reads the whole file into memory and checks that it is a MaxMind DB.
    pub fn open(path: &Path) -> Result<GeoDb, GeoError> {
        let bytes = std::fs::read(path).map_err(|source| {
            if source.kind() == io::ErrorKind::NotFound {
                GeoError::Missing {
                    path: path.to_path_buf(),
                }
            } else {
                GeoError::Read {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
        GeoDb::from_bytes(bytes, path)
    }

    fn from_bytes(bytes: Vec<u8>, path: &Path) -> Result<GeoDb, GeoError> {
        let not_mmdb = |reason: String| GeoError::NotMmdb {
            path: path.to_path_buf(),
            reason,
        };
        if bytes.is_empty() {
            return Err(not_mmdb("the file is empty".into()));
        }
        let reader = Reader::from_source(bytes).map_err(|e| not_mmdb(e.to_string()))?;
        Ok(GeoDb { reader })
    }

    /// The database's own name for its kind, e.g. `GeoLite2-City` (for logs: a
    /// Country database opens fine but has no coordinates to locate anyone).
    pub fn database_type(&self) -> &str {
        &self.reader.metadata().database_type
    }

    /// The coordinates (and country) of `ip`; `None` when the database has no
    /// record for it, or a record without usable coordinates. A malformed
    /// database gives `None` too, never a panic.
    pub fn locate(&self, ip: IpAddr) -> Option<Location> {
        // A mapped address in its IPv4 form: databases hold IPv4 networks in the
        // IPv4 part of their tree, where an IPv6 lookup of `::ffff:a.b.c.d` may not
        // reach. (An IPv6 address in an IPv4-only database is a lookup error: None.)
        let found = self.reader.lookup(ip.to_canonical()).ok()?;
        let lat = degrees(&found, "latitude")?;
        let lon = degrees(&found, "longitude")?;
        if !valid_lat_lon(lat, lon) {
            return None;
        }
        let country = found
            .decode_path::<String>(&path!["country", "iso_code"])
            .ok()
            .flatten()
            .filter(|c| !c.is_empty());
        Some(Location { lat, lon, country })
    }
}

/// A coordinate in degrees: a double in MaxMind's databases (a float from another
/// writer is taken too). Decoded as a typed scalar, never with `deserialize_any`:
/// maxminddb 0.32 follows a pointer to a pointer there recursively (up to 512
/// levels), which a corrupt file turns into a stack overflow on a 2 MiB thread in
/// debug builds; typed decoding rejects such a chain at once.
fn degrees<S: AsRef<[u8]>>(found: &LookupResult<'_, S>, field: &str) -> Option<f64> {
    let path = path!["location", field];
    match found.decode_path::<f64>(&path) {
        Ok(value) => value,
        Err(_) => found.decode_path::<f32>(&path).ok()?.map(f64::from),
    }
}

fn valid_lat_lon(lat: f64, lon: f64) -> bool {
    lat.is_finite() && lon.is_finite() && lat.abs() <= 90.0 && lon.abs() <= 180.0
}

// ------------------------------------------------------------------ client address

/// An IP network: an address and a prefix length, e.g. `10.0.0.0/8`, `::1/128`.
///
/// Parsed from `ADDR/PREFIX` or a bare address (a /32 or /128). The host bits are
/// cleared (`10.1.2.3/8` is `10.0.0.0/8`). An IPv4-mapped network of /96 or longer
/// (`::ffff:10.0.0.0/104`) is stored in its IPv4 form (`10.0.0.0/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    addr: IpAddr,
    prefix_len: u8,
}

/// Why a network did not parse; the message quotes the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid network {input:?}: {reason}")]
pub struct IpNetError {
    input: String,
    reason: String,
}

impl IpNet {
    /// The network of `addr` with `prefix_len` leading bits (at most 32 for IPv4,
    /// 128 for IPv6).
    pub fn new(addr: IpAddr, prefix_len: u8) -> Result<IpNet, IpNetError> {
        let max = max_prefix_len(addr);
        if prefix_len > max {
            return Err(IpNetError {
                input: format!("{addr}/{prefix_len}"),
                reason: format!("prefix length {prefix_len} is longer than {max}"),
            });
        }
        let (addr, prefix_len) = match addr {
            IpAddr::V6(v6) if prefix_len >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), prefix_len - 96),
                None => (addr, prefix_len),
            },
            _ => (addr, prefix_len),
        };
        let addr = match addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from_bits(a.to_bits() & mask_v4(prefix_len))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from_bits(a.to_bits() & mask_v6(prefix_len))),
        };
        Ok(IpNet { addr, prefix_len })
    }

    /// The network's first address (host bits cleared).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// Whether `ip` is in this network. A mapped address is taken in its IPv4
    /// form; an IPv4 address is in an IPv6 network that holds its mapped form
    /// (`::/0` holds every address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = mask_v4(self.prefix_len);
                ip.to_bits() & mask == net.to_bits()
            }
            (IpAddr::V6(net), ip) => {
                let ip = match ip {
                    IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                    IpAddr::V6(v6) => v6,
                };
                ip.to_bits() & mask_v6(self.prefix_len) == net.to_bits()
            }
            (IpAddr::V4(_), IpAddr::V6(_)) => false,
        }
    }
}

fn max_prefix_len(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn mask_v4(prefix_len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix_len))
        .unwrap_or(0)
}

fn mask_v6(prefix_len: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(prefix_len))
        .unwrap_or(0)
}

impl FromStr for IpNet {
    type Err = IpNetError;

    fn from_str(s: &str) -> Result<IpNet, IpNetError> {
        let err = |reason: String| IpNetError {
            input: s.to_string(),
            reason,
        };
        let text = s.trim();
        let (addr_text, prefix_text) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr_text
            .parse()
            .map_err(|_| err(format!("{addr_text:?} is not an IP address")))?;
        let max = max_prefix_len(addr);
        let prefix_len = match prefix_text {
            None => max,
            Some(p) => {
                if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(err(format!("prefix length {p:?} is not a number")));
                }
                match p.parse::<u8>() {
                    Ok(n) if n <= max => n,
                    _ => return Err(err(format!("prefix length {p} is longer than {max}"))),
                }
            }
        };
        IpNet::new(addr, prefix_len).map_err(|e| err(e.reason))
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// From a string in configuration files (`trusted_proxies = ["10.0.0.0/8"]`).
impl<'de> Deserialize<'de> for IpNet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

/// The real client's address of a request that came from `peer` (the TCP peer)
/// with the `X-Forwarded-For` header values `forwarded_for`, behind reverse
/// proxies in the `trusted` networks.
///
/// A peer that is not a trusted proxy is the client itself, whatever it sent.
/// Otherwise the forwarded addresses (all headers in order, each a comma-separated
/// list, taken as one list) are walked from the right, the end the trusted proxies
/// appended to: trusted addresses are skipped and the first untrusted one is the
/// client (what lies left of it was written by the client, and may be forged). An
/// entry may carry a port (`192.0.2.1:5678`, `[2001:db8::1]:443`) and IPv6 may be
/// bracketed; empty entries are skipped. An entry that is no address at all
/// (`unknown`, garbage) stops the walk: the last trusted address seen is returned,
/// as is the leftmost one when every entry is trusted. IPv4-mapped addresses are
/// returned in their IPv4 form.
pub fn client_ip(peer: IpAddr, forwarded_for: &[&str], trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(ip));
    let peer = peer.to_canonical();
    if !is_trusted(peer) {
        return peer;
    }
    let entries = forwarded_for
        .iter()
        .flat_map(|header| header.split(','))
        .map(str::trim)
        .filter(|entry| !entry.is_empty());
    let mut last_trusted = peer;
    for entry in entries.rev() {
        let Some(ip) = parse_forwarded_addr(entry) else {
            return last_trusted;
        };
        if !is_trusted(ip) {
            return ip;
        }
        last_trusted = ip;
    }
    last_trusted
}

/// One `X-Forwarded-For` entry, leniently: `ADDR`, `IPV4:PORT`, `[IPV6]`,
/// `[IPV6]:PORT`, optionally in double quotes. In IPv4 form when mapped.
fn parse_forwarded_addr(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim_matches('"').trim();
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Some(rest) = entry.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        return inside.parse::<IpAddr>().ok().map(|ip| ip.to_canonical());
    }
    // An unbracketed IPv6 address parsed above (or is garbage): only IPV4:PORT is left.
    let (host, port) = entry.rsplit_once(':')?;
    if !is_port(port) {
        return None;
    }
    host.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

fn is_port(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && s.parse::<u16>().is_ok()
}

// ------------------------------------------------------------------ distances

/// The great-circle distance in kilometres between two `(lat, lon)` points in
/// degrees (haversine, on a sphere of [`EARTH_RADIUS_KM`]: within about 0.5 % of
/// the distance on the ellipsoid, plenty to rank zones).
pub fn distance_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (lat1, lon1) = (a.0.to_radians(), a.1.to_radians());
    let (lat2, lon2) = (b.0.to_radians(), b.1.to_radians());
    let sin_dlat = ((lat2 - lat1) / 2.0).sin();
    let sin_dlon = ((lon2 - lon1) / 2.0).sin();
    let h = sin_dlat * sin_dlat + lat1.cos() * lat2.cos() * sin_dlon * sin_dlon;
    // Rounding can push h a hair past 1 for antipodal points: asin would be NaN.
    2.0 * EARTH_RADIUS_KM * h.clamp(0.0, 1.0).sqrt().asin()
}

/// A position from the configuration: `"LAT,LON"` in degrees, e.g. `"50.11,8.68"`
/// (spaces around either number are fine), latitude within -90..=90 and longitude
/// within -180..=180.
pub fn parse_lat_lon(s: &str) -> Result<(f64, f64), String> {
    let shape = || format!("{s:?}: expected \"LAT,LON\" in degrees, e.g. \"50.11,8.68\"");
    let (lat_text, lon_text) = s.split_once(',').ok_or_else(shape)?;
    if lon_text.contains(',') {
        return Err(shape());
    }
    let lat = parse_degrees(s, lat_text.trim(), "latitude", 90.0)?;
    let lon = parse_degrees(s, lon_text.trim(), "longitude", 180.0)?;
    Ok((lat, lon))
}

fn parse_degrees(whole: &str, text: &str, what: &str, limit: f64) -> Result<f64, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("{whole:?}: {what} {text:?} is not a number"))?;
    if !value.is_finite() || value.abs() > limit {
        return Err(format!(
            "{whole:?}: {what} {text} is outside -{limit}..{limit}"
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    // The database fixture tests/data/test-city.mmdb (1601 bytes) was made from the
    // crate's directory (crates/server) by tests/e2e/lib/make-geoip.py with the pip
    // packages mmdb-writer 0.2.7 and netaddr 1.3.0 (tests/e2e/.venv has them):
    //
    //   ../../tests/e2e/.venv/bin/python ../../tests/e2e/lib/make-geoip.py \
    //     tests/data/test-city.mmdb 10.77.1.0/24=50.11,8.68,DE \
    //     10.77.2.0/24=1.35,103.82,SG 127.0.0.0/8=40.71,-74.01,US 10.77.3.0/24=,,FR \
    //     10.77.4.0/24=48.85,2.35, 2001:db8:77::/48=35.68,139.69,JP \
    //     10.77.0.0/16=52.52,13.40,DE
    //
    // (the same arguments always give the same bytes). 10.77.3.0/24 has a country but
    // no location, 10.77.4.0/24 a location but no country, and 10.77.0.0/16 holds the
    // other /24s: the most specific network answers.
    use super::*;

    const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/test-city.mmdb");

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    /// A file name in the temp dir unique to this process and test.
    fn temp_path(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("mediamesh-geo-{}-{name}", std::process::id()))
    }

    // ---------------------------------------------------------- IpNet

    #[test]
    fn ipnet_parses_networks_and_bare_addresses() {
        let n: IpNet = "10.0.0.0/8".parse().unwrap();
        assert_eq!((n.addr(), n.prefix_len()), (ip("10.0.0.0"), 8));
        let n: IpNet = "::1/128".parse().unwrap();
        assert_eq!((n.addr(), n.prefix_len()), (ip("::1"), 128));
        let n: IpNet = "192.0.2.7".parse().unwrap();
        assert_eq!((n.addr(), n.prefix_len()), (ip("192.0.2.7"), 32));
        let n: IpNet = " 2001:db8::1 ".parse().unwrap();
        assert_eq!((n.addr(), n.prefix_len()), (ip("2001:db8::1"), 128));
        // Host bits cleared; mapped networks in IPv4 form.
        assert_eq!(
            "10.1.2.3/8".parse::<IpNet>().unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            "::ffff:10.0.0.0/104".parse::<IpNet>().unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            "0.0.0.0/0".parse::<IpNet>().unwrap().to_string(),
            "0.0.0.0/0"
        );
        assert_eq!("::/0".parse::<IpNet>().unwrap().to_string(), "::/0");
    }

    #[test]
    fn ipnet_rejects_bad_input() {
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "/8",
            "10.0.0.0/x",
            "10.0.0.0/+8",
            "10.0.0.0/-1",
            "10.0.0.0/8/8",
            "10.0.0.0/256",
            "10.0.0.0/99999999999",
            "10.0.0/8",
            "10.0.0.256",
            "",
            "fe80::1%eth0/64",
        ] {
            let err = bad.parse::<IpNet>().unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{bad}: {err}");
        }
        let err = "10.0.0.0/33".parse::<IpNet>().unwrap_err().to_string();
        assert!(err.contains("prefix length 33 is longer than 32"), "{err}");
        assert!(IpNet::new(ip("::"), 129).is_err());
        // Leading zeros are only zeros.
        assert_eq!("10.0.0.0/008".parse::<IpNet>().unwrap().prefix_len(), 8);
    }

    #[test]
    fn ipnet_contains() {
        let n: IpNet = "10.0.0.0/8".parse().unwrap();
        assert!(n.contains(ip("10.0.0.0")));
        assert!(n.contains(ip("10.255.255.255")));
        assert!(!n.contains(ip("11.0.0.0")));
        assert!(!n.contains(ip("9.255.255.255")));
        assert!(n.contains(ip("::ffff:10.1.2.3")));
        assert!(!n.contains(ip("::a01:203"))); // IPv4-compatible, not mapped
        assert!(!n.contains(ip("2001:db8::1")));
        let host: IpNet = "192.0.2.7".parse().unwrap();
        assert!(host.contains(ip("192.0.2.7")));
        assert!(!host.contains(ip("192.0.2.8")));
        let all4: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all4.contains(ip("255.255.255.255")));
        assert!(!all4.contains(ip("::1")));
        let all: IpNet = "::/0".parse().unwrap();
        assert!(all.contains(ip("::1")) && all.contains(ip("192.0.2.1")));
        let v6: IpNet = "2001:db8:ffff::/48".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:ffff:1::1")));
        assert!(!v6.contains(ip("2001:db8:fffe::1")));
    }

    #[test]
    fn ipnet_deserializes_from_a_string() {
        use serde::de::IntoDeserializer;
        let from = |s: &str| {
            IpNet::deserialize(IntoDeserializer::<de::value::Error>::into_deserializer(s))
        };
        assert_eq!(from("10.0.0.0/8").unwrap(), nets(&["10.0.0.0/8"])[0]);
        assert_eq!(from("::1").unwrap().to_string(), "::1/128");
        let err = from("10.0.0.0/40").unwrap_err().to_string();
        assert!(err.contains("\"10.0.0.0/40\""), "{err}");
    }

    // ---------------------------------------------------------- client_ip

    const CLIENT: &str = "198.51.100.9";

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_forwards() {
        let trusted = nets(&["10.0.0.0/8"]);
        let peer = ip("203.0.113.7");
        assert_eq!(client_ip(peer, &[CLIENT], &trusted), peer);
        assert_eq!(client_ip(peer, &["10.0.0.5, 1.2.3.4"], &trusted), peer);
        assert_eq!(client_ip(peer, &[], &trusted), peer);
        // No trusted proxies at all: never believe the header.
        assert_eq!(client_ip(ip("10.0.0.2"), &[CLIENT], &[]), ip("10.0.0.2"));
    }

    #[test]
    fn one_trusted_proxy() {
        let trusted = nets(&["10.0.0.0/8"]);
        let proxy = ip("10.0.0.2");
        assert_eq!(client_ip(proxy, &[CLIENT], &trusted), ip(CLIENT));
        // A trusted peer that forwarded nothing (a health check) is the client.
        assert_eq!(client_ip(proxy, &[], &trusted), proxy);
        assert_eq!(client_ip(proxy, &[""], &trusted), proxy);
    }

    #[test]
    fn chain_of_trusted_proxies() {
        let trusted = nets(&["10.0.0.0/8", "192.0.2.0/24"]);
        let peer = ip("10.0.0.2");
        let xff = "198.51.100.9, 192.0.2.10, 10.0.0.5,10.0.0.6";
        assert_eq!(client_ip(peer, &[xff], &trusted), ip(CLIENT));
        // Several headers are one list, in order.
        let split = ["198.51.100.9, 192.0.2.10", "10.0.0.5", "10.0.0.6"];
        assert_eq!(client_ip(peer, &split, &trusted), ip(CLIENT));
        assert_eq!(
            client_ip(peer, &["203.0.113.1", "198.51.100.9"], &trusted),
            ip(CLIENT)
        );
        // Every entry trusted: the leftmost is the best we know.
        assert_eq!(
            client_ip(peer, &["10.0.0.5, 192.0.2.10"], &trusted),
            ip("10.0.0.5")
        );
    }

    #[test]
    fn spoofed_left_entries_are_ignored() {
        let trusted = nets(&["10.0.0.0/8"]);
        let peer = ip("10.0.0.2");
        let xff = "6.6.6.6, 1.1.1.1, 198.51.100.9, 10.0.0.5";
        assert_eq!(client_ip(peer, &[xff], &trusted), ip(CLIENT));
        // The client claims to be one of our proxies: its real address, appended by
        // the proxy, comes first from the right.
        let xff = "10.0.0.9, 198.51.100.9";
        assert_eq!(client_ip(peer, &[xff], &trusted), ip(CLIENT));
        // Garbage the client wrote left of its address changes nothing.
        assert_eq!(
            client_ip(peer, &["<script>, 198.51.100.9"], &trusted),
            ip(CLIENT)
        );
    }

    #[test]
    fn garbage_stops_the_walk_at_the_last_trusted_address() {
        let trusted = nets(&["10.0.0.0/8"]);
        let peer = ip("10.0.0.2");
        let cases: &[(&[&str], &str)] = &[
            (&["198.51.100.9, garbage, 10.0.0.5"], "10.0.0.5"),
            (&["198.51.100.9, unknown"], "10.0.0.2"),
            (&["unknown"], "10.0.0.2"),
            (&["198.51.100.9", "not an address"], "10.0.0.2"),
            (&["198.51.100.9:99999"], "10.0.0.2"),
            (&["198.51.100.9:"], "10.0.0.2"),
            (&["198.51.100.9:80:80"], "10.0.0.2"),
            (&["198.51.100.9:http"], "10.0.0.2"),
            (&["[2001:db8::1"], "10.0.0.2"),
            (&["[2001:db8::1]x"], "10.0.0.2"),
            (&["2001:db8::1%eth0"], "10.0.0.2"),
            (&["010.0.0.1"], "10.0.0.2"),
            (&["1.2.3.4.5"], "10.0.0.2"),
        ];
        for (xff, want) in cases {
            assert_eq!(client_ip(peer, xff, &trusted), ip(want), "{xff:?}");
        }
        // Empty entries (a trailing comma, ", ,") are skipped, not garbage.
        assert_eq!(
            client_ip(peer, &["198.51.100.9, , 10.0.0.5,", ""], &trusted),
            ip(CLIENT)
        );
    }

    #[test]
    fn ports_brackets_and_quotes_are_stripped() {
        let trusted = nets(&["10.0.0.0/8", "::1/128"]);
        let peer = ip("10.0.0.2");
        let cases: &[(&str, &str)] = &[
            ("198.51.100.9:5678", CLIENT),
            ("198.51.100.9:0", CLIENT),
            ("\"198.51.100.9:5678\"", CLIENT),
            ("[2001:db8::1]:443", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("\"[2001:db8::1]:443\"", "2001:db8::1"),
            ("[198.51.100.9]:80", CLIENT),
            ("198.51.100.9, [::1]:80, 10.0.0.5:1234", CLIENT),
        ];
        for (xff, want) in cases {
            assert_eq!(client_ip(peer, &[xff], &trusted), ip(want), "{xff:?}");
        }
    }

    #[test]
    fn ipv6_clients_and_proxies() {
        let trusted = nets(&["::1", "2001:db8:ffff::/48"]);
        assert_eq!(
            client_ip(ip("::1"), &["2001:db8::7"], &trusted),
            ip("2001:db8::7")
        );
        assert_eq!(
            client_ip(
                ip("2001:db8:ffff::2"),
                &["2001:db8::7, 2001:db8:ffff::3, ::1"],
                &trusted
            ),
            ip("2001:db8::7")
        );
        // An IPv4 client behind IPv6 proxies.
        assert_eq!(client_ip(ip("::1"), &[CLIENT], &trusted), ip(CLIENT));
        assert_eq!(
            client_ip(ip("2001:db8::9"), &[CLIENT], &trusted),
            ip("2001:db8::9")
        );
    }

    #[test]
    fn mapped_ipv4_is_the_ipv4_address() {
        let trusted = nets(&["10.0.0.0/8"]);
        // A dual-stack socket reports IPv4 peers mapped: still our proxy.
        assert_eq!(
            client_ip(ip("::ffff:10.0.0.2"), &[CLIENT], &trusted),
            ip(CLIENT)
        );
        // The client is returned in IPv4 form, from the peer or the header.
        assert_eq!(
            client_ip(ip("::ffff:203.0.113.7"), &[CLIENT], &trusted),
            ip("203.0.113.7")
        );
        assert_eq!(
            client_ip(ip("10.0.0.2"), &["::ffff:198.51.100.9"], &trusted),
            ip(CLIENT)
        );
        assert_eq!(
            client_ip(ip("10.0.0.2"), &["[::ffff:198.51.100.9]:80"], &trusted),
            ip(CLIENT)
        );
        // A mapped trusted entry is skipped like its IPv4 form.
        assert_eq!(
            client_ip(ip("10.0.0.2"), &["198.51.100.9, ::ffff:10.0.0.5"], &trusted),
            ip(CLIENT)
        );
        // A trusted network written mapped holds IPv4 peers.
        let mapped = nets(&["::ffff:10.0.0.0/104"]);
        assert_eq!(client_ip(ip("10.0.0.2"), &[CLIENT], &mapped), ip(CLIENT));
    }

    // ---------------------------------------------------------- distances

    const FRANKFURT: (f64, f64) = (50.11, 8.68);
    const SINGAPORE: (f64, f64) = (1.35, 103.82);

    #[test]
    fn frankfurt_to_singapore() {
        let d = distance_km(FRANKFURT, SINGAPORE);
        assert!((d - 10_260.0).abs() < 102.6, "{d}");
        assert_eq!(d, distance_km(SINGAPORE, FRANKFURT));
    }

    #[test]
    fn zero_and_short_distances() {
        assert_eq!(distance_km(FRANKFURT, FRANKFURT), 0.0);
        assert_eq!(distance_km((0.0, 0.0), (0.0, 0.0)), 0.0);
        // Both poles are one point whatever the longitude.
        assert!(distance_km((90.0, 0.0), (90.0, 123.0)) < 1e-9);
        // One degree of longitude on the equator, across the antimeridian.
        let one_degree = EARTH_RADIUS_KM * std::f64::consts::PI / 180.0;
        let d = distance_km((0.0, 179.5), (0.0, -179.5));
        assert!((d - one_degree).abs() < 1e-6, "{d}");
        // Frankfurt to Paris, about 480 km.
        let d = distance_km(FRANKFURT, (48.85, 2.35));
        assert!((d - 480.0).abs() < 10.0, "{d}");
    }

    #[test]
    fn antipodes_are_half_the_circumference() {
        let half = EARTH_RADIUS_KM * std::f64::consts::PI;
        for (a, b) in [
            ((0.0, 0.0), (0.0, 180.0)),
            ((90.0, 0.0), (-90.0, 0.0)),
            ((50.11, 8.68), (-50.11, -171.32)),
            ((-33.87, 151.21), (33.87, -28.79)),
        ] {
            let d = distance_km(a, b);
            assert!(!d.is_nan() && (d - half).abs() < 1e-3, "{a:?} {b:?}: {d}");
        }
    }

    // ---------------------------------------------------------- parse_lat_lon

    #[test]
    fn parses_lat_lon() {
        assert_eq!(parse_lat_lon("50.11,8.68"), Ok((50.11, 8.68)));
        assert_eq!(parse_lat_lon(" -33.87 , 151.21 "), Ok((-33.87, 151.21)));
        assert_eq!(parse_lat_lon("90,180"), Ok((90.0, 180.0)));
        assert_eq!(parse_lat_lon("-90,-180"), Ok((-90.0, -180.0)));
        assert_eq!(parse_lat_lon("0,0"), Ok((0.0, 0.0)));
    }

    #[test]
    fn lat_lon_errors() {
        let cases = [
            ("", "expected \"LAT,LON\""),
            ("50.11", "expected \"LAT,LON\""),
            ("50.11 8.68", "expected \"LAT,LON\""),
            ("50.11,8.68,1", "expected \"LAT,LON\""),
            ("91,0", "latitude 91 is outside -90..90"),
            ("-90.5,0", "latitude -90.5 is outside -90..90"),
            ("0,181", "longitude 181 is outside -180..180"),
            ("0,-180.01", "longitude -180.01 is outside -180..180"),
            ("abc,1", "latitude \"abc\" is not a number"),
            ("1,", "longitude \"\" is not a number"),
            (",1", "latitude \"\" is not a number"),
            ("NaN,1", "latitude NaN is outside"),
            ("0,inf", "longitude inf is outside"),
        ];
        for (input, want) in cases {
            let err = parse_lat_lon(input).unwrap_err();
            assert!(err.contains(want), "{input:?}: {err}");
            assert!(err.starts_with(&format!("{input:?}")), "{input:?}: {err}");
        }
    }

    // ---------------------------------------------------------- GeoDb

    fn fixture() -> GeoDb {
        GeoDb::open(Path::new(FIXTURE)).unwrap()
    }

    #[test]
    fn locates_ipv4_addresses() {
        let db = fixture();
        assert_eq!(db.database_type(), "MediaMesh-Test-City");
        let cases = [
            ("10.77.1.5", 50.11, 8.68, Some("DE")),
            ("10.77.2.200", 1.35, 103.82, Some("SG")),
            ("127.0.0.1", 40.71, -74.01, Some("US")),
            ("127.255.255.255", 40.71, -74.01, Some("US")),
            // In 10.77.0.0/16 but none of its /24s.
            ("10.77.9.9", 52.52, 13.40, Some("DE")),
            ("10.77.255.1", 52.52, 13.40, Some("DE")),
            ("10.77.4.1", 48.85, 2.35, None),
        ];
        for (addr, lat, lon, country) in cases {
            let want = Location {
                lat,
                lon,
                country: country.map(String::from),
            };
            assert_eq!(db.locate(ip(addr)), Some(want), "{addr}");
        }
    }

    #[test]
    fn locates_ipv6_and_mapped_addresses() {
        let db = fixture();
        let tokyo = Some(Location {
            lat: 35.68,
            lon: 139.69,
            country: Some("JP".into()),
        });
        assert_eq!(db.locate(ip("2001:db8:77::1")), tokyo);
        assert_eq!(db.locate(ip("2001:db8:77:ffff::1")), tokyo);
        assert_eq!(
            db.locate(ip("::ffff:10.77.1.5")),
            db.locate(ip("10.77.1.5"))
        );
        assert!(db.locate(ip("::ffff:10.77.1.5")).is_some());
    }

    #[test]
    fn no_record_or_no_coordinates_is_none() {
        let db = fixture();
        for addr in [
            "10.77.3.1", // a country but no location
            "10.78.0.1",
            "192.0.2.1",
            "0.0.0.0",
            "255.255.255.255",
            "2001:db8:78::1",
            "::1",
            "::",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ] {
            assert_eq!(db.locate(ip(addr)), None, "{addr}");
        }
    }

    #[test]
    fn open_names_a_missing_file() {
        let path = temp_path("missing.mmdb");
        let err = GeoDb::open(&path).unwrap_err();
        assert!(matches!(err, GeoError::Missing { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("no such file"), "{msg}");
    }

    #[test]
    fn open_rejects_files_that_are_not_mmdb() {
        let cases: [(&str, &[u8], &str); 3] = [
            (
                "text.mmdb",
                b"city,lat,lon\nFrankfurt,50.11,8.68\n",
                "not a MaxMind DB",
            ),
            ("empty.mmdb", b"", "the file is empty"),
            // The metadata marker but nothing valid after it.
            (
                "marker.mmdb",
                b"\xab\xcd\xefMaxMind.com\xff\xff",
                "not a MaxMind DB",
            ),
        ];
        for (name, bytes, want) in cases {
            let path = temp_path(name);
            std::fs::write(&path, bytes).unwrap();
            let err = GeoDb::open(&path).unwrap_err();
            std::fs::remove_file(&path).unwrap();
            assert!(matches!(err, GeoError::NotMmdb { .. }), "{name}: {err:?}");
            let msg = err.to_string();
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            assert!(msg.contains(want), "{name}: {msg}");
        }
        // A directory is no database either.
        let dir = temp_path("dir.mmdb");
        std::fs::create_dir_all(&dir).unwrap();
        let err = GeoDb::open(&dir).unwrap_err();
        std::fs::remove_dir(&dir).unwrap();
        assert!(matches!(err, GeoError::Read { .. }), "{err:?}");
        assert!(
            err.to_string().contains(&dir.display().to_string()),
            "{err}"
        );
    }

    /// Every byte of the fixture flipped in several ways, and every truncation:
    /// opening and looking up must give an error or `None`, never panic, and what
    /// is located stays within range.
    #[test]
    fn corrupt_databases_never_panic() {
        let good = std::fs::read(FIXTURE).unwrap();
        let probes = [
            "10.77.1.5",
            "10.77.2.1",
            "10.77.3.1",
            "10.77.9.9",
            "127.0.0.1",
            "192.0.2.1",
            "2001:db8:77::1",
            "::1",
            "::ffff:10.77.1.5",
        ]
        .map(ip);
        let check = |bytes: Vec<u8>| {
            if let Ok(db) = GeoDb::from_bytes(bytes, Path::new("corrupt.mmdb")) {
                for probe in probes {
                    if let Some(loc) = db.locate(probe) {
                        assert!(valid_lat_lon(loc.lat, loc.lon), "{loc:?}");
                    }
                }
            }
        };
        for i in 0..good.len() {
            for flip in [0x01, 0x10, 0x80, 0xff] {
                let mut bytes = good.clone();
                bytes[i] ^= flip;
                check(bytes);
            }
            check(good[..i].to_vec());
        }
    }
}
