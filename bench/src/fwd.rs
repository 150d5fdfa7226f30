//! What the baseline forwarders share: the port layout, the command line, and the
//! latch table. The baselines do the least a relay must (latch, forward to the
//! partner port's latched source) so they measure the kernel's floor, not a design.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use clap::Parser;

/// Command line of `fwd-mmsg` and `fwd-uring`.
#[derive(Debug, Clone, Parser)]
pub struct FwdArgs {
    #[arg(long, default_value = "127.0.0.1")]
    pub ip: IpAddr,
    /// Port pair i is base+2i <-> base+2i+1.
    #[arg(long, default_value_t = 30_000)]
    pub base_port: u16,
    #[arg(long, default_value_t = 500)]
    pub pairs: usize,
    /// Exit after this many seconds (the harness kills it sooner).
    #[arg(long, default_value_t = 600.0)]
    pub seconds: f64,
}

impl FwdArgs {
    pub fn run_for(&self) -> Duration {
        Duration::from_secs_f64(self.seconds.clamp(0.0, 3600.0))
    }

    /// Binds the 2N ports; socket `s` forwards out of socket `s ^ 1`.
    pub fn bind_all(&self) -> std::io::Result<Vec<UdpSocket>> {
        let last = u32::from(self.base_port) + 2 * self.pairs as u32;
        if last > 65_536 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "port range runs past 65535",
            ));
        }
        (0..2 * self.pairs as u32)
            .map(|i| {
                let s = UdpSocket::bind(SocketAddr::new(self.ip, self.base_port + i as u16))?;
                s.set_nonblocking(true)?;
                Ok(s)
            })
            .collect()
    }
}

/// Tells the harness the sockets are bound: one line on stdout.
pub fn announce_ready(name: &str, sockets: usize) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "ready {name} {sockets}");
    let _ = out.flush();
}

/// Space for a raw `sockaddr_in` / `sockaddr_in6` as the kernel wrote it.
pub const RAW_ADDR_LEN: usize = 28;

/// A source address kept in the kernel's own byte layout, so forwarding to it
/// needs no conversion either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawAddr {
    pub bytes: [u8; RAW_ADDR_LEN],
    pub len: u8,
}

impl RawAddr {
    /// Copies a sockaddr the kernel returned; `None` if it is not IPv4/IPv6-sized.
    pub fn from_kernel(name: &[u8]) -> Option<RawAddr> {
        if name.len() < 16 || name.len() > RAW_ADDR_LEN {
            return None;
        }
        let mut bytes = [0u8; RAW_ADDR_LEN];
        bytes[..name.len()].copy_from_slice(name);
        Some(RawAddr {
            bytes,
            len: name.len() as u8,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_addr_bounds() {
        assert!(RawAddr::from_kernel(&[0; 8]).is_none());
        assert!(RawAddr::from_kernel(&[0; 29]).is_none());
        let a = RawAddr::from_kernel(&[7; 16]).unwrap();
        assert_eq!(a.len, 16);
        assert_eq!(&a.bytes[..16], &[7; 16]);
        assert_eq!(&a.bytes[16..], &[0; 12]);
    }

    #[test]
    fn rejects_port_overflow() {
        let a = FwdArgs {
            ip: [127, 0, 0, 1].into(),
            base_port: 65_000,
            pairs: 600,
            seconds: 1.0,
        };
        assert!(a.bind_all().is_err());
    }
}
