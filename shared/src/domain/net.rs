//! Addresses: which ones are inside a network (refused as notification targets set through
//! the API), and which client a request came from behind trusted proxies.

use ipnet::IpNet;
use std::net::IpAddr;

/// `10.0.0.0/8`, `2001:db8::/32`, or a lone address (a /32 or /128).
pub fn parse_cidr(s: &str) -> Option<IpNet> {
    let s = s.trim();
    s.parse::<IpNet>().ok().or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

/// Loopback, private (RFC 1918, unique local), link-local, carrier-grade NAT, unspecified,
/// broadcast, multicast or documentation: an address a public target never resolves to.
/// An IPv4 address mapped into IPv6 is judged as the IPv4 address.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_internal(IpAddr::V4(v4)),
            None => {
                v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_multicast()
                    || v6.is_unique_local()
                    || v6.is_unicast_link_local()
                    || (v6.segments()[0] == 0x2001 && v6.segments()[1] == 0x0db8)
            }
        },
    }
}

/// The client behind a request: the peer, unless the peer is a trusted proxy, in which case
/// the nearest address of `X-Forwarded-For` (read right to left) that is not a trusted proxy.
/// A malformed hop ends the walk at the last address we could believe.
pub fn client_ip(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    for hop in forwarded_for.unwrap_or("").rsplit(',') {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !is_trusted(&ip) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn internal_addresses() {
        for s in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.9",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_internal(ip(s)), "{s} is internal");
        }
        for s in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert!(!is_internal(ip(s)), "{s} is public");
        }
    }

    #[test]
    fn forwarded_for_only_behind_a_trusted_proxy() {
        let trusted = vec![parse_cidr("10.0.0.0/8").unwrap()];
        // Not from a proxy: the header is anyone's to write.
        assert_eq!(client_ip(ip("203.0.113.9"), Some("1.2.3.4"), &trusted), ip("203.0.113.9"));
        // From the proxy: the first untrusted hop from the right.
        assert_eq!(client_ip(ip("10.0.0.5"), Some("6.6.6.6, 1.2.3.4, 10.0.0.7"), &trusted), ip("1.2.3.4"));
        // A malformed hop is not believed; the last good one stands.
        assert_eq!(client_ip(ip("10.0.0.5"), Some("junk, 10.0.0.8"), &trusted), ip("10.0.0.8"));
        assert_eq!(client_ip(ip("10.0.0.5"), None, &trusted), ip("10.0.0.5"));
        assert_eq!(parse_cidr("192.0.2.1"), Some("192.0.2.1/32".parse().unwrap()));
        assert_eq!(parse_cidr("nope"), None);
    }
}
