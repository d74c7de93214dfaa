//! Property tests: arbitrary bytes and mutations of valid frames never panic the parser, and
//! frames built from arbitrary fields parse back to those fields.

use std::net::IpAddr;

use bulkhead_wire::builder::{tcp, v4, v6, Ext, Frame};
use bulkhead_wire::{parse, Parsed};
use proptest::prelude::*;

/// A valid frame of some shape, from a few random choices.
fn valid_frame() -> impl Strategy<Value = Vec<u8>> {
    (0u8..12, any::<u16>(), any::<u16>(), 0usize..3, any::<bool>(), 0usize..64, 0usize..4).prop_map(
        |(kind, sport, dport, vlans, v6fam, plen, nexts)| {
            let (a, b): (IpAddr, IpAddr) =
                if v6fam { (v6(1), v6(2)) } else { (v4(198, 18, 0, 1), v4(198, 18, 0, 2)) };
            let mut f = match kind {
                0 => Frame::tcp(a, b, sport, dport, tcp::SYN),
                1 => Frame::udp(a, b, sport, dport),
                2 => Frame::sctp(a, b, sport, dport),
                3 => Frame::echo_request(a, b, sport, dport),
                4 => Frame::icmp_error(b, a, if v6fam { 1 } else { 3 }, 0, &Frame::udp(a, b, sport, dport)),
                5 => Frame::icmp(a, b, if v6fam { 135 } else { 13 }, 0),
                6 => Frame::raw_ip(a, b, 47),
                7 => Frame::udp(a, b, sport, dport).frag(0, true),
                8 => Frame::udp(a, b, sport, dport).frag(8, false),
                9 => Frame::tcp(a, b, sport, dport, tcp::ACK).ipv4_options(&[1, 1, 1, 1]),
                10 => Frame::arp_request([198, 18, 0, 1].into(), [198, 18, 0, 2].into()),
                _ => Frame::ethertype(0x88cc),
            };
            for i in 0..vlans {
                f = f.vlan(i as u16 + 1);
            }
            if v6fam {
                for _ in 0..nexts {
                    f = f.ext(Ext::DestOpts { len8: 0 });
                }
            }
            if !matches!(kind, 4 | 10) {
                f = f.payload_len(plen & !7);
            }
            f.build()
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse(&bytes);
    }

    /// Random bytes behind a plausible Ethernet/IP prefix reach the deeper parsers.
    #[test]
    fn random_ip_payloads_never_panic(
        ethertype in prop_oneof![Just(0x0800u16), Just(0x86dd), Just(0x8100), Just(0x88a8), Just(0x0806)],
        rest in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(&rest);
        let _ = parse(&f);
    }

    #[test]
    fn mutated_valid_frames_never_panic(
        frame in valid_frame(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut m = frame.clone();
        for (at, val) in &flips {
            let i = at.index(m.len());
            m[i] = *val;
        }
        let _ = parse(&m);
        let _ = parse(&m[..cut.index(m.len() + 1)]);
        let _ = parse(&frame[..cut.index(frame.len() + 1)]);
    }

    #[test]
    fn valid_frames_parse(frame in valid_frame()) {
        prop_assert!(parse(&frame).is_ok(), "{:?}", parse(&frame));
    }

    #[test]
    fn tcp_fields_round_trip(
        sport in any::<u16>(), dport in any::<u16>(), flags in any::<u8>(), seq in any::<u32>(),
        ack in any::<u32>(), window in any::<u16>(), plen in 0usize..100, fam6 in any::<bool>(),
        vlans in 0usize..3,
    ) {
        let (a, b) = if fam6 { (v6(7), v6(8)) } else { (v4(198, 18, 1, 7), v4(198, 19, 1, 8)) };
        let mut f = Frame::tcp(a, b, sport, dport, flags).seq(seq).ack(ack).window(window).payload_len(plen);
        for i in 0..vlans {
            f = f.vlan(i as u16);
        }
        let Ok(Parsed::Ip(p)) = parse(&f.build()) else { panic!("not parsed") };
        prop_assert_eq!((p.src, p.dst, p.proto, p.sport, p.dport), (a, b, 6, sport, dport));
        prop_assert_eq!((p.tcp_flags, p.tcp_seq, p.tcp_ack, p.tcp_window), (flags, seq, ack, window));
        prop_assert_eq!((p.l4_payload_len, p.vlan_tags), (plen as u32, vlans as u8));
    }
}
