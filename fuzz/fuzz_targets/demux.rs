#![no_main]
use ferrelay_wire::{PacketClass, RtcpPacket, RtpPacket, classify};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match classify(data) {
        PacketClass::Rtp => drop(RtpPacket::new_checked(data).map(|p| p.payload().len())),
        PacketClass::Rtcp => drop(RtcpPacket::new_checked(data).map(|p| p.body().len())),
        PacketClass::Unknown => assert!(data.len() < 2 || !(128..=191).contains(&data[0])),
        _ => assert!(data[0] < 80),
    }
});
