//! Flow steering: which worker judges a frame.
//!
//! Connection tracking is per worker, so both directions of a connection must be judged by the
//! same worker. [`Steering`] says how that is ensured; [`FlowSteer::owner`] computes, for software
//! steering, the worker that owns a frame: `symmetric_hash(frame) % workers`.
//!
//! # The hash
//!
//! A bounds-checked peek, much smaller than the engine's parser, reads:
//!
//! * Ethernet, then up to two VLAN tags (802.1Q `0x8100`, 802.1ad `0x88a8`, old QinQ `0x9100`);
//! * IPv4 (version and IHL checked) or IPv6 (hop-by-hop, routing, destination options, AH and
//!   atomic fragment headers walked, at most [`MAX_EXT_HEADERS`]);
//! * the protocol and the two ports of TCP, UDP, UDP-Lite, SCTP and DCCP.
//!
//! The two endpoints `(address, port)` are put in a fixed order before hashing, so a frame and its
//! reply (source and destination swapped) hash the same: that is the whole point.
//!
//! * **Fragments** (IPv4 MF set or offset non-zero; IPv6 fragment header with M set or offset
//!   non-zero) hash on the two addresses only, so every fragment of a datagram, first or not,
//!   goes to one worker, where the engine reassembles the verdict.
//! * **ICMP and ICMPv6 errors** (unreachable, packet too big, time exceeded, parameter problem,
//!   source quench / redirect) hash on the packet they quote, so the error reaches the worker that
//!   holds the flow it is about (the engine checks it against that flow, and path MTU discovery
//!   depends on it).
//! * **Other IP protocols** (ICMP echo, ESP, GRE, ...) and L4 headers too short for ports hash on
//!   the addresses.
//! * **Non-IP** (ARP, LLDP, ...) hashes on the two MAC addresses.
//! * **Unparseable** frames (shorter than an Ethernet header, a third VLAN tag, an IP header that
//!   does not fit or has a bad version/IHL, an IPv6 extension chain past the frame or the bound)
//!   have no hash and go to worker 0, whose engine counts and drops them.
//!
//! With [`SteerKey::Addresses`] every frame hashes on its addresses only: flows between the same
//! two hosts then share a worker (coarser spread), but a flow whose datagrams are sometimes
//! fragmented (e.g. large DNS responses over UDP) keeps its fragments on the worker that holds its
//! conntrack entry. With the default [`SteerKey::Ports`], a fragmented datagram of a port-based
//! flow is judged by the worker its addresses pick, which may not hold the flow: its first
//! fragment is then judged as a new connection in that direction (a fragmented reply with no state
//! there is denied). Networks that carry fragmented port-based traffic in the reply direction
//! should steer on addresses.
//!
//! The mixing function is a 64-bit multiply-rotate fold with a murmur3 finaliser, keyed by a
//! per-process seed so that nobody outside can aim a flood at one worker by picking tuples.
//! Cost: a few tens of nanoseconds per frame (one header peek, a handful of multiplies).

use std::fmt;
use std::str::FromStr;

use crate::error::XdpError;

/// How both directions of a connection end up on one worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Steering {
    /// Software steering: every frame belongs to `symmetric_hash % workers`; the worker that
    /// receives it on its queue hands it to the owner when it is not the owner itself. Correct on
    /// any device (veth, NICs without symmetric RSS) and for any number of workers, including more
    /// workers than the device has queues. The default.
    #[default]
    Software,
    /// The operator asserts that the NICs' RSS is symmetric (same hash key on both interfaces,
    /// both directions of a flow land on the same queue index): each worker judges exactly what
    /// its own queues receive, no handoff. Needs at least `workers` queues on both interfaces.
    Rss,
}

impl FromStr for Steering {
    type Err = XdpError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "software" | "soft" | "hash" | "handoff" => Ok(Steering::Software),
            "rss" | "symmetric" | "symmetric-rss" => Ok(Steering::Rss),
            other => Err(XdpError::BadConfig {
                what: format!("steering {other:?} (expected software, or symmetric for symmetric RSS)"),
            }),
        }
    }
}

impl fmt::Display for Steering {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Steering::Software => "software",
            Steering::Rss => "symmetric-rss",
        })
    }
}

/// What the software steering hash covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SteerKey {
    /// Addresses, protocol and ports (addresses only for fragments and port-less protocols).
    #[default]
    Ports,
    /// Addresses only, for every frame: keeps fragmented and unfragmented datagrams of a flow
    /// together at the price of a coarser spread.
    Addresses,
}

impl FromStr for SteerKey {
    type Err = XdpError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ports" | "5-tuple" | "five-tuple" => Ok(SteerKey::Ports),
            "addresses" | "addrs" | "2-tuple" => Ok(SteerKey::Addresses),
            other => Err(XdpError::BadConfig {
                what: format!("steering key {other:?} (expected ports or addresses)"),
            }),
        }
    }
}

/// Longest IPv6 extension header chain the peek walks before giving up (worker 0).
pub const MAX_EXT_HEADERS: usize = 8;

/// The software steering function of one dataplane: same seed and worker count in every worker.
#[derive(Debug, Clone, Copy)]
pub struct FlowSteer {
    workers: u32,
    seed: u64,
    key: SteerKey,
}

impl FlowSteer {
    /// Steering over `workers` workers (at least 1) with the given hash seed.
    pub fn new(workers: u32, seed: u64, key: SteerKey) -> Self {
        FlowSteer { workers: workers.max(1), seed, key }
    }

    /// Number of workers frames are spread over.
    pub fn workers(&self) -> u32 {
        self.workers
    }

    /// The worker that judges `frame`: its symmetric hash modulo the worker count, or 0 when the
    /// frame cannot be parsed far enough to hash.
    #[inline]
    pub fn owner(&self, frame: &[u8]) -> u32 {
        if self.workers == 1 {
            return 0;
        }
        match symmetric_hash(frame, self.seed, self.key) {
            Some(h) => h % self.workers,
            None => 0,
        }
    }
}

/// A fresh seed for [`FlowSteer`]: from the kernel's random source, else the clock and the pid.
pub fn random_seed() -> u64 {
    let mut buf = [0u8; 8];
    // SAFETY: `buf` is valid for writes of its length for the duration of the call.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), libc::GRND_NONBLOCK) };
    if n == 8 {
        return u64::from_ne_bytes(buf);
    }
    fmix(crate::io::monotonic_ns() ^ (u64::from(std::process::id()) << 32))
}

/// The symmetric flow hash of an Ethernet frame: equal for a frame and its reply. `None` when the
/// frame is unparseable (see the module docs for what is hashed).
pub fn symmetric_hash(frame: &[u8], seed: u64, key: SteerKey) -> Option<u32> {
    let t = peek(frame, key)?;
    Some(hash_tuple(&t, seed))
}

/// What the hash covers, before ordering the endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tuple {
    a: u128,
    b: u128,
    /// Protocol and the two ports (source, destination), when they are part of the hash.
    l4: Option<(u8, u16, u16)>,
}

fn hash_tuple(t: &Tuple, seed: u64) -> u32 {
    let (mut a, mut b) = (t.a, t.b);
    let (mut pa, mut pb, proto) = match t.l4 {
        Some((proto, sp, dp)) => (sp, dp, proto),
        None => (0, 0, 0),
    };
    if (a, pa) > (b, pb) {
        std::mem::swap(&mut a, &mut b);
        std::mem::swap(&mut pa, &mut pb);
    }
    let mut h = seed;
    for w in [a as u64, (a >> 64) as u64, b as u64, (b >> 64) as u64] {
        h = fold(h, w);
    }
    if t.l4.is_some() {
        h = fold(h, u64::from(proto) << 32 | u64::from(pa) << 16 | u64::from(pb));
    }
    (fmix(h) >> 32) as u32
}

#[inline]
fn fold(h: u64, w: u64) -> u64 {
    (h ^ w).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(31)
}

#[inline]
fn fmix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const VLAN_TPIDS: [u16; 3] = [0x8100, 0x88a8, 0x9100];
/// Marks IPv4 addresses in the 128-bit key so they never equal an IPv6 or MAC key.
const V4_TAG: u128 = 0xffff_0000_0000;
/// Marks MAC addresses likewise.
const MAC_TAG: u128 = 0xfeed << 64;

#[inline]
fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn peek(frame: &[u8], key: SteerKey) -> Option<Tuple> {
    let mut ethertype = be16(frame, 12)?;
    let mut off = 14usize;
    let mut tags = 0;
    while VLAN_TPIDS.contains(&ethertype) {
        if tags == 2 {
            return None;
        }
        ethertype = be16(frame, off + 2)?;
        off += 4;
        tags += 1;
    }
    let l3 = frame.get(off..)?;
    match ethertype {
        ETH_P_IPV4 => ipv4(l3, key, true),
        ETH_P_IPV6 => ipv6(l3, key, true),
        _ => {
            let mac = |at: usize| -> u128 {
                frame[at..at + 6].iter().fold(MAC_TAG, |acc, b| acc << 8 | u128::from(*b))
            };
            Some(Tuple { a: mac(0), b: mac(6), l4: None })
        }
    }
}

/// Protocols whose first four L4 bytes are source and destination port.
fn has_ports(proto: u8) -> bool {
    matches!(proto, 6 | 17 | 33 | 132 | 136)
}

fn ipv4(p: &[u8], key: SteerKey, outer: bool) -> Option<Tuple> {
    let hdr = p.get(..20)?;
    if hdr[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(hdr[0] & 0x0f) * 4;
    if ihl < 20 || p.len() < ihl {
        return None;
    }
    let addr =
        |at: usize| V4_TAG << 32 | u128::from(u32::from_be_bytes([p[at], p[at + 1], p[at + 2], p[at + 3]]));
    let (a, b) = (addr(12), addr(16));
    let frag = u16::from_be_bytes([hdr[6], hdr[7]]);
    let fragment = frag & 0x2000 != 0 || frag & 0x1fff != 0;
    let proto = hdr[9];
    let l4 = &p[ihl..];
    if outer && proto == 1 && !fragment && matches!(l4.first(), Some(3 | 4 | 5 | 11 | 12)) {
        // An ICMP error goes where the packet it quotes went; unparseable quotes fall through.
        if let Some(inner) = l4.get(8..).and_then(|q| ipv4(q, key, false)) {
            return Some(inner);
        }
    }
    Some(Tuple { a, b, l4: ports(key, fragment, proto, l4) })
}

fn ports(key: SteerKey, fragment: bool, proto: u8, l4: &[u8]) -> Option<(u8, u16, u16)> {
    if key == SteerKey::Addresses || fragment || !has_ports(proto) {
        return None;
    }
    Some((proto, be16(l4, 0)?, be16(l4, 2)?))
}

fn ipv6(p: &[u8], key: SteerKey, outer: bool) -> Option<Tuple> {
    let hdr = p.get(..40)?;
    if hdr[0] >> 4 != 6 {
        return None;
    }
    let addr = |at: usize| u128::from_be_bytes(hdr[at..at + 16].try_into().unwrap_or_default());
    let (a, b) = (addr(8), addr(24));
    let mut nh = hdr[6];
    let mut off = 40usize;
    let mut fragment = false;
    for _ in 0..=MAX_EXT_HEADERS {
        match nh {
            0 | 43 | 60 => {
                let len = (usize::from(*p.get(off + 1)?) + 1) * 8;
                nh = *p.get(off)?;
                off += len;
            }
            51 => {
                let len = (usize::from(*p.get(off + 1)?) + 2) * 4;
                nh = *p.get(off)?;
                off += len;
            }
            44 => {
                let fo = be16(p, off + 2)?;
                nh = *p.get(off)?;
                off += 8;
                if fo & 0xfff9 != 0 {
                    // Offset or M set: a real fragment. Addresses only, whatever follows.
                    fragment = true;
                    break;
                }
            }
            _ => {
                if off > p.len() {
                    return None;
                }
                let l4 = &p[off..];
                if outer && nh == 58 && matches!(l4.first(), Some(1..=4)) {
                    if let Some(inner) = l4.get(8..).and_then(|q| ipv6(q, key, false)) {
                        return Some(inner);
                    }
                }
                return Some(Tuple { a, b, l4: ports(key, false, nh, l4) });
            }
        }
    }
    if fragment {
        return Some(Tuple { a, b, l4: None });
    }
    None // extension chain longer than the bound
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SEED: u64 = 0x1234_5678_9abc_def0;
    const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];

    fn eth(dst: [u8; 6], src: [u8; 6], vlans: &[u16], ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&dst);
        f.extend_from_slice(&src);
        for (i, vid) in vlans.iter().enumerate() {
            f.extend_from_slice(&(if i == 0 { 0x88a8u16 } else { 0x8100 }).to_be_bytes());
            f.extend_from_slice(&vid.to_be_bytes());
        }
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn ip4(src: [u8; 4], dst: [u8; 4], proto: u8, frag: u16, l4: &[u8]) -> Vec<u8> {
        let mut h = vec![0x45, 0, 0, 0, 0, 7, 0, 0, 64, proto, 0, 0];
        h[2..4].copy_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
        h[6..8].copy_from_slice(&frag.to_be_bytes());
        h.extend_from_slice(&src);
        h.extend_from_slice(&dst);
        h.extend_from_slice(l4);
        h
    }

    fn l4ports(sp: u16, dp: u16) -> Vec<u8> {
        let mut l = sp.to_be_bytes().to_vec();
        l.extend_from_slice(&dp.to_be_bytes());
        l.extend_from_slice(&[0; 16]);
        l
    }

    fn v4(src: [u8; 4], dst: [u8; 4], proto: u8, sp: u16, dp: u16) -> Vec<u8> {
        eth(MAC_B, MAC_A, &[], ETH_P_IPV4, &ip4(src, dst, proto, 0, &l4ports(sp, dp)))
    }

    fn ip6(src: [u8; 16], dst: [u8; 16], nh: u8, rest: &[u8]) -> Vec<u8> {
        let mut h = vec![0x60, 0, 0, 0];
        h.extend_from_slice(&(rest.len() as u16).to_be_bytes());
        h.extend_from_slice(&[nh, 64]);
        h.extend_from_slice(&src);
        h.extend_from_slice(&dst);
        h.extend_from_slice(rest);
        h
    }

    fn a6(last: u8) -> [u8; 16] {
        let mut a = [0u8; 16];
        a[0] = 0x20;
        a[1] = 0x01;
        a[15] = last;
        a
    }

    fn h(f: &[u8]) -> Option<u32> {
        symmetric_hash(f, SEED, SteerKey::Ports)
    }

    const C: [u8; 4] = [198, 18, 1, 10];
    const S: [u8; 4] = [198, 19, 1, 10];

    #[test]
    fn both_directions_hash_equal_for_each_port_protocol() {
        for proto in [6u8, 17, 33, 132, 136] {
            let fwd = v4(C, S, proto, 40000, 443);
            let rev = v4(S, C, proto, 443, 40000);
            assert_eq!(h(&fwd), h(&rev), "proto {proto}");
            assert!(h(&fwd).is_some());
        }
    }

    #[test]
    fn ports_and_protocol_spread_flows() {
        let base = h(&v4(C, S, 6, 40000, 443));
        assert_ne!(base, h(&v4(C, S, 6, 40001, 443)), "another source port");
        assert_ne!(base, h(&v4(C, S, 17, 40000, 443)), "another protocol");
        // Swapping only the ports is another flow, not the reply.
        assert_ne!(base, h(&v4(C, S, 6, 443, 40000)));
    }

    #[test]
    fn seed_changes_the_hash() {
        let f = v4(C, S, 6, 40000, 443);
        assert_ne!(symmetric_hash(&f, 1, SteerKey::Ports), symmetric_hash(&f, 2, SteerKey::Ports));
    }

    #[test]
    fn vlan_tags_are_skipped_and_a_third_is_unparseable() {
        let l3 = ip4(C, S, 17, 0, &l4ports(5353, 53));
        let plain = eth(MAC_B, MAC_A, &[], ETH_P_IPV4, &l3);
        assert_eq!(h(&eth(MAC_B, MAC_A, &[10], ETH_P_IPV4, &l3)), h(&plain));
        assert_eq!(h(&eth(MAC_B, MAC_A, &[10, 20], ETH_P_IPV4, &l3)), h(&plain));
        assert_eq!(h(&eth(MAC_B, MAC_A, &[10, 20, 30], ETH_P_IPV4, &l3)), None);
    }

    #[test]
    fn ipv4_fragments_of_a_datagram_hash_equal_and_with_the_reverse() {
        let first = eth(MAC_B, MAC_A, &[], ETH_P_IPV4, &ip4(C, S, 17, 0x2000, &l4ports(5353, 53)));
        let middle = eth(MAC_B, MAC_A, &[], ETH_P_IPV4, &ip4(C, S, 17, 0x2000 | 185, &[0xab; 40]));
        let last = eth(MAC_B, MAC_A, &[], ETH_P_IPV4, &ip4(C, S, 17, 370, &[0xcd; 12]));
        let reply_frag = eth(MAC_A, MAC_B, &[], ETH_P_IPV4, &ip4(S, C, 17, 185, &[0; 8]));
        assert!(h(&first).is_some());
        assert_eq!(h(&first), h(&middle));
        assert_eq!(h(&first), h(&last));
        assert_eq!(h(&first), h(&reply_frag));
    }

    #[test]
    fn ipv6_fragments_of_a_datagram_hash_equal() {
        let frag = |offset_m: u16, body: &[u8]| {
            let mut fh = vec![17, 0];
            fh.extend_from_slice(&offset_m.to_be_bytes());
            fh.extend_from_slice(&[0, 0, 0, 9]);
            fh.extend_from_slice(body);
            eth(MAC_B, MAC_A, &[], ETH_P_IPV6, &ip6(a6(1), a6(2), 44, &fh))
        };
        let first = frag(1, &l4ports(5353, 53));
        let second = frag((100 << 3) | 1, &[7; 32]);
        let last = frag(200 << 3, &[8; 16]);
        assert!(h(&first).is_some());
        assert_eq!(h(&first), h(&second));
        assert_eq!(h(&first), h(&last));
        // An atomic fragment (offset 0, M clear) is a whole datagram: hashed with its ports.
        let atomic = frag(0, &l4ports(5353, 53));
        let whole = eth(MAC_B, MAC_A, &[], ETH_P_IPV6, &ip6(a6(1), a6(2), 17, &l4ports(5353, 53)));
        assert_eq!(h(&atomic), h(&whole));
        assert_ne!(h(&atomic), h(&first));
    }

    #[test]
    fn ipv6_both_directions_and_extension_headers() {
        let fwd = eth(MAC_B, MAC_A, &[], ETH_P_IPV6, &ip6(a6(1), a6(2), 6, &l4ports(40000, 22)));
        let rev = eth(MAC_A, MAC_B, &[], ETH_P_IPV6, &ip6(a6(2), a6(1), 6, &l4ports(22, 40000)));
        assert_eq!(h(&fwd), h(&rev));
        // Hop-by-hop (8 bytes) then destination options (16 bytes) then TCP: same flow.
        let mut chain = vec![60, 0, 1, 4, 0, 0, 0, 0];
        chain.extend_from_slice(&[6, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        chain.extend_from_slice(&l4ports(40000, 22));
        let with_ext = eth(MAC_B, MAC_A, &[], ETH_P_IPV6, &ip6(a6(1), a6(2), 0, &chain));
        assert_eq!(h(&with_ext), h(&fwd));
        // A chain past the frame is unparseable.
        let cut = eth(MAC_B, MAC_A, &[], ETH_P_IPV6, &ip6(a6(1), a6(2), 0, &chain[..4]));
        assert_eq!(h(&cut), None);
        // A chain longer than the bound is unparseable.
        let mut long = Vec::new();
        for _ in 0..=MAX_EXT_HEADERS {
            long.extend_from_slice(&[60, 0, 0, 0, 0, 0, 0, 0]);
        }
        let too_long = eth(MAC_B, MAC_A, &[], ETH_P_IPV6, &ip6(a6(1), a6(2), 60, &long));
        assert_eq!(h(&too_long), None);
    }

    #[test]
    fn icmp_errors_go_with_the_flow_they_quote() {
        let flow = v4(C, S, 6, 40000, 443);
        let quoted = ip4(C, S, 6, 0, &l4ports(40000, 443)[..8]);
        // A router (another address) tells the client "fragmentation needed".
        let mut icmp = vec![3, 4, 0, 0, 0, 0, 5, 0xdc];
        icmp.extend_from_slice(&quoted);
        let err = eth(MAC_A, MAC_B, &[], ETH_P_IPV4, &ip4([198, 19, 0, 1], C, 1, 0, &icmp));
        assert_eq!(h(&err), h(&flow));
        // ICMPv6 packet too big likewise.
        let flow6 = eth(MAC_B, MAC_A, &[], ETH_P_IPV6, &ip6(a6(1), a6(2), 17, &l4ports(1000, 53)));
        let mut icmp6 = vec![2, 0, 0, 0, 0, 0, 5, 0];
        icmp6.extend_from_slice(&ip6(a6(1), a6(2), 17, &l4ports(1000, 53)[..8]));
        let err6 = eth(MAC_A, MAC_B, &[], ETH_P_IPV6, &ip6(a6(9), a6(1), 58, &icmp6));
        assert_eq!(h(&err6), h(&flow6));
        // An echo request hashes on its addresses, like its reply.
        let echo = eth(MAC_B, MAC_A, &[], ETH_P_IPV4, &ip4(C, S, 1, 0, &[8, 0, 0, 0, 0, 1, 0, 1]));
        let reply = eth(MAC_A, MAC_B, &[], ETH_P_IPV4, &ip4(S, C, 1, 0, &[0, 0, 0, 0, 0, 1, 0, 1]));
        assert_eq!(h(&echo), h(&reply));
        // An error whose quote is garbage still hashes (on its own addresses).
        let junk = eth(MAC_A, MAC_B, &[], ETH_P_IPV4, &ip4(S, C, 1, 0, &[3, 1, 0, 0, 0, 0, 0, 0, 0x99]));
        assert!(h(&junk).is_some());
    }

    #[test]
    fn address_key_ignores_ports_so_fragments_stay_with_their_flow() {
        let flow = v4(C, S, 17, 5353, 53);
        let frag = eth(MAC_A, MAC_B, &[], ETH_P_IPV4, &ip4(S, C, 17, 185, &[0; 8]));
        let a = |f: &[u8]| symmetric_hash(f, SEED, SteerKey::Addresses);
        assert_eq!(a(&flow), a(&frag));
        assert_eq!(a(&flow), a(&v4(C, S, 6, 1, 2)));
    }

    #[test]
    fn non_ip_hashes_on_macs_symmetrically() {
        let req = eth(MAC_B, MAC_A, &[], 0x0806, &[0; 28]);
        let rep = eth(MAC_A, MAC_B, &[], 0x0806, &[1; 28]);
        assert!(h(&req).is_some());
        assert_eq!(h(&req), h(&rep));
    }

    #[test]
    fn each_rejection_is_unparseable() {
        assert_eq!(h(&[0u8; 13]), None, "shorter than Ethernet");
        assert_eq!(h(&eth(MAC_B, MAC_A, &[10], ETH_P_IPV4, &[])[..16]), None, "VLAN tag cut");
        let good = ip4(C, S, 6, 0, &l4ports(1, 2));
        assert_eq!(h(&eth(MAC_B, MAC_A, &[], ETH_P_IPV4, &good[..19])), None, "IPv4 header cut");
        let mut bad = good.clone();
        bad[0] = 0x65;
        assert_eq!(h(&eth(MAC_B, MAC_A, &[], ETH_P_IPV4, &bad)), None, "IPv4 version");
        bad[0] = 0x44;
        assert_eq!(h(&eth(MAC_B, MAC_A, &[], ETH_P_IPV4, &bad)), None, "IHL < 5");
        bad[0] = 0x4f;
        assert_eq!(h(&eth(MAC_B, MAC_A, &[], ETH_P_IPV4, &bad[..40])), None, "IHL past the frame");
        let v6 = ip6(a6(1), a6(2), 6, &l4ports(1, 2));
        assert_eq!(h(&eth(MAC_B, MAC_A, &[], ETH_P_IPV6, &v6[..39])), None, "IPv6 header cut");
        let mut bad6 = v6.clone();
        bad6[0] = 0x40;
        assert_eq!(h(&eth(MAC_B, MAC_A, &[], ETH_P_IPV6, &bad6)), None, "IPv6 version");
    }

    #[test]
    fn short_l4_hashes_on_addresses() {
        let cut = eth(MAC_B, MAC_A, &[], ETH_P_IPV4, &ip4(C, S, 6, 0, &[0, 1]));
        let addrs = eth(MAC_B, MAC_A, &[], ETH_P_IPV4, &ip4(C, S, 47, 0, &[]));
        assert_eq!(h(&cut), h(&addrs));
    }

    #[test]
    fn owner_is_in_range_and_unparseable_goes_to_worker_zero() {
        let s = FlowSteer::new(3, SEED, SteerKey::Ports);
        assert_eq!(s.owner(&[1, 2, 3]), 0);
        let mut seen = [0u32; 3];
        for sp in 0..300u16 {
            let o = s.owner(&v4(C, S, 6, 10_000 + sp, 80));
            seen[o as usize] += 1;
        }
        assert!(seen.iter().all(|n| *n > 0), "300 flows reach every one of 3 workers: {seen:?}");
        assert_eq!(FlowSteer::new(1, SEED, SteerKey::Ports).owner(&v4(C, S, 6, 1, 2)), 0);
        assert_eq!(FlowSteer::new(0, SEED, SteerKey::Ports).workers(), 1);
    }

    #[test]
    fn steering_parses() {
        assert_eq!("symmetric".parse::<Steering>().unwrap(), Steering::Rss);
        assert_eq!("software".parse::<Steering>().unwrap(), Steering::Software);
        assert!("fast".parse::<Steering>().unwrap_err().to_string().contains("fast"));
        assert_eq!("addresses".parse::<SteerKey>().unwrap(), SteerKey::Addresses);
        assert!("x".parse::<SteerKey>().is_err());
        assert_eq!(Steering::default(), Steering::Software);
    }

    /// Not a check: prints the on-CPU cost of the steering decision per frame (run with
    /// `--release steer_cost -- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn steer_cost() {
        let frames: Vec<Vec<u8>> = (0..1024u16)
            .map(|i| match i % 4 {
                0 => v4(C, S, 6, 10_000 + i, 443),
                1 => eth(MAC_B, MAC_A, &[10], ETH_P_IPV4, &ip4(S, C, 17, 0, &l4ports(53, 20_000 + i))),
                2 => eth(MAC_B, MAC_A, &[], ETH_P_IPV6, &ip6(a6(1), a6(2), 6, &l4ports(i, 22))),
                _ => eth(MAC_B, MAC_A, &[], ETH_P_IPV4, &ip4(C, S, 17, 0x2000 | i, &[0; 8])),
            })
            .collect();
        let steer = FlowSteer::new(4, SEED, SteerKey::Ports);
        let rounds = 2_000u64;
        let cpu = || {
            let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            // SAFETY: `ts` is valid for writes.
            unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
            ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
        };
        let t0 = cpu();
        let mut acc = 0u64;
        for _ in 0..rounds {
            for f in &frames {
                acc += u64::from(steer.owner(std::hint::black_box(f)));
            }
        }
        let ns = (cpu() - t0) as f64 / (rounds as f64 * frames.len() as f64);
        eprintln!(
            "steering decision: {ns:.1} ns/frame on-CPU (mix of v4 TCP, VLAN UDP, v6 TCP, fragments; {acc})"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn never_panics_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = symmetric_hash(&bytes, SEED, SteerKey::Ports);
            let _ = symmetric_hash(&bytes, SEED, SteerKey::Addresses);
            prop_assert!(FlowSteer::new(4, SEED, SteerKey::Ports).owner(&bytes) < 4);
        }

        #[test]
        fn never_panics_on_ip_shaped_bytes(
            ethertype in prop_oneof![Just(ETH_P_IPV4), Just(ETH_P_IPV6), Just(0x8100u16)],
            first in any::<u8>(),
            rest in proptest::collection::vec(any::<u8>(), 0..120),
        ) {
            let mut l3 = vec![first];
            l3.extend_from_slice(&rest);
            let f = eth(MAC_B, MAC_A, &[], ethertype, &l3);
            let _ = symmetric_hash(&f, SEED, SteerKey::Ports);
        }

        #[test]
        fn any_v4_flow_and_its_reply_hash_equal(
            src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(),
            proto in prop_oneof![Just(6u8), Just(17), Just(132), Just(1), Just(47)],
            sp in any::<u16>(), dp in any::<u16>(), seed in any::<u64>(),
        ) {
            let fwd = v4(src, dst, proto, sp, dp);
            let rev = v4(dst, src, proto, dp, sp);
            prop_assert_eq!(symmetric_hash(&fwd, seed, SteerKey::Ports), symmetric_hash(&rev, seed, SteerKey::Ports));
        }

        #[test]
        fn any_v6_flow_and_its_reply_hash_equal(
            src in any::<[u8; 16]>(), dst in any::<[u8; 16]>(), sp in any::<u16>(), dp in any::<u16>(),
        ) {
            let fwd = eth(MAC_B, MAC_A, &[], ETH_P_IPV6, &ip6(src, dst, 17, &l4ports(sp, dp)));
            let rev = eth(MAC_A, MAC_B, &[], ETH_P_IPV6, &ip6(dst, src, 17, &l4ports(dp, sp)));
            prop_assert_eq!(h(&fwd), h(&rev));
        }

        #[test]
        fn any_fragment_train_hashes_as_one(
            src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(), id in any::<u16>(),
            offsets in proptest::collection::vec(1u16..0x1fff, 1..6), payload in any::<[u8; 8]>(),
        ) {
            let mk = |frag: u16, body: &[u8]| {
                let mut l3 = ip4(src, dst, 17, frag, body);
                l3[4..6].copy_from_slice(&id.to_be_bytes());
                eth(MAC_B, MAC_A, &[], ETH_P_IPV4, &l3)
            };
            let first = h(&mk(0x2000, &l4ports(1234, 53)));
            for off in offsets {
                prop_assert_eq!(h(&mk(off, &payload)), first);
                prop_assert_eq!(h(&mk(0x2000 | off, &payload)), first);
            }
        }
    }
}
