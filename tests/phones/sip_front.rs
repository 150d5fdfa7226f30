//! The same calls as `kamailio_calls`, without Kamailio: both baresip phones use
//! ferrelay's own SIP front end (`--listen-sip`, here `[sip] listen`) as their
//! outbound proxy, and it anchors the media itself.

use std::path::Path;
use std::thread::sleep;
use std::time::Duration;

use clap::Parser;
use ferrelay::config::{Cli, Config};
use ferrelay_interop::baresip::PhoneOpts;
use ferrelay_interop::call::{Call, Leg, Ports, TALK, talk_with_one_srtp_leg};
use ferrelay_interop::one_at_a_time;
use ferrelay_interop::relay::Relay;

/// Starts ferrelay with the SIP front end configured by `routes` (TOML `[[sip.route]]`
/// tables, read the way the binary reads `--config`), then the call through it.
fn call(routes: &str, alice: PhoneOpts, bob: PhoneOpts) -> Call {
    let ports = Ports::reserve();
    let toml = format!("[sip]\nlisten = \"127.0.0.1:{}\"\n{routes}", ports.proxy);
    let cli = Cli::try_parse_from(["ferrelay"]).expect("no flags parse");
    let file = Config::resolve(&cli, Some((Path::new("sip.toml"), &toml)))
        .unwrap_or_else(|e| panic!("ferrelay rejects the test's [sip] config: {e}\n{toml}"));
    let relay = Relay::start(ports.media, |cfg| cfg.sip = file.sip);
    let proxy = relay
        .handle()
        .sip
        .expect("ferrelay's SIP front end is listening");
    Call::dial(relay, None, proxy, ports, alice, bob)
}

#[test]
fn plain_call_through_ferrelay_sip_front_end() {
    let _turn = one_at_a_time();
    let mut c = call("", PhoneOpts::default(), PhoneOpts::default());
    c.talk();
    let closed = c.hang_up();
    closed.assert_audio(closed.talked);
}

#[test]
fn sdes_gcm256_callee_through_ferrelay_sip_front_end() {
    let _turn = one_at_a_time();
    // The route's media policy does what Kamailio's offer flags do in kamailio_calls:
    // SDES-SRTP toward the callee with only AEAD_AES_256_GCM, plain toward the caller.
    let route = "[[sip.route]]\n\
                 callee-protocol = \"RTP/SAVP\"\n\
                 caller-protocol = \"RTP/AVP\"\n\
                 flags = [\"SDES-only-AEAD_AES_256_GCM\"]\n";
    let bob = PhoneOpts {
        mediaenc: Some("srtp-mand"),
        ..PhoneOpts::default()
    };
    let c = call(route, PhoneOpts::default(), bob);
    talk_with_one_srtp_leg(c, Leg::Bob, "AEAD_AES_256_GCM");
}

#[test]
fn hold_and_resume_through_ferrelay_sip_front_end() {
    let _turn = one_at_a_time();
    let mut c = call("", PhoneOpts::default(), PhoneOpts::default());
    sleep(Duration::from_secs(1));
    // bob only hears of each re-INVITE through the front end, which re-offers it.
    c.hold();
    sleep(Duration::from_secs(1));
    c.resume();
    // The 200 OK's answer reaches ferrelay right after bob sends it.
    sleep(Duration::from_millis(200));
    c.talk_counting_from_now("after resume");
    c.hang_up().assert_audio(TALK);
}
