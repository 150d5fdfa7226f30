//! Two real SIP phones (baresip) call each other through Kamailio, whose stock
//! `rtpengine` module drives ferrelay over NG: audio must flow through ferrelay's
//! ports both ways, also with SDES-SRTP on one leg, and again after hold and resume.
//!
//! Audio is proven twice: by the phones' own RTP counters (printed by baresip when the
//! call closes) and by ferrelay's `query` (packets received from each party). Each must
//! reach 80% of what 20 ms packetisation gives for the measured talk time.

use std::thread::sleep;
use std::time::{Duration, Instant};

use ferrelay_interop::baresip::{Phone, PhoneOpts, RtpCounts};
use ferrelay_interop::kamailio::Kamailio;
use ferrelay_interop::relay::Relay;
use ferrelay_interop::{free_ports, one_at_a_time};

/// One packet per 20 ms (baresip's default ptime for PCMU).
const PTIME: Duration = Duration::from_millis(20);
const TALK: Duration = Duration::from_secs(3);
const SETUP_LIMIT: Duration = Duration::from_secs(10);

/// Drop order is field order: phones, then the proxy, then the relay.
struct Call {
    alice: Phone,
    bob: Phone,
    kamailio: Kamailio,
    relay: Relay,
    media: (u16, u16),
    call_id: String,
    up_since: Instant,
}

/// Starts the relay, Kamailio with the given rtpengine flags, and two phones, then has
/// alice call bob through the proxy and waits until both ends have the call up.
fn call(offer_flags: &str, answer_flags: &str, alice_opts: PhoneOpts, bob_opts: PhoneOpts) -> Call {
    let base = free_ports(80);
    let media = (base, base + 19);
    let relay = Relay::start(media, |_| {});
    let kamailio = Kamailio::start(
        "proxy.cfg.in",
        base + 20,
        relay.ng_addr(),
        &[
            ("OFFER_FLAGS", offer_flags.to_owned()),
            ("ANSWER_FLAGS", answer_flags.to_owned()),
        ],
    );
    let outbound = Some(kamailio.sip);
    let mut alice = Phone::start(
        "alice",
        base + 30,
        &PhoneOpts {
            outbound,
            ..alice_opts
        },
    );
    let mut bob = Phone::start(
        "bob",
        base + 55,
        &PhoneOpts {
            outbound,
            ..bob_opts
        },
    );
    let uri = bob.uri();
    alice.command("dial", &uri);
    let up = alice.wait_event("CALL_ESTABLISHED", SETUP_LIMIT);
    bob.wait_event("CALL_ESTABLISHED", SETUP_LIMIT);
    let call_id = up["id"].as_str().expect("event names the call").to_owned();
    alice.forget_events();
    bob.forget_events();
    Call {
        alice,
        bob,
        kamailio,
        relay,
        media,
        call_id,
        up_since: Instant::now(),
    }
}

/// 80% of the packets `elapsed` of 20 ms audio holds.
fn floor(elapsed: Duration) -> i64 {
    (elapsed.as_millis() / PTIME.as_millis()) as i64 * 8 / 10
}

impl Call {
    /// Packets ferrelay has received from each party so far, asserted to be two
    /// parties.
    fn relay_counts(&mut self) -> Vec<(String, i64)> {
        let counts = self.relay.rtp_packets(&self.call_id);
        assert_eq!(
            counts.len(),
            2,
            "two parties in ferrelay's query: {counts:?}"
        );
        counts
    }

    /// Asserts each phone receives its RTP from a ferrelay port, not from the other
    /// phone.
    fn assert_media_via_relay(&self) {
        for p in [&self.alice, &self.bob] {
            let log = p.peer.log();
            let from = log
                .lines()
                .filter_map(|l| l.split("receiving from 127.0.0.1:").nth(1))
                .next_back()
                .and_then(|port| port.trim().parse::<u16>().ok())
                .unwrap_or_else(|| panic!("{} never received RTP\n{}", p.name, p.peer.tail(30)));
            assert!(
                (self.media.0..=self.media.1).contains(&from),
                "{} receives RTP from port {from}, outside ferrelay's {:?}",
                p.name,
                self.media
            );
        }
    }

    /// Hangs up from alice and returns both phones' counters and the talk time.
    fn hang_up(mut self) -> (RtpCounts, RtpCounts, Duration, Call) {
        self.alice.command("hangup", "");
        let talked = self.up_since.elapsed();
        self.alice.wait_event("CALL_CLOSED", SETUP_LIMIT);
        self.bob.wait_event("CALL_CLOSED", SETUP_LIMIT);
        let a = self.alice.closed_call_counts();
        let b = self.bob.closed_call_counts();
        (a, b, talked, self)
    }
}

/// Asserts both phones sent and received at least 80% of the talk time's packets.
fn assert_phone_counts(a: RtpCounts, b: RtpCounts, talked: Duration) {
    let min = floor(talked) as u64;
    eprintln!("phones after {talked:?}: alice {a:?}, bob {b:?} (floor {min})");
    for (who, c) in [("alice", a), ("bob", b)] {
        assert!(
            c.sent >= min,
            "{who} sent {} RTP packets, expected >= {min}",
            c.sent
        );
        assert!(
            c.received >= min,
            "{who} received {} RTP packets, expected >= {min}",
            c.received
        );
    }
}

/// Asserts ferrelay got at least `min` packets from each party.
fn assert_relay_counts(counts: &[(String, i64)], min: i64, what: &str) {
    eprintln!("ferrelay {what}: {counts:?} (floor {min})");
    for (tag, n) in counts {
        assert!(
            *n >= min,
            "ferrelay received {n} RTP packets from tag {tag} {what}, expected >= {min}"
        );
    }
}

#[test]
fn plain_call_through_kamailio() {
    let _turn = one_at_a_time();
    let flags = "replace-origin replace-session-connection";
    let mut c = call(flags, flags, PhoneOpts::default(), PhoneOpts::default());
    sleep(TALK);
    let counts = c.relay_counts();
    assert_relay_counts(&counts, floor(c.up_since.elapsed()), "during the call");
    c.assert_media_via_relay();
    let (a, b, talked, _c) = c.hang_up();
    assert_phone_counts(a, b, talked);
}

#[test]
fn sdes_srtp_caller_plain_callee_through_kamailio() {
    let _turn = one_at_a_time();
    // alice offers RTP/SAVP with SDES keys; Kamailio asks ferrelay for plain RTP/AVP
    // toward bob; ferrelay answers alice with its own key and translates.
    let c = call(
        "replace-origin replace-session-connection RTP/AVP",
        "replace-origin replace-session-connection",
        PhoneOpts {
            mediaenc: Some("srtp-mand"),
            ..PhoneOpts::default()
        },
        PhoneOpts::default(),
    );
    talk_with_one_srtp_leg(c, Leg::Alice, "AES_CM_128_HMAC_SHA1_80");
}

#[test]
fn sdes_gcm256_callee_plain_caller_through_kamailio() {
    let _turn = one_at_a_time();
    // alice offers plain RTP/AVP; Kamailio asks ferrelay for RTP/SAVP toward bob with
    // only AEAD_AES_256_GCM, so ferrelay writes that key (padded base64: baresip
    // misreads unpadded GCM-256 keys) and bob answers with his own.
    let c = call(
        "replace-origin replace-session-connection RTP/SAVP SDES-only-AEAD_AES_256_GCM",
        "replace-origin replace-session-connection",
        PhoneOpts::default(),
        PhoneOpts {
            mediaenc: Some("srtp-mand"),
            ..PhoneOpts::default()
        },
    );
    talk_with_one_srtp_leg(c, Leg::Bob, "AEAD_AES_256_GCM");
}

/// Which phone is on the SRTP leg.
#[derive(Clone, Copy, PartialEq)]
enum Leg {
    Alice,
    Bob,
}

/// Talks for [`TALK`], then asserts the SRTP leg negotiated SDES with `suite` and
/// decrypted everything, the other leg stayed plain, and audio flowed both ways.
fn talk_with_one_srtp_leg(mut c: Call, leg: Leg, suite: &str) {
    sleep(TALK);
    let alice_view = c.alice.command("callstat", "");
    let bob_view = c.bob.command("callstat", "");
    let counts = c.relay_counts();
    assert_relay_counts(&counts, floor(c.up_since.elapsed()), "during the call");
    c.assert_media_via_relay();
    let (secure_view, plain_view) = match leg {
        Leg::Alice => (&alice_view, &bob_view),
        Leg::Bob => (&bob_view, &alice_view),
    };
    assert!(
        secure_view.contains("RTP/SAVP") && secure_view.contains("crypto"),
        "the SRTP leg is not SDES-SRTP:\n{secure_view}"
    );
    assert!(
        plain_view.contains("RTP/AVP") && !plain_view.contains("crypto"),
        "the plain leg is not plain RTP:\n{plain_view}"
    );
    let (a, b, talked, c) = c.hang_up();
    let secure = if leg == Leg::Alice { &c.alice } else { &c.bob };
    let log = secure.peer.log();
    let enabled = format!("SRTP is Enabled (cryptosuite={suite})");
    assert!(
        log.contains(&enabled),
        "{} did not enable SRTP with {suite}\n{}",
        secure.name,
        secure.peer.tail(30)
    );
    assert!(
        !log.contains("failed to decrypt"),
        "{} could not decrypt ferrelay's SRTP\n{}",
        secure.name,
        secure.peer.tail(30)
    );
    assert_phone_counts(a, b, talked);
}

#[test]
fn hold_and_resume_through_kamailio() {
    let _turn = one_at_a_time();
    let flags = "replace-origin replace-session-connection";
    let mut c = call(flags, flags, PhoneOpts::default(), PhoneOpts::default());
    sleep(Duration::from_secs(1));
    // Each re-INVITE reaches bob through Kamailio, which hands its SDP to ferrelay.
    c.alice.command("hold", "");
    c.bob.wait_event("CALL_REMOTE_SDP", SETUP_LIMIT);
    let hold = format!("hold {}", c.call_id);
    let kam = &c.kamailio.peer;
    assert!(
        kam.log().contains(&hold),
        "the hold re-INVITE's SDP is not sendonly/inactive\n{}",
        kam.tail(30)
    );
    sleep(Duration::from_secs(1));
    c.alice.command("resume", "");
    c.bob.wait_event("CALL_REMOTE_SDP", SETUP_LIMIT);
    let offers = format!("offer {} INVITE", c.call_id);
    let kam = &mut c.kamailio.peer;
    ferrelay_interop::wait_for(SETUP_LIMIT, || {
        (kam.log().matches("answer ").count() >= 3).then_some(())
    })
    .unwrap_or_else(|| panic!("Kamailio did not relay 3 answers\n{}", kam.tail(30)));
    assert_eq!(
        kam.log().matches(&offers).count(),
        3,
        "initial, hold and resume offers"
    );
    let before = c.relay_counts();
    let resumed = Instant::now();
    sleep(TALK);
    let after = c.relay_counts();
    let delta: Vec<(String, i64)> = after
        .iter()
        .map(|(tag, n)| {
            let was = before.iter().find(|(t, _)| t == tag).map_or(0, |(_, n)| *n);
            (tag.clone(), n - was)
        })
        .collect();
    assert_relay_counts(&delta, floor(resumed.elapsed()), "after resume");
    c.assert_media_via_relay();
    let (a, b, _talked, _c) = c.hang_up();
    // Over the whole call at least the time since resume must be covered.
    assert_phone_counts(a, b, TALK);
}
