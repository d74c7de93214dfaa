//! The frame parser: one Ethernet frame in, a [`Parsed`] summary or a [`Malformed`] reason out.
//!
//! # Why hand-written views rather than `smoltcp::wire`
//! DESIGN asks for smoltcp's wire module "where it fits". It does not fit the hot path here:
//! - smoltcp's checked constructors collapse every rejection into one `wire::Error` without a
//!   reason, while every drop here must be counted per reason, so each check would be done twice;
//! - it has no 802.1Q/802.1ad tags, no SCTP, no bounded IPv6 header-chain walk with the RFC 7112
//!   first-fragment rule, and its ICMP representations demand valid checksums (which the hot
//!   path must not compute) before they expose the quoted header;
//! - its field getters re-check bounds per field; here each header is bounds-checked once by
//!   taking a fixed-size array (`first_chunk::<N>()`), after which every field read is a constant
//!   index into that array, checked at compile time.
//!
//! smoltcp stays in the loop as a test oracle: `tests/smoltcp_oracle.rs` cross-checks addresses,
//! protocol and ports against `smoltcp::wire` on generated frames.
//!
//! # Contract
//! - Never panics, never allocates, whatever the bytes (property-tested).
//! - Checksums are NOT verified: the NIC / kernel driver verifies them on receive and the cost
//!   (touching every payload byte) would dominate the per-packet budget. A frame with a wrong
//!   checksum is classified like any other; the receiving host drops it.
//! - Trailing bytes after the IP packet (Ethernet padding) are ignored; lengths come from the IP
//!   headers.
//! - IPv4 options are checked for structure (each option other than EOL and NOP carries a length
//!   byte of at least 2 that stays inside the header, else [`Malformed::Ipv4BadOptions`]) but
//!   not interpreted. IPv6 jumbograms (payload length 0 with a
//!   hop-by-hop jumbo option) are not supported: they cannot occur on Ethernet.
//! - IPv6 extension headers walked: hop-by-hop (only first), routing, destination options,
//!   fragment (at most one), AH; at most [`MAX_EXT_HEADERS`]. Any other next header (ESP, no next
//!   header, TCP, ...) is the protocol.
//! - Fragments ([`FragInfo`]): IPv4 MF set or offset > 0; IPv6 a Fragment header that is not
//!   atomic (atomic IPv6 fragments, offset 0 and M = 0, are ordinary packets, RFC 6946).
//!   `payload_len` is the fragmentable part carried (IPv4: after the header; IPv6: after the
//!   Fragment header), in the same unit as `offset`. A first fragment must carry the whole L4
//!   header (TCP with options, UDP, SCTP common header, ICMP header and quoted header) and, for
//!   IPv6, the whole header chain (RFC 7112): otherwise [`Malformed::TinyFirstFragment`].
//!   Non-first fragments are not looked into: ports 0, and `proto` is the IPv4 protocol or the
//!   Fragment header's next header.
//! - ICMP echo request/reply: identifier in `sport` and `dport`. ICMP errors (v4 3, 11, 12;
//!   v6 1, 2, 3, 4): the quoted IP header and the first 8 bytes after it must be present, giving
//!   [`Quoted`]. NDP (ICMPv6 133..=137) sets `is_ndp` only when hop limit is 255 (RFC 4861 §7.1:
//!   anything else was forwarded, so it is not genuine neighbour discovery) and the packet is
//!   not a fragment (RFC 6980); otherwise it is an ordinary ICMPv6 packet judged by policy. MLD
//!   (130..=132, 143) sets it too when hop limit is 1 and the source is link-local or
//!   unspecified (RFC 2710 / 3810), not a fragment.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::builder::consts::*;
use crate::{FragInfo, Malformed, PacketInfo, Parsed, Quoted};

/// Upper bound on IPv6 extension headers walked (per packet and per quoted header).
pub const MAX_EXT_HEADERS: usize = 8;

/// Parses one Ethernet frame. Never panics, never allocates.
///
/// # Errors
/// The [`Malformed`] reason the frame is dropped for.
#[inline]
pub fn parse(frame: &[u8]) -> Result<Parsed, Malformed> {
    let mut out = Err(Malformed::TruncatedEthernet);
    parse_into(frame, &mut out);
    out
}

/// [`parse()`], writing the result into `out` in place (same result, whatever `out` held).
///
/// For the packet path: a batch keeps one result slot per frame, and filling it field by field
/// avoids building the ~150-byte result on the stack and copying it out, which showed up in
/// instruction counts (roughly a third of the parse cost of a 64-byte TCP frame).
#[inline]
pub fn parse_into(frame: &[u8], out: &mut Result<Parsed, Malformed>) {
    let Some((eth, mut rest)) = frame.split_first_chunk::<14>() else {
        *out = Err(Malformed::TruncatedEthernet);
        return;
    };
    let mut ethertype = u16::from_be_bytes([eth[12], eth[13]]);
    let mut tags = 0u8;
    while matches!(ethertype, TPID_8021Q | TPID_8021AD | TPID_QINQ_OLD) {
        if tags == 2 {
            *out = Err(Malformed::TooManyVlanTags);
            return;
        }
        let Some((tag, r)) = rest.split_first_chunk::<4>() else {
            *out = Err(Malformed::TruncatedVlan);
            return;
        };
        ethertype = u16::from_be_bytes([tag[2], tag[3]]);
        rest = r;
        tags += 1;
    }
    let v6 = match ethertype {
        ETH_IPV4 => false,
        ETH_IPV6 => true,
        ETH_ARP if rest.len() < 28 => {
            *out = Err(Malformed::TruncatedArp);
            return;
        }
        ETH_ARP => {
            *out = Ok(Parsed::Arp);
            return;
        }
        other => {
            *out = Ok(Parsed::OtherEthertype(other));
            return;
        }
    };
    if !matches!(out, Ok(Parsed::Ip(_))) {
        *out = Ok(Parsed::Ip(blank(UNSPEC, UNSPEC, 0, 0)));
    }
    // Always taken (set just above); written as a pattern so that no panic path exists.
    if let Ok(Parsed::Ip(info)) = out {
        let r = if v6 { parse_ipv6(rest, tags, info) } else { parse_ipv4(rest, tags, info) };
        if let Err(e) = r {
            *out = Err(e);
        }
    }
}

const UNSPEC: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

#[inline]
fn blank(src: IpAddr, dst: IpAddr, proto: u8, vlan_tags: u8) -> PacketInfo {
    PacketInfo {
        src,
        dst,
        proto,
        sport: 0,
        dport: 0,
        icmp_type: 0,
        icmp_code: 0,
        tcp_flags: 0,
        tcp_seq: 0,
        tcp_ack: 0,
        tcp_window: 0,
        l4_payload_len: 0,
        frag: None,
        quoted: None,
        is_ndp: false,
        vlan_tags,
    }
}

#[inline]
fn be16(a: u8, b: u8) -> u16 {
    u16::from_be_bytes([a, b])
}

fn v6_addr(h: &[u8; 40], at: usize) -> IpAddr {
    let mut a = [0u8; 16];
    if let Some(s) = h.get(at..at + 16) {
        a.copy_from_slice(s);
    }
    IpAddr::V6(Ipv6Addr::from(a))
}

/// Fragment sanity shared by IPv4 and IPv6: the reassembled datagram must fit its length field
/// (`extra` = bytes counted besides the fragmentable part), and every fragment but the last
/// carries a multiple of 8 bytes.
#[inline]
fn check_frag(offset: u32, more: bool, payload_len: u32, extra: u32) -> Result<(), Malformed> {
    if offset + payload_len + extra > 65535 {
        return Err(Malformed::FragmentTooLong);
    }
    if more && payload_len & 7 != 0 {
        return Err(Malformed::FragmentMisaligned);
    }
    Ok(())
}

#[inline]
fn parse_ipv4(l3: &[u8], vlan_tags: u8, info: &mut PacketInfo) -> Result<(), Malformed> {
    let Some(h) = l3.first_chunk::<20>() else {
        return Err(Malformed::TruncatedIpv4);
    };
    if h[0] >> 4 != 4 {
        return Err(Malformed::BadIpVersion);
    }
    let hlen = usize::from(h[0] & 0x0f) * 4;
    if hlen < 20 {
        return Err(Malformed::Ipv4BadIhl);
    }
    let total = usize::from(be16(h[2], h[3]));
    if total < hlen {
        return Err(Malformed::Ipv4BadLength);
    }
    // Also covers an IHL pointing past the frame, since hlen <= total.
    let Some(body) = l3.get(hlen..total) else {
        return Err(Malformed::Ipv4BadLength);
    };
    if hlen > 20 {
        check_ipv4_options(l3.get(20..hlen).unwrap_or_default())?;
    }
    let src = IpAddr::V4(Ipv4Addr::new(h[12], h[13], h[14], h[15]));
    let dst = IpAddr::V4(Ipv4Addr::new(h[16], h[17], h[18], h[19]));
    *info = blank(src, dst, h[9], vlan_tags);
    let ff = be16(h[6], h[7]);
    let more = ff & 0x2000 != 0;
    let offset = u32::from(ff & 0x1fff) * 8;
    let mut first_frag = false;
    if more || offset != 0 {
        let payload_len = body.len() as u32;
        check_frag(offset, more, payload_len, hlen as u32)?;
        info.frag = Some(FragInfo { id: u32::from(be16(h[4], h[5])), offset, more, payload_len });
        if offset != 0 {
            info.l4_payload_len = payload_len;
            return Ok(());
        }
        first_frag = true;
    }
    parse_l4(info, body, first_frag, false, 0)
}

/// The TLV structure of an IPv4 option list: End of Option List (0) ends it, No-Operation (1) is
/// one byte, every other option is type, length (>= 2, covering type and length) and data, and
/// must end inside the list.
#[inline(never)] // options are rare; keep them off the hot path's code
fn check_ipv4_options(mut opts: &[u8]) -> Result<(), Malformed> {
    while let Some((&kind, rest)) = opts.split_first() {
        match kind {
            0 => return Ok(()),
            1 => opts = rest,
            _ => {
                let len = usize::from(*rest.first().ok_or(Malformed::Ipv4BadOptions)?);
                if len < 2 || len > opts.len() {
                    return Err(Malformed::Ipv4BadOptions);
                }
                opts = opts.get(len..).unwrap_or_default();
            }
        }
    }
    Ok(())
}

#[inline]
fn parse_ipv6(l3: &[u8], vlan_tags: u8, info: &mut PacketInfo) -> Result<(), Malformed> {
    let Some(h) = l3.first_chunk::<40>() else {
        return Err(Malformed::TruncatedIpv6);
    };
    if h[0] >> 4 != 6 {
        return Err(Malformed::BadIpVersion);
    }
    let plen = usize::from(be16(h[4], h[5]));
    let Some(payload) = l3.get(40..40 + plen) else {
        return Err(Malformed::Ipv6BadLength);
    };
    let hop_limit = h[7];
    *info = blank(v6_addr(h, 8), v6_addr(h, 24), 0, vlan_tags);
    let mut nh = h[6];
    let mut off = 0usize;
    let mut walked = 0usize;
    let mut seen_frag = false;
    let mut first_frag = false;
    while matches!(nh, PROTO_HOPOPT | PROTO_ROUTING | PROTO_DSTOPTS | PROTO_FRAGMENT | PROTO_AH) {
        // Inside a first fragment the chain must be complete (RFC 7112); elsewhere a cut header
        // is simply bad.
        let cut = if first_frag { Malformed::TinyFirstFragment } else { Malformed::Ipv6BadExtHeader };
        if walked == MAX_EXT_HEADERS {
            return Err(Malformed::Ipv6TooManyExtHeaders);
        }
        if nh == PROTO_HOPOPT && walked != 0 {
            return Err(Malformed::Ipv6BadExtHeader);
        }
        // Every extension header is at least 8 bytes.
        let Some(e) = payload.get(off..).and_then(|r| r.first_chunk::<8>()) else {
            return Err(cut);
        };
        let len = match nh {
            PROTO_FRAGMENT => 8,
            PROTO_AH => (usize::from(e[1]) + 2) * 4,
            _ => (usize::from(e[1]) + 1) * 8,
        };
        if len < 12 && nh == PROTO_AH {
            return Err(Malformed::Ipv6BadExtHeader);
        }
        if off + len > payload.len() {
            return Err(cut);
        }
        if nh == PROTO_FRAGMENT {
            if seen_frag {
                return Err(Malformed::Ipv6BadExtHeader);
            }
            seen_frag = true;
            let fo = be16(e[2], e[3]);
            let offset = u32::from(fo >> 3) * 8;
            let more = fo & 1 != 0;
            if offset != 0 || more {
                let payload_len = (payload.len() - off - 8) as u32;
                check_frag(offset, more, payload_len, 0)?;
                let id = u32::from_be_bytes([e[4], e[5], e[6], e[7]]);
                info.frag = Some(FragInfo { id, offset, more, payload_len });
                if offset != 0 {
                    info.proto = e[0];
                    info.l4_payload_len = payload_len;
                    return Ok(());
                }
                first_frag = true;
            }
        }
        nh = e[0];
        off += len;
        walked += 1;
    }
    info.proto = nh;
    let l4 = payload.get(off..).unwrap_or_default();
    parse_l4(info, l4, first_frag, true, hop_limit)
}

/// Parses the transport header in `l4` (the bytes after all IP headers up to the IP length).
///
/// TCP and UDP (nearly all traffic) are parsed here, inlined into the IP parsers; the other
/// protocols are in [`parse_l4_other`], kept out of line so that this stays small.
#[inline(always)]
fn parse_l4(
    info: &mut PacketInfo,
    l4: &[u8],
    first_frag: bool,
    v6: bool,
    hop_limit: u8,
) -> Result<(), Malformed> {
    // In a first fragment a cut transport header is a tiny first fragment, not a truncation.
    let cut = |e| if first_frag { Malformed::TinyFirstFragment } else { e };
    match info.proto {
        PROTO_TCP => {
            let Some(t) = l4.first_chunk::<20>() else {
                return Err(cut(Malformed::TruncatedTcp));
            };
            let doff = usize::from(t[12] >> 4) * 4;
            if doff < 20 {
                return Err(Malformed::TcpBadDataOffset);
            }
            if doff > l4.len() {
                return Err(cut(Malformed::TcpBadDataOffset));
            }
            info.sport = be16(t[0], t[1]);
            info.dport = be16(t[2], t[3]);
            info.tcp_seq = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
            info.tcp_ack = u32::from_be_bytes([t[8], t[9], t[10], t[11]]);
            info.tcp_flags = t[13];
            info.tcp_window = be16(t[14], t[15]);
            info.l4_payload_len = (l4.len() - doff) as u32;
        }
        PROTO_UDP => {
            let Some(u) = l4.first_chunk::<8>() else {
                return Err(cut(Malformed::TruncatedUdp));
            };
            let ulen = usize::from(be16(u[4], u[5]));
            if ulen < 8 {
                return Err(Malformed::UdpBadLength);
            }
            info.sport = be16(u[0], u[1]);
            info.dport = be16(u[2], u[3]);
            if first_frag {
                // The UDP length covers the whole datagram, beyond this fragment.
                info.l4_payload_len = (l4.len() - 8) as u32;
            } else {
                if ulen > l4.len() {
                    return Err(Malformed::UdpBadLength);
                }
                info.l4_payload_len = (ulen - 8) as u32;
            }
        }
        _ => return parse_l4_other(info, l4, first_frag, v6, hop_limit),
    }
    Ok(())
}

/// [`parse_l4`] for SCTP, ICMP / ICMPv6 and protocols with no parsed header.
#[inline(never)]
fn parse_l4_other(
    info: &mut PacketInfo,
    l4: &[u8],
    first_frag: bool,
    v6: bool,
    hop_limit: u8,
) -> Result<(), Malformed> {
    let cut = |e| if first_frag { Malformed::TinyFirstFragment } else { e };
    match info.proto {
        PROTO_SCTP => {
            let Some(s) = l4.first_chunk::<12>() else {
                return Err(cut(Malformed::TruncatedSctp));
            };
            info.sport = be16(s[0], s[1]);
            info.dport = be16(s[2], s[3]);
            info.l4_payload_len = (l4.len() - 12) as u32;
        }
        PROTO_ICMP if !v6 => parse_icmp(info, l4, first_frag, false, 0)?,
        PROTO_ICMPV6 if v6 => parse_icmp(info, l4, first_frag, true, hop_limit)?,
        _ => info.l4_payload_len = l4.len() as u32,
    }
    Ok(())
}

#[inline]
fn parse_icmp(
    info: &mut PacketInfo,
    l4: &[u8],
    first_frag: bool,
    v6: bool,
    hop_limit: u8,
) -> Result<(), Malformed> {
    let cut = |e| if first_frag { Malformed::TinyFirstFragment } else { e };
    let Some(ic) = l4.first_chunk::<8>() else {
        return Err(cut(Malformed::TruncatedIcmp));
    };
    let (ty, code) = (ic[0], ic[1]);
    info.icmp_type = ty;
    info.icmp_code = code;
    info.l4_payload_len = (l4.len() - 8) as u32;
    if is_echo(ty, v6) {
        let id = be16(ic[4], ic[5]);
        info.sport = id;
        info.dport = id;
    } else if is_error(ty, v6) {
        let quote = l4.get(8..).unwrap_or_default();
        info.quoted = Some(parse_quote(quote, v6).map_err(cut)?);
    } else if v6 && (133..=137).contains(&ty) {
        info.is_ndp = hop_limit == 255 && info.frag.is_none();
    } else if v6 && matches!(ty, 130..=132 | 143) {
        // MLD (RFC 2710 / 3810): link-local control like ND (multicast-snooping switches need it
        // for ND's own multicast); genuine only with hop limit 1 and a link-local (or, for
        // reports sent before an address is ready, unspecified) source.
        let link_local = match info.src {
            IpAddr::V6(a) => a.is_unspecified() || (a.segments()[0] & 0xffc0) == 0xfe80,
            IpAddr::V4(_) => false,
        };
        info.is_ndp = hop_limit == 1 && info.frag.is_none() && link_local;
    }
    Ok(())
}

#[inline]
fn is_echo(ty: u8, v6: bool) -> bool {
    if v6 {
        matches!(ty, 128 | 129)
    } else {
        matches!(ty, 0 | 8)
    }
}

#[inline]
fn is_error(ty: u8, v6: bool) -> bool {
    if v6 {
        matches!(ty, 1..=4)
    } else {
        matches!(ty, 3 | 11 | 12)
    }
}

/// Parses the header an ICMP error quotes: the inner IP header (same family as the outer
/// packet) and the 8 bytes after it, which hold the ports.
fn parse_quote(q: &[u8], v6: bool) -> Result<Quoted, Malformed> {
    const BAD: Malformed = Malformed::IcmpBadQuote;
    let (src, dst, proto, l4, nonfirst) = if v6 {
        let h = q.first_chunk::<40>().ok_or(BAD)?;
        if h[0] >> 4 != 6 {
            return Err(BAD);
        }
        let rest = q.get(40..).unwrap_or_default();
        let mut nh = h[6];
        let mut off = 0usize;
        let mut walked = 0usize;
        let mut nonfirst = false;
        while matches!(nh, PROTO_HOPOPT | PROTO_ROUTING | PROTO_DSTOPTS | PROTO_FRAGMENT | PROTO_AH) {
            if walked == MAX_EXT_HEADERS {
                return Err(BAD);
            }
            let e = rest.get(off..).and_then(|r| r.first_chunk::<8>()).ok_or(BAD)?;
            let len = match nh {
                PROTO_FRAGMENT => 8,
                PROTO_AH => (usize::from(e[1]) + 2) * 4,
                _ => (usize::from(e[1]) + 1) * 8,
            };
            if nh == PROTO_FRAGMENT && be16(e[2], e[3]) >> 3 != 0 {
                nonfirst = true;
                nh = e[0];
                break;
            }
            nh = e[0];
            off += len;
            walked += 1;
        }
        let l4 = rest.get(off..).unwrap_or_default();
        (v6_addr(h, 8), v6_addr(h, 24), nh, l4, nonfirst)
    } else {
        let h = q.first_chunk::<20>().ok_or(BAD)?;
        if h[0] >> 4 != 4 {
            return Err(BAD);
        }
        let hlen = usize::from(h[0] & 0x0f) * 4;
        if hlen < 20 {
            return Err(BAD);
        }
        let l4 = q.get(hlen..).ok_or(BAD)?;
        let src = IpAddr::V4(Ipv4Addr::new(h[12], h[13], h[14], h[15]));
        let dst = IpAddr::V4(Ipv4Addr::new(h[16], h[17], h[18], h[19]));
        let nonfirst = be16(h[6], h[7]) & 0x1fff != 0;
        (src, dst, h[9], l4, nonfirst)
    };
    let mut quoted = Quoted { src, dst, proto, sport: 0, dport: 0 };
    if nonfirst {
        return Ok(quoted);
    }
    let icmp_proto = if v6 { PROTO_ICMPV6 } else { PROTO_ICMP };
    if matches!(proto, PROTO_TCP | PROTO_UDP | PROTO_SCTP) || proto == icmp_proto {
        let p = l4.first_chunk::<8>().ok_or(BAD)?;
        if proto == icmp_proto {
            if is_echo(p[0], v6) {
                let id = be16(p[4], p[5]);
                quoted.sport = id;
                quoted.dport = id;
            }
        } else {
            quoted.sport = be16(p[0], p[1]);
            quoted.dport = be16(p[2], p[3]);
        }
    }
    Ok(quoted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::{icmp, tcp, v4, v6, Ext, Frame};

    fn a4() -> IpAddr {
        v4(198, 18, 0, 1)
    }
    fn b4() -> IpAddr {
        v4(198, 18, 0, 2)
    }
    fn a6() -> IpAddr {
        v6(1)
    }
    fn b6() -> IpAddr {
        v6(2)
    }

    #[track_caller]
    fn ip(frame: &[u8]) -> PacketInfo {
        match parse(frame) {
            Ok(Parsed::Ip(p)) => p,
            other => panic!("expected an IP packet, got {other:?}"),
        }
    }

    #[track_caller]
    fn err(frame: &[u8]) -> Malformed {
        match parse(frame) {
            Err(e) => e,
            Ok(p) => panic!("expected a rejection, got {p:?}"),
        }
    }

    /// Builds `f`, then lets `edit` patch the bytes (offsets relative to the IP header).
    fn patched(f: &Frame, edit: impl FnOnce(&mut [u8])) -> Vec<u8> {
        let mut b = f.build();
        let l3 = f.l3_offset();
        edit(&mut b[l3..]);
        b
    }

    fn syn4() -> Frame {
        Frame::tcp(a4(), b4(), 40000, 443, tcp::SYN)
    }
    fn syn6() -> Frame {
        Frame::tcp(a6(), b6(), 40000, 443, tcp::SYN)
    }

    // ---- positive ------------------------------------------------------------------------

    #[test]
    fn parse_into_matches_parse_whatever_the_slot_held() {
        let frames = [
            syn4().flags(tcp::PSH_ACK).seq(7).ack(9).window(512).payload(b"hello").build(),
            Frame::udp(a6(), b6(), 1, 2).payload_len(3).vlan(9).build(),
            Frame::echo_request(a4(), b4(), 77, 1).build(),
            Frame::icmp_error(b6(), a6(), 1, 0, &syn6()).build(),
            Frame::arp_request(Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 2)).build(),
            patched(&syn4(), |b| b[0] = 0x65),
            vec![0u8; 10],
        ];
        // Every earlier result as the slot's old content, including a richer packet's fields.
        for old in &frames {
            for f in &frames {
                let mut slot = parse(old);
                parse_into(f, &mut slot);
                assert_eq!(slot, parse(f));
            }
        }
    }

    #[test]
    fn ipv4_tcp_fields() {
        let f = syn4().flags(tcp::PSH_ACK).seq(7).ack(9).window(512).payload(b"hello");
        let p = ip(&f.build());
        assert_eq!((p.src, p.dst, p.proto), (a4(), b4(), 6));
        assert_eq!((p.sport, p.dport), (40000, 443));
        assert_eq!((p.tcp_flags, p.tcp_seq, p.tcp_ack, p.tcp_window), (tcp::PSH_ACK, 7, 9, 512));
        assert_eq!(p.l4_payload_len, 5);
        assert_eq!((p.frag, p.quoted, p.is_ndp, p.vlan_tags), (None, None, false, 0));
    }

    #[test]
    fn ipv4_options_and_tcp_options_are_skipped() {
        let f = syn4().ipv4_options(&[0x94, 4, 0, 0]).tcp_options(&[2, 4, 5, 0xb4]).payload(b"x");
        let p = ip(&f.build());
        assert_eq!((p.sport, p.dport, p.l4_payload_len), (40000, 443, 1));
    }

    #[test]
    fn ethernet_padding_is_ignored() {
        let p = ip(&syn4().pad_to(60).build());
        assert_eq!(p.l4_payload_len, 0);
        let f = Frame::udp(a6(), b6(), 1, 2).payload_len(1).pad_to(100);
        assert_eq!(ip(&f.build()).l4_payload_len, 1);
    }

    #[test]
    fn vlan_tags_every_tpid() {
        assert_eq!(ip(&syn4().vlan(5).build()).vlan_tags, 1);
        assert_eq!(ip(&syn4().vlan(5).vlan(6).build()).vlan_tags, 2);
        for tpid in [TPID_8021Q, TPID_8021AD, TPID_QINQ_OLD] {
            let p = ip(&syn6().vlan_tag(tpid, 7).vlan_tag(TPID_8021Q, 8).build());
            assert_eq!((p.vlan_tags, p.sport), (2, 40000));
        }
    }

    #[test]
    fn arp_and_other_ethertypes() {
        let arp = Frame::arp_request(Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 2));
        assert_eq!(parse(&arp.build()), Ok(Parsed::Arp));
        assert_eq!(parse(&arp.vlan(3).build()), Ok(Parsed::Arp));
        let lldp = Frame::ethertype(0x88cc).payload(&[0; 40]).build();
        assert_eq!(parse(&lldp), Ok(Parsed::OtherEthertype(0x88cc)));
        // An 802.3 length field is not an ethertype we know either.
        assert_eq!(parse(&Frame::ethertype(46).payload(&[0; 46]).build()), Ok(Parsed::OtherEthertype(46)));
    }

    #[test]
    fn udp_and_sctp_both_families() {
        for (s, d) in [(a4(), b4()), (a6(), b6())] {
            let p = ip(&Frame::udp(s, d, 53, 5353).payload_len(9).build());
            assert_eq!((p.proto, p.sport, p.dport, p.l4_payload_len), (17, 53, 5353, 9));
            let p = ip(&Frame::sctp(s, d, 2905, 2906).payload_len(16).build());
            assert_eq!((p.proto, p.sport, p.dport, p.l4_payload_len), (132, 2905, 2906, 16));
        }
    }

    #[test]
    fn udp_trailing_bytes_inside_ip_length_are_allowed() {
        // UDP length 8 inside an IP packet carrying 12 bytes of UDP segment.
        let f = Frame::udp(a4(), b4(), 1, 2).payload_len(4);
        let b = patched(&f, |ip| ip[24..26].copy_from_slice(&8u16.to_be_bytes()));
        assert_eq!(ip(&b).l4_payload_len, 0);
    }

    #[test]
    fn icmp_echo_identifier_in_both_ports() {
        for (s, d) in [(a4(), b4()), (a6(), b6())] {
            let p = ip(&Frame::echo_request(s, d, 0x4242, 1).payload_len(56).build());
            assert_eq!((p.sport, p.dport, p.l4_payload_len), (0x4242, 0x4242, 56));
            let r = ip(&Frame::echo_reply(d, s, 0x4242, 1).build());
            assert_eq!((r.sport, r.dport), (0x4242, 0x4242));
            assert_eq!(p.icmp_type, if s.is_ipv4() { 8 } else { 128 });
            assert_eq!(r.icmp_type, if s.is_ipv4() { 0 } else { 129 });
        }
    }

    #[test]
    fn other_icmp_has_no_ports_and_no_quote() {
        let p = ip(&Frame::icmp(a4(), b4(), 13, 0).payload_len(12).build()); // timestamp
        assert_eq!((p.sport, p.dport, p.icmp_type, p.quoted), (0, 0, 13, None));
    }

    #[test]
    fn icmpv4_errors_quote_the_inner_header() {
        let inner = Frame::tcp(b4(), v4(198, 19, 0, 9), 5555, 80, tcp::SYN).ipv4_options(&[1; 4]);
        for ty in [icmp::V4_DEST_UNREACH, icmp::V4_TIME_EXCEEDED, icmp::V4_PARAM_PROBLEM] {
            let p = ip(&Frame::icmp_error(v4(198, 18, 0, 254), b4(), ty, 1, &inner).build());
            let q = p.quoted.expect("quoted");
            assert_eq!((q.src, q.dst, q.proto, q.sport, q.dport), (b4(), v4(198, 19, 0, 9), 6, 5555, 80));
            assert_eq!((p.icmp_type, p.icmp_code, p.sport, p.dport), (ty, 1, 0, 0));
        }
        let echo = Frame::echo_request(b4(), a4(), 77, 1);
        let q = ip(&Frame::icmp_error(a4(), b4(), 3, 3, &echo).build()).quoted.unwrap();
        assert_eq!((q.proto, q.sport, q.dport), (1, 77, 77));
        // Source quench / redirect are not errors we look into.
        assert_eq!(ip(&Frame::icmp_error(a4(), b4(), 5, 0, &echo).build()).quoted, None);
    }

    #[test]
    fn icmpv6_errors_quote_the_inner_header_and_chain() {
        let inner = Frame::udp(b6(), v6(9), 4000, 53).ext(Ext::DestOpts { len8: 0 });
        for ty in 1..=4 {
            let p = ip(&Frame::icmp_error(a6(), b6(), ty, 0, &inner).build());
            let q = p.quoted.expect("quoted");
            assert_eq!((q.src, q.dst, q.proto, q.sport, q.dport), (b6(), v6(9), 17, 4000, 53));
        }
        let echo = Frame::echo_request(b6(), a6(), 99, 1);
        let q = ip(&Frame::icmp_error(a6(), b6(), 1, 0, &echo).build()).quoted.unwrap();
        assert_eq!((q.proto, q.sport, q.dport), (58, 99, 99));
    }

    #[test]
    fn quote_of_non_first_fragment_has_no_ports() {
        let inner = Frame::udp(b4(), a4(), 1, 2).payload_len(64).frag(16, false);
        let (ipb, hl) = inner.ip_packet();
        let p = ip(&Frame::icmp_error_quoting(a4(), b4(), 11, 1, &ipb[..hl]).build());
        assert_eq!(p.quoted.map(|q| (q.proto, q.sport, q.dport)), Some((17, 0, 0)));
        let inner6 = Frame::udp(b6(), a6(), 1, 2).payload_len(64).frag(16, false);
        let (ipb, hl) = inner6.ip_packet();
        let p = ip(&Frame::icmp_error_quoting(a6(), b6(), 3, 1, &ipb[..hl]).build());
        assert_eq!(p.quoted.map(|q| (q.proto, q.sport, q.dport)), Some((17, 0, 0)));
    }

    #[test]
    fn quote_of_portless_protocol_needs_no_l4_bytes() {
        let inner = Frame::raw_ip(b4(), a4(), 47).payload_len(20); // GRE
        let (ipb, hl) = inner.ip_packet();
        let p = ip(&Frame::icmp_error_quoting(a4(), b4(), 3, 0, &ipb[..hl]).build());
        assert_eq!(p.quoted.map(|q| (q.proto, q.sport)), Some((47, 0)));
    }

    #[test]
    fn ndp_needs_hop_limit_255_and_no_fragment() {
        for ty in 133..=137 {
            assert!(ip(&Frame::icmp(a6(), b6(), ty, 0).build()).is_ndp, "type {ty}");
        }
        assert!(!ip(&Frame::icmp(a6(), b6(), 135, 0).ttl(64).build()).is_ndp);
        assert!(!ip(&Frame::icmp(a6(), b6(), 138, 0).build()).is_ndp);
        assert!(!ip(&Frame::icmp(a6(), b6(), 128, 0).build()).is_ndp);
        let frag = Frame::icmp(a6(), b6(), 135, 0).payload_len(24).frag(0, true);
        assert!(!ip(&frag.build()).is_ndp);
        // ICMPv4 type 134 is not NDP, nor is ICMPv6 under IPv4's protocol number.
        assert!(!ip(&Frame::icmp(a4(), b4(), 134, 0).build()).is_ndp);
    }

    #[test]
    fn mld_needs_hop_limit_1_and_a_link_local_source() {
        let ll: Ipv6Addr = "fe80::1".parse().unwrap();
        let group: Ipv6Addr = "ff02::16".parse().unwrap();
        for ty in [130, 131, 132, 143] {
            let f = Frame::icmp(ll, group, ty, 0).ttl(1);
            assert!(ip(&f.build()).is_ndp, "type {ty}");
        }
        let unspecified = Frame::icmp(Ipv6Addr::UNSPECIFIED, group, 143, 0).ttl(1);
        assert!(ip(&unspecified.build()).is_ndp);
        // Routed (hop limit > 1) or from a global address: an ordinary ICMPv6 packet.
        assert!(!ip(&Frame::icmp(ll, group, 143, 0).ttl(2).build()).is_ndp);
        assert!(!ip(&Frame::icmp(a6(), group, 143, 0).ttl(1).build()).is_ndp);
    }

    #[test]
    fn ipv6_extension_chain_is_walked() {
        let f = syn6()
            .ext(Ext::HopByHop { len8: 0 })
            .ext(Ext::Routing { len8: 2 })
            .ext(Ext::DestOpts { len8: 1 })
            .ext(Ext::Ah { icv_len: 12 })
            .payload(b"data");
        let p = ip(&f.build());
        assert_eq!((p.proto, p.sport, p.dport, p.l4_payload_len), (6, 40000, 443, 4));
    }

    #[test]
    fn ipv6_walk_up_to_the_bound() {
        let mut f = Frame::udp(a6(), b6(), 7, 8);
        for _ in 0..MAX_EXT_HEADERS {
            f = f.ext(Ext::DestOpts { len8: 0 });
        }
        assert_eq!(ip(&f.build()).sport, 7);
    }

    #[test]
    fn unknown_next_header_is_the_protocol() {
        // ESP, no next header, and an unassigned value after destination options.
        for proto in [PROTO_ESP, PROTO_NONE, 253] {
            let f = Frame::raw_ip(a6(), b6(), proto).ext(Ext::DestOpts { len8: 0 }).payload_len(16);
            let p = ip(&f.build());
            assert_eq!((p.proto, p.sport, p.l4_payload_len), (proto, 0, 16));
        }
        let p = ip(&Frame::raw_ip(a4(), b4(), 47).payload_len(24).build());
        assert_eq!((p.proto, p.l4_payload_len), (47, 24));
        // ICMPv6's number under IPv4 is just an unknown protocol.
        let p = ip(&Frame::raw_ip(a4(), b4(), 58).payload_len(2).build());
        assert_eq!((p.proto, p.icmp_type), (58, 0));
    }

    #[test]
    fn ipv4_fragments() {
        let f = Frame::udp(a4(), b4(), 1000, 53).payload_len(100).ip_id(0xbeef);
        let frags = f.fragments(48);
        let first = ip(&frags[0]);
        assert_eq!((first.sport, first.dport), (1000, 53));
        assert_eq!(first.frag, Some(FragInfo { id: 0xbeef, offset: 0, more: true, payload_len: 48 }));
        let second = ip(&frags[1]);
        assert_eq!((second.sport, second.dport, second.proto), (0, 0, 17));
        assert_eq!(second.frag, Some(FragInfo { id: 0xbeef, offset: 48, more: true, payload_len: 48 }));
        let last = ip(&frags[2]);
        assert_eq!(last.frag, Some(FragInfo { id: 0xbeef, offset: 96, more: false, payload_len: 12 }));
        assert_eq!(last.l4_payload_len, 12);
        // DF alone is no fragment.
        assert_eq!(ip(&syn4().dont_frag(true).build()).frag, None);
    }

    #[test]
    fn ipv6_fragments_and_atomic_fragment() {
        let f = syn6().ext(Ext::HopByHop { len8: 0 }).payload_len(100).ip_id(0x0102_0304);
        let frags = f.fragments(64);
        let first = ip(&frags[0]);
        assert_eq!((first.proto, first.sport, first.tcp_flags), (6, 40000, tcp::SYN));
        let fi = first.frag.unwrap();
        assert_eq!((fi.id, fi.offset, fi.more, fi.payload_len), (0x0102_0304, 0, true, 64));
        let second = ip(&frags[1]);
        assert_eq!((second.proto, second.sport), (6, 0));
        assert_eq!(second.frag, Some(FragInfo { id: 0x0102_0304, offset: 64, more: false, payload_len: 56 }));
        let atomic = ip(&syn6().frag(0, false).build());
        assert_eq!((atomic.frag, atomic.sport), (None, 40000));
    }

    #[test]
    fn ipv6_first_fragment_with_whole_chain_passes() {
        // Destination options after the Fragment header are part of the fragmentable chain.
        let f = Frame::udp(a6(), b6(), 5, 6)
            .ext(Ext::Fragment { id: 1, offset: 0, more: true })
            .ext(Ext::DestOpts { len8: 0 })
            .payload_len(8);
        let p = ip(&f.build());
        assert_eq!((p.sport, p.frag.map(|f| f.payload_len)), (5, Some(24)));
    }

    // ---- rejections: one per branch -------------------------------------------------------

    #[test]
    fn rejects_truncated_ethernet() {
        assert_eq!(err(&[]), Malformed::TruncatedEthernet);
        assert_eq!(err(&syn4().build()[..13]), Malformed::TruncatedEthernet);
    }

    #[test]
    fn rejects_truncated_vlan() {
        let b = syn4().vlan(1).build();
        assert_eq!(err(&b[..14]), Malformed::TruncatedVlan);
        assert_eq!(err(&b[..17]), Malformed::TruncatedVlan);
        let b = syn4().vlan(1).vlan(2).build();
        assert_eq!(err(&b[..21]), Malformed::TruncatedVlan);
    }

    #[test]
    fn accepts_well_formed_ipv4_options() {
        // NOP, NOP, router alert (type 0x94, length 4), then EOL and padding after it.
        let f = syn4().ipv4_options(&[1, 1, 0x94, 4, 0, 0, 0, 0]).build();
        assert!(matches!(parse(&f), Ok(Parsed::Ip(_))));
        // Garbage after EOL is padding.
        let f = syn4().ipv4_options(&[0, 0xff, 0xff, 0xff]).build();
        assert!(matches!(parse(&f), Ok(Parsed::Ip(_))));
    }

    #[test]
    fn rejects_ipv4_option_without_length() {
        let f = syn4().ipv4_options(&[1, 1, 1, 0x94]).build();
        assert_eq!(err(&f), Malformed::Ipv4BadOptions);
    }

    #[test]
    fn rejects_ipv4_option_length_below_two() {
        let f = syn4().ipv4_options(&[0x94, 1, 0, 0]).build();
        assert_eq!(err(&f), Malformed::Ipv4BadOptions);
    }

    #[test]
    fn rejects_ipv4_option_past_header() {
        let f = syn4().ipv4_options(&[0x94, 8, 0, 0]).build();
        assert_eq!(err(&f), Malformed::Ipv4BadOptions);
    }

    #[test]
    fn rejects_third_vlan_tag() {
        let b = syn4().vlan(1).vlan(2).vlan(3).build();
        assert_eq!(err(&b), Malformed::TooManyVlanTags);
        let b = syn4().vlan_tag(0x9100, 1).vlan_tag(0x88a8, 2).vlan_tag(0x8100, 3).build();
        assert_eq!(err(&b), Malformed::TooManyVlanTags);
    }

    #[test]
    fn rejects_truncated_arp() {
        let b = Frame::arp_request(Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 2)).build();
        assert_eq!(err(&b[..14 + 27]), Malformed::TruncatedArp);
    }

    #[test]
    fn rejects_truncated_ipv4() {
        let b = syn4().build();
        assert_eq!(err(&b[..14 + 19]), Malformed::TruncatedIpv4);
        assert_eq!(err(&b[..14]), Malformed::TruncatedIpv4);
    }

    #[test]
    fn rejects_bad_ip_version() {
        assert_eq!(err(&patched(&syn4(), |ip| ip[0] = 0x65)), Malformed::BadIpVersion);
        assert_eq!(err(&patched(&syn6(), |ip| ip[0] = 0x40)), Malformed::BadIpVersion);
    }

    #[test]
    fn rejects_ipv4_ihl_below_5() {
        for ihl in 0..5 {
            assert_eq!(err(&patched(&syn4(), |ip| ip[0] = 0x40 | ihl)), Malformed::Ipv4BadIhl);
        }
    }

    #[test]
    fn rejects_ipv4_ihl_past_frame() {
        // IHL 15 = 60 bytes of header in a 40-byte packet (total length left consistent).
        let b = patched(&syn4(), |ip| {
            ip[0] = 0x4f;
            ip[2..4].copy_from_slice(&60u16.to_be_bytes());
        });
        assert_eq!(err(&b), Malformed::Ipv4BadLength);
    }

    #[test]
    fn rejects_ipv4_total_length_below_header() {
        let b = patched(&syn4(), |ip| ip[2..4].copy_from_slice(&19u16.to_be_bytes()));
        assert_eq!(err(&b), Malformed::Ipv4BadLength);
    }

    #[test]
    fn rejects_ipv4_total_length_past_frame() {
        let b = patched(&syn4(), |ip| ip[2..4].copy_from_slice(&41u16.to_be_bytes()));
        assert_eq!(err(&b), Malformed::Ipv4BadLength);
    }

    #[test]
    fn rejects_truncated_ipv6() {
        assert_eq!(err(&syn6().build()[..14 + 39]), Malformed::TruncatedIpv6);
    }

    #[test]
    fn rejects_ipv6_payload_length_past_frame() {
        let b = patched(&syn6(), |ip| ip[4..6].copy_from_slice(&21u16.to_be_bytes()));
        assert_eq!(err(&b), Malformed::Ipv6BadLength);
    }

    #[test]
    fn rejects_ipv6_ext_header_start_cut() {
        // Next header says hop-by-hop, but the payload ends after 4 bytes.
        let f = Frame::raw_ip(a6(), b6(), PROTO_NONE).ext(Ext::Raw { code: 0, bytes: vec![0, 0, 0] });
        assert_eq!(err(&f.build()), Malformed::Ipv6BadExtHeader);
    }

    #[test]
    fn rejects_ipv6_ext_header_length_past_packet() {
        // Destination options claiming 16 bytes with 8 present.
        let f = Frame::raw_ip(a6(), b6(), PROTO_NONE)
            .ext(Ext::Raw { code: 60, bytes: vec![1, 1, 4, 0, 0, 0, 0] });
        assert_eq!(err(&f.build()), Malformed::Ipv6BadExtHeader);
    }

    #[test]
    fn rejects_ipv6_misplaced_hop_by_hop() {
        let f = syn6().ext(Ext::DestOpts { len8: 0 }).ext(Ext::HopByHop { len8: 0 });
        assert_eq!(err(&f.build()), Malformed::Ipv6BadExtHeader);
    }

    #[test]
    fn rejects_ipv6_short_ah() {
        // AH payload length 0 = 8 bytes, below the 12-byte minimum.
        let f = syn6().ext(Ext::Raw { code: 51, bytes: vec![0, 0, 0, 0, 0, 0, 0] });
        assert_eq!(err(&f.build()), Malformed::Ipv6BadExtHeader);
    }

    #[test]
    fn rejects_ipv6_second_fragment_header() {
        let f = syn6().ext(Ext::Fragment { id: 1, offset: 0, more: false }).ext(Ext::Fragment {
            id: 2,
            offset: 0,
            more: false,
        });
        assert_eq!(err(&f.build()), Malformed::Ipv6BadExtHeader);
    }

    #[test]
    fn rejects_ipv6_chain_past_the_bound() {
        let mut f = syn6();
        for _ in 0..=MAX_EXT_HEADERS {
            f = f.ext(Ext::DestOpts { len8: 0 });
        }
        assert_eq!(err(&f.build()), Malformed::Ipv6TooManyExtHeaders);
    }

    #[test]
    fn rejects_tiny_first_fragment_ipv4_tcp() {
        // A first fragment with 8 bytes of a TCP header (RFC 1858).
        let tcp_head = &syn4().build()[34..42];
        let f = syn4().raw_l4(tcp_head).frag(0, true);
        assert_eq!(err(&f.build()), Malformed::TinyFirstFragment);
    }

    #[test]
    fn rejects_tiny_first_fragment_tcp_options_cut() {
        // The TCP header says 32 bytes (12 of options); the first fragment carries only 24.
        let seg = syn4().tcp_options(&[1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]).build()[34..].to_vec();
        assert_eq!(seg.len(), 32);
        let f = syn4().raw_l4(&seg[..24]).frag(0, true);
        assert_eq!(err(&f.build()), Malformed::TinyFirstFragment);
    }

    #[test]
    fn rejects_tiny_first_fragment_ipv6_chain() {
        // RFC 7112: destination options after the Fragment header cut by the fragment's end.
        let f = Frame::raw_ip(a6(), b6(), PROTO_UDP)
            .ext(Ext::Fragment { id: 1, offset: 0, more: true })
            .ext(Ext::Raw { code: 60, bytes: vec![17, 1, 0, 0, 0, 0, 0] });
        assert_eq!(err(&f.build()), Malformed::TinyFirstFragment);
        // And the L4 header cut in an IPv6 first fragment.
        let g = Frame::raw_ip(a6(), b6(), PROTO_UDP).payload(&[0; 0]).frag(0, true);
        assert_eq!(err(&g.build()), Malformed::TinyFirstFragment);
    }

    #[test]
    fn rejects_tiny_first_fragment_udp_sctp_icmp() {
        let f = Frame::raw_ip(a4(), b4(), PROTO_SCTP).payload(&[0; 8]).frag(0, true);
        assert_eq!(err(&f.build()), Malformed::TinyFirstFragment);
        let f = Frame::raw_ip(a4(), b4(), PROTO_ICMP).payload(&[]).frag(0, true);
        assert_eq!(err(&f.build()), Malformed::TinyFirstFragment);
        // An ICMP error whose quote is cut by the fragment.
        let f = Frame::icmp_error_quoting(a4(), b4(), 3, 0, &[0x45; 8]).frag(0, true);
        assert_eq!(err(&f.build()), Malformed::TinyFirstFragment);
    }

    #[test]
    fn first_fragment_udp_length_may_exceed_the_fragment() {
        let frags = Frame::udp(a4(), b4(), 9, 10).payload_len(200).fragments(64);
        let p = ip(&frags[0]);
        assert_eq!((p.sport, p.l4_payload_len), (9, 56));
    }

    #[test]
    fn rejects_truncated_tcp() {
        let f = syn4().raw_l4(&[0; 19]);
        assert_eq!(err(&f.build()), Malformed::TruncatedTcp);
        assert_eq!(err(&syn6().raw_l4(&[0; 10]).build()), Malformed::TruncatedTcp);
    }

    #[test]
    fn rejects_tcp_data_offset_below_5() {
        let f = syn4();
        let b = patched(&f, |ip| ip[20 + 12] = 4 << 4);
        assert_eq!(err(&b), Malformed::TcpBadDataOffset);
    }

    #[test]
    fn rejects_tcp_data_offset_past_packet() {
        let b = patched(&syn4(), |ip| ip[20 + 12] = 6 << 4);
        assert_eq!(err(&b), Malformed::TcpBadDataOffset);
    }

    #[test]
    fn rejects_truncated_udp() {
        assert_eq!(
            err(&Frame::raw_ip(a4(), b4(), PROTO_UDP).payload(&[0; 7]).build()),
            Malformed::TruncatedUdp
        );
    }

    #[test]
    fn rejects_udp_length_below_8() {
        let f = Frame::udp(a6(), b6(), 1, 2);
        let b = patched(&f, |ip| ip[44..46].copy_from_slice(&7u16.to_be_bytes()));
        assert_eq!(err(&b), Malformed::UdpBadLength);
    }

    #[test]
    fn rejects_udp_length_past_packet() {
        let f = Frame::udp(a4(), b4(), 1, 2).payload_len(4);
        let b = patched(&f, |ip| ip[24..26].copy_from_slice(&13u16.to_be_bytes()));
        assert_eq!(err(&b), Malformed::UdpBadLength);
    }

    #[test]
    fn rejects_truncated_sctp() {
        let f = Frame::raw_ip(a6(), b6(), PROTO_SCTP).payload(&[0; 11]);
        assert_eq!(err(&f.build()), Malformed::TruncatedSctp);
    }

    #[test]
    fn rejects_truncated_icmp() {
        assert_eq!(
            err(&Frame::raw_ip(a4(), b4(), PROTO_ICMP).payload(&[8, 0, 0, 0]).build()),
            Malformed::TruncatedIcmp
        );
        assert_eq!(
            err(&Frame::raw_ip(a6(), b6(), PROTO_ICMPV6).payload(&[128; 7]).build()),
            Malformed::TruncatedIcmp
        );
    }

    #[test]
    fn rejects_fragment_past_65535() {
        // Offset 65528 + 16 bytes: the classic ping of death.
        let f = Frame::raw_ip(a4(), b4(), PROTO_ICMP).payload(&[0; 16]).frag(65528, false);
        assert_eq!(err(&f.build()), Malformed::FragmentTooLong);
        let f = Frame::raw_ip(a6(), b6(), PROTO_UDP).payload(&[0; 16]).frag(65528, false);
        assert_eq!(err(&f.build()), Malformed::FragmentTooLong);
    }

    #[test]
    fn rejects_misaligned_non_last_fragment() {
        let f = Frame::raw_ip(a4(), b4(), 47).payload(&[0; 13]).frag(8, true);
        assert_eq!(err(&f.build()), Malformed::FragmentMisaligned);
        let f = Frame::raw_ip(a6(), b6(), 47).payload(&[0; 13]).frag(8, true);
        assert_eq!(err(&f.build()), Malformed::FragmentMisaligned);
        // The last fragment may end anywhere.
        assert!(parse(&Frame::raw_ip(a4(), b4(), 47).payload(&[0; 13]).frag(8, false).build()).is_ok());
    }

    #[test]
    fn rejects_icmp_quote_too_short_for_inner_header() {
        let f = Frame::icmp_error_quoting(a4(), b4(), 3, 1, &[0x45; 19]);
        assert_eq!(err(&f.build()), Malformed::IcmpBadQuote);
        let f = Frame::icmp_error_quoting(a6(), b6(), 1, 0, &[0x60; 39]);
        assert_eq!(err(&f.build()), Malformed::IcmpBadQuote);
    }

    #[test]
    fn rejects_icmp_quote_without_the_port_bytes() {
        let inner = syn4();
        let (ipb, hl) = inner.ip_packet();
        let f = Frame::icmp_error_quoting(a4(), b4(), 3, 1, &ipb[..hl + 7]);
        assert_eq!(err(&f.build()), Malformed::IcmpBadQuote);
        let (ipb, hl) = syn6().ext(Ext::DestOpts { len8: 0 }).ip_packet();
        let f = Frame::icmp_error_quoting(a6(), b6(), 1, 0, &ipb[..hl + 4]);
        assert_eq!(err(&f.build()), Malformed::IcmpBadQuote);
        // Inner extension chain cut short.
        let f = Frame::icmp_error_quoting(a6(), b6(), 1, 0, &ipb[..44]);
        assert_eq!(err(&f.build()), Malformed::IcmpBadQuote);
    }

    #[test]
    fn rejects_icmp_quote_of_wrong_version_or_ihl() {
        let (mut ipb, _) = syn4().ip_packet();
        ipb[0] = 0x65;
        assert_eq!(err(&Frame::icmp_error_quoting(a4(), b4(), 3, 1, &ipb).build()), Malformed::IcmpBadQuote);
        ipb[0] = 0x44;
        assert_eq!(err(&Frame::icmp_error_quoting(a4(), b4(), 3, 1, &ipb).build()), Malformed::IcmpBadQuote);
        let (ipb, _) = syn4().ip_packet();
        let mut q = ipb.clone();
        q.resize(48, 0); // an IPv4 quote inside an ICMPv6 error
        assert_eq!(err(&Frame::icmp_error_quoting(a6(), b6(), 1, 0, &q).build()), Malformed::IcmpBadQuote);
    }

    #[test]
    fn icmp_quote_ext_chain_past_the_bound() {
        let mut inner = Frame::udp(b6(), a6(), 1, 2);
        for _ in 0..=MAX_EXT_HEADERS {
            inner = inner.ext(Ext::DestOpts { len8: 0 });
        }
        let f = Frame::icmp_error(a6(), b6(), 1, 0, &inner);
        assert_eq!(err(&f.build()), Malformed::IcmpBadQuote);
    }

    /// Every variant has at least one frame above that yields it; this keeps the list honest
    /// when a variant is added.
    #[test]
    fn every_variant_is_reachable() {
        let tcp_head = syn4().build()[34..42].to_vec();
        let samples: Vec<Vec<u8>> = vec![
            vec![0; 13],
            syn4().vlan(1).build()[..16].to_vec(),
            syn4().vlan(1).vlan(2).vlan(3).build(),
            syn4().build()[..30].to_vec(),
            patched(&syn4(), |ip| ip[0] = 0x65),
            patched(&syn4(), |ip| ip[0] = 0x44),
            patched(&syn4(), |ip| ip[2..4].copy_from_slice(&99u16.to_be_bytes())),
            syn6().build()[..50].to_vec(),
            patched(&syn6(), |ip| ip[4..6].copy_from_slice(&99u16.to_be_bytes())),
            syn6().ext(Ext::DestOpts { len8: 0 }).ext(Ext::HopByHop { len8: 0 }).build(),
            (0..9).fold(syn6(), |f, _| f.ext(Ext::DestOpts { len8: 0 })).build(),
            syn4().raw_l4(&tcp_head).frag(0, true).build(),
            syn4().raw_l4(&[0; 3]).build(),
            patched(&syn4(), |ip| ip[32] = 0x10),
            Frame::raw_ip(a4(), b4(), PROTO_UDP).payload(&[0; 7]).build(),
            patched(&Frame::udp(a4(), b4(), 1, 2), |ip| ip[25] = 7),
            Frame::raw_ip(a4(), b4(), PROTO_SCTP).payload(&[0; 7]).build(),
            Frame::raw_ip(a4(), b4(), PROTO_ICMP).payload(&[0; 7]).build(),
            Frame::arp_request(Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST).payload(&[0; 27]).build(),
            Frame::raw_ip(a4(), b4(), 47).payload(&[0; 16]).frag(65528, false).build(),
            Frame::raw_ip(a4(), b4(), 47).payload(&[0; 12]).frag(0, true).build(),
            Frame::icmp_error_quoting(a4(), b4(), 3, 1, &[0x45; 19]).build(),
            syn4().ipv4_options(&[0x94, 8, 0, 0]).build(),
        ];
        let got: Vec<Malformed> = samples.iter().map(|s| err(s)).collect();
        assert_eq!(got, Malformed::ALL.to_vec());
    }

    #[test]
    fn malformed_tables_are_in_sync() {
        for (i, m) in Malformed::ALL.iter().enumerate() {
            assert_eq!(*m as usize, i);
        }
        let mut names: Vec<&str> = Malformed::ALL.iter().map(|m| m.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Malformed::COUNT);
    }
}
