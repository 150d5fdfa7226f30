//! The `[sip]` section of the config file and `--listen-sip`: where the front end
//! listens (off unless given), its T1, and the static routes with media policy.
//!
//! ```toml
//! [sip]
//! listen = "127.0.0.1:5060"
//! t1-ms = 500
//! tcp-max-connections = 1024        # accepted and opened together
//! tcp-idle-timeout-s = 600          # a connection silent this long is closed
//! [[sip.route]]
//! domain = "carrier.example"       # request-URI host; any when absent
//! user-prefix = "00"               # request-URI user prefix; any when absent
//! next-hop = "127.0.0.1:5080"      # else the request-URI host
//! transport = "udp"                # or "tcp", toward next-hop
//! callee-protocol = "RTP/SAVP"     # SDES-SRTP toward the callee
//! caller-protocol = "RTP/AVP"      # plain RTP toward the caller
//! flags = ["SDES-no-AES_256_CM_HMAC_SHA1_80"]
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::addr::Transport;
use super::media::SidePolicy;
use super::route::Route;
use super::transaction::Timers;

/// The file form of `[sip]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SipFile {
    listen: Option<String>,
    t1_ms: Option<u64>,
    tcp_max_connections: Option<usize>,
    tcp_idle_timeout_s: Option<u64>,
    #[serde(default)]
    route: Vec<RouteFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RouteFile {
    domain: Option<String>,
    user_prefix: Option<String>,
    next_hop: Option<String>,
    transport: Option<String>,
    caller_protocol: Option<String>,
    callee_protocol: Option<String>,
    #[serde(default)]
    flags: Vec<String>,
}

/// The resolved SIP front-end settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SipConfig {
    /// UDP and TCP address; the front end is off when `None`.
    pub listen: Option<SocketAddr>,
    pub routes: Vec<Route>,
    pub timers: Timers,
    pub tcp: TcpLimits,
}

/// Bounds on what SIP peers can make the front end hold over TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpLimits {
    /// Connections open at once, accepted and opened toward next hops together;
    /// an accept past it is closed at once.
    pub max_connections: usize,
    /// A connection with nothing read or written for this long is closed, so a
    /// peer cannot pin descriptors and buffers by connecting and going quiet.
    pub idle: Duration,
    /// Messages waiting to be written to one connection; a peer that stops
    /// reading past it has its connection closed instead of growing the queue.
    pub queue: usize,
}

impl Default for TcpLimits {
    fn default() -> Self {
        TcpLimits {
            max_connections: 1024,
            idle: Duration::from_secs(600),
            queue: 256,
        }
    }
}

fn addr(key: &str, s: &str) -> Result<SocketAddr, String> {
    let a: SocketAddr = s
        .parse()
        .map_err(|_| format!("{key}: '{s}' is not an IP:port"))?;
    if a.ip().is_unspecified() {
        // Via and Record-Route must name an address peers can reach.
        return Err(format!(
            "{key}: '{s}' must be a concrete address, not a wildcard"
        ));
    }
    Ok(a)
}

/// `--listen-sip` over the file's `[sip]`, validated.
pub fn resolve(flag: Option<&str>, file: Option<&SipFile>) -> Result<SipConfig, String> {
    let mut c = SipConfig::default();
    let empty = SipFile::default();
    let file = file.unwrap_or(&empty);
    if let Some(l) = flag {
        c.listen = Some(addr("--listen-sip", l)?);
    } else if let Some(l) = &file.listen {
        c.listen = Some(addr("sip.listen", l)?);
    }
    if let Some(t1) = file.t1_ms {
        if !(10..=10_000).contains(&t1) {
            return Err(format!("sip.t1-ms: {t1} is outside 10..=10000"));
        }
        let t1 = Duration::from_millis(t1);
        c.timers.t1 = t1;
        c.timers.t2 = c.timers.t2.max(t1);
    }
    if let Some(n) = file.tcp_max_connections {
        if !(1..=100_000).contains(&n) {
            return Err(format!(
                "sip.tcp-max-connections: {n} is outside 1..=100000"
            ));
        }
        c.tcp.max_connections = n;
    }
    if let Some(s) = file.tcp_idle_timeout_s {
        if !(1..=86_400).contains(&s) {
            return Err(format!("sip.tcp-idle-timeout-s: {s} is outside 1..=86400"));
        }
        c.tcp.idle = Duration::from_secs(s);
    }
    for (i, r) in file.route.iter().enumerate() {
        let key = format!("sip.route[{i}]");
        let transport = match r
            .transport
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("udp") => Transport::Udp,
            Some("tcp") => Transport::Tcp,
            Some(t) => return Err(format!("{key}.transport: '{t}' is not udp or tcp")),
        };
        c.routes.push(Route {
            domain: r.domain.clone(),
            user_prefix: r.user_prefix.clone(),
            next_hop: r
                .next_hop
                .as_deref()
                .map(|h| addr(&format!("{key}.next-hop"), h))
                .transpose()?,
            transport,
            caller: SidePolicy {
                transport_protocol: r.caller_protocol.clone(),
            },
            callee: SidePolicy {
                transport_protocol: r.callee_protocol.clone(),
            },
            flags: r.flags.clone(),
        });
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> SipFile {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn off_unless_given_and_flag_wins() {
        assert_eq!(resolve(None, None).unwrap().listen, None);
        let f = file("listen = \"127.0.0.1:5060\"");
        assert_eq!(
            resolve(None, Some(&f)).unwrap().listen,
            Some("127.0.0.1:5060".parse().unwrap())
        );
        let c = resolve(Some("127.0.0.1:5070"), Some(&f)).unwrap();
        assert_eq!(c.listen, Some("127.0.0.1:5070".parse().unwrap()));
        assert!(
            resolve(Some("0.0.0.0:5060"), None)
                .unwrap_err()
                .contains("wildcard")
        );
        assert!(resolve(Some("nope"), None).is_err());
    }

    #[test]
    fn routes_and_timers() {
        let f = file(
            "t1-ms = 50\n[[route]]\ndomain = \"a.example\"\nnext-hop = \"127.0.0.1:5080\"\n\
             transport = \"TCP\"\ncallee-protocol = \"RTP/SAVP\"\nflags = [\"x\"]\n",
        );
        let c = resolve(None, Some(&f)).unwrap();
        assert_eq!(c.timers.t1, Duration::from_millis(50));
        let r = &c.routes[0];
        assert_eq!(r.transport, Transport::Tcp);
        assert_eq!(r.callee.transport_protocol.as_deref(), Some("RTP/SAVP"));
        assert_eq!(r.caller.transport_protocol, None);
        assert_eq!(r.flags, ["x"]);
        let bad = file("[[route]]\ntransport = \"sctp\"\n");
        assert!(resolve(None, Some(&bad)).unwrap_err().contains("transport"));
        let bad = file("t1-ms = 1\n");
        assert!(resolve(None, Some(&bad)).is_err());
        let f = file("tcp-max-connections = 8\ntcp-idle-timeout-s = 30\n");
        let c = resolve(None, Some(&f)).unwrap();
        assert_eq!(c.tcp.max_connections, 8);
        assert_eq!(c.tcp.idle, Duration::from_secs(30));
        let bad = file("tcp-max-connections = 0\n");
        assert!(
            resolve(None, Some(&bad))
                .unwrap_err()
                .contains("tcp-max-connections")
        );
        assert!(resolve(None, Some(&file("tcp-idle-timeout-s = 0\n"))).is_err());
        assert!(toml::from_str::<SipFile>("bogus = 1").is_err());
    }
}
