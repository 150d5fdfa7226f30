//! Static routes from the `[sip]` config: match the request-URI by domain and user
//! prefix, send to a fixed next hop, and set the media policy of each side (for
//! example SDES-SRTP toward the callee, plain RTP toward the caller).

use std::net::SocketAddr;

use super::addr::{Transport, Uri};
use super::media::SidePolicy;

/// One static route; the first matching route wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Route {
    /// Request-URI host this route serves (case-insensitive); any when `None`.
    pub domain: Option<String>,
    /// Request-URI user prefix (for example a dial prefix); any when `None`.
    pub user_prefix: Option<String>,
    /// Where matching requests go; the request-URI's host when `None`.
    pub next_hop: Option<SocketAddr>,
    pub transport: Transport,
    /// Media toward the caller, in the offers the callee makes (re-INVITE,
    /// UPDATE, a late offer in the 2xx); answers keep the offer's protocol.
    pub caller: SidePolicy,
    /// Media toward the callee, in the caller's offers.
    pub callee: SidePolicy,
    /// NG flags added to every offer and answer of the call.
    pub flags: Vec<String>,
}

impl Route {
    pub fn matches(&self, uri: &Uri<'_>) -> bool {
        self.domain
            .as_ref()
            .is_none_or(|d| d.eq_ignore_ascii_case(uri.host))
            && self
                .user_prefix
                .as_ref()
                .is_none_or(|p| uri.user.is_some_and(|u| u.starts_with(p.as_str())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_by_domain_and_prefix() {
        let r = Route {
            domain: Some("Example.org".into()),
            user_prefix: Some("00".into()),
            ..Route::default()
        };
        assert!(r.matches(&Uri::parse("sip:0049@example.ORG").unwrap()));
        assert!(!r.matches(&Uri::parse("sip:49@example.org").unwrap()));
        assert!(!r.matches(&Uri::parse("sip:0049@example.com").unwrap()));
        assert!(!r.matches(&Uri::parse("sip:example.org").unwrap()));
        assert!(Route::default().matches(&Uri::parse("sip:x@y").unwrap()));
    }
}
