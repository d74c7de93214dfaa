//! Differential test: our parser against `smoltcp::wire` (the reference DESIGN names) on IPv4 /
//! IPv6 TCP and UDP frames, valid and mutated. Where smoltcp accepts a packet and so do we, the
//! fields agree; where smoltcp rejects a length, we reject too. (We reject more: IHL < 5,
//! version mismatches, fragments rules, which smoltcp's `new_checked` does not look at.)

use std::net::IpAddr;

use bulkhead_wire::builder::{v4, v6, Frame};
use bulkhead_wire::{parse, Malformed, Parsed};
use proptest::prelude::*;
use smoltcp::wire::{IpProtocol, Ipv4Packet, Ipv6Packet, TcpPacket, UdpPacket};

/// (src, dst, proto, sport, dport, tcp (flags-syn, seq, ack, window), l4 payload len) per smoltcp.
type View = (IpAddr, IpAddr, u8, u16, u16, Option<(bool, u32, u32, u16)>, u32);

/// smoltcp's reading of an untagged Ethernet frame holding IPv4/IPv6 + TCP/UDP; Err = rejected.
fn smoltcp_view(frame: &[u8]) -> Result<View, ()> {
    let (ethertype, ip) = (u16::from_be_bytes([frame[12], frame[13]]), &frame[14..]);
    let (src, dst, proto, l4): (IpAddr, IpAddr, IpProtocol, &[u8]) = if ethertype == 0x0800 {
        let p = Ipv4Packet::new_checked(ip).map_err(|_| ())?;
        (
            p.src_addr().into(),
            p.dst_addr().into(),
            p.next_header(),
            &ip[p.header_len().into()..p.total_len().into()],
        )
    } else {
        let p = Ipv6Packet::new_checked(ip).map_err(|_| ())?;
        let plen = usize::from(p.payload_len());
        (p.src_addr().into(), p.dst_addr().into(), p.next_header(), &ip[40..40 + plen])
    };
    match proto {
        IpProtocol::Tcp => {
            let t = TcpPacket::new_checked(l4).map_err(|_| ())?;
            let tcp = Some((t.syn(), t.seq_number().0 as u32, t.ack_number().0 as u32, t.window_len()));
            let plen = (l4.len() - usize::from(t.header_len())) as u32;
            Ok((src, dst, 6, t.src_port(), t.dst_port(), tcp, plen))
        }
        IpProtocol::Udp => {
            let u = UdpPacket::new_checked(l4).map_err(|_| ())?;
            Ok((src, dst, 17, u.src_port(), u.dst_port(), None, u32::from(u.len()) - 8))
        }
        _ => Err(()),
    }
}

fn frame_strategy() -> impl Strategy<Value = Vec<u8>> {
    (any::<bool>(), any::<bool>(), any::<u16>(), any::<u16>(), any::<u8>(), any::<u32>(), 0usize..40)
        .prop_map(|(six, udp, sport, dport, flags, seq, plen)| {
            let (a, b) = if six { (v6(3), v6(4)) } else { (v4(198, 18, 3, 3), v4(198, 18, 4, 4)) };
            let f = if udp {
                Frame::udp(a, b, sport, dport)
            } else {
                Frame::tcp(a, b, sport, dport, flags).seq(seq)
            };
            f.payload_len(plen).build()
        })
}

fn ours(frame: &[u8]) -> Result<View, Malformed> {
    match parse(frame)? {
        Parsed::Ip(p) => {
            let tcp = (p.proto == 6).then_some((p.tcp_flags & 0x02 != 0, p.tcp_seq, p.tcp_ack, p.tcp_window));
            Ok((p.src, p.dst, p.proto, p.sport, p.dport, tcp, p.l4_payload_len))
        }
        other => panic!("not IP: {other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn valid_frames_agree(frame in frame_strategy()) {
        prop_assert_eq!(ours(&frame).ok(), smoltcp_view(&frame).ok());
    }

    /// Mutations of the IP and L4 headers (never the ethertype, never the IPv4 fragment
    /// fields, whose meaning smoltcp's views ignore).
    #[test]
    fn mutated_frames_agree(
        frame in frame_strategy(),
        flips in proptest::collection::vec((14usize..80, any::<u8>()), 1..4),
        cut in 14usize..120,
    ) {
        let mut m = frame;
        let v4 = m[12] == 0x08;
        for (at, val) in flips {
            if at < m.len() && !(v4 && (20..22).contains(&at)) {
                m[at] = val;
            }
        }
        m.truncate(cut.max(14));
        let theirs = smoltcp_view(&m);
        match ours(&m) {
            Ok(view) => {
                // Our header checks are a superset of smoltcp's, except that we accept a
                // protocol smoltcp's view has no reader for (the mutated protocol byte).
                if matches!(view.2, 6 | 17) {
                    prop_assert_eq!(Ok(view), theirs);
                }
            }
            Err(_) => {
                // Versions, IHL < 5 and extension-header walks are our additions; otherwise
                // a rejection of ours is one of smoltcp's.
                let version_ok = (m.len() > 14) && (m[14] >> 4 == if v4 { 4 } else { 6 });
                let ihl_ok = !v4 || m.get(14).is_some_and(|b| b & 0x0f >= 5);
                let plain_next = v4 || m.get(14 + 6).is_some_and(|nh| matches!(nh, 6 | 17));
                if version_ok && ihl_ok && plain_next {
                    prop_assert!(theirs.is_err(), "we rejected {:?}, smoltcp read {:?}", ours(&m), theirs);
                }
            }
        }
    }
}
