#![no_main]
use ferrelay_wire::{Compound, RtcpPacket};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = Compound::new_checked(data) {
        for p in c {
            let _ = (p.packet_type(), p.count(), p.ssrc(), p.body(), p.sender_info());
            let _ = (p.media_ssrc(), p.fci(), p.app_name(), p.bye_sources().count());
            for b in p.report_blocks() {
                let _ = (b.ssrc(), b.fraction_lost(), b.cumulative_lost(), b.jitter());
                let _ = (b.extended_highest_seq(), b.last_sr(), b.delay_since_last_sr());
            }
        }
        let mut buf = data.to_vec();
        for r in c.ranges() {
            RtcpPacket::new_checked(&mut buf[r]).unwrap().set_ssrc(7);
        }
    }
});
