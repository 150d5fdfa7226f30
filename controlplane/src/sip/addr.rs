//! The address parts the proxy routes on: SIP URIs (RFC 3261 §19.1) and Via
//! sent-by (§20.42, with RFC 3581 `rport`). Only IP literals resolve: the front end
//! does no DNS, a name gives 503 (RFC 3263 §4.3 treats a failed lookup the same).
//!
//! ```text
//!  sip:alice@192.0.2.1:5070;transport=tcp;lr      <sip:...>;params also accepted
//!      ^user ^host       ^port ^uri parameters
//!  SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK7;rport=5062;received=198.51.100.3
//!          ^transport  ^sent-by
//! ```

use std::net::{IpAddr, SocketAddr};

use super::message::param;

/// The transports this front end speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Transport {
    #[default]
    Udp,
    Tcp,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        }
    }

    /// RFC 3261 §17.1.1.1: retransmission timers run only over unreliable transports.
    pub fn reliable(self) -> bool {
        self == Transport::Tcp
    }
}

/// The parts of a SIP URI the proxy needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri<'a> {
    pub user: Option<&'a str>,
    pub host: &'a str,
    pub port: Option<u16>,
    pub transport: Transport,
    pub lr: bool,
}

impl<'a> Uri<'a> {
    /// Parses `sip:[user@]host[:port][;params]`, with or without `<>` and display name.
    pub fn parse(s: &'a str) -> Option<Uri<'a>> {
        let s = match (s.find('<'), s.rfind('>')) {
            (Some(a), Some(b)) if a < b => &s[a + 1..b],
            _ => s.trim(),
        };
        let rest = s.strip_prefix("sip:").or_else(|| s.strip_prefix("SIP:"))?;
        let rest = rest.split_once('?').map_or(rest, |(a, _)| a);
        let (hostpart, params) = rest.split_once(';').unwrap_or((rest, ""));
        let (user, hostport) = match hostpart.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, hostpart),
        };
        let (host, port) = split_hostport(hostport)?;
        let mut transport = Transport::Udp;
        let mut lr = false;
        for p in params.split(';') {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            if k.eq_ignore_ascii_case("transport") && v.eq_ignore_ascii_case("tcp") {
                transport = Transport::Tcp;
            }
            lr |= k.eq_ignore_ascii_case("lr");
        }
        Some(Uri {
            user,
            host,
            port,
            transport,
            lr,
        })
    }

    /// The socket address for an IP-literal host (port 5060 by default, §19.1.2).
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        let ip: IpAddr = self.host.parse().ok()?;
        Some(SocketAddr::new(ip, self.port.unwrap_or(5060)))
    }
}

/// `host[:port]`, with `[v6]` brackets.
fn split_hostport(s: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if let Some(r) = s.strip_prefix('[') {
        let (h, tail) = r.split_once(']')?;
        (h, tail.strip_prefix(':'))
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        Some(p) => Some(p.parse().ok()?),
        None => None,
    };
    Some((host, port))
}

/// One Via value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via<'a> {
    pub transport: Transport,
    pub host: &'a str,
    pub port: Option<u16>,
    pub branch: Option<&'a str>,
}

impl<'a> Via<'a> {
    pub fn parse(v: &'a str) -> Option<Via<'a>> {
        let (proto, rest) = v.trim().split_once(char::is_whitespace)?;
        let transport = match proto.rsplit('/').next()? {
            t if t.eq_ignore_ascii_case("udp") => Transport::Udp,
            t if t.eq_ignore_ascii_case("tcp") => Transport::Tcp,
            _ => return None,
        };
        let sent_by = rest.split(';').next()?.trim();
        let (host, port) = split_hostport(sent_by)?;
        Some(Via {
            transport,
            host,
            port,
            branch: param(v, "branch"),
        })
    }

    /// Where responses go (RFC 3261 §18.2.2 with RFC 3581 §4): `received` and `rport`
    /// when present, else sent-by.
    pub fn response_addr(v: &str) -> Option<SocketAddr> {
        let via = Via::parse(v)?;
        let host = param(v, "received").unwrap_or(via.host);
        let ip: IpAddr = host.parse().ok()?;
        let port = param(v, "rport")
            .and_then(|p| p.parse().ok())
            .or(via.port)
            .unwrap_or(5060);
        Some(SocketAddr::new(ip, port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        let u = Uri::parse("\"Bob\" <sip:bob@127.0.0.1:5070;transport=TCP;lr>;tag=9").unwrap();
        assert_eq!(u.user, Some("bob"));
        assert_eq!(u.socket_addr(), Some("127.0.0.1:5070".parse().unwrap()));
        assert_eq!(u.transport, Transport::Tcp);
        assert!(u.lr);
        let u = Uri::parse("sip:[::1]").unwrap();
        assert_eq!(u.socket_addr(), Some("[::1]:5060".parse().unwrap()));
        assert_eq!(Uri::parse("sip:example.com").unwrap().socket_addr(), None);
        assert!(Uri::parse("tel:+123").is_none());
        assert!(Uri::parse("sip:a@h:99999").is_none());
        assert!(Uri::parse("sip:@").is_none());
    }

    #[test]
    fn via_response_address() {
        let v = "SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bKx;rport=7000;received=127.0.0.2";
        assert_eq!(Via::parse(v).unwrap().branch, Some("z9hG4bKx"));
        assert_eq!(
            Via::response_addr(v),
            Some("127.0.0.2:7000".parse().unwrap())
        );
        let v = "SIP/2.0/TCP 127.0.0.1;branch=z9hG4bKy";
        assert_eq!(Via::parse(v).unwrap().transport, Transport::Tcp);
        assert_eq!(
            Via::response_addr(v),
            Some("127.0.0.1:5060".parse().unwrap())
        );
        assert!(Via::parse("SIP/2.0/SCTP h").is_none());
        assert!(Via::parse("garbage").is_none());
    }
}
