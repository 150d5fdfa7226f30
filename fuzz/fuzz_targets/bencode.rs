#![no_main]
use ferrelay::ng::Value;
use ferrelay::ng::commands::{Framing, frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Strict decoding is canonical: what decodes re-encodes to the same bytes.
    if let Ok((v, used)) = Value::decode_prefix(data) {
        assert_eq!(v.encode(), &data[..used]);
        assert_eq!(Value::decode(&data[..used]), Ok(v));
    }
    // TCP framing never claims more than it was given.
    if let Framing::Message(n) = frame(data) {
        assert!(n <= data.len());
    }
});
