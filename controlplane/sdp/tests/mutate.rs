//! A bounded, seeded mutation run over the sample corpus (the same checks as the `sdp`
//! fuzz target, so they run in every `cargo test`): no input may panic, whatever parses
//! must write back byte for byte, and a rewritten SDP must parse again unchanged.

use ferrelay_sdp::{Crypto, Direction, Proto, Rtcp, Sdp};

const SAMPLES: [&str; 6] = [
    include_str!("samples/rtpengine_basic.sdp"),
    include_str!("samples/baresip_audio_video.sdp"),
    include_str!("samples/pjsua_srtp.sdp"),
    include_str!("samples/chrome_webrtc_offer.sdp"),
    include_str!("samples/kamailio_ipv6_hold.sdp"),
    include_str!("samples/asterisk_hold_multicast.sdp"),
];

/// Bytes that sit on SDP field boundaries, where parsers break.
const INTERESTING: &[u8] = b"0123456789 :/=;|^.\r\n\tamcovst-+*ABCDEFxyz\x00\xff";

/// xorshift64*: deterministic, so a failure reproduces from its iteration number.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n.max(1)).unwrap()).unwrap()
    }
}

fn mutate(rng: &mut Rng, input: &mut Vec<u8>) {
    for _ in 0..=rng.below(4) {
        let at = rng.below(input.len() + 1);
        match rng.below(5) {
            0 if at < input.len() => input[at] = INTERESTING[rng.below(INTERESTING.len())],
            1 if at < input.len() => {
                input.remove(at);
            }
            2 => input.insert(at, INTERESTING[rng.below(INTERESTING.len())]),
            3 => input.truncate(at),
            _ if at < input.len() => {
                let end = (at + rng.below(40)).min(input.len());
                let chunk = input[at..end].to_vec();
                let to = rng.below(input.len() + 1);
                input.splice(to..to, chunk);
            }
            _ => {}
        }
    }
}

/// What an offer handler does; must never panic and must leave a parseable SDP.
fn anchor(sdp: &mut Sdp) {
    let relay = "2001:db8::1".parse().unwrap();
    sdp.set_origin_address(relay, true);
    sdp.set_connection(relay);
    sdp.remove_ice();
    for m in sdp.media_mut() {
        let port = m.port().wrapping_add(2);
        m.set_port(port);
        m.set_connection(relay);
        m.set_rtcp(Some(Rtcp {
            port: port.wrapping_add(1),
            connection: None,
        }));
        m.set_rtcp_mux(!m.rtcp_mux());
        m.set_proto(if m.proto().is_srtp() {
            Proto::RtpAvp
        } else {
            Proto::RtpSavp
        });
        m.set_crypto([Crypto::new_inline(
            1,
            "AES_CM_128_HMAC_SHA1_80",
            vec![9; 30],
        )]);
        m.set_direction(Direction::SendOnly);
        m.retain_formats(|f| f != "0");
    }
}

#[test]
fn mutated_samples_never_panic_and_keep_round_trip_invariants() {
    let mut rng = Rng(0x5eed_f00d_cafe_d00d);
    let (mut parsed, mut refused) = (0usize, 0usize);
    for i in 0..6000 {
        let mut input = SAMPLES[i % SAMPLES.len()]
            .replace('\n', "\r\n")
            .into_bytes();
        mutate(&mut rng, &mut input);
        let Ok(mut sdp) = Sdp::parse_bytes(&input) else {
            refused += 1;
            continue;
        };
        parsed += 1;
        assert_eq!(sdp.to_bytes(), input, "iteration {i}");
        for m in sdp.media() {
            let _ = (
                m.rtp_addr(&sdp),
                m.rtcp_addr(&sdp),
                m.is_on_hold(&sdp),
                m.clock_rate(96),
            );
            let _ = (m.crypto().count(), m.fmtp(101), m.ptime());
        }
        anchor(&mut sdp);
        let out = sdp.to_string();
        let again = Sdp::parse(&out).unwrap_or_else(|e| panic!("iteration {i}: {e}\n{out}"));
        assert_eq!(again.to_string(), out, "iteration {i}");
    }
    // Both paths must really be exercised for the run to mean anything.
    assert!(
        parsed > 1000 && refused > 100,
        "parsed {parsed}, refused {refused}"
    );
}

/// Inputs the `sdp` fuzz target found, under the same checks.
#[test]
fn fuzz_found_inputs_keep_the_round_trip_invariants() {
    let found: [&[u8]; 3] = [
        // A last line cut after its CR: with lines added after it (and `\n` the
        // SDP's line end), its CR and the new `\n` read back as one CRLF, and
        // `a=rtcp\r` became an `a=rtcp` without a port.
        b"v=0\nm=\x0c\x01\x00\x00\x7fYX\r\r\r1\rv\r\r\r=0\nv=vv=0\nv=\nv=\t \x12\na=rtcp\r",
        b"v=0\nm=audio 4000 RTP/AVP 0\na=rtcp\r",
        b"v=0\r\nm=audio 4000 RTP/AVP 0\r\na=x\r",
    ];
    for input in found {
        let mut sdp = Sdp::parse_bytes(input).expect("parses");
        assert_eq!(sdp.to_bytes(), input);
        anchor(&mut sdp);
        let out = sdp.to_string();
        let again = Sdp::parse(&out).unwrap_or_else(|e| panic!("{e}\n{out:?}"));
        assert_eq!(again.to_string(), out);
    }
}
