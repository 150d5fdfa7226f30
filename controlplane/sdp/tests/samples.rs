//! Real-world style SDPs (written for this crate in the shape that rtpengine's tests,
//! baresip, pjsua, Chrome, Kamailio and Asterisk produce): exact round trips and the
//! values a relay reads from them.

use std::net::{IpAddr, SocketAddr};

use ferrelay_sdp::{Direction, Lifetime, Mki, Proto, Sdp};

const SAMPLES: [(&str, &str); 6] = [
    (
        "rtpengine_basic",
        include_str!("samples/rtpengine_basic.sdp"),
    ),
    (
        "baresip_audio_video",
        include_str!("samples/baresip_audio_video.sdp"),
    ),
    ("pjsua_srtp", include_str!("samples/pjsua_srtp.sdp")),
    (
        "chrome_webrtc_offer",
        include_str!("samples/chrome_webrtc_offer.sdp"),
    ),
    (
        "kamailio_ipv6_hold",
        include_str!("samples/kamailio_ipv6_hold.sdp"),
    ),
    (
        "asterisk_hold_multicast",
        include_str!("samples/asterisk_hold_multicast.sdp"),
    ),
];

fn crlf(s: &str) -> String {
    s.replace('\n', "\r\n")
}

fn parse(s: &str) -> Sdp {
    Sdp::parse(s).unwrap_or_else(|e| panic!("{e}\n{s}"))
}

fn addr(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn every_sample_round_trips_byte_identical_in_every_line_end_style() {
    for (name, lf) in SAMPLES {
        let crlf = crlf(lf);
        let no_final_newline = crlf.trim_end_matches(['\r', '\n']).to_owned();
        let lf_no_final = lf.trim_end_matches('\n').to_owned();
        // Every other line CRLF: mixed line ends must survive too.
        let mixed: String = lf
            .split_inclusive('\n')
            .enumerate()
            .map(|(i, l)| {
                if i % 2 == 0 {
                    l.replace('\n', "\r\n")
                } else {
                    l.to_owned()
                }
            })
            .collect();
        let with_blank_tail = format!("{crlf}\r\n");
        for variant in [
            lf.to_owned(),
            crlf,
            no_final_newline,
            lf_no_final,
            mixed,
            with_blank_tail,
        ] {
            let sdp = parse(&variant);
            assert_eq!(sdp.to_string(), variant, "{name}");
            assert_eq!(sdp.to_bytes(), variant.as_bytes(), "{name}");
            assert_eq!(Sdp::parse_bytes(variant.as_bytes()).unwrap(), sdp, "{name}");
        }
    }
}

#[test]
fn normalized_output_is_crlf_only_and_reparses_equal() {
    for (name, lf) in SAMPLES {
        let mut sdp = parse(lf.trim_end());
        sdp.normalize_line_endings();
        let out = sdp.to_string();
        assert_eq!(out, crlf(lf), "{name}");
        assert_eq!(parse(&out).to_string(), out, "{name}");
    }
}

#[test]
fn rtpengine_basic_media_c_and_default_rtcp() {
    let sdp = parse(SAMPLES[0].1);
    assert_eq!(sdp.session_name(), Some("tester"));
    assert_eq!(sdp.timing(), Some((0, 0)));
    assert_eq!(sdp.connection(), None);
    let m = &sdp.media()[0];
    assert_eq!(
        (m.media_type(), m.port(), m.proto()),
        ("audio", 2000, &Proto::RtpAvp)
    );
    assert_eq!(
        m.rtp_addr(&sdp),
        Some(SocketAddr::new(addr("198.51.100.1"), 2000))
    );
    assert_eq!(
        m.rtcp_addr(&sdp),
        Some(SocketAddr::new(addr("198.51.100.1"), 2001))
    );
    assert!(!m.rtcp_mux());
    assert_eq!(m.direction(), Some(Direction::SendRecv));
    assert_eq!(m.clock_rate(0), Some(8000));
}

#[test]
fn baresip_session_c_applies_to_both_streams() {
    let sdp = parse(SAMPLES[1].1);
    assert_eq!(sdp.attribute("tool"), Some("baresip 3.10.1"));
    let [audio, video] = sdp.media() else {
        panic!("two m= lines")
    };
    assert_eq!(audio.connection(), None);
    assert_eq!(
        audio.rtp_addr(&sdp),
        Some(SocketAddr::new(addr("192.168.1.10"), 10164))
    );
    assert_eq!(
        video.rtcp_addr(&sdp),
        Some(SocketAddr::new(addr("192.168.1.10"), 10167))
    );
    assert_eq!(audio.payload_types().collect::<Vec<_>>(), [96, 0, 8, 101]);
    assert_eq!(audio.clock_rate(96), Some(48000));
    assert_eq!(audio.rtpmap(96).unwrap().channels, Some(2));
    assert_eq!(audio.clock_rate(101), Some(8000));
    assert_eq!(audio.fmtp(96), Some("stereo=1;sprop-stereo=1"));
    assert_eq!(audio.fmtp(0), None);
    assert_eq!((audio.ptime(), audio.label()), (Some(20), Some("1")));
    assert_eq!(video.proto(), &Proto::RtpAvpf);
    assert_eq!(video.clock_rate(97), Some(90000));
    assert_eq!(video.attributes("rtcp-fb").count(), 3);
    assert_eq!(video.clock_rate(99), None);
}

#[test]
fn pjsua_srtp_rtcp_address_and_crypto() {
    let sdp = parse(SAMPLES[2].1);
    let m = &sdp.media()[0];
    assert!(m.proto().is_srtp() && !m.proto().is_dtls());
    let rtcp = m.rtcp().unwrap();
    assert_eq!(rtcp.port, 4001);
    assert_eq!(
        m.rtcp_addr(&sdp),
        Some(SocketAddr::new(addr("192.168.0.2"), 4001))
    );
    let cryptos: Vec<_> = m.crypto().collect();
    assert_eq!(cryptos.len(), 2);
    assert_eq!(
        (cryptos[0].tag, cryptos[0].suite.as_str()),
        (1, "AES_CM_128_HMAC_SHA1_80")
    );
    assert_eq!(cryptos[0].inline_key().unwrap().key_salt.len(), 30);
    let key2 = cryptos[1].inline_key().unwrap();
    assert_eq!(key2.lifetime, Some(Lifetime::PowerOfTwo(31)));
    assert_eq!(
        key2.mki,
        Some(Mki {
            value: 1,
            length: 1
        })
    );
    assert_eq!(m.clock_rate(96), Some(16000));
    assert_eq!(m.clock_rate(9), Some(8000));
    assert_eq!(sdp.attribute("X-nat"), Some("0"));
}

#[test]
fn chrome_offer_ice_bundle_and_trickle_address_is_not_hold() {
    let sdp = parse(SAMPLES[3].1);
    assert_eq!(sdp.origin().unwrap().session_id, "4611731400430051336");
    assert_eq!(sdp.attribute("group"), Some("BUNDLE 0 1 2"));
    let [audio, video, data] = sdp.media() else {
        panic!("three m= lines")
    };
    assert_eq!(audio.proto(), &Proto::UdpTlsRtpSavpf);
    assert!(audio.rtcp_mux());
    assert_eq!(audio.ice_ufrag(), Some("Kq3x"));
    assert_eq!(audio.ice_pwd(), Some("vDq7Yd8Rr0vZbYhF2kQ5gkcS"));
    assert_eq!(audio.ice_options(), Some("trickle"));
    assert_eq!(audio.candidates().count(), 3);
    assert!(
        audio
            .candidates()
            .next()
            .unwrap()
            .starts_with("1467250027 1 udp")
    );
    assert!(!audio.end_of_candidates() && video.end_of_candidates());
    assert_eq!(
        (audio.mid(), video.mid(), data.mid()),
        (Some("0"), Some("1"), Some("2"))
    );
    assert_eq!(
        audio.rtcp_addr(&sdp),
        Some(SocketAddr::new(addr("0.0.0.0"), 9))
    );
    // c=0.0.0.0 with ICE is "no default candidate yet", not hold.
    assert!(!video.is_on_hold(&sdp));
    assert_eq!(data.proto(), &Proto::Other("UDP/DTLS/SCTP".into()));
    assert!(!data.proto().is_rtp());
    assert_eq!(data.formats().collect::<Vec<_>>(), ["webrtc-datachannel"]);
    assert_eq!(data.payload_types().count(), 0);
    assert_eq!(audio.clock_rate(111), Some(48000));
    assert_eq!(audio.fmtp(111), Some("minptime=10;useinbandfec=1"));
}

#[test]
fn kamailio_ipv6_directions_rejection_and_hold() {
    let sdp = parse(SAMPLES[4].1);
    assert_eq!(sdp.origin().unwrap().addrtype, "IP6");
    assert_eq!(sdp.connection().unwrap().address, addr("2001:db8::10"));
    assert_eq!(sdp.direction(), Some(Direction::RecvOnly));
    assert_eq!(sdp.timing(), Some((2873397496, 2873404696)));
    assert_eq!(sdp.session_name(), Some("Talk"));
    let [audio, video, held, image] = sdp.media() else {
        panic!("four m= lines")
    };
    assert_eq!(
        audio.rtp_addr(&sdp),
        Some(SocketAddr::new(addr("2001:db8::10"), 6000))
    );
    assert_eq!(audio.direction(), Some(Direction::SendOnly));
    assert!(audio.is_on_hold(&sdp));
    assert!(video.is_rejected() && !audio.is_rejected());
    assert_eq!((video.rtcp_port(), video.rtcp_addr(&sdp)), (None, None));
    // Inherits the session's recvonly: not hold by direction, but c=:: is.
    assert_eq!(held.effective_direction(&sdp), Direction::RecvOnly);
    assert!(held.is_on_hold(&sdp));
    assert_eq!(image.media_type(), "image");
    assert_eq!(image.proto(), &Proto::Other("udptl".into()));
    assert_eq!(
        image.rtp_addr(&sdp),
        Some(SocketAddr::new(addr("192.0.2.44"), 6004))
    );
    assert_eq!(image.attribute("T38MaxBitRate"), Some("14400"));
    assert!(!image.is_on_hold(&sdp));
}

#[test]
fn asterisk_hold_by_zero_address_and_by_inactive_and_multicast() {
    let sdp = parse(SAMPLES[5].1);
    let [held, mcast] = sdp.media() else {
        panic!("two m= lines")
    };
    assert!(held.is_on_hold(&sdp));
    assert_eq!(held.direction(), Some(Direction::Inactive));
    assert_eq!(held.clock_rate(3), Some(8000));
    assert_eq!(held.attribute("maxptime"), Some("150"));
    let c = mcast.connection().unwrap();
    assert_eq!(
        (c.address, c.suffix.as_str()),
        (addr("233.252.0.1"), "/127/2")
    );
    assert!(!mcast.is_on_hold(&sdp));
    assert_eq!(mcast.rtpmap(96).unwrap().channels, Some(2));
    assert_eq!(mcast.clock_rate(96), Some(16000));
}
