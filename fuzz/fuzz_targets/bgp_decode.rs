//! Feeds arbitrary bytes to meshd's BGP decoder and to netgauze-bgp-pkt's.
//!
//! - meshd's decoder must never panic, whatever the input and session options;
//! - when it accepts a message, its own encoding of the result must decode to the same message;
//! - when both decoders accept an UPDATE without any RFC 7606 problem on meshd's side, they
//!   must agree on the IPv4 withdrawn routes and NLRI. (They legitimately differ elsewhere:
//!   netgauze refuses multicast prefixes as unicast NLRI, meshd leaves that to policy.)
#![no_main]

use ipnet::Ipv4Net;
use libfuzzer_sys::fuzz_target;
use meshd_bgp::packet::{CodecOptions, Message};
use netgauze_bgp_pkt::BgpMessage;
use netgauze_bgp_pkt::wire::deserializer::BgpParsingContext;
use netgauze_parse_utils::reader::SliceReader;
use netgauze_parse_utils::traits::ParseFromWithOneInput;

fuzz_target!(|data: &[u8]| {
    for four_octet_as in [true, false] {
        let options = CodecOptions { four_octet_as };
        let Ok(message) = Message::decode(data, options) else {
            continue;
        };
        if let Ok(bytes) = message.encode(options) {
            let again = Message::decode(&bytes, options).expect("meshd decodes its own encoding");
            match (message.clone(), again) {
                (Message::Update(mut a), Message::Update(mut b)) => {
                    // Problems describe the input's damage, which the re-encoding no longer
                    // has; unknown attributes come back with the Partial bit set.
                    for u in [&mut a, &mut b] {
                        u.problems.clear();
                        u.attributes.unknown.clear();
                    }
                    assert_eq!(a, b, "decode(encode(decode(x))) differs for an UPDATE");
                }
                (a, b) => assert_eq!(a, b, "decode(encode(decode(x))) differs"),
            }
        }
        let Message::Update(ours) = message else {
            continue;
        };
        if !ours.problems.is_empty() {
            continue;
        }
        let mut ctx = BgpParsingContext::default();
        ctx.set_asn4(four_octet_as);
        let mut reader = SliceReader::new(data);
        let Ok(BgpMessage::Update(theirs)) = BgpMessage::parse(&mut reader, &mut ctx) else {
            continue;
        };
        let v4 = |list: &[netgauze_bgp_pkt::nlri::Ipv4UnicastAddress]| -> Vec<Ipv4Net> {
            // meshd clears host bits past the prefix length; netgauze keeps what was sent.
            list.iter().map(|a| a.network().address().trunc()).collect()
        };
        assert_eq!(
            v4(theirs.withdraw_routes()),
            ours.withdrawn,
            "withdrawn routes differ"
        );
        assert_eq!(v4(theirs.nlri()), ours.nlri, "NLRI differ");
    }
});
