//! The one source-address generator of the floods: prefixes that may be
//! spoofed, checked when they are made (only the documentation and
//! benchmarking ranges, [`is_test_address`]), and random hosts inside them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::ensure;
use rand::{Rng, RngExt as _};

use crate::packet::addr::is_test_address;

/// A prefix to spoof sources from; a single address is a /32 or /128.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prefix {
    net: IpAddr,
    len: u8,
}

impl Prefix {
    /// `net/len`: refused unless every address in it is a test address.
    pub fn new(net: impl Into<IpAddr>, len: u8) -> anyhow::Result<Self> {
        let net = net.into();
        let bits = if net.is_ipv4() { 32 } else { 128 };
        ensure!(len <= bits, "{net}/{len}: a prefix of at most {bits} bits");
        // The test ranges are contiguous and none is wider than 198.18.0.0/15
        // or 2001:db8::/32: a prefix inside one has both ends inside it.
        let (first, last) = bounds(net, len);
        ensure!(
            is_test_address(first)
                && is_test_address(last)
                && ((net.is_ipv4() && len >= 15) || (net.is_ipv6() && len >= 32)),
            "refusing to spoof {net}/{len}: only documentation and benchmarking ranges"
        );
        Ok(Self { net, len })
    }

    /// One address.
    pub fn host(addr: impl Into<IpAddr>) -> anyhow::Result<Self> {
        let addr = addr.into();
        Self::new(addr, if addr.is_ipv4() { 32 } else { 128 })
    }

    /// Every prefix of `ranges` (e.g. the lab's `SPOOFED4`).
    pub fn all<T: Into<IpAddr> + Copy>(ranges: &[(T, u8)]) -> anyhow::Result<Vec<Self>> {
        ranges
            .iter()
            .map(|&(net, len)| Self::new(net, len))
            .collect()
    }

    pub fn is_ipv4(&self) -> bool {
        self.net.is_ipv4()
    }

    /// A random address inside the prefix (random host bits).
    pub fn random_host(&self, rng: &mut impl Rng) -> IpAddr {
        match self.net {
            IpAddr::V4(net) => {
                let mask = u32::MAX.checked_shr(u32::from(self.len)).unwrap_or(0);
                Ipv4Addr::from((u32::from(net) & !mask) | (rng.random::<u32>() & mask)).into()
            }
            IpAddr::V6(net) => {
                let mask = u128::MAX.checked_shr(u32::from(self.len)).unwrap_or(0);
                Ipv6Addr::from((u128::from(net) & !mask) | (rng.random::<u128>() & mask)).into()
            }
        }
    }
}

/// The first and the last address of `net/len`.
fn bounds(net: IpAddr, len: u8) -> (IpAddr, IpAddr) {
    match net {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            let first = u32::from(v4) & mask;
            (
                Ipv4Addr::from(first).into(),
                Ipv4Addr::from(first | !mask).into(),
            )
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            let first = u128::from(v6) & mask;
            (
                Ipv6Addr::from(first).into(),
                Ipv6Addr::from(first | !mask).into(),
            )
        }
    }
}

/// Prefixes of both families, used in turn: flood unit `n` takes its source
/// from prefix `n % count` of the family it needs.
#[derive(Clone, Debug)]
pub struct Sources {
    v4: Vec<Prefix>,
    v6: Vec<Prefix>,
}

impl Sources {
    pub fn new(v4: Vec<Prefix>, v6: Vec<Prefix>) -> anyhow::Result<Self> {
        ensure!(
            !v4.is_empty() && !v6.is_empty(),
            "a flood needs IPv4 and IPv6 sources"
        );
        ensure!(
            v4.iter().all(Prefix::is_ipv4) && !v6.iter().any(Prefix::is_ipv4),
            "IPv4 and IPv6 prefixes mixed up"
        );
        Ok(Self { v4, v6 })
    }

    /// The source of unit `n` in family `v6`.
    pub fn pick(&self, v6: bool, n: u64, rng: &mut impl Rng) -> IpAddr {
        let prefixes = if v6 { &self.v6 } else { &self.v4 };
        prefixes[(n % prefixes.len() as u64) as usize].random_host(rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_test_ranges_may_be_spoofed() {
        Prefix::host("192.0.2.66".parse::<IpAddr>().unwrap()).unwrap();
        for (net, len) in [
            ("198.19.66.0", 24),
            ("198.18.0.0", 15),
            ("2001:db8:66::", 48),
        ] {
            Prefix::new(net.parse::<IpAddr>().unwrap(), len).unwrap();
        }
        assert!(Prefix::host("8.8.8.8".parse::<IpAddr>().unwrap()).is_err());
        assert!(Prefix::host("2001:4860::8888".parse::<IpAddr>().unwrap()).is_err());
        for (net, len) in [
            ("198.18.0.0", 14),
            ("192.0.2.0", 23),
            ("2001:db8::", 31),
            ("192.0.2.0", 33),
        ] {
            assert!(
                Prefix::new(net.parse::<IpAddr>().unwrap(), len).is_err(),
                "{net}/{len}"
            );
        }
    }

    #[test]
    fn random_hosts_stay_inside_their_prefix() {
        let mut rng = rand::rng();
        let v4 = Prefix::new(Ipv4Addr::new(198, 19, 66, 0), 24).unwrap();
        let v6 = Prefix::new("2001:db8:66::".parse::<Ipv6Addr>().unwrap(), 48).unwrap();
        let one = Prefix::host(Ipv4Addr::new(192, 0, 2, 66)).unwrap();
        let mut distinct = std::collections::HashSet::new();
        for _ in 0..1000 {
            let IpAddr::V4(a) = v4.random_host(&mut rng) else {
                panic!("family")
            };
            assert_eq!(a.octets()[..3], [198, 19, 66]);
            let IpAddr::V6(b) = v6.random_host(&mut rng) else {
                panic!("family")
            };
            assert_eq!(b.segments()[..3], [0x2001, 0xdb8, 0x66]);
            distinct.insert(b.segments()[3]);
            assert_eq!(one.random_host(&mut rng), Ipv4Addr::new(192, 0, 2, 66));
        }
        assert!(distinct.len() > 900, "many different /64s");
    }

    #[test]
    fn sources_take_their_prefixes_in_turn() {
        let mut rng = rand::rng();
        let sources = Sources::new(
            Prefix::all(&[
                (Ipv4Addr::new(198, 19, 0, 0), 16),
                (Ipv4Addr::new(192, 0, 2, 0), 24),
            ])
            .unwrap(),
            Prefix::all(&[("2001:db8:bad::".parse::<Ipv6Addr>().unwrap(), 48)]).unwrap(),
        )
        .unwrap();
        let IpAddr::V4(first) = sources.pick(false, 0, &mut rng) else {
            panic!("family")
        };
        let IpAddr::V4(second) = sources.pick(false, 1, &mut rng) else {
            panic!("family")
        };
        assert_eq!(first.octets()[..2], [198, 19]);
        assert_eq!(second.octets()[..3], [192, 0, 2]);
        assert!(sources.pick(true, 5, &mut rng).is_ipv6());
        assert!(Sources::new(Vec::new(), Vec::new()).is_err());
    }
}
