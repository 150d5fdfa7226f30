//! One call between two baresip phones through a SIP proxy (Kamailio, or ferrelay's
//! own front end) with ferrelay anchoring the media, and the checks that prove audio
//! flowed: the phones' own RTP counters (printed by baresip when the call closes) and
//! ferrelay's `query` (packets received from each party), each at least 80% of what
//! 20 ms packetisation gives for the measured talk time.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::baresip::{Phone, PhoneOpts, RtpCounts};
use crate::kamailio::Kamailio;
use crate::relay::Relay;

/// One packet per 20 ms (baresip's default ptime for PCMU).
pub const PTIME: Duration = Duration::from_millis(20);
/// How long the tests talk before they count.
pub const TALK: Duration = Duration::from_secs(3);
/// Bound on call setup, teardown and each re-INVITE.
pub const SETUP_LIMIT: Duration = Duration::from_secs(10);

/// Ports of one call's peers, all from one free block of [`Ports::SPAN`].
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub media: (u16, u16),
    pub proxy: u16,
    pub alice: u16,
    pub bob: u16,
}

impl Ports {
    const SPAN: u16 = 80;

    pub fn reserve() -> Ports {
        let base = crate::free_ports(Self::SPAN);
        Ports {
            media: (base, base + 19),
            proxy: base + 20,
            alice: base + 30,
            bob: base + 55,
        }
    }
}

/// A call that is up. Drop order is field order: phones, then the proxy, then the
/// relay.
#[derive(Debug)]
pub struct Call {
    pub alice: Phone,
    pub bob: Phone,
    pub kamailio: Option<Kamailio>,
    pub relay: Relay,
    pub media: (u16, u16),
    pub call_id: String,
    pub up_since: Instant,
}

impl Call {
    /// Starts both phones with `proxy` as their outbound proxy, has alice call bob and
    /// waits until both ends have the call up.
    pub fn dial(
        relay: Relay,
        kamailio: Option<Kamailio>,
        proxy: SocketAddr,
        ports: Ports,
        alice_opts: PhoneOpts,
        bob_opts: PhoneOpts,
    ) -> Call {
        // Two different tones, so each side can tell the other's audio from its own.
        let outbound = Some(proxy);
        let mut alice = Phone::start(
            "alice",
            ports.alice,
            &PhoneOpts {
                outbound,
                tone_hz: alice_opts.tone_hz.or(Some(440)),
                ..alice_opts
            },
        );
        let mut bob = Phone::start(
            "bob",
            ports.bob,
            &PhoneOpts {
                outbound,
                tone_hz: bob_opts.tone_hz.or(Some(620)),
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
            media: ports.media,
            call_id,
            up_since: Instant::now(),
        }
    }

    /// Packets ferrelay has received from each party so far, asserted to be two
    /// parties.
    pub fn relay_counts(&mut self) -> Vec<(String, i64)> {
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
    pub fn assert_media_via_relay(&self) {
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

    /// Talks for [`TALK`], then asserts ferrelay's counts and that media comes from
    /// its ports.
    pub fn talk(&mut self) {
        std::thread::sleep(TALK);
        let counts = self.relay_counts();
        assert_relay_counts(&counts, floor(self.up_since.elapsed()), "during the call");
        self.assert_media_via_relay();
    }

    /// alice re-INVITEs with her stream on hold (`a=sendonly`); returns once the
    /// re-INVITE has reached bob through the proxy.
    pub fn hold(&mut self) {
        self.alice.command("hold", "");
        self.bob.wait_event("CALL_REMOTE_SDP", SETUP_LIMIT);
    }

    /// alice re-INVITEs with her stream back to `sendrecv`; returns once the
    /// re-INVITE has reached bob through the proxy.
    pub fn resume(&mut self) {
        self.alice.command("resume", "");
        self.bob.wait_event("CALL_REMOTE_SDP", SETUP_LIMIT);
    }

    /// Talks for [`TALK`] and asserts ferrelay received 80% of that time's packets
    /// from each party within it (the difference of two `query` replies), and that
    /// media still comes from ferrelay's ports.
    pub fn talk_counting_from_now(&mut self, what: &str) {
        let before = self.relay_counts();
        let from = Instant::now();
        std::thread::sleep(TALK);
        let after = self.relay_counts();
        let delta: Vec<(String, i64)> = after
            .iter()
            .map(|(tag, n)| {
                let was = before.iter().find(|(t, _)| t == tag).map_or(0, |(_, n)| *n);
                (tag.clone(), n - was)
            })
            .collect();
        assert_relay_counts(&delta, floor(from.elapsed()), what);
        self.assert_media_via_relay();
    }

    /// Hangs up from alice and returns both phones' counters and the talk time.
    pub fn hang_up(mut self) -> Closed {
        self.alice.command("hangup", "");
        let talked = self.up_since.elapsed();
        self.alice.wait_event("CALL_CLOSED", SETUP_LIMIT);
        self.bob.wait_event("CALL_CLOSED", SETUP_LIMIT);
        let alice = self.alice.closed_call_counts();
        let bob = self.bob.closed_call_counts();
        Closed {
            alice,
            bob,
            talked,
            call: self,
        }
    }
}

/// A call after hangup, with what the phones counted.
#[derive(Debug)]
pub struct Closed {
    pub alice: RtpCounts,
    pub bob: RtpCounts,
    pub talked: Duration,
    pub call: Call,
}

impl Closed {
    /// Asserts both phones sent and received at least 80% of `talk`'s packets, and
    /// each decoded the other's tone.
    pub fn assert_audio(&self, talk: Duration) {
        let min = floor(talk) as u64;
        eprintln!(
            "phones after {:?}: alice {:?}, bob {:?} (floor {min})",
            self.talked, self.alice, self.bob
        );
        for (who, c) in [("alice", self.alice), ("bob", self.bob)] {
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
        let (alice, bob) = (&self.call.alice, &self.call.bob);
        for (ear, mouth) in [(alice, bob), (bob, alice)] {
            let share = ear.heard_tone(mouth.tone_hz);
            eprintln!(
                "{} hears {} Hz ({}'s tone): {share:.3} of the energy",
                ear.name, mouth.tone_hz, mouth.name
            );
            assert!(
                share > 0.9,
                "{} decoded {}'s {} Hz tone with only {share:.3} of the energy there",
                ear.name,
                mouth.name,
                mouth.tone_hz
            );
        }
    }
}

/// 80% of the packets `elapsed` of 20 ms audio holds.
pub fn floor(elapsed: Duration) -> i64 {
    (elapsed.as_millis() / PTIME.as_millis()) as i64 * 8 / 10
}

/// Asserts ferrelay got at least `min` packets from each party.
pub fn assert_relay_counts(counts: &[(String, i64)], min: i64, what: &str) {
    eprintln!("ferrelay {what}: {counts:?} (floor {min})");
    for (tag, n) in counts {
        assert!(
            *n >= min,
            "ferrelay received {n} RTP packets from tag {tag} {what}, expected >= {min}"
        );
    }
}

/// Which phone is on the SRTP leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leg {
    Alice,
    Bob,
}

/// Talks, then asserts the `leg` phone negotiated SDES-SRTP with `suite` and
/// decrypted everything ferrelay sent, the other leg stayed plain RTP, and audio
/// flowed both ways.
pub fn talk_with_one_srtp_leg(mut c: Call, leg: Leg, suite: &str) {
    c.talk();
    let alice_view = c.alice.command("callstat", "");
    let bob_view = c.bob.command("callstat", "");
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
    let closed = c.hang_up();
    let secure = match leg {
        Leg::Alice => &closed.call.alice,
        Leg::Bob => &closed.call.bob,
    };
    let log = secure.peer.log();
    assert!(
        log.contains(&format!("SRTP is Enabled (cryptosuite={suite})")),
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
    closed.assert_audio(closed.talked);
}
