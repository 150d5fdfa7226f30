//! Two real SIP phones (baresip) call each other through Kamailio, whose stock
//! `rtpengine` module drives ferrelay over NG: audio must flow through ferrelay's
//! ports both ways, also with SDES-SRTP on one leg (either), and again after hold and
//! resume. The checks are in `ferrelay_interop::call`.

use std::thread::sleep;
use std::time::Duration;

use ferrelay_interop::baresip::PhoneOpts;
use ferrelay_interop::call::{Call, Leg, Ports, SETUP_LIMIT, TALK, talk_with_one_srtp_leg};
use ferrelay_interop::kamailio::Kamailio;
use ferrelay_interop::relay::Relay;
use ferrelay_interop::{one_at_a_time, wait_for};

const PLAIN: &str = "replace-origin replace-session-connection";

/// Starts the relay and Kamailio with the given rtpengine flags, then the call.
fn call(offer_flags: &str, answer_flags: &str, alice: PhoneOpts, bob: PhoneOpts) -> Call {
    let ports = Ports::reserve();
    let relay = Relay::start(ports.media, |_| {});
    let kamailio = Kamailio::start(
        "proxy.cfg.in",
        ports.proxy,
        relay.ng_addr(),
        &[
            ("OFFER_FLAGS", offer_flags.to_owned()),
            ("ANSWER_FLAGS", answer_flags.to_owned()),
        ],
    );
    let proxy = kamailio.sip;
    Call::dial(relay, Some(kamailio), proxy, ports, alice, bob)
}

fn srtp() -> PhoneOpts {
    PhoneOpts {
        mediaenc: Some("srtp-mand"),
        ..PhoneOpts::default()
    }
}

#[test]
fn plain_call_through_kamailio() {
    let _turn = one_at_a_time();
    let mut c = call(PLAIN, PLAIN, PhoneOpts::default(), PhoneOpts::default());
    c.talk();
    let closed = c.hang_up();
    closed.assert_audio(closed.talked);
}

#[test]
fn sdes_srtp_caller_plain_callee_through_kamailio() {
    let _turn = one_at_a_time();
    // alice offers RTP/SAVP with SDES keys; Kamailio asks ferrelay for plain RTP/AVP
    // toward bob; ferrelay answers alice with its own key and translates.
    let offer = format!("{PLAIN} RTP/AVP");
    let c = call(&offer, PLAIN, srtp(), PhoneOpts::default());
    talk_with_one_srtp_leg(c, Leg::Alice, "AES_CM_128_HMAC_SHA1_80");
}

#[test]
fn sdes_gcm256_callee_plain_caller_through_kamailio() {
    let _turn = one_at_a_time();
    // alice offers plain RTP/AVP; Kamailio asks ferrelay for RTP/SAVP toward bob with
    // only AEAD_AES_256_GCM, so ferrelay writes that key (padded base64: baresip
    // misreads unpadded GCM-256 keys) and bob answers with his own.
    let offer = format!("{PLAIN} RTP/SAVP SDES-only-AEAD_AES_256_GCM");
    let c = call(&offer, PLAIN, PhoneOpts::default(), srtp());
    talk_with_one_srtp_leg(c, Leg::Bob, "AEAD_AES_256_GCM");
}

#[test]
fn hold_and_resume_through_kamailio() {
    let _turn = one_at_a_time();
    let mut c = call(PLAIN, PLAIN, PhoneOpts::default(), PhoneOpts::default());
    sleep(Duration::from_secs(1));
    // Each re-INVITE reaches bob through Kamailio, which hands its SDP to ferrelay.
    c.hold();
    let kam = &c.kamailio.as_ref().expect("through Kamailio").peer;
    let hold = format!("hold {}", c.call_id);
    assert!(
        kam.log().contains(&hold),
        "the hold re-INVITE's SDP is not sendonly/inactive\n{}",
        kam.tail(30)
    );
    sleep(Duration::from_secs(1));
    c.resume();
    let kam = &c.kamailio.as_ref().expect("through Kamailio").peer;
    wait_for(SETUP_LIMIT, || {
        (kam.log().matches("answer ").count() >= 3).then_some(())
    })
    .unwrap_or_else(|| panic!("Kamailio did not relay 3 answers\n{}", kam.tail(30)));
    let offers = format!("offer {} INVITE", c.call_id);
    assert_eq!(
        kam.log().matches(&offers).count(),
        3,
        "initial, hold and resume offers"
    );
    c.talk_counting_from_now("after resume");
    // Over the whole call at least the time since resume must be covered. (A held
    // baresip stops recording at hold: alice's tone check covers the first second.)
    c.hang_up().assert_audio(TALK);
}
