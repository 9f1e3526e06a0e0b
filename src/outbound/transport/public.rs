//! Which addresses are on the public internet: direct MX delivery connects
//! only to those, unless `outbound.allow_private_destinations` is set, so
//! a stranger's MX record cannot point boxtrap at this machine, its LAN or
//! its provider's network (server-side request forgery through the DNS).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What kind of non-public address `ip` is, with its range and the RFC
/// that reserves it (e.g. `"private (10.0.0.0/8, RFC 1918)"`), or `None`
/// for an address that may be on the public internet.
///
/// IPv4-mapped (`::ffff:0:0/96`, RFC 4291 §2.5.5.2), IPv4-compatible
/// (`::/96`) and NAT64 (`64:ff9b::/96`, RFC 6052) IPv6 addresses are judged
/// by the IPv4 address they carry, since connecting to them reaches it.
pub fn non_public(ip: IpAddr) -> Option<String> {
    match ip {
        IpAddr::V4(v4) => v4_kind(v4).map(str::to_owned),
        IpAddr::V6(v6) => v6_kind(v6),
    }
}

fn v4_kind(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, _, _) => "unspecified (\"this network\", 0.0.0.0/8, RFC 791)",
        (10, _, _) => "private (10.0.0.0/8, RFC 1918)",
        (100, 64..=127, _) => "shared, carrier-grade NAT (100.64.0.0/10, RFC 6598)",
        (127, _, _) => "loopback (127.0.0.0/8, RFC 1122)",
        (169, 254, _) => "link-local (169.254.0.0/16, RFC 3927)",
        (172, 16..=31, _) => "private (172.16.0.0/12, RFC 1918)",
        (192, 0, 0) => "IETF protocol assignments (192.0.0.0/24, RFC 6890)",
        (192, 0, 2) => "documentation (192.0.2.0/24, RFC 5737)",
        (192, 168, _) => "private (192.168.0.0/16, RFC 1918)",
        (198, 18..=19, _) => "benchmarking (198.18.0.0/15, RFC 2544)",
        (198, 51, 100) => "documentation (198.51.100.0/24, RFC 5737)",
        (203, 0, 113) => "documentation (203.0.113.0/24, RFC 5737)",
        (224..=239, _, _) => "multicast (224.0.0.0/4, RFC 5771)",
        (240..=255, _, _) => "reserved or broadcast (240.0.0.0/4, RFC 1112)",
        _ => return None,
    })
}

fn v6_kind(ip: Ipv6Addr) -> Option<String> {
    let s = ip.segments();
    let embedded_v4 = || Ipv4Addr::from(((s[6] as u32) << 16) | s[7] as u32);
    let named = |kind: &str| Some(kind.to_owned());
    match s {
        [0, 0, 0, 0, 0, 0, 0, 0] => named("unspecified (::/128, RFC 4291)"),
        [0, 0, 0, 0, 0, 0, 0, 1] => named("loopback (::1/128, RFC 4291)"),
        [0, 0, 0, 0, 0, 0xffff, _, _] => {
            v4_kind(embedded_v4()).map(|kind| format!("IPv4-mapped {kind}"))
        }
        // Deprecated IPv4-compatible addresses (RFC 4291 §2.5.5.1).
        [0, 0, 0, 0, 0, 0, _, _] => named("IPv4-compatible, deprecated (::/96, RFC 4291)"),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => {
            v4_kind(embedded_v4()).map(|kind| format!("NAT64 to a {kind}"))
        }
        [0x64, 0xff9b, 1, ..] => named("local-use NAT64 (64:ff9b:1::/48, RFC 8215)"),
        [0x100, 0, 0, 0, ..] => named("discard-only (100::/64, RFC 6666)"),
        [0x2001, 2, 0, ..] => named("benchmarking (2001:2::/48, RFC 5180)"),
        [0x2001, 0xdb8, ..] => named("documentation (2001:db8::/32, RFC 3849)"),
        [0x3fff, second, ..] if second & 0xf000 == 0 => {
            named("documentation (3fff::/20, RFC 9637)")
        }
        [first, ..] if first & 0xfe00 == 0xfc00 => {
            named("unique local, private (fc00::/7, RFC 4193)")
        }
        [first, ..] if first & 0xffc0 == 0xfe80 => named("link-local (fe80::/10, RFC 4291)"),
        [first, ..] if first & 0xffc0 == 0xfec0 => {
            named("site-local, deprecated (fec0::/10, RFC 3879)")
        }
        [first, ..] if first & 0xff00 == 0xff00 => named("multicast (ff00::/8, RFC 4291)"),
        _ => None,
    }
}
