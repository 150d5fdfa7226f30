//! The host's addresses, for the loop guard of a relay bound to a wildcard
//! address (`0.0.0.0`, `::`): such a relay is reached at every address the
//! host has, so the workers must know them all to see a media loop through
//! one. They are read (`getifaddrs`) at startup, again whenever the kernel
//! announces an address added or removed (a netlink route socket: a VIP moved
//! here by keepalived, a DHCP lease, an interface brought up), and every
//! [`LOCAL_REFRESH`] in case an announcement was missed or cannot be had.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ferrelay_engine::LocalEndpoints;
use nix::errno::Errno;
use nix::sys::socket::{
    self, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, sockopt,
};
use nix::sys::time::TimeVal;

use crate::config::Config;
use crate::relay::SharedDataplane;

/// Where the relay's media sockets are reached, for the workers' loop guard:
/// every interface's bound and announced address and, for a wildcard bind, every
/// address the host has now (of both families for `::`, which takes IPv4 too;
/// read again by [`HostWatch`]); `LocalEndpoints` adds
/// loopback.
pub(crate) fn local_endpoints(cfg: &Config) -> LocalEndpoints {
    let wild = cfg.interfaces.iter().any(|i| i.local.is_unspecified());
    let host = if wild {
        host_addresses().unwrap_or_else(|e| {
            tracing::warn!(
                error = %e,
                "cannot list the host's addresses: the loop guard watches only the configured and loopback ones until it can"
            );
            Vec::new()
        })
    } else {
        Vec::new()
    };
    endpoints_with_host(cfg, host)
}

/// [`local_endpoints`] with the host's addresses given.
fn endpoints_with_host(cfg: &Config, host: Vec<IpAddr>) -> LocalEndpoints {
    let wild_v4 = cfg
        .interfaces
        .iter()
        .any(|i| i.local == Ipv4Addr::UNSPECIFIED);
    let wild_v6 = cfg
        .interfaces
        .iter()
        .any(|i| i.local == Ipv6Addr::UNSPECIFIED);
    let host = host
        .into_iter()
        .filter(|ip| wild_v6 || (wild_v4 && ip.is_ipv4()));
    let ips = cfg.interfaces.iter().flat_map(|i| [i.local, i.advertised]);
    LocalEndpoints::new(ips.chain(host), cfg.port_min, cfg.port_max)
}

/// The host's interface addresses (`getifaddrs`).
fn host_addresses() -> nix::Result<Vec<IpAddr>> {
    Ok(nix::ifaddrs::getifaddrs()?
        .filter_map(|a| {
            let a = a.address?;
            a.as_sockaddr_in()
                .map(|v4| IpAddr::V4(v4.ip()))
                .or_else(|| a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
        })
        .collect())
}

/// How often a wildcard-bound relay reads the host's addresses again, whatever
/// the kernel announced (or failed to).
pub(crate) const LOCAL_REFRESH: Duration = Duration::from_secs(30);

/// The loop guard's endpoints of a wildcard-bound relay, kept up with the
/// host's addresses: the workers get them anew when they change ([`HostWatch`]
/// calls [`LocalWatch::refresh`]).
pub(crate) struct LocalWatch {
    cfg: Config,
    /// What every worker was last sent.
    now: LocalEndpoints,
    /// A send failed part-way: some workers may hold another set than `now`, so
    /// the next refresh sends even an unchanged one.
    stale: bool,
    dp: Arc<SharedDataplane>,
}

impl LocalWatch {
    pub(crate) fn new(cfg: Config, now: LocalEndpoints, dp: Arc<SharedDataplane>) -> Self {
        LocalWatch {
            cfg,
            now,
            stale: false,
            dp,
        }
    }

    /// Reads the host's addresses and sends the workers the endpoints when they
    /// changed (or the last send failed part-way).
    fn refresh(&mut self) {
        // An address list that cannot be read (descriptors running out, say) is
        // not an empty one: the workers keep what they have.
        let host = match host_addresses() {
            Ok(h) => h,
            Err(e) => {
                tracing::debug!(error = %e, "cannot list the host's addresses; kept the last");
                return;
            }
        };
        let next = endpoints_with_host(&self.cfg, host);
        if next == self.now && !self.stale {
            return;
        }
        for w in 0..self.dp.workers() {
            let sent = self.dp.with(w, |h| {
                h.set_local(next.clone())?;
                h.flush_wakes();
                Ok(())
            });
            if let Err(e) = sent {
                tracing::warn!(worker = w, error = %e, "the loop guard's new endpoints were not sent");
                self.stale = true;
                return; // sent again at the next refresh
            }
        }
        if next != self.now {
            tracing::info!("the host's addresses changed: the loop guard watches the new ones");
        }
        self.now = next;
        self.stale = false;
    }
}

/// `RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR` (`linux/rtnetlink.h`): the groups
/// the kernel announces added and removed addresses to.
const ADDRESS_GROUPS: u32 = 0x10 | 0x100;

/// How long the watch waits for an announcement before it looks at its stop
/// flag and the clock.
const POLL: Duration = Duration::from_millis(100);

/// How soon endpoints that did not reach every worker are sent again.
const STALE_RETRY: Duration = Duration::from_secs(1);

/// At most this many announcements are read in one go (a host whose addresses
/// churn without pause cannot keep the watch from its stop flag).
const DRAIN_MAX: usize = 64;

/// A netlink route socket that hears the kernel announce every address added to
/// or removed from an interface of this network namespace. The messages are not
/// parsed: each batch only says "read the addresses again", and `getifaddrs`
/// gives the whole list.
struct AddressEvents {
    fd: OwnedFd,
}

impl AddressEvents {
    fn open() -> nix::Result<Self> {
        let fd = socket::socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        )?;
        socket::bind(fd.as_raw_fd(), &NetlinkAddr::new(0, ADDRESS_GROUPS))?;
        let wait = TimeVal::new(0, POLL.as_micros() as _);
        socket::setsockopt(&fd, sockopt::ReceiveTimeout, &wait)?;
        Ok(AddressEvents { fd })
    }

    /// Waits up to [`POLL`] for announcements; whether any came (those queued
    /// are read, up to [`DRAIN_MAX`]).
    fn wait(&self) -> nix::Result<bool> {
        let mut buf = [0u8; 4096];
        let mut flags = MsgFlags::empty();
        let mut heard = false;
        for _ in 0..DRAIN_MAX {
            match socket::recv(self.fd.as_raw_fd(), &mut buf, flags) {
                Ok(_) => heard = true,
                // Announcements were lost (the socket's queue overflowed):
                // something changed all the same.
                Err(Errno::ENOBUFS) => heard = true,
                // The wait timed out, or nothing more is queued.
                Err(Errno::EAGAIN | Errno::EINTR) => return Ok(heard),
                Err(e) => return Err(e),
            }
            flags = MsgFlags::MSG_DONTWAIT;
        }
        Ok(heard)
    }
}

/// The thread that keeps the workers' loop guard up with the host's addresses:
/// it reads them again as soon as the kernel announces a change, and every
/// `every` whatever it heard. Stopped (and joined) on drop.
#[derive(Debug)]
pub(crate) struct HostWatch {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<LocalWatch>>,
}

impl HostWatch {
    pub(crate) fn spawn(watch: LocalWatch, every: Duration) -> std::io::Result<HostWatch> {
        let events = AddressEvents::open()
            .inspect_err(|e| {
                tracing::warn!(
                    error = %e,
                    every_s = every.as_secs(),
                    "cannot hear the host's address changes: the loop guard reads them on a timer only"
                );
            })
            .ok();
        Self::spawn_with(watch, every, events)
    }

    /// `spawn` with the announcements given (`None`: the timer alone).
    fn spawn_with(
        watch: LocalWatch,
        every: Duration,
        events: Option<AddressEvents>,
    ) -> std::io::Result<HostWatch> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("ferrelay-hosts".into())
            .spawn({
                let stop = stop.clone();
                move || watch_hosts(watch, events, every, &stop)
            })?;
        Ok(HostWatch {
            stop,
            thread: Some(thread),
        })
    }

    /// Tells the thread to stop, without waiting (it ends within [`POLL`]).
    pub(crate) fn signal_stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Stops the thread and gives back its watch (`None` if it panicked).
    #[cfg(test)]
    fn stop(mut self) -> Option<LocalWatch> {
        self.signal_stop();
        self.thread.take()?.join().ok()
    }
}

impl Drop for HostWatch {
    fn drop(&mut self) {
        self.signal_stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn watch_hosts(
    mut watch: LocalWatch,
    mut events: Option<AddressEvents>,
    every: Duration,
    stop: &AtomicBool,
) -> LocalWatch {
    let mut last = Instant::now();
    if events.is_some() {
        // The addresses were first read before the socket listened: catch up
        // with a change made in between.
        watch.refresh();
    }
    while !stop.load(Ordering::Relaxed) {
        let heard = match &events {
            Some(ev) => ev.wait().unwrap_or_else(|e| {
                tracing::warn!(
                    error = %e,
                    "the host's address announcements failed: the loop guard reads them on a timer only"
                );
                events = None;
                false
            }),
            None => {
                std::thread::sleep(POLL);
                false
            }
        };
        let since = last.elapsed();
        if heard || since >= every || (watch.stale && since >= STALE_RETRY) {
            last = Instant::now();
            watch.refresh();
        }
    }
    watch
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use ferrelay_dataplane::{Dataplane, DataplaneConfig};

    use super::*;
    use crate::config::InterfaceSpec;

    fn iface(local: &str, advertised: &str) -> InterfaceSpec {
        InterfaceSpec {
            name: "default".into(),
            local: local.parse().unwrap(),
            advertised: advertised.parse().unwrap(),
        }
    }

    /// One real worker, and the configuration of a relay bound to `0.0.0.0`.
    fn wildcard_relay() -> (Arc<SharedDataplane>, Config) {
        let dp = Dataplane::start(DataplaneConfig {
            workers: 1,
            max_flows_per_worker: 16,
            ..Default::default()
        })
        .expect("data plane");
        let cfg = Config {
            interfaces: vec![iface("0.0.0.0", "203.0.113.5")],
            ..Config::default()
        };
        (Arc::new(SharedDataplane::new(dp, 16)), cfg)
    }

    #[test]
    fn a_wildcard_relay_sends_the_workers_new_endpoints_when_they_change() {
        let (shared, cfg) = wildcard_relay();
        // As if the host had no address at startup.
        let mut w = LocalWatch::new(cfg.clone(), LocalEndpoints::default(), shared.clone());
        w.refresh();
        assert_eq!(w.now, local_endpoints(&cfg), "taken and sent");
        assert!(!w.stale);
        w.refresh();
        assert_eq!(w.now, local_endpoints(&cfg), "unchanged: nothing to send");
        shared.shutdown();
        // With the workers gone, the change waits for the next try, and so does
        // an unchanged set after a failed send.
        w.now = LocalEndpoints::default();
        w.refresh();
        assert_eq!(w.now, LocalEndpoints::default());
        assert!(w.stale, "sent again next time");
    }

    /// The watch thread reads the addresses again each period, and not before
    /// (without the announcements, which a real change on the host could bring
    /// in at any time).
    #[test]
    fn the_watch_reads_the_host_addresses_again_each_period() {
        let (shared, cfg) = wildcard_relay();
        // As if the host had had no address at startup; what the watch holds
        // once it ran for 400 ms, reading every `every`.
        let after = |every: Duration| {
            let watch = LocalWatch::new(cfg.clone(), LocalEndpoints::default(), shared.clone());
            let h = HostWatch::spawn_with(watch, every, None).unwrap();
            std::thread::sleep(Duration::from_millis(400));
            h.stop().expect("the watch comes back").now
        };
        assert_eq!(
            after(Duration::from_millis(50)),
            local_endpoints(&cfg),
            "not read again, or not sent"
        );
        assert_eq!(
            after(Duration::from_secs(3600)),
            LocalEndpoints::default(),
            "read again before its time"
        );
        shared.shutdown();
    }

    #[test]
    fn the_loop_guard_watches_what_reaches_the_relays_sockets() {
        let at = |l: &LocalEndpoints, a: &str| l.reaches_relay(a.parse().unwrap());
        let cfg = |ifaces| Config {
            interfaces: ifaces,
            port_min: 30_000,
            port_max: 30_099,
            ..Config::default()
        };
        // A specific bind: its own and its announced address.
        let l = local_endpoints(&cfg(vec![iface("127.0.0.1", "203.0.113.5")]));
        assert!(at(&l, "127.0.0.1:30000") && at(&l, "203.0.113.5:30099"));
        assert!(!at(&l, "127.0.0.2:30000"), "not bound there");

        // A wildcard bind is reached at every address of the host, loopback's
        // whole range included, and at what it announces.
        let host: Vec<IpAddr> = ["10.1.2.3", "2001:db8::5"]
            .map(|a| a.parse().unwrap())
            .into();
        let l = endpoints_with_host(&cfg(vec![iface("0.0.0.0", "203.0.113.5")]), host.clone());
        for a in ["203.0.113.5:30000", "10.1.2.3:30000", "127.0.0.2:30000"] {
            assert!(at(&l, a), "{a}");
        }
        assert!(!at(&l, "[2001:db8::5]:30000"), "an IPv4 bind takes no IPv6");
        assert!(!at(&l, "[::1]:30000"), "an IPv4 bind takes no IPv6");
        assert!(!at(&l, "192.0.2.1:30000"), "not an address of this host");
        // `::` takes both families (Linux's dual-stack default).
        let l = endpoints_with_host(&cfg(vec![iface("::", "2001:db8::9")]), host.clone());
        for a in [
            "10.1.2.3:30000",
            "[2001:db8::5]:30000",
            "[::1]:30000",
            "127.0.0.2:30000",
        ] {
            assert!(at(&l, a), "{a}");
        }
        // A specific bind takes none of the host's other addresses.
        let l = endpoints_with_host(&cfg(vec![iface("127.0.0.1", "127.0.0.1")]), host);
        assert!(!at(&l, "10.1.2.3:30000"));
        // What the host really has is listed, and goes in for a wildcard bind.
        let l = local_endpoints(&cfg(vec![iface("0.0.0.0", "203.0.113.5")]));
        for ip in host_addresses()
            .unwrap()
            .into_iter()
            .filter(IpAddr::is_ipv4)
        {
            assert!(
                l.reaches_relay(SocketAddr::new(ip, 30_050)),
                "host address {ip}"
            );
        }
    }
}
