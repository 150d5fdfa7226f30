//! Socket addresses to and from the kernel's `sockaddr_in`/`sockaddr_in6` bytes, without
//! allocation or `unsafe`, for the per-packet path of both backends.
//!
//! ```text
//! sockaddr_in  (16 bytes): family u16 (native) | port u16 (BE) | addr [4]  | zero [8]
//! sockaddr_in6 (28 bytes): family u16 (native) | port u16 (BE) | flowinfo u32 (BE)
//!                          | addr [16] | scope_id u32 (native)
//! ```

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// Room for either address family, aligned like `sockaddr_storage` for the kernel.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(8))]
pub struct RawAddr {
    pub bytes: [u8; RAW_ADDR_LEN],
}

/// `sizeof(struct sockaddr_in6)`: the largest name we ask the kernel for.
pub const RAW_ADDR_LEN: usize = 28;
const V4_LEN: usize = 16;

impl RawAddr {
    pub const fn zeroed() -> Self {
        RawAddr {
            bytes: [0; RAW_ADDR_LEN],
        }
    }

    /// Encodes `addr` and returns the `socklen_t` to pass with it.
    pub fn set(&mut self, addr: SocketAddr) -> u32 {
        self.bytes = [0; RAW_ADDR_LEN];
        match addr {
            SocketAddr::V4(a) => {
                self.bytes[0..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
                self.bytes[2..4].copy_from_slice(&a.port().to_be_bytes());
                self.bytes[4..8].copy_from_slice(&a.ip().octets());
                V4_LEN as u32
            }
            SocketAddr::V6(a) => {
                self.bytes[0..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
                self.bytes[2..4].copy_from_slice(&a.port().to_be_bytes());
                self.bytes[4..8].copy_from_slice(&a.flowinfo().to_be_bytes());
                self.bytes[8..24].copy_from_slice(&a.ip().octets());
                self.bytes[24..28].copy_from_slice(&a.scope_id().to_ne_bytes());
                RAW_ADDR_LEN as u32
            }
        }
    }
}

/// Decodes a kernel-filled socket name; `None` for families other than IPv4/IPv6 or a
/// name too short for its family.
pub fn parse(name: &[u8]) -> Option<SocketAddr> {
    let family = u16::from_ne_bytes([*name.first()?, *name.get(1)?]);
    let port = u16::from_be_bytes([*name.get(2)?, *name.get(3)?]);
    if family == libc::AF_INET as u16 && name.len() >= 8 {
        let ip = Ipv4Addr::new(name[4], name[5], name[6], name[7]);
        Some(SocketAddr::V4(SocketAddrV4::new(ip, port)))
    } else if family == libc::AF_INET6 as u16 && name.len() >= RAW_ADDR_LEN {
        let flowinfo = u32::from_be_bytes([name[4], name[5], name[6], name[7]]);
        let mut ip = [0u8; 16];
        ip.copy_from_slice(&name[8..24]);
        let scope = u32::from_ne_bytes([name[24], name[25], name[26], name[27]]);
        Some(SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::from(ip),
            port,
            flowinfo,
            scope,
        )))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_round_trip_matches_kernel_layout() {
        let a: SocketAddr = "192.0.2.7:5004".parse().unwrap();
        let mut raw = RawAddr::zeroed();
        assert_eq!(raw.set(a), 16);
        assert_eq!(&raw.bytes[2..8], &[0x13, 0x8c, 192, 0, 2, 7]);
        assert_eq!(parse(&raw.bytes[..16]), Some(a));
    }

    #[test]
    fn v6_round_trip() {
        let a: SocketAddr = "[2001:db8::1]:40000".parse().unwrap();
        let mut raw = RawAddr::zeroed();
        assert_eq!(raw.set(a), 28);
        assert_eq!(parse(&raw.bytes), Some(a));
    }

    #[test]
    fn short_or_foreign_names_are_rejected() {
        assert_eq!(parse(&[]), None);
        assert_eq!(parse(&[2, 0, 0]), None);
        let mut raw = RawAddr::zeroed();
        raw.set("[::1]:9".parse().unwrap());
        assert_eq!(parse(&raw.bytes[..20]), None);
        raw.bytes[0..2].copy_from_slice(&(libc::AF_UNIX as u16).to_ne_bytes());
        assert_eq!(parse(&raw.bytes), None);
    }
}
