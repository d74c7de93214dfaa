//! The per-worker flow table: fixed capacity, bidirectional keys, memory allocated once.
//!
//! Layout (why it is not a `hashbrown` map): a slab of [`Flow`] records of exactly one
//! cache line (64 bytes, IPv4 and IPv6 alike; IPv6 addresses are folded to a 32-bit filter there
//! and kept whole in a side array), a side array of [`Cold`] fields only slow paths read, and an
//! index of 64-byte, cache-line-aligned buckets of 7 `(tag, slot)`
//! pairs. The batch path prefetches each packet's home bucket as soon as its hash is known,
//! then (once the whole batch is parsed) the candidate records, then processes packets, so the
//! cache misses of a batch overlap with each other and with parsing instead of serializing. The
//! prefetch is `safe_arch`'s safe wrapper of `prefetcht0` / `prefetchw` (this crate forbids
//! `unsafe`; a prefetch is only a hint and never faults). An earlier version used plain loads
//! fed to `black_box` as the "prefetch"; those block retirement until the line arrives, so the
//! reorder buffer filled after a few dozen misses and at 1M flows the engine ran at ~85 ns per
//! packet instead of ~66. `hashbrown` offers no way to compute a bucket address before probing, and its
//! growth policy could allocate under churn; this index never allocates after
//! [`FlowTable::new`], and its size is exact (no power-of-two rounding), so memory per flow is
//! `64 (record) + 12 (cold) + 32 (IPv6 addresses) + 4 (free list) + 64 / 5.6 (index at ~80 %
//! slot load)` ≈ 123.4 bytes. (The record was 104 bytes, straddling two or three lines; one
//! line per record made 1M-flow traffic ~15 % faster.)
//!
//! Collisions: linear probing over buckets with F14-style overflow counts (a bucket counts the
//! entries that passed it because it was full; a lookup stops at the first bucket whose count is
//! zero), so deletions need no tombstones and lookups stay short at high load. The hash is
//! seeded per worker from the OS random source, so an attacker cannot aim flows at one bucket.
//!
//! Keys are canonical: the (address, port) pair that sorts first is endpoint A, so both
//! directions of a connection find one record; the record remembers which endpoint opened it.

use crate::events::TcpStateName;
use bulkhead_tables::{DataplaneConfig, Decision, IdentityId, Mode};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[cfg(target_arch = "x86_64")]
use safe_arch::{prefetch_et0 as prefetch_write, prefetch_t0 as prefetch_read};

/// No prefetch hint on other architectures (correctness never depends on it).
#[cfg(not(target_arch = "x86_64"))]
fn prefetch_read<T>(_: &T) {}
#[cfg(not(target_arch = "x86_64"))]
fn prefetch_write<T>(_: &T) {}

/// Bit `i` set when `tags[i] == tag`: two 4-lane SSE2 compares (`safe_arch`'s safe wrappers).
#[cfg(target_arch = "x86_64")]
#[inline]
fn tag_mask(tags: &[u32; 8], tag: u32) -> u32 {
    use safe_arch::{
        cast_to_m128_from_m128i, cmp_eq_mask_i32_m128i, m128i, move_mask_m128, set_splat_i32_m128i,
    };
    let t = set_splat_i32_m128i(tag as i32);
    let (lo, hi) = tags.split_at(4);
    let lane = |half: &[u32]| -> u32 {
        let v: [u32; 4] = half.try_into().unwrap_or([!tag; 4]);
        move_mask_m128(cast_to_m128_from_m128i(cmp_eq_mask_i32_m128i(m128i::from(v), t))) as u32
    };
    lane(lo) | (lane(hi) << 4)
}

/// Bit `i` set when `tags[i] == tag` (portable form).
#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn tag_mask(tags: &[u32; 8], tag: u32) -> u32 {
    tags.iter().enumerate().fold(0, |m, (i, t)| m | (u32::from(*t == tag) << i))
}

/// Slot number meaning "no flow".
pub(crate) const NONE: u32 = u32::MAX;
const SLOTS: usize = 7;

/// A canonical, direction-free connection key (IPv4 addresses are stored zero-extended, with
/// `v6 = false`, so the two families never collide).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(C)]
pub(crate) struct FlowKey {
    pub a: [u64; 2],
    pub b: [u64; 2],
    pub port_a: u16,
    pub port_b: u16,
    pub proto: u8,
    pub v6: bool,
}

#[inline]
pub(crate) fn addr_words(ip: IpAddr) -> ([u64; 2], bool) {
    match ip {
        IpAddr::V4(a) => ([0, u64::from(u32::from(a))], false),
        IpAddr::V6(a) => {
            let x = u128::from(a);
            ([(x >> 64) as u64, x as u64], true)
        }
    }
}

#[inline]
pub(crate) fn words_addr(w: [u64; 2], v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from((u128::from(w[0]) << 64) | u128::from(w[1])))
    } else {
        IpAddr::V4(Ipv4Addr::from(w[1] as u32))
    }
}

impl FlowKey {
    /// The canonical key of a packet `src:sport -> dst:dport`, and whether the packet comes
    /// from endpoint A.
    #[inline]
    pub fn new(src: IpAddr, sport: u16, dst: IpAddr, dport: u16, proto: u8) -> (FlowKey, bool) {
        if let (IpAddr::V4(s), IpAddr::V4(d)) = (src, dst) {
            return Self::new_v4(u32::from(s), sport, u32::from(d), dport, proto);
        }
        let (s, v6) = addr_words(src);
        let (d, _) = addr_words(dst);
        if (s, sport) <= (d, dport) {
            (FlowKey { a: s, b: d, port_a: sport, port_b: dport, proto, v6 }, true)
        } else {
            (FlowKey { a: d, b: s, port_a: dport, port_b: sport, proto, v6 }, false)
        }
    }

    /// [`FlowKey::new`] for IPv4 addresses given as `u32` (the express lane's form): the same
    /// key, without the generic 128-bit address words.
    #[inline]
    pub fn new_v4(src: u32, sport: u16, dst: u32, dport: u16, proto: u8) -> (FlowKey, bool) {
        let (s, d) = (u64::from(src), u64::from(dst));
        let (a, pa, b, pb, from_a) =
            if (s, sport) <= (d, dport) { (s, sport, d, dport, true) } else { (d, dport, s, sport, false) };
        (FlowKey { a: [0, a], b: [0, b], port_a: pa, port_b: pb, proto, v6: false }, from_a)
    }

    /// Endpoint A or B as `(address, port)`.
    pub fn endpoint(&self, a: bool) -> (IpAddr, u16) {
        if a {
            (words_addr(self.a, self.v6), self.port_a)
        } else {
            (words_addr(self.b, self.v6), self.port_b)
        }
    }

    #[inline]
    pub fn hash(&self, seed: u64) -> u64 {
        const K: [u64; 5] = [
            0x243f_6a88_85a3_08d3,
            0x1319_8a2e_0370_7344,
            0xa409_3822_299f_31d0,
            0x082e_fa98_ec4e_6c89,
            0x4528_21e6_38d0_1377,
        ];
        let p = (u64::from(self.port_a) << 32)
            | (u64::from(self.port_b) << 16)
            | (u64::from(self.proto) << 8)
            | u64::from(self.v6);
        if !self.v6 && self.a[0] | self.b[0] == 0 {
            // IPv4 (the upper words are zero): both addresses fit one word, so one multiply
            // mixes the whole tuple and a second finishes (three for IPv6).
            let ab = (self.a[1] << 32) | (self.b[1] & 0xffff_ffff);
            let h1 = fold_mul(ab ^ seed ^ K[0], p ^ K[1]);
            return fold_mul(h1 ^ K[4], seed ^ K[3]);
        }
        let h1 = fold_mul(self.a[0] ^ seed ^ K[0], self.a[1] ^ K[1]);
        let h2 = fold_mul(self.b[0] ^ seed ^ K[2], self.b[1] ^ K[3]);
        fold_mul(h1 ^ p ^ K[4], h2 ^ seed)
    }
}

/// 64x64 -> 128 multiply, folded: the mixing step of foldhash / wyhash.
#[inline]
pub(crate) fn fold_mul(a: u64, b: u64) -> u64 {
    let r = u128::from(a).wrapping_mul(u128::from(b));
    (r as u64) ^ ((r >> 64) as u64)
}

/// Flow states. `FREE` marks an unused slab slot.
pub(crate) mod st {
    pub const FREE: u8 = 0;
    pub const SYN_SENT: u8 = 1;
    pub const SYN_RECV: u8 = 2;
    pub const ESTABLISHED: u8 = 3;
    pub const FIN_WAIT: u8 = 4;
    pub const TIME_WAIT: u8 = 5;
    pub const CLOSED: u8 = 6;
    /// Non-TCP pseudo-connection.
    pub const PSEUDO: u8 = 7;
}

/// Flow flag bits.
pub(crate) mod fl {
    /// Endpoint A opened the connection.
    pub const OPENER_A: u8 = 1;
    /// Monitor mode: policy would deny this flow.
    pub const WOULD_DENY: u8 = 2;
    /// Sequence numbers of A / B are known.
    pub const SEQ_A: u8 = 4;
    pub const SEQ_B: u8 = 8;
    /// FIN seen from A / B.
    pub const FIN_A: u8 = 16;
    pub const FIN_B: u8 = 32;
    /// The non-opening direction has been seen.
    pub const REPLIED: u8 = 64;
    /// Cut by a newer generation (revoked or quarantined): a tombstone that drops the flow's
    /// packets, both ways, until a later generation allows it again, a SYN reopens the tuple, or
    /// it times out (transitory timeout, refreshed by every dropped packet). Without it, the
    /// next packet of a cut connection would be loosely picked up as a new connection in the
    /// other direction, which the generation that cut it may well allow.
    pub const REVOKED: u8 = 128;
}

/// A decision packed into 8 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PackedDecision {
    pub rule: u32,
    pub tier: u16,
    pub kind: u8,
    pub mode: u8,
}

impl PackedDecision {
    pub fn pack(d: Decision, m: Mode) -> Self {
        let mode = u8::from(m == Mode::Monitor);
        match d {
            Decision::Allow { tier, rule } => Self { rule, tier, kind: 0, mode },
            Decision::Deny { tier, rule } => Self { rule, tier, kind: 1, mode },
            Decision::DefaultDeny => Self { rule: 0, tier: 0, kind: 2, mode },
            Decision::Quarantined => Self { rule: 0, tier: 0, kind: 3, mode },
            Decision::QuarantineException => Self { rule: 0, tier: 0, kind: 4, mode },
        }
    }

    pub fn decision(self) -> Decision {
        match self.kind {
            0 => Decision::Allow { tier: self.tier, rule: self.rule },
            1 => Decision::Deny { tier: self.tier, rule: self.rule },
            3 => Decision::Quarantined,
            4 => Decision::QuarantineException,
            _ => Decision::DefaultDeny,
        }
    }

    pub fn mode(self) -> Mode {
        if self.mode == 1 {
            Mode::Monitor
        } else {
            Mode::Enforce
        }
    }
}

/// One connection's state: exactly one 64-byte cache line, so an established packet costs one
/// record line (plus its bucket line). The key is stored compactly: IPv4 addresses as they are,
/// IPv6 addresses folded to 32 bits as a filter, with the full addresses in the table's IPv6
/// side array (compared too, so folding never merges two flows). What only the slow paths read
/// (identities, ICMP type and code) lives in [`Cold`].
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, align(64))]
pub(crate) struct Flow {
    pub a32: u32,
    pub b32: u32,
    pub port_a: u16,
    pub port_b: u16,
    pub proto: u8,
    pub v6: bool,
    pub state: u8,
    pub flags: u8,
    /// Generation of the table set that last judged the flow.
    pub generation: u64,
    pub packets: u32,
    /// Per endpoint: last advertised TCP window (unscaled).
    pub win: [u16; 2],
    pub last_seen: u64,
    pub bytes: u64,
    pub decision: PackedDecision,
    /// Per endpoint (0 = A, 1 = B): highest sequence number + length sent.
    pub seq_end: [u32; 2],
}

/// The part of a flow that only new-flow, revalidation, listing and event paths read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Cold {
    pub src_id: IdentityId,
    pub dst_id: IdentityId,
    /// ICMP type and code of the opening packet (judging an ICMP flow again needs them).
    pub q_type: u8,
    pub q_code: u8,
}

/// 128-bit address words folded to the 32-bit filter [`Flow`] keeps for IPv6.
#[inline]
fn fold(w: [u64; 2]) -> u32 {
    let x = w[0] ^ w[1];
    (x ^ (x >> 32)) as u32
}

impl FlowKey {
    /// The two 32-bit address fields a [`Flow`] stores for this key.
    #[inline]
    fn short(&self) -> (u32, u32) {
        if self.v6 {
            (fold(self.a), fold(self.b))
        } else {
            (self.a[1] as u32, self.b[1] as u32)
        }
    }
}

impl Flow {
    #[inline]
    pub fn opener_is_a(&self) -> bool {
        self.flags & fl::OPENER_A != 0
    }

    #[inline]
    pub fn would_deny(&self) -> bool {
        self.flags & fl::WOULD_DENY != 0
    }

    /// A revoked flow's tombstone (see [`fl::REVOKED`]).
    #[inline]
    pub fn revoked(&self) -> bool {
        self.flags & fl::REVOKED != 0
    }

    /// Idle timeout of this flow under `cfg`.
    #[inline]
    pub fn timeout(&self, cfg: &DataplaneConfig) -> u64 {
        if self.revoked() {
            return cfg.tcp_transitory_timeout_ns;
        }
        match self.state {
            st::ESTABLISHED => cfg.tcp_established_timeout_ns,
            st::SYN_SENT | st::SYN_RECV | st::FIN_WAIT | st::TIME_WAIT | st::CLOSED => {
                cfg.tcp_transitory_timeout_ns
            }
            _ => match self.proto {
                17 => cfg.udp_timeout_ns,
                1 | 58 => cfg.icmp_timeout_ns,
                _ => cfg.other_timeout_ns,
            },
        }
    }

    #[inline]
    pub fn expired(&self, now: u64, cfg: &DataplaneConfig) -> bool {
        now.saturating_sub(self.last_seen) > self.timeout(cfg)
    }

    pub fn tcp_state_name(&self) -> TcpStateName {
        match self.state {
            st::SYN_SENT => TcpStateName::SynSent,
            st::SYN_RECV => TcpStateName::SynReceived,
            st::ESTABLISHED => TcpStateName::Established,
            st::FIN_WAIT => TcpStateName::FinWait,
            st::TIME_WAIT => TcpStateName::TimeWait,
            st::CLOSED => TcpStateName::Closed,
            _ => TcpStateName::None,
        }
    }

    /// Eviction class: lower goes first. 0 expired, 1 half-open or closing TCP, 2 unreplied
    /// pseudo-connection, 3 idle (no packet for longer than the transitory timeout), 4 active.
    pub fn evict_class(&self, now: u64, cfg: &DataplaneConfig) -> u8 {
        if self.expired(now, cfg) {
            return 0;
        }
        if self.revoked() {
            return 1;
        }
        match self.state {
            st::SYN_SENT | st::SYN_RECV | st::FIN_WAIT | st::TIME_WAIT | st::CLOSED => 1,
            st::PSEUDO if self.flags & fl::REPLIED == 0 => 2,
            _ if now.saturating_sub(self.last_seen) > cfg.tcp_transitory_timeout_ns => 3,
            _ => 4,
        }
    }
}

#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
struct Bucket {
    /// Tags of the 7 slots; the eighth lane is never used (it pads the tags to 8 lanes so the
    /// candidate search compiles to two 4-lane vector compares).
    tags: [u32; 8],
    slot: [u32; SLOTS],
    /// Entries stored past this bucket because it was full when they were inserted.
    overflow: u32,
}

impl Default for Bucket {
    fn default() -> Self {
        Self { tags: [0; 8], slot: [NONE; SLOTS], overflow: 0 }
    }
}

/// The flow table: slab + bucket index. See the module docs.
#[derive(Debug)]
pub(crate) struct FlowTable {
    buckets: Vec<Bucket>,
    slab: Vec<Flow>,
    cold: Vec<Cold>,
    /// Per slot: the full IPv6 addresses `[a_hi, a_lo, b_hi, b_lo]` of an IPv6 flow.
    v6: Vec<[u64; 4]>,
    free: Vec<u32>,
    seed: u64,
}

impl FlowTable {
    pub fn new(capacity: u32, seed: u64) -> Self {
        let capacity = capacity.max(1);
        // ~80 % of index slots in use at capacity.
        let nb = (u64::from(capacity) * 10).div_ceil(SLOTS as u64 * 8).max(1) as usize;
        Self {
            buckets: vec![Bucket::default(); nb],
            slab: vec![Flow::default(); capacity as usize],
            cold: vec![Cold::default(); capacity as usize],
            v6: vec![[0; 4]; capacity as usize],
            free: (0..capacity).rev().collect(),
            seed,
        }
    }

    #[inline]
    pub fn hash(&self, key: &FlowKey) -> u64 {
        key.hash(self.seed)
    }

    #[inline]
    fn home(&self, h: u64) -> usize {
        ((u64::from(h as u32) * self.buckets.len() as u64) >> 32) as usize
    }

    #[inline]
    fn tag(h: u64) -> u32 {
        (h >> 32) as u32
    }

    #[inline]
    fn next(&self, b: usize) -> usize {
        if b + 1 == self.buckets.len() {
            0
        } else {
            b + 1
        }
    }

    /// Prefetch step 1: asks for the home bucket's cache line (a hint; never faults, never
    /// waits).
    #[inline]
    pub fn prefetch_bucket(&self, h: u64) {
        if let Some(b) = self.buckets.get(self.home(h)) {
            prefetch_read(b);
        }
    }

    /// Prefetch step 2: the slot of the first tag match in the home bucket, or [`NONE`].
    #[inline]
    pub fn candidate(&self, h: u64) -> u32 {
        let Some(b) = self.buckets.get(self.home(h)) else { return NONE };
        let tag = Self::tag(h);
        // Branch-free: a mask of matching tags (compiled to one vector compare), then its lowest
        // bit. A loop that stops at the match mispredicts on nearly every packet, since where
        // the match sits in the bucket is random.
        let m = tag_mask(&b.tags, tag) & ((1 << SLOTS) - 1);
        if m == 0 {
            return NONE;
        }
        b.slot.get(m.trailing_zeros() as usize).copied().unwrap_or(NONE)
    }

    /// Prefetch step 2b: asks for a record's cache line, for writing.
    #[inline]
    pub fn prefetch_flow(&self, slot: u32) {
        if let Some(f) = self.slab.get(slot as usize) {
            prefetch_write(f);
        }
    }

    /// The slot of `key`, if present.
    #[inline]
    pub fn find(&self, key: &FlowKey, h: u64) -> Option<u32> {
        let tag = Self::tag(h);
        let mut b = self.home(h);
        for _ in 0..self.buckets.len() {
            let bk = &self.buckets[b];
            for (t, &s) in bk.tags.iter().zip(bk.slot.iter()) {
                // An empty slot holds NONE, which `get` rejects, so tags need no emptiness check.
                if *t == tag && self.key_matches(s, key) {
                    return Some(s);
                }
            }
            if bk.overflow == 0 {
                return None;
            }
            b = self.next(b);
        }
        None
    }

    /// True when `slot` holds a live flow whose key is `key` (false for [`NONE`]).
    #[inline]
    pub fn holds(&self, slot: u32, key: &FlowKey) -> bool {
        self.get(slot).is_some() && self.key_matches(slot, key)
    }

    /// True when the record in `slot` (live or not) carries `key`.
    #[inline]
    fn key_matches(&self, slot: u32, key: &FlowKey) -> bool {
        let Some(f) = self.slab.get(slot as usize) else { return false };
        let (a, b) = key.short();
        f.a32 == a
            && f.b32 == b
            && f.port_a == key.port_a
            && f.port_b == key.port_b
            && f.proto == key.proto
            && f.v6 == key.v6
            && (!key.v6
                || self.v6.get(slot as usize).is_some_and(|w| w[..2] == key.a[..] && w[2..] == key.b[..]))
    }

    /// The full key of the flow in `slot` (a default key for an empty slot).
    pub fn key_of(&self, slot: u32) -> FlowKey {
        let Some(f) = self.slab.get(slot as usize) else { return FlowKey::default() };
        let (a, b) = match self.v6.get(slot as usize) {
            Some(w) if f.v6 => ([w[0], w[1]], [w[2], w[3]]),
            _ => ([0, u64::from(f.a32)], [0, u64::from(f.b32)]),
        };
        FlowKey { a, b, port_a: f.port_a, port_b: f.port_b, proto: f.proto, v6: f.v6 }
    }

    /// The slow-path part of the flow in `slot`.
    pub fn cold(&self, slot: u32) -> Cold {
        self.cold.get(slot as usize).copied().unwrap_or_default()
    }

    pub fn cold_mut(&mut self, slot: u32) -> Option<&mut Cold> {
        self.cold.get_mut(slot as usize)
    }

    pub fn is_full(&self) -> bool {
        self.free.is_empty()
    }

    pub fn len(&self) -> usize {
        self.slab.len() - self.free.len()
    }

    /// Bytes held by the table (fixed at start).
    pub fn memory_bytes(&self) -> usize {
        self.buckets.len() * std::mem::size_of::<Bucket>()
            + self.slab.len() * std::mem::size_of::<Flow>()
            + self.cold.len() * std::mem::size_of::<Cold>()
            + self.v6.len() * std::mem::size_of::<[u64; 4]>()
            + self.free.capacity() * std::mem::size_of::<u32>()
    }

    #[inline]
    pub fn get(&self, slot: u32) -> Option<&Flow> {
        self.slab.get(slot as usize).filter(|f| f.state != st::FREE)
    }

    #[inline]
    pub fn get_mut(&mut self, slot: u32) -> Option<&mut Flow> {
        self.slab.get_mut(slot as usize).filter(|f| f.state != st::FREE)
    }

    /// Inserts a flow keyed `key` (which must not be present) with state `flow` (its key fields
    /// are set from `key`). `None` when the table is full.
    pub fn insert(&mut self, key: &FlowKey, mut flow: Flow, cold: Cold, h: u64) -> Option<u32> {
        (flow.a32, flow.b32) = key.short();
        (flow.port_a, flow.port_b, flow.proto, flow.v6) = (key.port_a, key.port_b, key.proto, key.v6);
        let slot = self.free.pop()?;
        let tag = Self::tag(h);
        let mut b = self.home(h);
        for _ in 0..self.buckets.len() {
            let bk = &mut self.buckets[b];
            if let Some(i) = bk.slot.iter().position(|&s| s == NONE) {
                bk.slot[i] = slot;
                bk.tags[i] = tag;
                let i = slot as usize;
                if let (Some(f), Some(c), Some(w)) =
                    (self.slab.get_mut(i), self.cold.get_mut(i), self.v6.get_mut(i))
                {
                    *f = flow;
                    *c = cold;
                    if key.v6 {
                        *w = [key.a[0], key.a[1], key.b[0], key.b[1]];
                    }
                }
                return Some(slot);
            }
            bk.overflow += 1;
            b = self.next(b);
        }
        // Unreachable: the index has more slots than the slab. Undo and report full.
        self.free.push(slot);
        None
    }

    /// Removes the flow in `slot`; returns it.
    pub fn remove(&mut self, slot: u32) -> Option<Flow> {
        let flow = *self.get(slot)?;
        let h = self.hash(&self.key_of(slot));
        let mut b = self.home(h);
        for _ in 0..self.buckets.len() {
            let bk = &mut self.buckets[b];
            if let Some(i) = bk.slot.iter().position(|&s| s == slot) {
                bk.slot[i] = NONE;
                bk.tags[i] = 0;
                break;
            }
            bk.overflow = bk.overflow.saturating_sub(1);
            b = self.next(b);
        }
        if let Some(f) = self.slab.get_mut(slot as usize) {
            f.state = st::FREE;
        }
        self.free.push(slot);
        Some(flow)
    }

    /// Samples `samples` slots (`rng` advances) and returns the best eviction candidate with its
    /// class, lowest class first, then least recently seen.
    pub fn pick_victim(
        &self,
        rng: &mut u64,
        samples: u32,
        now: u64,
        cfg: &DataplaneConfig,
    ) -> Option<(u32, u8)> {
        let n = self.slab.len() as u64;
        let mut best: Option<(u8, u64, u32)> = None;
        for _ in 0..samples.max(1) {
            *rng ^= *rng << 13;
            *rng ^= *rng >> 7;
            *rng ^= *rng << 17;
            let s = ((u128::from(*rng as u32) * u128::from(n)) >> 32) as u32;
            let Some(f) = self.get(s) else { continue };
            let c = f.evict_class(now, cfg);
            if c == 0 {
                return Some((s, 0));
            }
            if best.is_none_or(|(bc, bl, _)| (c, f.last_seen) < (bc, bl)) {
                best = Some((c, f.last_seen, s));
            }
        }
        best.map(|(c, _, s)| (s, c))
    }

    /// Occupied slots in slab order, from `start` (for sweeps and listings).
    pub fn iter_from(&self, start: usize) -> impl Iterator<Item = (u32, &Flow)> + '_ {
        self.slab
            .iter()
            .enumerate()
            .skip(start)
            .filter(|(_, f)| f.state != st::FREE)
            .map(|(i, f)| (i as u32, f))
    }

    /// Number of slab slots (occupied or not).
    pub fn slots(&self) -> usize {
        self.slab.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> FlowKey {
        FlowKey::new(
            IpAddr::V4(Ipv4Addr::from(0xC612_0000 + i)),
            1000,
            IpAddr::V4(Ipv4Addr::new(198, 19, 0, 1)),
            80,
            6,
        )
        .0
    }

    #[test]
    fn record_is_compact_and_bytes_per_flow_within_budget() {
        assert_eq!(std::mem::size_of::<Flow>(), 64);
        assert_eq!(std::mem::align_of::<Flow>(), 64);
        assert_eq!(std::mem::size_of::<Bucket>(), 64);
        let t = FlowTable::new(1 << 20, 7);
        let per_flow = t.memory_bytes() as f64 / f64::from(1u32 << 20);
        assert!(per_flow <= 128.0, "{per_flow} bytes per flow");
    }

    #[test]
    fn ipv6_keys_with_equal_folded_addresses_stay_distinct() {
        // fold() xors the two address words, so flipping the same bits in both collides.
        let a = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
        let a2 = Ipv6Addr::from(u128::from(a) ^ ((0xffu128 << 64) | 0xff));
        let b = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb9, 0, 1, 0, 0, 0, 1));
        let (k1, _) = FlowKey::new(IpAddr::V6(a), 1000, b, 80, 6);
        let (k2, _) = FlowKey::new(IpAddr::V6(a2), 1000, b, 80, 6);
        assert_ne!(k1, k2);
        assert_eq!(k1.short(), k2.short(), "the 32-bit filters collide");
        let mut t = FlowTable::new(16, 5);
        let s1 = t.insert(&k1, Flow { state: st::PSEUDO, ..Flow::default() }, Cold::default(), t.hash(&k1));
        assert_eq!(t.find(&k2, t.hash(&k2)), None, "the full addresses are compared");
        let s2 = t.insert(&k2, Flow { state: st::PSEUDO, ..Flow::default() }, Cold::default(), t.hash(&k2));
        assert_eq!(t.find(&k1, t.hash(&k1)), s1);
        assert_eq!(t.find(&k2, t.hash(&k2)), s2);
        assert_eq!(t.key_of(s2.unwrap_or(NONE)), k2);
        assert!(!t.holds(s1.unwrap_or(NONE), &k2));
    }

    #[test]
    fn canonical_key_is_direction_free() {
        let a = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));
        let b = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));
        let (k1, d1) = FlowKey::new(a, 5000, b, 80, 6);
        let (k2, d2) = FlowKey::new(b, 80, a, 5000, 6);
        assert_eq!(k1, k2);
        assert_ne!(d1, d2);
        let (k3, _) = FlowKey::new(a, 5000, b, 80, 17);
        assert_ne!(k1, k3);
        assert_eq!(k1.endpoint(d1), (a, 5000));
    }

    #[test]
    fn fill_to_capacity_remove_and_reinsert() {
        let cap = 5000;
        let mut t = FlowTable::new(cap, 99);
        for i in 0..cap {
            let k = key(i);
            let h = t.hash(&k);
            let f = Flow { state: st::PSEUDO, ..Flow::default() };
            assert!(t.insert(&k, f, Cold::default(), h).is_some(), "insert {i}");
        }
        assert!(t.is_full());
        let k = key(cap + 1);
        assert!(t
            .insert(&k, Flow { state: st::PSEUDO, ..Flow::default() }, Cold::default(), t.hash(&k))
            .is_none());
        for i in 0..cap {
            let k = key(i);
            assert!(t.find(&k, t.hash(&k)).is_some(), "find {i}");
        }
        for i in (0..cap).step_by(2) {
            let k = key(i);
            let s = t.find(&k, t.hash(&k)).unwrap_or(NONE);
            assert!(t.remove(s).is_some());
        }
        for i in 0..cap {
            let k = key(i);
            assert_eq!(t.find(&k, t.hash(&k)).is_some(), i % 2 == 1, "after removal {i}");
        }
        for i in cap..cap + cap / 2 {
            let k = key(i);
            assert!(t
                .insert(&k, Flow { state: st::PSEUDO, ..Flow::default() }, Cold::default(), t.hash(&k))
                .is_some());
        }
        assert_eq!(t.len(), cap as usize);
        assert!(t.buckets.iter().all(|b| b.overflow < cap));
    }
}
