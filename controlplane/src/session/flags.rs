//! The options of an NG `offer`/`answer`, read from the request dict the way
//! rtpengine reads them: keys and flag words match case-insensitively with `-`,
//! `_` and space treated alike, unknown keys and words are ignored.

use std::net::IpAddr;

use super::sdes::SdesFlags;
use crate::ng::Value;

/// How a side's `rtcp-mux` is handled (rtpengine's `rtcp-mux: [...]` list).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MuxFlags {
    /// Offer rtcp-mux to the answerer even if the offerer did not.
    pub offer: bool,
    /// Do not pass rtcp-mux on: the relay demultiplexes for the other side.
    pub demux: bool,
    /// Accept rtcp-mux from the offerer whatever the answerer does.
    pub accept: bool,
    /// Refuse rtcp-mux towards the offerer.
    pub reject: bool,
    /// Offer only muxed RTCP (no a=rtcp port) to the answerer.
    pub require: bool,
}

/// Everything an offer or answer can ask for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags {
    pub trust_address: bool,
    pub symmetric: bool,
    pub asymmetric: bool,
    pub strict_source: bool,
    pub port_latching: bool,
    pub media_handover: bool,
    pub sip_source_address: bool,
    pub replace_origin: bool,
    pub ice_remove: bool,
    pub mux: MuxFlags,
    /// Interface names for (offerer side, answerer side).
    pub direction: [Option<String>; 2],
    /// Family the answerer side must use (`IP4`/`IP6`).
    pub address_family: Option<Family>,
    pub transport_protocol: Option<String>,
    pub received_from: Option<IpAddr>,
    pub media_address: Option<IpAddr>,
    pub label: Option<String>,
    /// `SDES-off`, `SDES-no-<suite>`, `SDES-only-<suite>`.
    pub sdes: SdesFlags,
    /// `loop-protect`: mark the rewritten SDP with `a=rtpengine:<instance>`, and
    /// pass an SDP that already carries our mark through untouched.
    pub loop_protect: bool,
}

/// IP family of an interface or SDP address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(ip: IpAddr) -> Family {
        if ip.is_ipv4() { Family::V4 } else { Family::V6 }
    }
}

/// Normal form of a key or flag word: lowercase, separators as spaces.
pub fn norm(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '-' | '_' => ' ',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// One byte in `norm`'s normal form (it only changes ASCII, byte for byte).
fn norm_byte(b: u8) -> u8 {
    match b {
        b'-' | b'_' => b' ',
        b => b.to_ascii_lowercase(),
    }
}

/// `norm(a) == norm(b)` without building either: keys are compared this way for
/// every key of every request, so no allocation.
pub fn eq_norm(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| norm_byte(*x) == norm_byte(*y))
}

/// Looks a key up in the request dict under its normal form.
pub fn lookup<'a>(req: &'a Value, key: &str) -> Option<&'a Value> {
    match req {
        Value::Dict(d) => d
            .iter()
            .find(|(k, _)| eq_norm(k, key.as_bytes()))
            .map(|(_, v)| v),
        _ => None,
    }
}

/// A string value, borrowed from the request (no copy per lookup), or
/// `Err(reason)` when present but not a string.
pub fn string<'a>(req: &'a Value, key: &str) -> Result<Option<&'a str>, String> {
    match lookup(req, key) {
        None => Ok(None),
        Some(v) => v
            .as_str()
            .map(Some)
            .ok_or_else(|| format!("'{key}' must be a string")),
    }
}

/// The words of a list value (non-string items are ignored, as rtpengine does).
fn words(req: &Value, key: &str) -> Vec<String> {
    match lookup(req, key) {
        Some(Value::List(l)) => l.iter().filter_map(Value::as_str).map(norm).collect(),
        Some(v) => v.as_str().map(|s| vec![norm(s)]).unwrap_or_default(),
        None => Vec::new(),
    }
}

fn address(req: &Value, key: &str) -> Result<Option<IpAddr>, String> {
    // `received from` is `[ "IP4", "192.0.2.1" ]`; `media address` a plain string.
    let text = match lookup(req, key) {
        None => return Ok(None),
        Some(Value::List(l)) => l.get(1).and_then(Value::as_str),
        Some(v) => v.as_str(),
    };
    let text = text.ok_or_else(|| format!("'{key}' is not an address"))?;
    text.parse()
        .map(Some)
        .map_err(|_| format!("'{key}': '{text}' is not an IP address"))
}

impl Flags {
    /// Reads the options of one request; an error names the bad key.
    pub fn parse(req: &Value) -> Result<Flags, String> {
        let mut f = Flags::default();
        for w in words(req, "flags") {
            match w.as_str() {
                "trust address" => f.trust_address = true,
                "symmetric" => f.symmetric = true,
                "asymmetric" => f.asymmetric = true,
                "strict source" => f.strict_source = true,
                "port latching" => f.port_latching = true,
                "media handover" => f.media_handover = true,
                "sip source address" => f.sip_source_address = true,
                // Older Kamailio configs spell `replace: [origin]` as a flag word.
                "replace origin" => f.replace_origin = true,
                "loop protect" => f.loop_protect = true,
                // rtpengine takes `SDES-<word>` flags as words of the `SDES` list.
                w if w.starts_with("sdes ") => f.sdes.word(&w["sdes ".len()..]),
                _ => {}
            }
        }
        f.replace_origin |= words(req, "replace").iter().any(|w| w == "origin");
        for w in words(req, "SDES") {
            f.sdes.word(&w);
        }
        for w in words(req, "rtcp mux") {
            match w.as_str() {
                "offer" => f.mux.offer = true,
                "demux" => f.mux.demux = true,
                "accept" => f.mux.accept = true,
                "reject" => f.mux.reject = true,
                "require" => f.mux.require = true,
                _ => {}
            }
        }
        if let Some(ice) = string(req, "ICE")? {
            f.ice_remove = eq_norm(ice.as_bytes(), b"remove");
        }
        let dir: Vec<String> = match lookup(req, "direction") {
            Some(Value::List(l)) => l
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<_>>()
                .ok_or("'direction' must be a list of interface names")?,
            Some(_) => return Err("'direction' must be a list of interface names".into()),
            None => Vec::new(),
        };
        for (slot, name) in f.direction.iter_mut().zip(dir) {
            *slot = Some(name);
        }
        f.address_family = match string(req, "address family")? {
            None => None,
            Some(s) if s.eq_ignore_ascii_case("IP4") => Some(Family::V4),
            Some(s) if s.eq_ignore_ascii_case("IP6") => Some(Family::V6),
            Some(s) => return Err(format!("'address family': '{s}' is not IP4 or IP6")),
        };
        f.transport_protocol = string(req, "transport protocol")?.map(str::to_owned);
        f.received_from = address(req, "received from")?;
        f.media_address = address(req, "media address")?;
        f.label = string(req, "label")?.map(str::to_owned);
        Ok(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rtpengine_spellings() {
        let req = Value::decode(
            b"d5:flagsl13:trust-address13:strict_source7:unknowne7:replacel6:origine\
              8:rtcp-muxl5:demuxe3:ICE6:remove9:directionl4:priv3:pube\
              14:address family3:IP618:transport-protocol8:RTP/AVPF\
              13:received-froml3:IP49:192.0.2.7e5:label6:calleee",
        )
        .unwrap();
        let f = Flags::parse(&req).unwrap();
        assert!(f.trust_address && f.strict_source && !f.symmetric);
        assert!(f.replace_origin && f.ice_remove && f.mux.demux && !f.mux.offer);
        assert_eq!(f.direction, [Some("priv".into()), Some("pub".into())]);
        assert_eq!(f.address_family, Some(Family::V6));
        assert_eq!(f.transport_protocol.as_deref(), Some("RTP/AVPF"));
        assert_eq!(f.received_from, Some("192.0.2.7".parse().unwrap()));
        assert_eq!(f.label.as_deref(), Some("callee"));
    }

    #[test]
    fn sdes_words_from_flags_and_the_sdes_list() {
        use ferrelay_srtp::Suite;
        let req = Value::decode(
            b"d5:flagsl31:SDES-no-AES_CM_128_HMAC_SHA1_32e\
              4:SDESl21:only-AEAD_AES_256_GCM28:only-AES_CM_128_HMAC_SHA1_3214:only-F8_128_XXee",
        )
        .unwrap();
        let f = Flags::parse(&req).unwrap();
        assert!(!f.sdes.off);
        // `no` wins over `only`; unknown suites are ignored.
        assert_eq!(
            f.sdes.enabled().collect::<Vec<_>>(),
            vec![Suite::AeadAes256Gcm]
        );
        let req = Value::decode(b"d5:flagsl8:SDES-offee").unwrap();
        assert!(Flags::parse(&req).unwrap().sdes.off);
        let all = Flags::default().sdes.enabled().count();
        assert_eq!(all, Suite::NEGOTIABLE.len());
    }

    #[test]
    fn replace_origin_as_a_flag_word() {
        let req = Value::decode(b"d5:flagsl14:replace-originee").unwrap();
        assert!(Flags::parse(&req).unwrap().replace_origin);
    }

    #[test]
    fn keys_match_in_normal_form_byte_for_byte() {
        assert!(eq_norm(b"To_Tag", b"to-tag") && eq_norm(b"to tag", b"TO-TAG"));
        assert!(!eq_norm(b"to-tags", b"to-tag") && !eq_norm(b"tO-tap", b"to-tag"));
        // Non-ASCII bytes compare as they are, as `norm` leaves them.
        assert!(eq_norm("Ä-x".as_bytes(), "Ä x".as_bytes()));
        assert!(!eq_norm("ä".as_bytes(), "Ä".as_bytes()));
        for (a, b) in [
            ("Trust-Address", "trust_address"),
            ("ICE", "ice"),
            ("x", "y"),
        ] {
            assert_eq!(eq_norm(a.as_bytes(), b.as_bytes()), norm(a) == norm(b));
        }
        let req = Value::decode(b"d6:TO_TAG1:Be").unwrap();
        assert_eq!(lookup(&req, "to-tag").and_then(Value::as_str), Some("B"));
        assert!(lookup(&req, "to-ta").is_none());
    }

    #[test]
    fn bad_values_name_the_key() {
        let req = Value::decode(b"d14:address family3:IPXe").unwrap();
        assert!(Flags::parse(&req).unwrap_err().contains("address family"));
        let req = Value::decode(b"d13:media address4:nopee").unwrap();
        assert!(Flags::parse(&req).unwrap_err().contains("media address"));
        let req = Value::decode(b"d9:directioni1ee").unwrap();
        assert!(Flags::parse(&req).unwrap_err().contains("direction"));
        assert_eq!(
            Flags::parse(&Value::Dict(vec![])).unwrap(),
            Flags::default()
        );
    }
}
