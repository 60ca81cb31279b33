//! CIDR ranges for address-bound tokens (`npm token create --cidr`).

use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid CIDR range {0:?}: use ADDRESS/PREFIX, e.g. 10.0.0.0/8")]
pub struct CidrError(String);

impl Cidr {
    pub fn parse(raw: &str) -> Result<Self, CidrError> {
        let err = || CidrError(raw.to_owned());
        let (addr, prefix) = match raw.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (raw, None),
        };
        let network: IpAddr = addr.parse().map_err(|_| err())?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p.parse().map_err(|_| err())?,
        };
        if prefix > max {
            return Err(err());
        }
        Ok(Cidr { network, prefix })
    }

    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            v4 => v4,
        };
        match (self.network, addr) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                masked(u128::from(u32::from(net)), 32, self.prefix) == masked(u128::from(u32::from(a)), 32, self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                masked(u128::from(net), 128, self.prefix) == masked(u128::from(a), 128, self.prefix)
            }
            _ => false,
        }
    }
}

fn masked(bits: u128, width: u8, prefix: u8) -> u128 {
    if prefix == 0 { 0 } else { bits >> (width - prefix) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn ranges_match_their_addresses_only() {
        let lan = Cidr::parse("10.0.0.0/8").expect("valid");
        assert!(lan.contains(ip("10.1.2.3")));
        assert!(!lan.contains(ip("11.0.0.1")));
        assert!(lan.contains(ip("::ffff:10.0.0.1")));
        assert!(Cidr::parse("127.0.0.1").expect("valid").contains(ip("127.0.0.1")));
        assert!(Cidr::parse("0.0.0.0/0").expect("valid").contains(ip("8.8.8.8")));
        assert!(Cidr::parse("fd00::/8").expect("valid").contains(ip("fd12::1")));
        for bad in ["10.0.0.0/33", "x/8", "10.0.0.0/", ""] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }
}
