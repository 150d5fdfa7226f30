//! Malformed SDP is refused with the line number and the reason, never a panic.

use ferrelay_sdp::{Reason, Sdp, SdpError};

fn err(input: &str) -> SdpError {
    Sdp::parse(input).expect_err(input)
}

#[test]
fn each_malformed_line_is_named() {
    let cases: [(&str, usize, Reason); 16] = [
        ("", 1, Reason::Empty),
        (
            "o=- 1 1 IN IP4 192.0.2.1\r\nv=0\r\n",
            1,
            Reason::MissingVersion,
        ),
        ("\r\nv=0\r\n", 1, Reason::MissingVersion),
        ("v=1\r\n", 1, Reason::BadVersion),
        ("v=0\r\no=- 1 1 IN IP4\r\n", 2, Reason::BadOrigin),
        (
            "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 999.1.1.1\r\n",
            4,
            Reason::BadConnection,
        ),
        ("v=0\r\nc=IN IP6 192.0.2.1\r\n", 2, Reason::BadConnection),
        (
            "v=0\r\nm=audio 70000 RTP/AVP 0\r\n",
            2,
            Reason::BadMediaPort,
        ),
        ("v=0\r\nm=audio port RTP/AVP 0\r\n", 2, Reason::BadMediaPort),
        (
            "v=0\r\nm=audio 5000/x RTP/AVP 0\r\n",
            2,
            Reason::BadMediaPort,
        ),
        ("v=0\r\nm=audio 5000\r\n", 2, Reason::BadMediaLine),
        (
            "v=0\nm=audio 5000 RTP/AVP 0\nc=IN IP4 192.0.2.1\na=rtcp:99999\n",
            4,
            Reason::BadRtcp,
        ),
        ("v=0\nm=audio 5000 RTP/AVP 0\na=rtcp\n", 3, Reason::BadRtcp),
        (
            "v=0\nm=audio 5000 RTP/SAVP 0\na=crypto:1 AES_CM_128_HMAC_SHA1_80\n",
            3,
            Reason::BadCrypto,
        ),
        (
            "v=0\nm=audio 5000 RTP/SAVP 0\na=crypto:1 S inline:***\n",
            3,
            Reason::BadCryptoKey,
        ),
        ("v=0\ns=-\nthis is not sdp\n", 3, Reason::BadLineSyntax),
    ];
    for (input, line, reason) in cases {
        assert_eq!(err(input), SdpError { line, reason }, "{input:?}");
    }
}

#[test]
fn error_message_names_line_and_cause() {
    let e = err("v=0\r\ns=-\r\nm=audio 65536 RTP/AVP 0\r\n");
    assert_eq!(
        e.to_string(),
        "SDP line 3: m= port is not a number in 0..=65535"
    );
}

#[test]
fn non_utf8_is_refused_on_its_line() {
    let e = Sdp::parse_bytes(b"v=0\r\ns=caf\xe9\r\n").unwrap_err();
    assert_eq!(
        e,
        SdpError {
            line: 2,
            reason: Reason::NotUtf8
        }
    );
}

#[test]
fn lenient_where_rtpengine_is() {
    // Unknown attributes, unknown line letters, odd spacing and an unreadable rtpmap are
    // kept verbatim rather than refused.
    let input = "v=0\r\no=-  1  1 IN  IP4 192.0.2.1\r\ns=\r\nx=extension\r\nt=0 0\r\n\
                 m=audio  5000  RTP/AVP 0 96\r\na=rtpmap:96 broken\r\na=x-whatever:1 2 3\r\na=\r\n";
    let sdp = Sdp::parse(input).unwrap();
    assert_eq!(sdp.to_string(), input);
    let m = &sdp.media()[0];
    assert_eq!(m.port(), 5000);
    assert_eq!(m.rtpmap(96), None);
    assert_eq!(m.clock_rate(96), None);
    assert_eq!(m.attribute("x-whatever"), Some("1 2 3"));
    assert_eq!(sdp.origin().unwrap().address, "192.0.2.1");
    assert_eq!(sdp.timing(), Some((0, 0)));
    let odd = Sdp::parse("v=0\r\nt=now later\r\n").unwrap();
    assert_eq!(odd.timing(), None);
    assert_eq!(odd.to_string(), "v=0\r\nt=now later\r\n");
}

#[test]
fn rtcp_port_past_65535_is_none_not_a_wrap() {
    let sdp = Sdp::parse("v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 65535 RTP/AVP 0\r\n").unwrap();
    assert_eq!(sdp.media()[0].rtcp_port(), None);
    assert_eq!(sdp.media()[0].rtcp_addr(&sdp), None);
    assert_eq!(sdp.media()[0].rtp_addr(&sdp).unwrap().port(), 65535);
}

#[test]
fn media_lines_are_capped() {
    use ferrelay_sdp::MAX_MEDIA;
    let mut sdp = String::from("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n");
    for i in 0..MAX_MEDIA {
        sdp.push_str(&format!("m=audio {} RTP/AVP 0\r\n", 5000 + 2 * i));
    }
    assert_eq!(Sdp::parse(&sdp).unwrap().media().len(), MAX_MEDIA);
    sdp.push_str("m=video 9000 RTP/AVP 96\r\n");
    // One past the cap is refused on its own line: four session lines, then 65.
    assert_eq!(
        err(&sdp),
        SdpError::new(4 + MAX_MEDIA + 1, Reason::TooManyMedia)
    );
}
