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
//! - IPv4 options are skipped, not interpreted. IPv6 jumbograms (payload length 0 with a
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
//!   not a fragment (RFC 6980); otherwise it is an ordinary ICMPv6 packet judged by policy.

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
    let Some((eth, mut rest)) = frame.split_first_chunk::<14>() else {
        return Err(Malformed::TruncatedEthernet);
    };
    let mut ethertype = u16::from_be_bytes([eth[12], eth[13]]);
    let mut tags = 0u8;
    while matches!(ethertype, TPID_8021Q | TPID_8021AD | TPID_QINQ_OLD) {
        if tags == 2 {
            return Err(Malformed::TooManyVlanTags);
        }
        let Some((tag, r)) = rest.split_first_chunk::<4>() else {
            return Err(Malformed::TruncatedVlan);
        };
        ethertype = u16::from_be_bytes([tag[2], tag[3]]);
        rest = r;
        tags += 1;
    }
    match ethertype {
        ETH_IPV4 => parse_ipv4(rest, tags).map(Parsed::Ip),
        ETH_IPV6 => parse_ipv6(rest, tags).map(Parsed::Ip),
        ETH_ARP if rest.len() < 28 => Err(Malformed::TruncatedArp),
        ETH_ARP => Ok(Parsed::Arp),
        other => Ok(Parsed::OtherEthertype(other)),
    }
}

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
fn parse_ipv4(l3: &[u8], vlan_tags: u8) -> Result<PacketInfo, Malformed> {
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
    let src = IpAddr::V4(Ipv4Addr::new(h[12], h[13], h[14], h[15]));
    let dst = IpAddr::V4(Ipv4Addr::new(h[16], h[17], h[18], h[19]));
    let mut info = blank(src, dst, h[9], vlan_tags);
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
            return Ok(info);
        }
        first_frag = true;
    }
    parse_l4(&mut info, body, first_frag, false, 0)?;
    Ok(info)
}

#[inline]
fn parse_ipv6(l3: &[u8], vlan_tags: u8) -> Result<PacketInfo, Malformed> {
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
    let mut info = blank(v6_addr(h, 8), v6_addr(h, 24), 0, vlan_tags);
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
                    return Ok(info);
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
    parse_l4(&mut info, l4, first_frag, true, hop_limit)?;
    Ok(info)
}

/// Parses the transport header in `l4` (the bytes after all IP headers up to the IP length).
#[inline]
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
