//! The express lane ([`parse_ipv4_fast`]) against the full parser: whenever it answers, the full
//! parser accepts the frame as an ordinary IPv4 TCP/UDP packet with exactly those fields; and it
//! answers for the plain frames it is meant for.

use bulkhead_wire::builder::{tcp, v4, Frame};
use bulkhead_wire::fast::{parse_ipv4_fast, Ipv4Fast};
use bulkhead_wire::{parse, Parsed};
use proptest::prelude::*;

/// Checks the contract for one frame; returns whether the express lane answered.
fn agrees(frame: &[u8]) -> Result<bool, TestCaseError> {
    let Some(x) = parse_ipv4_fast(frame) else { return Ok(false) };
    let Ok(Parsed::Ip(info)) = parse(frame) else {
        return Err(TestCaseError::fail(format!("express lane accepted {frame:02x?}, full parser did not")));
    };
    let from_full = Ipv4Fast {
        src: match info.src {
            std::net::IpAddr::V4(a) => u32::from(a),
            std::net::IpAddr::V6(_) => return Err(TestCaseError::fail("IPv6 from the express lane")),
        },
        dst: match info.dst {
            std::net::IpAddr::V4(a) => u32::from(a),
            std::net::IpAddr::V6(_) => return Err(TestCaseError::fail("IPv6 from the express lane")),
        },
        sport: info.sport,
        dport: info.dport,
        proto: info.proto,
        tcp_flags: info.tcp_flags,
        tcp_window: info.tcp_window,
        tcp_seq: info.tcp_seq,
        tcp_ack: info.tcp_ack,
        l4_payload_len: info.l4_payload_len,
    };
    prop_assert_eq!(x, from_full);
    prop_assert!(info.frag.is_none() && info.quoted.is_none() && !info.is_ndp && info.vlan_tags == 0);
    Ok(true)
}

fn plain_frame() -> impl Strategy<Value = Vec<u8>> {
    (any::<bool>(), any::<u16>(), any::<u16>(), any::<u8>(), any::<u32>(), 0usize..80, 0usize..3).prop_map(
        |(is_tcp, sport, dport, flags, seq, plen, opts)| {
            let (a, b) = (v4(198, 18, 0, 1), v4(198, 19, 3, 4));
            let f = if is_tcp {
                Frame::tcp(a, b, sport, dport, flags).seq(seq).tcp_options(&[1, 1, 1, 1][..opts * 4 / 2])
            } else {
                Frame::udp(a, b, sport, dport)
            };
            f.payload_len(plen).pad_to(60).build()
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8192, ..ProptestConfig::default() })]

    #[test]
    fn plain_frames_take_the_express_lane_and_agree(frame in plain_frame()) {
        prop_assert!(agrees(&frame)?, "a plain IPv4 TCP/UDP frame takes the express lane");
    }

    /// Mutations aimed at the header bytes the express lane checks, plus truncation.
    #[test]
    fn mutated_frames_never_disagree(
        frame in plain_frame(),
        flips in proptest::collection::vec((12usize..60, any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut m = frame.clone();
        for (at, val) in &flips {
            if let Some(b) = m.get_mut(*at) {
                *b = *val;
            }
        }
        agrees(&m)?;
        agrees(&m[..cut.index(m.len() + 1)])?;
    }

    #[test]
    fn random_bytes_never_disagree(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
        let mut f = bytes;
        if f.len() > 14 {
            f[12] = 0x08;
            f[13] = 0x00;
            f[14] = 0x45;
        }
        agrees(&f)?;
    }
}

#[test]
fn syn_ack_and_fin_frames_take_the_express_lane() {
    for flags in [tcp::SYN, tcp::SYN | tcp::ACK, tcp::FIN | tcp::ACK, tcp::RST] {
        let f = Frame::tcp(v4(198, 18, 0, 1), v4(198, 18, 0, 2), 1, 2, flags).pad_to(60).build();
        assert!(agrees(&f).expect("agrees"), "flags {flags:#x}");
    }
}
