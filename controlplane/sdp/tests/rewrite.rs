//! Every rewrite: exact output, and proof that lines the relay does not own stay in place.

use std::net::IpAddr;

use ferrelay_sdp::{Connection, Crypto, Direction, Proto, Reason, Rtcp, Sdp};

const BASIC: &str = include_str!("samples/rtpengine_basic.sdp");
const BARESIP: &str = include_str!("samples/baresip_audio_video.sdp");
const PJSUA: &str = include_str!("samples/pjsua_srtp.sdp");
const CHROME: &str = include_str!("samples/chrome_webrtc_offer.sdp");
const KAMAILIO: &str = include_str!("samples/kamailio_ipv6_hold.sdp");
const ASTERISK: &str = include_str!("samples/asterisk_hold_multicast.sdp");

fn crlf(s: &str) -> String {
    s.replace('\n', "\r\n")
}

fn parse(s: &str) -> Sdp {
    Sdp::parse(s).unwrap()
}

fn addr(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The output with `from` replaced by `to` exactly once, so a test states only its change.
fn with(base: &str, from: &str, to: &str) -> String {
    assert_eq!(base.matches(from).count(), 1, "{from:?} must occur once");
    base.replacen(from, to, 1)
}

#[test]
fn session_connection_replaced_in_place_and_family_switches() {
    let mut sdp = parse(BARESIP);
    sdp.set_connection(addr("2001:db8::1"));
    assert_eq!(
        sdp.to_string(),
        with(BARESIP, "c=IN IP4 192.168.1.10\n", "c=IN IP6 2001:db8::1\n")
    );
    assert_eq!(
        sdp.media()[1].rtp_addr(&sdp).unwrap().ip(),
        addr("2001:db8::1")
    );
}

#[test]
fn session_connection_inserted_before_t_when_absent() {
    let mut sdp = parse(BASIC);
    sdp.set_connection(addr("203.0.113.1"));
    assert_eq!(
        sdp.to_string(),
        with(BASIC, "s=tester\n", "s=tester\nc=IN IP4 203.0.113.1\n")
    );
    // The media c= still wins for the stream.
    assert_eq!(
        sdp.media()[0].rtp_addr(&sdp).unwrap().ip(),
        addr("198.51.100.1")
    );
}

#[test]
fn media_connection_replaced_or_inserted_after_m_and_i() {
    let mut sdp = parse(KAMAILIO);
    sdp.media_mut()[0].set_connection(addr("203.0.113.9"));
    sdp.media_mut()[2].set_connection(addr("2001:db8::99"));
    let expected = with(KAMAILIO, "i=voice\n", "i=voice\nc=IN IP4 203.0.113.9\n");
    let expected = with(&expected, "c=IN IP6 ::\n", "c=IN IP6 2001:db8::99\n");
    assert_eq!(sdp.to_string(), expected);
    assert_eq!(
        sdp.media()[0].rtp_addr(&sdp).unwrap().to_string(),
        "203.0.113.9:6000"
    );
    // Section without any line after m=: c= goes at its end.
    let mut sdp = parse(KAMAILIO);
    sdp.media_mut()[1].set_connection(addr("192.0.2.1"));
    assert_eq!(
        sdp.to_string(),
        with(
            KAMAILIO,
            "m=video 0 RTP/AVP 31\n",
            "m=video 0 RTP/AVP 31\nc=IN IP4 192.0.2.1\n"
        )
    );
}

#[test]
fn duplicate_media_connections_collapse_to_one() {
    let input = "v=0\r\ns=-\r\nt=0 0\r\nm=audio 1 RTP/AVP 0\r\nc=IN IP4 192.0.2.1\r\nc=IN IP4 192.0.2.2\r\na=x\r\n";
    let mut sdp = parse(input);
    sdp.media_mut()[0].set_connection(addr("192.0.2.9"));
    assert_eq!(
        sdp.to_string(),
        "v=0\r\ns=-\r\nt=0 0\r\nm=audio 1 RTP/AVP 0\r\nc=IN IP4 192.0.2.9\r\na=x\r\n"
    );
}

#[test]
fn port_and_proto_rewrite_only_the_m_line() {
    let mut sdp = parse(PJSUA);
    let m = &mut sdp.media_mut()[0];
    m.set_port(30000);
    m.set_proto(Proto::RtpAvp);
    assert_eq!(
        sdp.to_string(),
        with(
            PJSUA,
            "m=audio 4000 RTP/SAVP 96 9 8 0 101 102\n",
            "m=audio 30000 RTP/AVP 96 9 8 0 101 102\n"
        )
    );
    let mut sdp = parse(BASIC);
    sdp.media_mut()[0].set_proto(Proto::UdpTlsRtpSavpf);
    sdp.media_mut()[0].set_port(0);
    assert!(sdp.media()[0].is_rejected());
    assert_eq!(
        sdp.to_string(),
        with(
            BASIC,
            "m=audio 2000 RTP/AVP 0",
            "m=audio 0 UDP/TLS/RTP/SAVPF 0"
        )
    );
}

#[test]
fn port_count_is_kept_when_the_port_changes() {
    let input = "v=0\nm=video 49170/2 RTP/AVP 31\n";
    let mut sdp = parse(input);
    sdp.media_mut()[0].set_port(5000);
    assert_eq!(sdp.to_string(), "v=0\nm=video 5000/2 RTP/AVP 31\n");
}

#[test]
fn rtcp_replaced_in_place_inserted_and_removed() {
    let mut sdp = parse(PJSUA);
    let conn = Some(Connection::new(addr("203.0.113.1")));
    sdp.media_mut()[0].set_rtcp(Some(Rtcp {
        port: 30001,
        connection: conn,
    }));
    let expected = with(
        PJSUA,
        "a=rtcp:4001 IN IP4 192.168.0.2\n",
        "a=rtcp:30001 IN IP4 203.0.113.1\n",
    );
    assert_eq!(sdp.to_string(), expected);
    assert_eq!(
        sdp.media()[0].rtcp_addr(&sdp).unwrap().to_string(),
        "203.0.113.1:30001"
    );
    sdp.media_mut()[0].set_rtcp(None);
    assert_eq!(
        sdp.to_string(),
        with(PJSUA, "a=rtcp:4001 IN IP4 192.168.0.2\n", "")
    );
    assert_eq!(sdp.media()[0].rtcp_port(), Some(4001));

    let mut sdp = parse(BASIC);
    sdp.media_mut()[0].set_rtcp(Some(Rtcp {
        port: 2001,
        connection: None,
    }));
    assert_eq!(sdp.to_string(), format!("{BASIC}a=rtcp:2001\n"));
}

#[test]
fn rtcp_mux_added_once_and_removed() {
    let mut sdp = parse(BASIC);
    sdp.media_mut()[0].set_rtcp_mux(true);
    sdp.media_mut()[0].set_rtcp_mux(true);
    assert_eq!(sdp.to_string(), format!("{BASIC}a=rtcp-mux\n"));
    assert!(sdp.media()[0].rtcp_mux());
    let mut sdp = parse(CHROME);
    for m in sdp.media_mut() {
        m.set_rtcp_mux(false);
    }
    assert_eq!(sdp.to_string(), CHROME.replace("a=rtcp-mux\n", ""));
}

#[test]
fn remove_ice_strips_every_ice_line_at_both_levels_and_nothing_else() {
    let input = CHROME.replace(
        "a=extmap-allow-mixed\n",
        "a=extmap-allow-mixed\na=ice-lite\n",
    );
    let mut sdp = parse(&input);
    sdp.remove_ice();
    let expected: String = input
        .lines()
        .filter(|l| {
            !(l.starts_with("a=ice-")
                || l.starts_with("a=candidate:")
                || *l == "a=end-of-candidates")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(sdp.to_string(), expected);
    assert_eq!(sdp.attribute("ice-lite"), None);
    assert!(
        sdp.media()
            .iter()
            .all(|m| m.ice_ufrag().is_none() && m.candidates().next().is_none())
    );
    assert_eq!(sdp.media()[0].mid(), Some("0"));
}

#[test]
fn origin_address_and_version() {
    let mut sdp = parse(BASIC);
    assert!(sdp.set_origin_address(addr("2001:db8::1"), true));
    assert_eq!(
        sdp.to_string(),
        with(
            BASIC,
            "o=- 1545997027 1 IN IP4 198.51.100.1",
            "o=- 1545997027 2 IN IP6 2001:db8::1"
        )
    );
    assert!(sdp.set_origin_address(addr("203.0.113.1"), false));
    assert_eq!(sdp.origin().unwrap().session_version, "2");
    assert_eq!(sdp.origin().unwrap().addrtype, "IP4");
    assert!(sdp.bump_version());
    assert_eq!(sdp.origin().unwrap().session_version, "3");
    let mut no_origin = parse("v=0\ns=-\n");
    assert!(!no_origin.set_origin_address(addr("192.0.2.1"), true));
    assert!(!no_origin.bump_version());
    let mut odd = parse("v=0\no=- 1 v7 IN IP4 192.0.2.1\n");
    assert!(!odd.bump_version());
    assert_eq!(odd.to_string(), "v=0\no=- 1 v7 IN IP4 192.0.2.1\n");
}

#[test]
fn crypto_removed_replaced_in_place_and_added() {
    let key = Crypto::new_inline(1, "AES_CM_128_HMAC_SHA1_80", vec![0x42; 30]);
    let line =
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJC\n";
    let old = "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WnD7c1ksDGs+dIefCEH8aoJEkPpJqHVZVoOqBWuX\n\
               a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:Pe2bSeHLjnv0Wu9BL0LVE5rgGvBXm0ZeTkPMRN3Y|2^31|1:1\n";

    let mut sdp = parse(PJSUA);
    sdp.media_mut()[0].set_crypto([key.clone()]);
    assert_eq!(sdp.to_string(), with(PJSUA, old, line));
    assert_eq!(sdp.media()[0].crypto().next(), Some(&key));

    let mut sdp = parse(PJSUA);
    sdp.media_mut()[0].remove_crypto();
    assert_eq!(sdp.to_string(), with(PJSUA, old, ""));
    assert_eq!(sdp.media()[0].crypto().count(), 0);

    let mut sdp = parse(PJSUA);
    let mut third = key.clone();
    third.tag = 3;
    sdp.media_mut()[0].add_crypto(third);
    let added = format!("{old}{}", line.replace("crypto:1", "crypto:3"));
    assert_eq!(sdp.to_string(), with(PJSUA, old, &added));

    // RTP/AVP -> RTP/SAVP bridge: proto and a key on a section that had none.
    let mut sdp = parse(BASIC);
    let m = &mut sdp.media_mut()[0];
    m.set_proto(Proto::RtpSavp);
    m.set_crypto([key]);
    let expected = format!("{}{line}", with(BASIC, "RTP/AVP", "RTP/SAVP"));
    assert_eq!(sdp.to_string(), expected);
}

#[test]
fn direction_replaced_in_place_or_added_and_session_level_untouched() {
    let mut sdp = parse(KAMAILIO);
    sdp.media_mut()[0].set_direction(Direction::RecvOnly);
    sdp.media_mut()[2].set_direction(Direction::SendRecv);
    let expected = with(KAMAILIO, "a=sendonly\n", "a=recvonly\n");
    let expected = with(&expected, "c=IN IP6 ::\n", "c=IN IP6 ::\na=sendrecv\n");
    assert_eq!(sdp.to_string(), expected);
    assert_eq!(sdp.direction(), Some(Direction::RecvOnly));
    assert_eq!(
        sdp.media()[2].effective_direction(&sdp),
        Direction::SendRecv
    );

    // Hold set and cleared through direction alone.
    let mut sdp = parse(BASIC);
    sdp.media_mut()[0].set_direction(Direction::SendOnly);
    assert!(sdp.media()[0].is_on_hold(&sdp));
    assert_eq!(sdp.to_string(), with(BASIC, "a=sendrecv", "a=sendonly"));
}

#[test]
fn generic_attributes_are_typed_when_pushed_and_counted_when_removed() {
    let mut sdp = parse(BARESIP);
    let m = &mut sdp.media_mut()[0];
    m.push_attribute("rtcp", Some("7001 IN IP4 192.0.2.7"))
        .unwrap();
    m.push_attribute("rtcp-mux", None).unwrap();
    assert_eq!(m.rtcp().unwrap().port, 7001);
    assert!(m.rtcp_mux());
    assert_eq!(
        m.push_attribute("rtcp", Some("x")).unwrap_err().reason,
        Reason::BadRtcp
    );
    assert_eq!(
        m.push_attribute("a b", None).unwrap_err().reason,
        Reason::BadAttributeName
    );
    assert_eq!(m.remove_attribute("rtcp-rsize"), 1);
    assert_eq!(m.remove_attribute("nothing"), 0);
    assert_eq!(sdp.remove_attribute("tool"), 1);
    let expected = BARESIP
        .replacen("a=rtcp-rsize\n", "", 1)
        .replace("a=tool:baresip 3.10.1\n", "")
        .replace(
            "a=ptime:20\n",
            "a=ptime:20\na=rtcp:7001 IN IP4 192.0.2.7\na=rtcp-mux\n",
        );
    assert_eq!(sdp.to_string(), expected);
}

#[test]
fn added_lines_follow_the_input_line_end_and_fix_a_missing_final_one() {
    // CRLF input without a final line end: the old last line gets one, the new line too.
    let input = crlf(BASIC.trim_end());
    let mut sdp = parse(&input);
    sdp.media_mut()[0].set_rtcp_mux(true);
    assert_eq!(sdp.to_string(), format!("{input}\r\na=rtcp-mux\r\n"));
    // LF input: the added line ends in LF as its neighbours do.
    let mut sdp = parse(BASIC);
    sdp.media_mut()[0].set_rtcp_mux(true);
    assert_eq!(sdp.to_string(), format!("{BASIC}a=rtcp-mux\n"));
    // Trailing blank line stays last.
    let input = format!("{}\r\n", crlf(BASIC));
    let mut sdp = parse(&input);
    sdp.media_mut()[0].set_rtcp_mux(true);
    assert_eq!(
        sdp.to_string(),
        format!("{}a=rtcp-mux\r\n\r\n", crlf(BASIC))
    );
}

/// Full anchoring as an offer handler does it; every line the relay does not own must
/// come out unchanged and in the same order.
#[test]
fn full_anchoring_keeps_every_foreign_line_in_order() {
    let owned = |l: &str| {
        [
            "c=",
            "m=",
            "o=",
            "a=rtcp:",
            "a=rtcp-mux",
            "a=crypto:",
            "a=ice-",
            "a=candidate:",
            "a=end-of-candidates",
        ]
        .iter()
        .any(|p| l.starts_with(p))
            || matches!(l, "a=sendrecv" | "a=sendonly" | "a=recvonly" | "a=inactive")
    };
    for input in [BASIC, BARESIP, PJSUA, CHROME, KAMAILIO, ASTERISK] {
        let input = crlf(input);
        let mut sdp = parse(&input);
        let relay = addr("203.0.113.1");
        sdp.set_origin_address(relay, true);
        sdp.set_connection(relay);
        sdp.remove_ice();
        for (i, m) in sdp.media_mut().iter_mut().enumerate() {
            if m.is_rejected() {
                continue;
            }
            let port = 30000 + 2 * u16::try_from(i).unwrap();
            m.set_port(port);
            m.set_connection(relay);
            m.set_rtcp(Some(Rtcp {
                port: port + 1,
                connection: None,
            }));
            m.set_rtcp_mux(false);
            m.remove_crypto();
            m.set_direction(Direction::SendRecv);
            if m.proto().is_rtp() {
                m.set_proto(Proto::RtpAvp);
            }
        }
        let out = sdp.to_string();
        let foreign = |s: &str| {
            s.split("\r\n")
                .filter(|l| !owned(l))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert_eq!(foreign(&out), foreign(&input));
        let again = parse(&out);
        for (i, m) in again
            .media()
            .iter()
            .enumerate()
            .filter(|(_, m)| !m.is_rejected())
        {
            let port = 30000 + 2 * u16::try_from(i).unwrap();
            assert_eq!(
                m.rtp_addr(&again).unwrap().to_string(),
                format!("203.0.113.1:{port}")
            );
            assert_eq!(m.rtcp_addr(&again).unwrap().port(), port + 1);
            assert!(
                !m.is_on_hold(&again) && m.crypto().next().is_none() && m.ice_ufrag().is_none()
            );
        }
        assert_eq!(again.to_string(), out);
    }
}

#[test]
fn retain_formats_strips_codecs_and_their_lines_only() {
    let mut sdp = parse(BARESIP);
    assert_eq!(sdp.media_mut()[0].retain_formats(|f| f != "96"), 1);
    let expected = BARESIP
        .replace(
            "m=audio 10164 RTP/AVP 96 0 8 101",
            "m=audio 10164 RTP/AVP 0 8 101",
        )
        .replace(
            "a=rtpmap:96 opus/48000/2\na=fmtp:96 stereo=1;sprop-stereo=1\n",
            "",
        );
    assert_eq!(sdp.to_string(), expected);
    assert_eq!(sdp.media()[0].rtpmap(96), None);

    let mut sdp = parse(CHROME);
    assert_eq!(sdp.media_mut()[1].retain_formats(|f| f != "96"), 1);
    let out = sdp.to_string();
    assert!(out.contains("m=video 9 UDP/TLS/RTP/SAVPF 97 102\n"));
    assert!(!out.contains("a=rtpmap:96 ") && !out.contains("a=rtcp-fb:96 "));
    assert!(out.contains("a=fmtp:97 apt=96\n"));
    // Nothing removed: nothing written differently.
    let mut sdp = parse(CHROME);
    assert_eq!(sdp.media_mut()[0].retain_formats(|_| true), 0);
    assert_eq!(sdp.to_string(), CHROME);
    // Other sections untouched: audio still has its rtcp-fb for 111.
    assert!(out.contains("a=rtcp-fb:111 transport-cc\n"));
}
