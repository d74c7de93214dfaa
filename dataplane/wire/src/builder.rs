//! Frame builder for tests, benchmarks and end-to-end helpers.
//!
//! CONTRACT: a [`Frame`] is a description of one Ethernet frame. [`Frame::build`] /
//! [`Frame::build_into`] serialise it with correct lengths and checksums (IPv4 header, TCP, UDP,
//! ICMP, ICMPv6 with the pseudo-header, SCTP CRC32c), unless an override asks for a wrong value.
//! The address family of the packet follows the addresses given to the constructor.
//!
//! This module is tooling, not packet path: building allocates (a temporary L4 buffer per call),
//! so build frames once, before a timing loop. Inconsistent descriptions that cannot be encoded
//! (mixed IPv4/IPv6 addresses, more than 65535 bytes) panic with a message: that is a bug in the
//! caller's test, not input from the wire.
//!
//! ```
//! use bulkhead_wire::builder::{Frame, tcp};
//! let frame = Frame::tcp([198, 18, 0, 1], [198, 18, 0, 2], 40000, 443, tcp::SYN)
//!     .vlan(100)
//!     .seq(1000)
//!     .payload(b"hello")
//!     .build();
//! let parsed = bulkhead_wire::parse(&frame).unwrap();
//! # let _ = parsed;
//! ```
//!
//! Fragments: [`Frame::frag`] sets the fragment fields of a single frame (the frame carries the
//! whole L4 segment, or [`Frame::raw_l4`] bytes); [`Frame::fragments`] builds the whole datagram
//! and splits it into real fragments (IPv4 MF/offset, or an IPv6 Fragment header after the
//! listed extension headers).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// TCP flag bits.
pub mod tcp {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;
    pub const SYN_ACK: u8 = SYN | ACK;
    pub const FIN_ACK: u8 = FIN | ACK;
    pub const PSH_ACK: u8 = PSH | ACK;
    pub const RST_ACK: u8 = RST | ACK;
}

/// Ethertypes and IP protocol numbers used by the builder and the parser.
pub mod consts {
    pub const ETH_IPV4: u16 = 0x0800;
    pub const ETH_ARP: u16 = 0x0806;
    pub const ETH_IPV6: u16 = 0x86dd;
    pub const TPID_8021Q: u16 = 0x8100;
    pub const TPID_8021AD: u16 = 0x88a8;
    pub const TPID_QINQ_OLD: u16 = 0x9100;
    pub const PROTO_HOPOPT: u8 = 0;
    pub const PROTO_ICMP: u8 = 1;
    pub const PROTO_TCP: u8 = 6;
    pub const PROTO_UDP: u8 = 17;
    pub const PROTO_ROUTING: u8 = 43;
    pub const PROTO_FRAGMENT: u8 = 44;
    pub const PROTO_ESP: u8 = 50;
    pub const PROTO_AH: u8 = 51;
    pub const PROTO_ICMPV6: u8 = 58;
    pub const PROTO_NONE: u8 = 59;
    pub const PROTO_DSTOPTS: u8 = 60;
    pub const PROTO_SCTP: u8 = 132;
}

/// ICMP / ICMPv6 type numbers.
pub mod icmp {
    pub const V4_ECHO_REPLY: u8 = 0;
    pub const V4_DEST_UNREACH: u8 = 3;
    pub const V4_ECHO_REQUEST: u8 = 8;
    pub const V4_TIME_EXCEEDED: u8 = 11;
    pub const V4_PARAM_PROBLEM: u8 = 12;
    pub const V6_DEST_UNREACH: u8 = 1;
    pub const V6_PACKET_TOO_BIG: u8 = 2;
    pub const V6_TIME_EXCEEDED: u8 = 3;
    pub const V6_PARAM_PROBLEM: u8 = 4;
    pub const V6_ECHO_REQUEST: u8 = 128;
    pub const V6_ECHO_REPLY: u8 = 129;
    pub const V6_ROUTER_SOLICIT: u8 = 133;
    pub const V6_ROUTER_ADVERT: u8 = 134;
    pub const V6_NEIGHBOR_SOLICIT: u8 = 135;
    pub const V6_NEIGHBOR_ADVERT: u8 = 136;
    pub const V6_REDIRECT: u8 = 137;
}

use consts::*;

/// An IPv6 extension header to put between the fixed header and the transport header, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ext {
    /// Hop-by-hop options; `len8` is the Hdr Ext Len field (header size = (len8 + 1) * 8 bytes),
    /// filled with one PadN option.
    HopByHop { len8: u8 },
    /// Destination options, encoded like [`Ext::HopByHop`].
    DestOpts { len8: u8 },
    /// Routing header (type 253, experimental; segments left 0), size (len8 + 1) * 8 bytes.
    Routing { len8: u8 },
    /// Fragment header (8 bytes). `offset` in bytes (multiple of 8).
    Fragment { id: u32, offset: u32, more: bool },
    /// Authentication header with `icv_len` bytes of ICV (header = 12 + icv_len bytes).
    Ah { icv_len: u8 },
    /// Anything: `code` is the value the previous header's Next Header field gets; `bytes` is the
    /// header from its second byte on (the builder writes the Next Header byte itself).
    Raw { code: u8, bytes: Vec<u8> },
}

impl Ext {
    fn code(&self) -> u8 {
        match self {
            Ext::HopByHop { .. } => PROTO_HOPOPT,
            Ext::DestOpts { .. } => PROTO_DSTOPTS,
            Ext::Routing { .. } => PROTO_ROUTING,
            Ext::Fragment { .. } => PROTO_FRAGMENT,
            Ext::Ah { .. } => PROTO_AH,
            Ext::Raw { code, .. } => *code,
        }
    }

    fn write(&self, next: u8, out: &mut Vec<u8>) {
        match self {
            Ext::HopByHop { len8 } | Ext::DestOpts { len8 } => {
                let total = (usize::from(*len8) + 1) * 8;
                out.push(next);
                out.push(*len8);
                // One PadN option covering the rest of the header.
                out.push(1);
                out.push((total - 4) as u8);
                out.resize(out.len() + total - 4, 0);
            }
            Ext::Routing { len8 } => {
                let total = (usize::from(*len8) + 1) * 8;
                out.extend_from_slice(&[next, *len8, 253, 0]);
                out.resize(out.len() + total - 4, 0);
            }
            Ext::Fragment { id, offset, more } => {
                out.extend_from_slice(&[next, 0]);
                let off = ((*offset / 8) as u16) << 3 | u16::from(*more);
                out.extend_from_slice(&off.to_be_bytes());
                out.extend_from_slice(&id.to_be_bytes());
            }
            Ext::Ah { icv_len } => {
                let total = 12 + usize::from(*icv_len);
                out.push(next);
                out.push((total / 4 - 2) as u8);
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(&0x0000_1000u32.to_be_bytes()); // SPI
                out.extend_from_slice(&1u32.to_be_bytes()); // sequence number
                out.resize(out.len() + usize::from(*icv_len), 0xab);
            }
            Ext::Raw { bytes, .. } => {
                out.push(next);
                out.extend_from_slice(bytes);
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Net {
    Ip { src: IpAddr, dst: IpAddr },
    Arp { sender: Ipv4Addr, target: Ipv4Addr, op: u16 },
    Other { ethertype: u16 },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum L4 {
    Tcp {
        sport: u16,
        dport: u16,
        flags: u8,
        seq: u32,
        ack: u32,
        window: u16,
        options: Vec<u8>,
    },
    Udp {
        sport: u16,
        dport: u16,
    },
    Sctp {
        sport: u16,
        dport: u16,
        vtag: u32,
    },
    /// ICMP (v4 or v6 by the address family): type, code and the 4 "rest of header" bytes.
    Icmp {
        ty: u8,
        code: u8,
        rest: [u8; 4],
    },
    /// No transport header: the payload is the whole IP payload, under this protocol number.
    Raw {
        proto: u8,
    },
}

/// One Ethernet frame to build. See the module docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    /// (TPID, TCI), outermost first.
    vlans: Vec<(u16, u16)>,
    net: Net,
    l4: L4,
    ttl: u8,
    tos: u8,
    ip_id: u32,
    dont_frag: bool,
    flow_label: u32,
    frag: Option<(u32, bool)>,
    ipv4_options: Vec<u8>,
    ipv6_ext: Vec<Ext>,
    payload: Vec<u8>,
    l4_raw: Option<Vec<u8>>,
    pad_to: usize,
}

/// Default source MAC (locally administered).
pub const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// Default destination MAC (locally administered).
pub const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

impl Frame {
    fn new(net: Net, l4: L4) -> Frame {
        Frame {
            src_mac: SRC_MAC,
            dst_mac: DST_MAC,
            vlans: Vec::new(),
            net,
            l4,
            ttl: 64,
            tos: 0,
            ip_id: 0x1234,
            dont_frag: false,
            flow_label: 0,
            frag: None,
            ipv4_options: Vec::new(),
            ipv6_ext: Vec::new(),
            payload: Vec::new(),
            l4_raw: None,
            pad_to: 0,
        }
    }

    fn ip(src: impl Into<IpAddr>, dst: impl Into<IpAddr>, l4: L4) -> Frame {
        let (src, dst) = (src.into(), dst.into());
        assert_eq!(src.is_ipv4(), dst.is_ipv4(), "builder: mixed address families {src} -> {dst}");
        Frame::new(Net::Ip { src, dst }, l4)
    }

    /// A TCP segment (seq 1, ack 0 or 1 when ACK is set, window 65535, no options, no payload).
    pub fn tcp(src: impl Into<IpAddr>, dst: impl Into<IpAddr>, sport: u16, dport: u16, flags: u8) -> Frame {
        let ack = u32::from(flags & tcp::ACK != 0);
        let l4 = L4::Tcp { sport, dport, flags, seq: 1, ack, window: 65535, options: Vec::new() };
        Frame::ip(src, dst, l4)
    }

    /// A UDP datagram.
    pub fn udp(src: impl Into<IpAddr>, dst: impl Into<IpAddr>, sport: u16, dport: u16) -> Frame {
        Frame::ip(src, dst, L4::Udp { sport, dport })
    }

    /// An SCTP packet (common header only, plus the payload as chunks if given).
    pub fn sctp(src: impl Into<IpAddr>, dst: impl Into<IpAddr>, sport: u16, dport: u16) -> Frame {
        Frame::ip(src, dst, L4::Sctp { sport, dport, vtag: 0x0102_0304 })
    }

    /// An ICMP (IPv4) or ICMPv6 (IPv6) message with the given type and code, rest-of-header zero.
    /// Neighbour discovery (ICMPv6 133..=137) gets hop limit 255, as RFC 4861 requires.
    pub fn icmp(src: impl Into<IpAddr>, dst: impl Into<IpAddr>, ty: u8, code: u8) -> Frame {
        let f = Frame::ip(src, dst, L4::Icmp { ty, code, rest: [0; 4] });
        let ndp = matches!(f.net, Net::Ip { src: IpAddr::V6(_), .. }) && (133..=137).contains(&ty);
        if ndp {
            f.ttl(255)
        } else {
            f
        }
    }

    /// An echo request (ICMP type 8 or ICMPv6 type 128) with identifier and sequence number.
    pub fn echo_request(src: impl Into<IpAddr>, dst: impl Into<IpAddr>, id: u16, seq: u16) -> Frame {
        let (src, dst) = (src.into(), dst.into());
        let ty = if src.is_ipv4() { icmp::V4_ECHO_REQUEST } else { icmp::V6_ECHO_REQUEST };
        Frame::icmp(src, dst, ty, 0).icmp_rest(echo_rest(id, seq))
    }

    /// An echo reply (ICMP type 0 or ICMPv6 type 129) with identifier and sequence number.
    pub fn echo_reply(src: impl Into<IpAddr>, dst: impl Into<IpAddr>, id: u16, seq: u16) -> Frame {
        let (src, dst) = (src.into(), dst.into());
        let ty = if src.is_ipv4() { icmp::V4_ECHO_REPLY } else { icmp::V6_ECHO_REPLY };
        Frame::icmp(src, dst, ty, 0).icmp_rest(echo_rest(id, seq))
    }

    /// An ICMP / ICMPv6 error from `src` to `dst` quoting `inner`'s IP header (with IPv4 options
    /// or IPv6 extension headers) and the first 8 bytes after it, as routers send them.
    pub fn icmp_error(
        src: impl Into<IpAddr>,
        dst: impl Into<IpAddr>,
        ty: u8,
        code: u8,
        inner: &Frame,
    ) -> Frame {
        let (ip, hdr_len) = inner.ip_packet();
        let quote = &ip[..ip.len().min(hdr_len + 8)];
        Frame::icmp_error_quoting(src, dst, ty, code, quote)
    }

    /// An ICMP / ICMPv6 error quoting exactly `quoted` (for truncated or odd quotes).
    pub fn icmp_error_quoting(
        src: impl Into<IpAddr>,
        dst: impl Into<IpAddr>,
        ty: u8,
        code: u8,
        quoted: &[u8],
    ) -> Frame {
        Frame::icmp(src, dst, ty, code).payload(quoted)
    }

    /// A transport protocol the builder has no header for: `payload` is the whole IP payload.
    pub fn raw_ip(src: impl Into<IpAddr>, dst: impl Into<IpAddr>, proto: u8) -> Frame {
        Frame::ip(src, dst, L4::Raw { proto })
    }

    /// An ARP request (who has `target`? tell `sender`).
    pub fn arp_request(sender: Ipv4Addr, target: Ipv4Addr) -> Frame {
        let mut f = Frame::new(Net::Arp { sender, target, op: 1 }, L4::Raw { proto: 0 });
        f.dst_mac = [0xff; 6];
        f
    }

    /// A frame of another ethertype carrying `payload` as is.
    pub fn ethertype(ethertype: u16) -> Frame {
        Frame::new(Net::Other { ethertype }, L4::Raw { proto: 0 })
    }

    // ---- modifiers -------------------------------------------------------------------------

    /// Source and destination MAC addresses.
    #[must_use]
    pub fn macs(mut self, src: [u8; 6], dst: [u8; 6]) -> Frame {
        self.src_mac = src;
        self.dst_mac = dst;
        self
    }

    /// Pushes a VLAN tag (innermost so far) with VLAN id `vid`. The first tag of a QinQ pair gets
    /// TPID 0x88a8 (802.1ad), a lone or inner tag 0x8100 (802.1Q).
    #[must_use]
    pub fn vlan(mut self, vid: u16) -> Frame {
        self.vlans.push((TPID_8021Q, vid & 0x0fff));
        if self.vlans.len() >= 2 {
            let n = self.vlans.len();
            self.vlans[n - 2].0 = TPID_8021AD;
        }
        self
    }

    /// Pushes a VLAN tag with an explicit TPID and TCI (priority, DEI and id), kept as given.
    #[must_use]
    pub fn vlan_tag(mut self, tpid: u16, tci: u16) -> Frame {
        self.vlans.push((tpid, tci));
        self
    }

    /// TCP sequence number.
    #[must_use]
    pub fn seq(mut self, seq: u32) -> Frame {
        if let L4::Tcp { seq: s, .. } = &mut self.l4 {
            *s = seq;
        }
        self
    }

    /// TCP acknowledgement number.
    #[must_use]
    pub fn ack(mut self, ack: u32) -> Frame {
        if let L4::Tcp { ack: a, .. } = &mut self.l4 {
            *a = ack;
        }
        self
    }

    /// TCP window.
    #[must_use]
    pub fn window(mut self, window: u16) -> Frame {
        if let L4::Tcp { window: w, .. } = &mut self.l4 {
            *w = window;
        }
        self
    }

    /// TCP flags (replaces those given to the constructor).
    #[must_use]
    pub fn flags(mut self, flags: u8) -> Frame {
        if let L4::Tcp { flags: f, .. } = &mut self.l4 {
            *f = flags;
        }
        self
    }

    /// TCP options (padded with zeros to a multiple of 4 bytes).
    #[must_use]
    pub fn tcp_options(mut self, options: &[u8]) -> Frame {
        if let L4::Tcp { options: o, .. } = &mut self.l4 {
            o.clear();
            o.extend_from_slice(options);
            o.resize(options.len().div_ceil(4) * 4, 0);
        }
        self
    }

    /// ICMP rest-of-header (identifier+sequence, MTU, pointer, ...).
    #[must_use]
    pub fn icmp_rest(mut self, rest: [u8; 4]) -> Frame {
        if let L4::Icmp { rest: r, .. } = &mut self.l4 {
            *r = rest;
        }
        self
    }

    /// SCTP verification tag.
    #[must_use]
    pub fn sctp_vtag(mut self, vtag: u32) -> Frame {
        if let L4::Sctp { vtag: v, .. } = &mut self.l4 {
            *v = vtag;
        }
        self
    }

    /// Transport payload (after the transport header). For ARP / other ethertypes: the frame
    /// payload after the (VLAN tags and) ethertype, replacing the ARP body for ARP.
    #[must_use]
    pub fn payload(mut self, payload: &[u8]) -> Frame {
        self.payload.clear();
        self.payload.extend_from_slice(payload);
        self
    }

    /// `len` bytes of transport payload (a counting pattern).
    #[must_use]
    pub fn payload_len(mut self, len: usize) -> Frame {
        self.payload = (0..len).map(|i| i as u8).collect();
        self
    }

    /// Replaces the whole L4 segment (header and payload) with `bytes`, written as is: no
    /// checksum is computed. The IP protocol number stays the constructor's.
    #[must_use]
    pub fn raw_l4(mut self, bytes: &[u8]) -> Frame {
        self.l4_raw = Some(bytes.to_vec());
        self
    }

    /// IPv4 TTL / IPv6 hop limit.
    #[must_use]
    pub fn ttl(mut self, ttl: u8) -> Frame {
        self.ttl = ttl;
        self
    }

    /// IPv4 TOS / IPv6 traffic class.
    #[must_use]
    pub fn tos(mut self, tos: u8) -> Frame {
        self.tos = tos;
        self
    }

    /// IPv6 flow label (20 bits).
    #[must_use]
    pub fn flow_label(mut self, label: u32) -> Frame {
        self.flow_label = label & 0xf_ffff;
        self
    }

    /// IPv4 identification (low 16 bits) or IPv6 fragment identification.
    #[must_use]
    pub fn ip_id(mut self, id: u32) -> Frame {
        self.ip_id = id;
        self
    }

    /// IPv4 don't-fragment flag.
    #[must_use]
    pub fn dont_frag(mut self, df: bool) -> Frame {
        self.dont_frag = df;
        self
    }

    /// IPv4 options (padded with End-of-Options zeros to a multiple of 4 bytes).
    #[must_use]
    pub fn ipv4_options(mut self, options: &[u8]) -> Frame {
        self.ipv4_options.clear();
        self.ipv4_options.extend_from_slice(options);
        self.ipv4_options.resize(options.len().div_ceil(4) * 4, 0);
        self
    }

    /// Appends an IPv6 extension header (after those already added).
    #[must_use]
    pub fn ext(mut self, ext: Ext) -> Frame {
        self.ipv6_ext.push(ext);
        self
    }

    /// Marks this frame as a fragment at byte `offset` (multiple of 8) with the more-fragments
    /// flag. IPv4: the header fields. IPv6: a Fragment header after the listed extension headers
    /// (unless one was listed explicitly). The frame carries the L4 segment as built.
    #[must_use]
    pub fn frag(mut self, offset: u32, more: bool) -> Frame {
        self.frag = Some((offset, more));
        self
    }

    /// Pads the frame with zeros to at least `len` bytes (60 = the Ethernet minimum without FCS).
    #[must_use]
    pub fn pad_to(mut self, len: usize) -> Frame {
        self.pad_to = len;
        self
    }

    // ---- output ----------------------------------------------------------------------------

    /// The frame's bytes.
    pub fn build(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.payload.len());
        self.append_to(&mut out);
        out
    }

    /// Clears `out` and writes the frame into it.
    pub fn build_into(&self, out: &mut Vec<u8>) {
        out.clear();
        self.append_to(out);
    }

    /// Appends the frame's bytes to `out`.
    pub fn append_to(&self, out: &mut Vec<u8>) {
        let start = out.len();
        match &self.net {
            Net::Ip { src, dst } => {
                let l4 = self.l4_segment();
                self.write_eth(out, if src.is_ipv4() { ETH_IPV4 } else { ETH_IPV6 });
                let frag_ext = self.frag.map(|(off, more)| (self.ip_id, off, more));
                self.write_ip(out, *src, *dst, &l4, frag_ext);
            }
            Net::Arp { sender, target, op } => {
                self.write_eth(out, ETH_ARP);
                if self.payload.is_empty() {
                    out.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4]);
                    out.extend_from_slice(&op.to_be_bytes());
                    out.extend_from_slice(&self.src_mac);
                    out.extend_from_slice(&sender.octets());
                    out.extend_from_slice(&[0; 6]);
                    out.extend_from_slice(&target.octets());
                } else {
                    out.extend_from_slice(&self.payload);
                }
            }
            Net::Other { ethertype } => {
                self.write_eth(out, *ethertype);
                out.extend_from_slice(&self.payload);
            }
        }
        let len = out.len() - start;
        if len < self.pad_to {
            out.resize(start + self.pad_to, 0);
        }
    }

    /// Builds the whole datagram and splits its fragmentable part (the L4 segment) into
    /// fragments carrying at most `max_chunk` bytes each (rounded down to a multiple of 8, at
    /// least 8). All fragments share [`Frame::ip_id`]. In order, first fragment first.
    pub fn fragments(&self, max_chunk: usize) -> Vec<Vec<u8>> {
        let Net::Ip { src, dst } = self.net else {
            panic!("builder: fragments() needs an IP frame");
        };
        let chunk = (max_chunk / 8).max(1) * 8;
        let l4 = self.l4_segment();
        let mut frames = Vec::new();
        let mut off = 0;
        loop {
            let end = (off + chunk).min(l4.len());
            let more = end < l4.len();
            let mut out = Vec::new();
            self.write_eth(&mut out, if src.is_ipv4() { ETH_IPV4 } else { ETH_IPV6 });
            self.write_ip(&mut out, src, dst, &l4[off..end], Some((self.ip_id, off as u32, more)));
            if out.len() < self.pad_to {
                out.resize(self.pad_to, 0);
            }
            frames.push(out);
            if !more {
                return frames;
            }
            off = end;
        }
    }

    /// The IP packet alone (no Ethernet), and the length of its IP header(s) (IPv4 header with
    /// options, or IPv6 fixed header plus extension headers).
    pub fn ip_packet(&self) -> (Vec<u8>, usize) {
        let Net::Ip { src, dst } = self.net else {
            panic!("builder: ip_packet() needs an IP frame");
        };
        let l4 = self.l4_segment();
        let mut out = Vec::new();
        let frag_ext = self.frag.map(|(off, more)| (self.ip_id, off, more));
        self.write_ip(&mut out, src, dst, &l4, frag_ext);
        let hdr = out.len() - l4.len();
        (out, hdr)
    }

    /// Offset of the IP (or ARP, ...) header in the built frame: 14 + 4 per VLAN tag.
    pub fn l3_offset(&self) -> usize {
        14 + 4 * self.vlans.len()
    }

    /// Offset of the transport header in the built (unfragmented) frame.
    pub fn l4_offset(&self) -> usize {
        self.l3_offset() + self.ip_packet().1
    }

    /// The IP protocol number of the transport.
    pub fn proto(&self) -> u8 {
        let v4 = matches!(self.net, Net::Ip { src: IpAddr::V4(_), .. });
        match self.l4 {
            L4::Tcp { .. } => PROTO_TCP,
            L4::Udp { .. } => PROTO_UDP,
            L4::Sctp { .. } => PROTO_SCTP,
            L4::Icmp { .. } if v4 => PROTO_ICMP,
            L4::Icmp { .. } => PROTO_ICMPV6,
            L4::Raw { proto } => proto,
        }
    }

    // ---- internals -------------------------------------------------------------------------

    fn write_eth(&self, out: &mut Vec<u8>, ethertype: u16) {
        out.extend_from_slice(&self.dst_mac);
        out.extend_from_slice(&self.src_mac);
        for (tpid, tci) in &self.vlans {
            out.extend_from_slice(&tpid.to_be_bytes());
            out.extend_from_slice(&tci.to_be_bytes());
        }
        out.extend_from_slice(&ethertype.to_be_bytes());
    }

    /// The transport segment with its checksum.
    fn l4_segment(&self) -> Vec<u8> {
        if let Some(raw) = &self.l4_raw {
            return raw.clone();
        }
        let Net::Ip { src, dst } = self.net else {
            return self.payload.clone();
        };
        let proto = self.proto();
        let mut seg = Vec::with_capacity(64 + self.payload.len());
        match &self.l4 {
            L4::Tcp { sport, dport, flags, seq, ack, window, options } => {
                seg.extend_from_slice(&sport.to_be_bytes());
                seg.extend_from_slice(&dport.to_be_bytes());
                seg.extend_from_slice(&seq.to_be_bytes());
                seg.extend_from_slice(&ack.to_be_bytes());
                let words = (20 + options.len()) / 4;
                seg.push((words as u8) << 4);
                seg.push(*flags);
                seg.extend_from_slice(&window.to_be_bytes());
                seg.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
                seg.extend_from_slice(options);
                seg.extend_from_slice(&self.payload);
                let c = l4_checksum(src, dst, proto, &seg);
                seg[16..18].copy_from_slice(&c.to_be_bytes());
            }
            L4::Udp { sport, dport } => {
                let len = u16::try_from(8 + self.payload.len()).expect("builder: UDP too long");
                seg.extend_from_slice(&sport.to_be_bytes());
                seg.extend_from_slice(&dport.to_be_bytes());
                seg.extend_from_slice(&len.to_be_bytes());
                seg.extend_from_slice(&[0, 0]);
                seg.extend_from_slice(&self.payload);
                let c = match l4_checksum(src, dst, proto, &seg) {
                    0 => 0xffff,
                    c => c,
                };
                seg[6..8].copy_from_slice(&c.to_be_bytes());
            }
            L4::Sctp { sport, dport, vtag } => {
                seg.extend_from_slice(&sport.to_be_bytes());
                seg.extend_from_slice(&dport.to_be_bytes());
                seg.extend_from_slice(&vtag.to_be_bytes());
                seg.extend_from_slice(&[0, 0, 0, 0]);
                seg.extend_from_slice(&self.payload);
                let c = crc32c(&seg);
                seg[8..12].copy_from_slice(&c.to_le_bytes());
            }
            L4::Icmp { ty, code, rest } => {
                seg.extend_from_slice(&[*ty, *code, 0, 0]);
                seg.extend_from_slice(rest);
                seg.extend_from_slice(&self.payload);
                let c = if src.is_ipv4() { !fold(sum(0, &seg)) } else { l4_checksum(src, dst, proto, &seg) };
                seg[2..4].copy_from_slice(&c.to_be_bytes());
            }
            L4::Raw { .. } => seg.extend_from_slice(&self.payload),
        }
        seg
    }

    /// Writes the IP header(s) and `body`. `frag` = (id, offset, more) when a fragment.
    fn write_ip(
        &self,
        out: &mut Vec<u8>,
        src: IpAddr,
        dst: IpAddr,
        body: &[u8],
        frag: Option<(u32, u32, bool)>,
    ) {
        let proto = self.proto();
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let start = out.len();
                let hlen = 20 + self.ipv4_options.len();
                assert!(hlen <= 60, "builder: IPv4 options longer than 40 bytes");
                let total = u16::try_from(hlen + body.len()).expect("builder: IPv4 too long");
                out.push(0x40 | (hlen / 4) as u8);
                out.push(self.tos);
                out.extend_from_slice(&total.to_be_bytes());
                out.extend_from_slice(&(self.ip_id as u16).to_be_bytes());
                let mut ff = if self.dont_frag { 0x4000u16 } else { 0 };
                if let Some((_, off, more)) = frag {
                    ff |= ((off / 8) as u16 & 0x1fff) | if more { 0x2000 } else { 0 };
                }
                out.extend_from_slice(&ff.to_be_bytes());
                out.push(self.ttl);
                out.push(proto);
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(&s.octets());
                out.extend_from_slice(&d.octets());
                out.extend_from_slice(&self.ipv4_options);
                let c = !fold(sum(0, &out[start..start + hlen]));
                out[start + 10..start + 12].copy_from_slice(&c.to_be_bytes());
                out.extend_from_slice(body);
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let start = out.len();
                let vtf = 6u32 << 28 | u32::from(self.tos) << 20 | self.flow_label;
                out.extend_from_slice(&vtf.to_be_bytes());
                out.extend_from_slice(&[0, 0, 0, self.ttl]); // length patched below
                out.extend_from_slice(&s.octets());
                out.extend_from_slice(&d.octets());
                let explicit_frag = self.ipv6_ext.iter().any(|e| matches!(e, Ext::Fragment { .. }));
                let auto_frag = match frag {
                    Some((id, offset, more)) if !explicit_frag => Some(Ext::Fragment { id, offset, more }),
                    _ => None,
                };
                let exts: Vec<&Ext> = self.ipv6_ext.iter().chain(auto_frag.as_ref()).collect();
                out[start + 6] = exts.first().map_or(proto, |e| e.code());
                for (i, e) in exts.iter().enumerate() {
                    let next = exts.get(i + 1).map_or(proto, |n| n.code());
                    e.write(next, out);
                }
                out.extend_from_slice(body);
                let plen = u16::try_from(out.len() - start - 40).expect("builder: IPv6 too long");
                out[start + 4..start + 6].copy_from_slice(&plen.to_be_bytes());
            }
            _ => unreachable!("mixed families are rejected by the constructor"),
        }
    }
}

fn echo_rest(id: u16, seq: u16) -> [u8; 4] {
    let [a, b] = id.to_be_bytes();
    let [c, d] = seq.to_be_bytes();
    [a, b, c, d]
}

/// One's-complement sum of 16-bit big-endian words (odd tail padded with zero), not folded.
fn sum(mut acc: u64, bytes: &[u8]) -> u64 {
    let mut chunks = bytes.chunks_exact(2);
    for c in &mut chunks {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// TCP / UDP / ICMPv6 checksum with the IPv4 or IPv6 pseudo-header.
pub fn l4_checksum(src: IpAddr, dst: IpAddr, proto: u8, segment: &[u8]) -> u16 {
    let mut acc = 0;
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            acc = sum(acc, &s.octets());
            acc = sum(acc, &d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            acc = sum(acc, &s.octets());
            acc = sum(acc, &d.octets());
        }
        _ => panic!("builder: mixed address families"),
    }
    acc += u64::from(proto) + segment.len() as u64;
    !fold(sum(acc, segment))
}

/// Internet checksum (RFC 1071) of `bytes`: zero over a header that carries a correct one.
pub fn internet_checksum(bytes: &[u8]) -> u16 {
    !fold(sum(0, bytes))
}

/// CRC32c (Castagnoli), as SCTP uses it (bitwise; tooling, not packet path).
pub fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0x82f6_3b78 } else { crc >> 1 };
        }
    }
    !crc
}

/// Shorthand for an IPv4 address.
pub fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

/// Shorthand for an IPv6 address in 2001:db8::/32 with the last 16 bits `host`.
pub fn v6(host: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_v4_lengths_and_checksums() {
        let f = Frame::tcp([198, 18, 0, 1], [198, 18, 0, 2], 1000, 80, tcp::SYN)
            .payload(b"abc")
            .ipv4_options(&[1, 1, 1]);
        let b = f.build();
        assert_eq!(b.len(), 14 + 24 + 20 + 3);
        assert_eq!(&b[12..14], &[0x08, 0x00]);
        assert_eq!(b[14], 0x46);
        assert_eq!(u16::from_be_bytes([b[16], b[17]]), 24 + 23);
        assert_eq!(internet_checksum(&b[14..38]), 0);
        let seg = &b[38..];
        assert_eq!(l4_checksum(v4(198, 18, 0, 1), v4(198, 18, 0, 2), 6, seg), 0);
        assert_eq!(f.l4_offset(), 38);
    }

    #[test]
    fn udp_v6_with_exts_and_vlans() {
        let f = Frame::udp(v6(1), v6(2), 53, 5353)
            .vlan(10)
            .vlan(20)
            .ext(Ext::HopByHop { len8: 0 })
            .ext(Ext::DestOpts { len8: 1 })
            .payload_len(10);
        let b = f.build();
        assert_eq!(&b[12..14], &[0x88, 0xa8]);
        assert_eq!(&b[16..18], &[0x81, 0x00]);
        assert_eq!(&b[20..22], &[0x86, 0xdd]);
        let ip = &b[22..];
        assert_eq!(ip[6], 0); // hop-by-hop
        assert_eq!(ip[40], 60); // then destination options
        assert_eq!(ip[48], 17); // then UDP
        assert_eq!(u16::from_be_bytes([ip[4], ip[5]]), 8 + 16 + 18);
        let udp = &ip[64..];
        assert_eq!(udp.len(), 18);
        assert_eq!(l4_checksum(v6(1), v6(2), 17, udp), 0);
    }

    #[test]
    fn fragments_split_the_segment() {
        let f = Frame::udp(v4(198, 18, 0, 1), v4(198, 18, 0, 2), 1, 2).payload_len(100).ip_id(7);
        let frags = f.fragments(40);
        assert_eq!(frags.len(), 3);
        let offs: Vec<u16> = frags.iter().map(|b| u16::from_be_bytes([b[20], b[21]])).collect();
        assert_eq!(offs, vec![0x2000, 0x2005, 10]);
        let f6 = Frame::udp(v6(1), v6(2), 1, 2).payload_len(100).ip_id(9);
        let frags = f6.fragments(64);
        assert_eq!(frags.len(), 2);
        assert_eq!(frags[0][14 + 6], 44);
        assert_eq!(&frags[1][14 + 40 + 2..14 + 40 + 8], &[0, 64, 0, 0, 0, 9]);
    }

    #[test]
    fn icmp_error_quotes_header_and_8_bytes() {
        let inner = Frame::tcp(v4(198, 18, 0, 2), v4(198, 18, 0, 9), 5555, 80, tcp::SYN);
        let e = Frame::icmp_error(v4(198, 18, 0, 254), v4(198, 18, 0, 2), 3, 1, &inner).build();
        assert_eq!(e.len(), 14 + 20 + 8 + 28);
        assert_eq!(internet_checksum(&e[34..]), 0);
        assert_eq!(e[34 + 8], 0x45);
    }

    #[test]
    fn crc32c_known_vector() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }
}
