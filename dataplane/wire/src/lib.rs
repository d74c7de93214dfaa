//! Frame parsing for the Bulkhead dataplane.
//!
//! CONTRACT (the engine relies only on this):
//! - [`parse()`] takes one Ethernet frame and returns either a [`Parsed`] summary or the
//!   [`Malformed`] reason it was rejected. It never panics and never allocates, whatever the bytes.
//!   [`parse_into()`] gives the same result written into a caller's slot (the batch path's form).
//! - Every rejection branch has its own [`Malformed`] variant so that drops are counted per reason.
//! - Checksums are not verified (the NIC / kernel does); see the [`mod@parse`] module docs for the full
//!   list of what is checked, the fragment rules and why the views are hand-written rather than
//!   `smoltcp::wire` (which is used as a test oracle).
//!
//! Also here, for tests, benchmarks and replay (not the packet path): [`builder`] builds frames
//! with correct lengths and checksums, [`pcap`] reads and writes classic pcap files.

#![forbid(unsafe_code)]

pub mod builder;
pub mod fast;
pub mod parse;
pub mod pcap;

pub use parse::{parse, parse_into, MAX_EXT_HEADERS};

use std::net::IpAddr;

/// What a frame is, once parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// An IPv4 or IPv6 packet.
    Ip(PacketInfo),
    /// ARP (passes by default: the network breaks otherwise).
    Arp,
    /// Another non-IP ethertype (dropped unless allowed by config).
    OtherEthertype(u16),
}

/// Fragment information of an IP packet (IPv4 fragment fields or an IPv6 Fragment header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragInfo {
    /// IPv4 identification (zero-extended) or IPv6 fragment identification.
    pub id: u32,
    /// Offset of this fragment's payload in the original datagram, in bytes.
    pub offset: u32,
    /// More-fragments flag.
    pub more: bool,
    /// Length of this fragment's fragmentable part in bytes, the unit `offset` counts in:
    /// IPv4 after the header; IPv6 after the Fragment header (a first fragment's extension
    /// headers after the Fragment header are included).
    pub payload_len: u32,
}

/// The header a packet's ICMP / ICMPv6 error message quotes (the offending packet's 5-tuple).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quoted {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    /// Ports of the quoted packet (ICMP echo: identifier in both).
    pub sport: u16,
    pub dport: u16,
}

/// A parsed IP packet: everything the engine needs, copied out of the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketInfo {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// The transport protocol (after walking IPv6 extension headers). For a non-first IPv6
    /// fragment: the Fragment header's next header.
    pub proto: u8,
    /// TCP/UDP/SCTP ports. ICMP/ICMPv6 echo request/reply: the identifier in both (so both
    /// directions share one flow). Other ICMP: 0. Non-first fragments: 0.
    pub sport: u16,
    pub dport: u16,
    /// ICMP / ICMPv6 type and code (0 for other protocols).
    pub icmp_type: u8,
    pub icmp_code: u8,
    /// TCP flags byte (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10, URG 0x20, ECE, CWR).
    pub tcp_flags: u8,
    pub tcp_seq: u32,
    pub tcp_ack: u32,
    pub tcp_window: u16,
    /// Bytes of transport payload in this packet: TCP after the header with options; UDP from
    /// the UDP length (first fragment: what this fragment carries); SCTP after the 12-byte
    /// common header; ICMP after the 8-byte header; non-first fragments and other protocols:
    /// all bytes after the IP header(s).
    pub l4_payload_len: u32,
    /// Some when the packet is a fragment (IPv4 MF set or offset > 0; IPv6 Fragment header that
    /// is not atomic). `None` for atomic IPv6 fragments (offset 0, M = 0): ordinary packets.
    pub frag: Option<FragInfo>,
    /// Some when the packet is an ICMP / ICMPv6 error (dest unreachable, packet too big,
    /// time exceeded, parameter problem) quoting a header.
    pub quoted: Option<Quoted>,
    /// IPv6 link-local control: neighbour discovery (ICMPv6 133..=137, hop limit 255) and
    /// multicast listener discovery (130..=132, 143, hop limit 1, link-local source): passes by
    /// default like ARP.
    pub is_ndp: bool,
    /// VLAN tags seen (0, 1 or 2).
    pub vlan_tags: u8,
}

/// Why a frame was rejected. Each variant is a counted drop reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Malformed {
    /// Shorter than an Ethernet header.
    TruncatedEthernet = 0,
    /// A VLAN tag cut short.
    TruncatedVlan,
    /// More than two VLAN tags.
    TooManyVlanTags,
    TruncatedIpv4,
    /// IPv4 version field is not 4.
    BadIpVersion,
    /// IHL < 5.
    Ipv4BadIhl,
    /// IHL or total length points past the frame, or total length < header length.
    Ipv4BadLength,
    TruncatedIpv6,
    /// IPv6 payload length points past the frame.
    Ipv6BadLength,
    /// An extension header cut short or pointing past the packet.
    Ipv6BadExtHeader,
    /// More extension headers than the fixed bound.
    Ipv6TooManyExtHeaders,
    /// A first fragment that does not carry the whole L4 header (or IPv6 header chain, RFC 7112).
    TinyFirstFragment,
    TruncatedTcp,
    /// TCP data offset < 5 or past the packet.
    TcpBadDataOffset,
    TruncatedUdp,
    /// UDP length < 8 or past the packet.
    UdpBadLength,
    TruncatedSctp,
    TruncatedIcmp,
    /// ARP body shorter than 28 bytes (Ethernet/IPv4 ARP).
    TruncatedArp,
    /// A fragment whose end lies past the largest possible datagram (65535 bytes): the
    /// "ping of death" shape.
    FragmentTooLong,
    /// A fragment other than the last whose payload is not a multiple of 8 bytes.
    FragmentMisaligned,
    /// An ICMP error whose quoted header is cut short (less than the inner IP header plus the
    /// 8 bytes holding the ports), of the wrong IP version, or with a bad inner IHL.
    IcmpBadQuote,
    /// An IPv4 option list that does not parse: an option's length byte missing, below 2, or
    /// running past the header (RFC 791; Linux drops these too).
    Ipv4BadOptions,
}

impl Malformed {
    /// Number of variants (for counter arrays).
    pub const COUNT: usize = Malformed::Ipv4BadOptions as usize + 1;

    /// Every variant, in discriminant order.
    pub const ALL: [Malformed; Malformed::COUNT] = [
        Malformed::TruncatedEthernet,
        Malformed::TruncatedVlan,
        Malformed::TooManyVlanTags,
        Malformed::TruncatedIpv4,
        Malformed::BadIpVersion,
        Malformed::Ipv4BadIhl,
        Malformed::Ipv4BadLength,
        Malformed::TruncatedIpv6,
        Malformed::Ipv6BadLength,
        Malformed::Ipv6BadExtHeader,
        Malformed::Ipv6TooManyExtHeaders,
        Malformed::TinyFirstFragment,
        Malformed::TruncatedTcp,
        Malformed::TcpBadDataOffset,
        Malformed::TruncatedUdp,
        Malformed::UdpBadLength,
        Malformed::TruncatedSctp,
        Malformed::TruncatedIcmp,
        Malformed::TruncatedArp,
        Malformed::FragmentTooLong,
        Malformed::FragmentMisaligned,
        Malformed::IcmpBadQuote,
        Malformed::Ipv4BadOptions,
    ];

    /// A stable snake_case name, used in counters, metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Malformed::TruncatedEthernet => "truncated_ethernet",
            Malformed::TruncatedVlan => "truncated_vlan",
            Malformed::TooManyVlanTags => "too_many_vlan_tags",
            Malformed::TruncatedIpv4 => "truncated_ipv4",
            Malformed::BadIpVersion => "bad_ip_version",
            Malformed::Ipv4BadIhl => "ipv4_bad_ihl",
            Malformed::Ipv4BadLength => "ipv4_bad_length",
            Malformed::TruncatedIpv6 => "truncated_ipv6",
            Malformed::Ipv6BadLength => "ipv6_bad_length",
            Malformed::Ipv6BadExtHeader => "ipv6_bad_ext_header",
            Malformed::Ipv6TooManyExtHeaders => "ipv6_too_many_ext_headers",
            Malformed::TinyFirstFragment => "tiny_first_fragment",
            Malformed::TruncatedTcp => "truncated_tcp",
            Malformed::TcpBadDataOffset => "tcp_bad_data_offset",
            Malformed::TruncatedUdp => "truncated_udp",
            Malformed::UdpBadLength => "udp_bad_length",
            Malformed::TruncatedSctp => "truncated_sctp",
            Malformed::TruncatedIcmp => "truncated_icmp",
            Malformed::TruncatedArp => "truncated_arp",
            Malformed::FragmentTooLong => "fragment_too_long",
            Malformed::FragmentMisaligned => "fragment_misaligned",
            Malformed::IcmpBadQuote => "icmp_bad_quote",
            Malformed::Ipv4BadOptions => "ipv4_bad_options",
        }
    }
}
