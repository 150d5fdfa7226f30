#![no_main]
use ferrelay_wire::RtpPacket;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = RtpPacket::new_checked_header(data) {
        let _ = (p.payload(), p.padding_len(), p.csrcs().count(), p.extension_data());
        p.extension_elements().into_iter().flatten().for_each(drop);
    }
    let mut buf = data.to_vec();
    if let Ok(mut p) = RtpPacket::new_checked(&mut buf[..]) {
        let _ = (p.version(), p.marker(), p.payload_type(), p.sequence_number());
        let _ = (p.timestamp(), p.ssrc(), p.csrc(0), p.extension_profile());
        assert!(p.header_len() <= p.payload_range().start);
        (p.set_payload_type(p.payload_type() ^ 1), p.set_sequence_number(1));
        (p.set_timestamp(2), p.set_ssrc(3), p.set_marker(true));
        assert!(RtpPacket::new_checked(&buf[..]).is_ok(), "setters keep it valid");
    }
});
