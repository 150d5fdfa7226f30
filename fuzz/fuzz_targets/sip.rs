#![no_main]
//! SIP bytes into the parser, the stream framer and the whole proxy core: no panic,
//! and whatever parses writes back to a message that parses to the same thing.
use std::time::{Duration, Instant};

use ferrelay::ng::Value;
use ferrelay::sip::media::Media;
use ferrelay::sip::message::{Message, frame};
use ferrelay::sip::{Peer, Proxy, ProxyConfig, Timers, Transport};
use libfuzzer_sys::fuzz_target;

/// Accepts every offer with the SDP unchanged, so the proxy walks its full path.
struct Echo;

impl Media for Echo {
    fn ng(&mut self, req: &Value, _now: Instant) -> Value {
        let sdp = req.get("sdp").cloned().unwrap_or(Value::str(""));
        Value::Dict(vec![
            (b"result".to_vec(), Value::str("ok")),
            (b"sdp".to_vec(), sdp),
        ])
    }
}

fn without_length(m: &Message) -> Message {
    let mut m = m.clone();
    m.headers.retain(|h| h.name != "Content-Length");
    m
}

fuzz_target!(|data: &[u8]| {
    let _ = frame(data);
    if let Ok(m) = Message::parse(data) {
        let again = Message::parse(&m.to_bytes()).expect("written SIP parses again");
        assert_eq!(without_length(&again), without_length(&m));
    }
    let mut p = Proxy::new(ProxyConfig {
        local: "127.0.0.1:5060".parse().unwrap(),
        routes: Vec::new(),
        timers: Timers::default(),
    });
    let from = Peer {
        transport: Transport::Udp,
        addr: "127.0.0.1:5062".parse().unwrap(),
    };
    let now = Instant::now();
    // The same bytes twice (a retransmission), then every timer.
    for _ in 0..2 {
        for o in p.on_message(data, from, now, &mut Echo) {
            Message::parse(&o.bytes).expect("the proxy writes valid SIP");
        }
    }
    let _ = p.poll(now + Duration::from_secs(200), &mut Echo);
});
