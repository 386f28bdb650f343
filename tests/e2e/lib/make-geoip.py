#!/usr/bin/env python3
"""Writes a small MaxMind-format (.mmdb) database in the GeoIP2 City layout, for
tests of MediaMesh's client location (crates/server/src/geo.rs) and of session
placement by zone.

Usage:
    make-geoip.py OUT.mmdb NET=LAT,LON,CC [NET=LAT,LON,CC ...]

    make-geoip.py city.mmdb 10.77.1.0/24=50.11,8.68,DE 10.77.2.0/24=1.35,103.82,SG \
        127.0.0.0/8=40.71,-74.01,US 2001:db8:77::/48=35.68,139.69,JP

NET is an IPv4 or IPv6 network (a bare address is a /32 or /128). LAT,LON may both
be empty (a record with a country but no location: `10.77.3.0/24=,,FR`) and CC may
be empty (a location without a country: `10.77.4.0/24=48.85,2.35,`). Each record is
shaped like a GeoIP2 City record:

    {"country": {"iso_code": CC}, "location": {"latitude": LAT, "longitude": LON}}

with coordinates as doubles, as MaxMind's databases store them. The search tree is
IPv6 with IPv4 networks at ::/96 (where readers look IPv4 addresses up), so both
IPv4 and IPv6 lookups work. The database type is "MediaMesh-Test-City". The build
epoch is $SOURCE_DATE_EPOCH, else 0, so the same arguments give the same bytes.

Needs the pip packages mmdb-writer and netaddr (scripts/install-test-deps.sh
installs them into tests/e2e/.venv, from tests/e2e/python/requirements.txt).
"""

import math
import os
import sys

try:
    from mmdb_writer import MMDBWriter
    from netaddr import AddrFormatError, IPNetwork, IPSet
except ImportError as e:  # pragma: no cover - depends on the environment
    sys.exit(
        f"make-geoip.py: {e}: needs the pip packages mmdb-writer and netaddr "
        "(tests/e2e/.venv has them after scripts/install-test-deps.sh)"
    )

DATABASE_TYPE = "MediaMesh-Test-City"


class Usage(Exception):
    pass


class ReproducibleWriter(MMDBWriter):
    """MMDBWriter with a fixed build epoch instead of the current time."""

    def __init__(self, epoch, **kwargs):
        super().__init__(**kwargs)
        self._epoch = epoch

    def _build_meta(self):
        meta = super()._build_meta()
        meta["build_epoch"] = self._epoch
        return meta


def parse_coord(arg, text, name, limit):
    try:
        value = float(text)
    except ValueError:
        raise Usage(f"{arg!r}: {name} {text!r} is not a number") from None
    if not math.isfinite(value) or not -limit <= value <= limit:
        raise Usage(f"{arg!r}: {name} {text!r} is outside -{limit}..{limit}")
    return value


def parse_entry(arg):
    """`NET=LAT,LON,CC` -> (IPNetwork, record)."""
    net_text, sep, value = arg.partition("=")
    if not sep:
        raise Usage(f"{arg!r}: expected NET=LAT,LON,CC")
    try:
        net = IPNetwork(net_text.strip())
    except (AddrFormatError, ValueError):
        raise Usage(f"{arg!r}: {net_text!r} is not an IP network") from None
    if "/" in net_text and net.ip != net.network:
        raise Usage(f"{arg!r}: {net_text!r} has host bits set (network is {net.cidr})")
    parts = [p.strip() for p in value.split(",")]
    if len(parts) != 3:
        raise Usage(f"{arg!r}: expected NET=LAT,LON,CC (three comma-separated fields)")
    lat_text, lon_text, cc = parts
    record = {}
    if cc:
        if len(cc) != 2 or not cc.isascii() or not cc.isalpha():
            raise Usage(f"{arg!r}: country {cc!r} is not a two-letter ISO code")
        record["country"] = {"iso_code": cc.upper()}
    if lat_text or lon_text:
        if not (lat_text and lon_text):
            raise Usage(f"{arg!r}: give both latitude and longitude, or neither")
        record["location"] = {
            "latitude": parse_coord(arg, lat_text, "latitude", 90),
            "longitude": parse_coord(arg, lon_text, "longitude", 180),
        }
    if not record:
        raise Usage(f"{arg!r}: the record is empty (no location, no country)")
    return net.cidr, record


def main(argv):
    if len(argv) < 3 or argv[1] in ("-h", "--help"):
        raise Usage("usage: make-geoip.py OUT.mmdb NET=LAT,LON,CC [NET=LAT,LON,CC ...]")
    out = argv[1]
    if "=" in out or not out.endswith(".mmdb"):
        raise Usage(f"the first argument is the output file (*.mmdb), not {out!r}")
    try:
        epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    except ValueError:
        raise Usage("SOURCE_DATE_EPOCH is not an integer") from None

    writer = ReproducibleWriter(
        epoch,
        ip_version=6,
        ipv4_compatible=True,
        database_type=DATABASE_TYPE,
        languages=["en"],
        description="MediaMesh test database (GeoIP2 City layout)",
        float_type="f64",
    )
    entries = {}
    for arg in argv[2:]:
        net, record = parse_entry(arg)
        if net in entries:
            raise Usage(f"{arg!r}: {net} is given twice")
        entries[net] = record
    # Wider networks first: a narrower one inserted later wins inside it (as in
    # GeoIP, the most specific network answers); the other order would erase it.
    # IPv4 networks sit at ::/96 in the tree, so their depth is 96 + prefix.
    def depth(net):
        return net.prefixlen + (96 if net.version == 4 else 0)

    for net in sorted(entries, key=depth):
        writer.insert_network(IPSet([net]), entries[net])
    writer.to_db_file(out)
    print(f"make-geoip.py: wrote {out} ({len(entries)} networks, {os.path.getsize(out)} bytes)")


if __name__ == "__main__":
    try:
        main(sys.argv)
    except Usage as e:
        sys.exit(f"make-geoip.py: {e}")
