#![no_main]
use ferrelay::ng::bencode::Scan;
use ferrelay::ng::commands::{Framing, frame};
use ferrelay::ng::shards::TopKeys;
use ferrelay::ng::Value;
use ferrelay::session::flags::lookup;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Strict decoding is canonical: what decodes re-encodes to the same bytes.
    if let Ok((v, used)) = Value::decode_prefix(data) {
        assert_eq!(v.encode(), &data[..used]);
        assert_eq!(Value::decode(&data[..used]), Ok(v.clone()));
        // The shard router's scan finds what the sessions will read, so every
        // request of a call reaches the same shard.
        if matches!(v, Value::Dict(_)) {
            let keys = TopKeys::scan(&data[..used]);
            assert_eq!(keys.call_id, lookup(&v, "call-id").and_then(Value::as_bytes));
            assert_eq!(keys.command, lookup(&v, "command").and_then(Value::as_bytes));
        }
    }
    // TCP framing never claims more than it was given.
    if let Framing::Message(n) = frame(data) {
        assert!(n <= data.len());
    }
    // The TCP reader's scan, fed the rest in reads of the first byte's size, never
    // holds back a complete message: "not worth decoding" must mean the decoder
    // finds no whole value (some invalid input is only reported once it closes).
    let Some((&step, stream)) = data.split_first() else {
        return;
    };
    let step = usize::from(step % 16) + 1;
    let mut scan = Scan::default();
    let mut len = 0;
    while len < stream.len() {
        len = (len + step).min(stream.len());
        let buf = &stream[..len];
        if scan.worth_decoding(buf) {
            break;
        }
        assert!(
            !matches!(Value::decode_prefix(buf), Ok(_)),
            "scan held back a complete message of {len} bytes"
        );
    }
});
