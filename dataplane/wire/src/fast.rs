//! The express lane: plain IPv4 TCP and UDP frames, read at fixed offsets.
//!
//! CONTRACT: [`parse_ipv4_fast`] returns `Some` only for a frame that [`crate::parse`] accepts
//! as an ordinary IPv4 TCP or UDP packet (no VLAN tag, IHL 5, not a fragment), and then its
//! fields are exactly the ones [`crate::parse`] reports. For every other frame it returns `None`
//! and the caller uses the full parser, which decides (and counts) everything else. So the
//! express lane never accepts what the full parser rejects and never disagrees with it; a
//! property test in `tests/fast_lane.rs` checks both on random and mutated frames.
//!
//! Why: nearly all packets of a busy link are this shape, and reading them at fixed offsets
//! from one 54-byte window (no ethertype loop, no header chain, no `IpAddr` enums, no
//! 150-byte [`crate::PacketInfo`] to fill) is the engine's cheapest way to a flow key.

/// The fields of a plain IPv4 TCP or UDP packet (UDP: the TCP fields are zero).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ipv4Fast {
    /// Source and destination addresses in host byte order (`u32::from(Ipv4Addr)`).
    pub src: u32,
    pub dst: u32,
    pub sport: u16,
    pub dport: u16,
    /// 6 (TCP) or 17 (UDP).
    pub proto: u8,
    pub tcp_flags: u8,
    pub tcp_window: u16,
    pub tcp_seq: u32,
    pub tcp_ack: u32,
    /// As [`crate::PacketInfo::l4_payload_len`].
    pub l4_payload_len: u32,
}

/// Ethernet (14) + IPv4 without options (20) + a TCP header without options (20). Real frames
/// are at least 60 bytes, so every plain TCP or UDP frame has this window.
const WINDOW: usize = 54;
const L3: usize = 14;
const L4: usize = L3 + 20;

/// The express-lane parse of `frame`; `None`: use [`crate::parse`] (see the module docs).
#[inline]
pub fn parse_ipv4_fast(frame: &[u8]) -> Option<Ipv4Fast> {
    let h = frame.first_chunk::<WINDOW>()?;
    // Ethertype IPv4 (no VLAN tag), version 4 with IHL 5, MF clear and fragment offset 0 (the
    // reserved and DF bits are ignored, as by the full parser).
    if h[12] != 0x08 || h[13] != 0x00 || h[L3] != 0x45 || h[L3 + 6] & 0x3f != 0 || h[L3 + 7] != 0 {
        return None;
    }
    let total = u32::from(u16::from_be_bytes([h[L3 + 2], h[L3 + 3]]));
    if total as usize > frame.len() - L3 {
        return None;
    }
    let l4_len = total.checked_sub(20)?;
    let proto = h[L3 + 9];
    let be32 = |i: usize| u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    let be16 = |i: usize| u16::from_be_bytes([h[i], h[i + 1]]);
    let mut p = Ipv4Fast {
        src: be32(L3 + 12),
        dst: be32(L3 + 16),
        sport: be16(L4),
        dport: be16(L4 + 2),
        proto,
        ..Ipv4Fast::default()
    };
    match proto {
        6 => {
            let doff = u32::from(h[L4 + 12] >> 4) * 4;
            if l4_len < 20 || doff < 20 || doff > l4_len {
                return None;
            }
            p.tcp_seq = be32(L4 + 4);
            p.tcp_ack = be32(L4 + 8);
            p.tcp_flags = h[L4 + 13];
            p.tcp_window = be16(L4 + 14);
            p.l4_payload_len = l4_len - doff;
        }
        17 => {
            let ulen = u32::from(be16(L4 + 4));
            if l4_len < 8 || ulen < 8 || ulen > l4_len {
                return None;
            }
            p.l4_payload_len = ulen - 8;
        }
        _ => return None,
    }
    Some(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::{tcp, Frame};
    use std::net::Ipv4Addr;

    const A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const B: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 2);

    fn tcp_frame() -> Vec<u8> {
        Frame::tcp(A, B, 40000, 443, tcp::ACK).seq(7).ack(9).window(512).payload(b"hello").build()
    }

    #[test]
    fn plain_tcp_is_read_at_fixed_offsets() {
        let p = parse_ipv4_fast(&tcp_frame()).expect("plain TCP takes the express lane");
        assert_eq!(
            p,
            Ipv4Fast {
                src: u32::from(A),
                dst: u32::from(B),
                sport: 40000,
                dport: 443,
                proto: 6,
                tcp_flags: tcp::ACK,
                tcp_window: 512,
                tcp_seq: 7,
                tcp_ack: 9,
                l4_payload_len: 5,
            }
        );
    }

    #[test]
    fn plain_udp_is_read_at_fixed_offsets() {
        let f = Frame::udp(A, B, 5353, 53).payload(b"q").pad_to(60).build();
        let p = parse_ipv4_fast(&f).expect("plain UDP takes the express lane");
        assert_eq!((p.sport, p.dport, p.proto, p.l4_payload_len, p.tcp_flags), (5353, 53, 17, 1, 0));
    }

    #[test]
    fn declines_short_window() {
        assert_eq!(parse_ipv4_fast(&tcp_frame()[..53]), None);
    }

    #[test]
    fn declines_vlan() {
        assert_eq!(parse_ipv4_fast(&Frame::tcp(A, B, 1, 2, tcp::ACK).vlan(7).build()), None);
    }

    #[test]
    fn declines_other_ethertype() {
        let f = Frame::tcp(std::net::Ipv6Addr::LOCALHOST, std::net::Ipv6Addr::LOCALHOST, 1, 2, tcp::ACK);
        assert_eq!(parse_ipv4_fast(&f.build()), None);
    }

    #[test]
    fn declines_ipv4_options() {
        let f = Frame::tcp(A, B, 1, 2, tcp::ACK).ipv4_options(&[1, 1, 1, 1]).build();
        assert_eq!(parse_ipv4_fast(&f), None);
    }

    #[test]
    fn declines_fragments() {
        let first = Frame::udp(A, B, 1, 2).payload(&[0; 64]).frag(0, true).build();
        let later = Frame::udp(A, B, 1, 2).payload(&[0; 64]).frag(8, false).build();
        assert_eq!(parse_ipv4_fast(&first), None);
        assert_eq!(parse_ipv4_fast(&later), None);
    }

    #[test]
    fn declines_total_length_past_frame() {
        let mut f = tcp_frame();
        let past = (f.len() - L3 + 1) as u16;
        f[L3 + 2..L3 + 4].copy_from_slice(&past.to_be_bytes());
        assert_eq!(parse_ipv4_fast(&f), None);
    }

    #[test]
    fn declines_total_length_below_header() {
        let mut f = tcp_frame();
        f[L3 + 2..L3 + 4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(parse_ipv4_fast(&f), None);
    }

    #[test]
    fn declines_tcp_cut_by_total_length() {
        let mut f = tcp_frame();
        f[L3 + 2..L3 + 4].copy_from_slice(&39u16.to_be_bytes());
        assert_eq!(parse_ipv4_fast(&f), None);
    }

    #[test]
    fn declines_tcp_data_offset_below_five() {
        let mut f = tcp_frame();
        f[L4 + 12] = 4 << 4;
        assert_eq!(parse_ipv4_fast(&f), None);
    }

    #[test]
    fn declines_tcp_data_offset_past_packet() {
        let mut f = tcp_frame();
        f[L4 + 12] = 15 << 4;
        assert_eq!(parse_ipv4_fast(&f), None);
    }

    #[test]
    fn declines_udp_length_below_eight() {
        let mut f = Frame::udp(A, B, 1, 2).pad_to(60).build();
        f[L4 + 4..L4 + 6].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(parse_ipv4_fast(&f), None);
    }

    #[test]
    fn declines_udp_length_past_packet() {
        let mut f = Frame::udp(A, B, 1, 2).pad_to(60).build();
        f[L4 + 4..L4 + 6].copy_from_slice(&200u16.to_be_bytes());
        assert_eq!(parse_ipv4_fast(&f), None);
    }

    #[test]
    fn declines_udp_cut_by_total_length() {
        let mut f = Frame::udp(A, B, 1, 2).pad_to(60).build();
        f[L3 + 2..L3 + 4].copy_from_slice(&27u16.to_be_bytes());
        assert_eq!(parse_ipv4_fast(&f), None);
    }

    #[test]
    fn declines_other_protocols() {
        assert_eq!(parse_ipv4_fast(&Frame::echo_request(A, B, 1, 1).pad_to(60).build()), None);
        assert_eq!(parse_ipv4_fast(&Frame::sctp(A, B, 1, 2).pad_to(60).build()), None);
    }
}
