#![no_main]
use ferrelay_sdp::{Crypto, Direction, Proto, Rtcp, Sdp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mut sdp) = Sdp::parse_bytes(data) else { return };
    assert_eq!(sdp.to_bytes(), data, "untouched SDP must write back byte for byte");
    for m in sdp.media() {
        let _ = (m.rtp_addr(&sdp), m.rtcp_addr(&sdp), m.is_on_hold(&sdp), m.clock_rate(0));
        let _ = (m.crypto().count(), m.fmtp(96), m.ptime(), m.candidates().count());
    }
    let _ = (sdp.origin(), sdp.timing(), sdp.direction(), sdp.attribute("group"));
    let relay = "203.0.113.1".parse().unwrap();
    sdp.set_origin_address(relay, true);
    sdp.set_connection(relay);
    sdp.remove_ice();
    for m in sdp.media_mut() {
        let port = m.port().wrapping_add(2);
        m.set_port(port);
        m.set_connection(relay);
        m.set_rtcp(Some(Rtcp { port: port.wrapping_add(1), connection: None }));
        m.set_rtcp_mux(!m.rtcp_mux());
        m.set_proto(if m.proto().is_srtp() { Proto::RtpAvp } else { Proto::RtpSavp });
        m.set_crypto([Crypto::new_inline(1, "AES_CM_128_HMAC_SHA1_80", vec![9; 30])]);
        m.set_direction(Direction::SendOnly);
        m.retain_formats(|f| f != "0");
    }
    let out = sdp.to_string();
    let again = Sdp::parse(&out).expect("a rewritten SDP must parse again");
    assert_eq!(again.to_string(), out);
});
