//! Address -> identity longest-prefix match, IPv4 and IPv6.
//!
//! CONTRACT (owned by the LPM work; the engine and compiler rely only on this):
//! - [`IdentityMapBuilder::insert`] adds `prefix/len -> identity`; a later insert of the same
//!   prefix replaces the earlier one. `build` produces an immutable [`IdentityMap`].
//! - [`IdentityMap::lookup`] returns the identity of the longest matching prefix, or
//!   [`crate::WORLD`] when none covers the address. It allocates nothing.
//! - Must scale to at least 1M prefixes and 64k identities.
//! - Host bits below the prefix length are ignored (`10.1.2.3/8` is `10.0.0.0/8`); a length above
//!   the family's width is clamped (as [`crate::prefix_contains`] does). Identity ids must be below
//!   2^31 (they are dense indices; 64k is the design point).
//!
//! [`reference_lookup`] is the naive scan, kept as the reference evaluator for tests.
//!
//! # Design
//!
//! **IPv4: a 16-8-4-4 multibit trie** (the DIR-24-8 idea of Gupta, Lin and McKeown, with a 16-bit
//! first stride and short lower strides). A direct 65,536-entry root table is indexed by the top 16
//! bits; an entry is either an identity (leaf) or, with bit 31 set, the index of a chunk for the
//! next stride (256 entries for bits 8-15, then 16 entries for bits 4-7 and 16 for bits 0-3). A
//! lookup is one to four dependent loads with no branches on prefix lengths; addresses covered by
//! a prefix of /16 or shorter cost one load. Prefixes are expanded (controlled prefix expansion) at
//! build time, shortest first, so a longer prefix simply overwrites its part of a shorter one.
//! Memory: 256 KiB for the root, 1 KiB per /16 that holds a longer prefix, 64 bytes per /24 and per
//! /28 that holds a longer one. The first stride is 16 rather than DPDK's 24 so that a small policy
//! costs 256 KiB, not 64 MiB (every policy generation is a fresh table set); the 4-bit lower strides
//! keep a lone /32 at 128 bytes instead of the 1 KiB a 256-entry chunk would cost. What would
//! shrink it further is Poptrie-style bitmap compression of the chunks (Asai and Ohara).
//!
//! **IPv6: one hash table per distinct prefix length**, probed longest first; the first hit is the
//! answer. The cost is one probe per distinct length present (deployments use a handful: /48, /56,
//! /64, /128), independent of the number of prefixes; memory is one hash entry per prefix.
//! Binary search on lengths with markers (Waldvogel et al.) would bound probes by log2(129) if a
//! policy ever used many lengths.
//!
//! ## Measured
//!
//! `BULKHEAD_BENCH_SUMMARY=1 cargo bench -p bulkhead-tables --bench lpm` (release, fat LTO), on the
//! 2-core development VM under heavy load from other builds (on-CPU time; caches shared, so the
//! lookup rates are a floor). `random` spreads a BGP-like length mix uniformly over the address
//! space (the trie's worst case for memory); `dc` is 4,096 /20 subnets with 1M workload /32s.
//! Lookups: half inside an inserted prefix, half uniformly random.
//!
//! | prefix set (v4 + v6) | build ms | memory MiB | bytes/prefix | v4 Mlookups/s | v6 Mlookups/s |
//! |---|---:|---:|---:|---:|---:|
//! | random 10000 + 1000 | 13 | 8.9 | 863 | 36.2 | 18.5 |
//! | random 100000 + 10000 | 85 | 50.5 | 496 | 16.1 | 22.3 |
//! | random 1000000 + 0 | 467 | 77.9 | 86 | 11.3 | - |
//! | random 1000000 + 100000 | 462 | 82.0 | 84 | 13.7 | 8.4 |
//! | dc 1000000 + 0 | 355 | 47.4 | 51 | 8.2 | - |
//!
//! 1M prefixes: 48-82 MiB. (A first version with 256-entry chunks at both lower levels needed
//! 256 MiB for the random million.) The memory is dominated by the 1 KiB second-level chunks, one
//! per /16 holding a longer prefix: a sparse map pays for the /16s it touches.

use crate::{IdentityId, WORLD};
use hashbrown::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;

/// Bit 31 of a trie entry: the rest is a chunk index, not an identity.
const CHILD: u32 = 1 << 31;

#[derive(Debug, Default, Clone)]
pub struct IdentityMapBuilder {
    v4: HashMap<(u32, u8), IdentityId>,
    v6: HashMap<(u128, u8), IdentityId>,
}

impl IdentityMapBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `prefix/len -> id`, replacing an earlier entry for the same prefix.
    ///
    /// # Panics
    /// When `id >= 2^31` (identity ids are dense indices; see the module docs).
    pub fn insert(&mut self, prefix: IpAddr, len: u8, id: IdentityId) {
        assert!(id < CHILD, "identity id {id} does not fit the LPM entry format (must be < 2^31)");
        match prefix {
            IpAddr::V4(a) => {
                let len = len.min(32);
                self.v4.insert((u32::from(a) & mask32(len), len), id);
            }
            IpAddr::V6(a) => {
                let len = len.min(128);
                self.v6.insert((u128::from(a) & mask128(len), len), id);
            }
        }
    }

    /// Number of distinct prefixes so far.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn build(self) -> IdentityMap {
        let n = self.len();
        IdentityMap { v4: V4Trie::build(&self.v4), v6: V6Table::build(&self.v6), len: n }
    }
}

fn mask32(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len.min(32)))
    }
}

fn mask128(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len.min(128)))
    }
}

/// Bits consumed by each level of the IPv4 trie below the 16-bit root.
const STRIDES: [u32; 3] = [8, 4, 4];

/// The 16-8-4-4 IPv4 trie.
#[derive(Clone)]
struct V4Trie {
    root: Vec<u32>,
    /// Per level below the root: chunks of `1 << STRIDES[i]` entries, back to back.
    levels: [Vec<u32>; 3],
}

impl V4Trie {
    fn build(prefixes: &HashMap<(u32, u8), IdentityId>) -> Self {
        let mut sorted: Vec<(u8, u32, IdentityId)> =
            prefixes.iter().map(|(&(a, l), &id)| (l, a, id)).collect();
        sorted.sort_unstable();
        let mut t = V4Trie { root: vec![WORLD; 1 << 16], levels: [Vec::new(), Vec::new(), Vec::new()] };
        for (len, addr, id) in sorted {
            t.write(addr, len, id);
        }
        for l in &mut t.levels {
            l.shrink_to_fit();
        }
        t
    }

    /// Expands one prefix. Prefixes arrive shortest first, so the range being written never holds
    /// a child pointer yet (children are only made by longer prefixes), and a longer prefix simply
    /// overwrites its part of a shorter one.
    fn write(&mut self, addr: u32, len: u8, id: IdentityId) {
        let len = u32::from(len);
        if len <= 16 {
            let start = (addr >> 16) as usize;
            self.root[start..start + (1usize << (16 - len))].fill(id);
            return;
        }
        // Walk down, creating chunks (filled with the covering leaf) where needed.
        let mut entry_ref: (Option<usize>, usize) = (None, (addr >> 16) as usize);
        let mut consumed = 16u32;
        for (level, &stride) in STRIDES.iter().enumerate() {
            let entry = match entry_ref.0 {
                None => self.root[entry_ref.1],
                Some(l) => self.levels[l][entry_ref.1],
            };
            let base = if entry & CHILD != 0 {
                ((entry & !CHILD) as usize) << stride
            } else {
                let chunks = &mut self.levels[level];
                let idx = chunks.len() >> stride;
                chunks.extend(std::iter::repeat_n(entry, 1 << stride));
                let child = CHILD | idx as u32;
                match entry_ref.0 {
                    None => self.root[entry_ref.1] = child,
                    Some(l) => self.levels[l][entry_ref.1] = child,
                }
                idx << stride
            };
            let shift = 32 - consumed - stride;
            let index = ((addr >> shift) & ((1 << stride) - 1)) as usize;
            consumed += stride;
            if len <= consumed {
                let n = 1usize << (consumed - len);
                self.levels[level][base + index..base + index + n].fill(id);
                return;
            }
            entry_ref = (Some(level), base + index);
        }
    }

    #[inline]
    fn lookup(&self, a: u32) -> IdentityId {
        let e = self.root[(a >> 16) as usize];
        if e & CHILD == 0 {
            return e;
        }
        let e = self.levels[0][(((e & !CHILD) as usize) << 8) | ((a >> 8) & 0xFF) as usize];
        if e & CHILD == 0 {
            return e;
        }
        let e = self.levels[1][(((e & !CHILD) as usize) << 4) | ((a >> 4) & 0xF) as usize];
        if e & CHILD == 0 {
            return e;
        }
        self.levels[2][(((e & !CHILD) as usize) << 4) | (a & 0xF) as usize]
    }

    fn memory_bytes(&self) -> usize {
        (self.root.capacity() + self.levels.iter().map(Vec::capacity).sum::<usize>()) * 4
    }
}

/// Keys are masked addresses; a folded multiply mixes them into a 64-bit hash.
#[derive(Clone, Copy, Debug, Default)]
struct FoldHasher(u64);

impl Hasher for FoldHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u128(&mut self, v: u128) {
        let p = u128::from((v as u64) ^ 0x243f_6a88_85a3_08d3)
            * u128::from(((v >> 64) as u64) ^ 0x1319_8a2e_0370_7344);
        self.0 = (p as u64) ^ ((p >> 64) as u64);
    }
}

type V6Map = HashMap<u128, IdentityId, BuildHasherDefault<FoldHasher>>;

/// Per-length IPv6 hash tables, longest length first.
#[derive(Clone)]
struct V6Table {
    levels: Vec<(u128, V6Map)>,
}

impl V6Table {
    fn build(prefixes: &HashMap<(u128, u8), IdentityId>) -> Self {
        let mut by_len: Vec<Option<V6Map>> = (0..=128).map(|_| None).collect();
        for (&(a, l), &id) in prefixes {
            by_len[l as usize].get_or_insert_with(V6Map::default).insert(a, id);
        }
        let levels = by_len
            .into_iter()
            .enumerate()
            .rev()
            .filter_map(|(l, m)| {
                m.map(|mut m| {
                    m.shrink_to_fit();
                    (mask128(l as u8), m)
                })
            })
            .collect();
        V6Table { levels }
    }

    #[inline]
    fn lookup(&self, a: u128) -> IdentityId {
        for (mask, m) in &self.levels {
            if let Some(&id) = m.get(&(a & mask)) {
                return id;
            }
        }
        WORLD
    }

    fn memory_bytes(&self) -> usize {
        self.levels.capacity() * std::mem::size_of::<(u128, V6Map)>()
            + self.levels.iter().map(|(_, m)| m.allocation_size()).sum::<usize>()
    }
}

/// Immutable address -> identity map (see the module docs).
#[derive(Clone)]
pub struct IdentityMap {
    v4: V4Trie,
    v6: V6Table,
    len: usize,
}

impl std::fmt::Debug for IdentityMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityMap")
            .field("prefixes", &self.len)
            .field("v6_lengths", &self.v6.levels.len())
            .field("memory_bytes", &self.memory_bytes())
            .finish()
    }
}

impl IdentityMap {
    /// The identity of the longest prefix covering `addr`, or [`WORLD`]. Allocates nothing.
    #[inline]
    pub fn lookup(&self, addr: IpAddr) -> IdentityId {
        match addr {
            IpAddr::V4(a) => self.v4.lookup(u32::from(a)),
            IpAddr::V6(a) => self.v6.lookup(u128::from(a)),
        }
    }

    /// IPv4 lookup on a host-order address.
    #[inline]
    pub fn lookup_v4(&self, addr: u32) -> IdentityId {
        self.v4.lookup(addr)
    }

    /// IPv6 lookup on a host-order address.
    #[inline]
    pub fn lookup_v6(&self, addr: u128) -> IdentityId {
        self.v6.lookup(addr)
    }

    /// Number of prefixes.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Heap bytes held by the map.
    pub fn memory_bytes(&self) -> usize {
        self.v4.memory_bytes() + self.v6.memory_bytes()
    }
}

/// The naive reference: the longest prefix in `entries` covering `addr`; among equal prefixes the
/// later entry wins (the builder's replace rule). [`WORLD`] when none covers it.
pub fn reference_lookup(entries: &[(IpAddr, u8, IdentityId)], addr: IpAddr) -> IdentityId {
    let mut best: Option<(u8, IdentityId)> = None;
    for &(p, l, id) in entries {
        let l = match p {
            IpAddr::V4(_) => l.min(32),
            IpAddr::V6(_) => l.min(128),
        };
        if crate::prefix_contains(p, l, addr) && best.is_none_or(|(bl, _)| l >= bl) {
            best = Some((l, id));
        }
    }
    best.map_or(WORLD, |(_, id)| id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4(s: &str) -> IpAddr {
        IpAddr::V4(s.parse::<Ipv4Addr>().unwrap())
    }

    fn v6(s: &str) -> IpAddr {
        IpAddr::V6(s.parse::<Ipv6Addr>().unwrap())
    }

    #[test]
    fn empty_map_is_world_everywhere() {
        let m = IdentityMapBuilder::new().build();
        assert!(m.is_empty());
        assert_eq!(m.lookup(v4("1.2.3.4")), WORLD);
        assert_eq!(m.lookup(v6("2001:db8::1")), WORLD);
    }

    #[test]
    fn longest_prefix_wins_at_every_stride() {
        let mut b = IdentityMapBuilder::new();
        b.insert(v4("0.0.0.0"), 0, 1);
        b.insert(v4("10.0.0.0"), 8, 2);
        b.insert(v4("10.1.0.0"), 16, 3);
        b.insert(v4("10.1.2.0"), 23, 4);
        b.insert(v4("10.1.2.128"), 25, 5);
        b.insert(v4("10.1.2.130"), 32, 6);
        let m = b.build();
        assert_eq!(m.len(), 6);
        for (a, want) in [
            ("9.9.9.9", 1),
            ("10.9.9.9", 2),
            ("10.1.9.9", 3),
            ("10.1.3.1", 4),
            ("10.1.2.1", 4),
            ("10.1.2.129", 5),
            ("10.1.2.130", 6),
            ("10.1.2.131", 5),
            ("10.1.4.0", 3),
        ] {
            assert_eq!(m.lookup(v4(a)), want, "{a}");
        }
    }

    #[test]
    fn later_insert_of_the_same_prefix_replaces_and_host_bits_are_ignored() {
        let mut b = IdentityMapBuilder::new();
        b.insert(v4("198.18.1.0"), 24, 7);
        b.insert(v4("198.18.1.77"), 24, 8);
        b.insert(v6("2001:db8::"), 32, 1);
        b.insert(v6("2001:db8::ffff"), 32, 2);
        let m = b.build();
        assert_eq!(m.len(), 2);
        assert_eq!(m.lookup(v4("198.18.1.1")), 8);
        assert_eq!(m.lookup(v6("2001:db8:1::1")), 2);
    }

    #[test]
    fn ipv6_longest_length_wins_and_families_do_not_mix() {
        let mut b = IdentityMapBuilder::new();
        b.insert(v6("2001:db8::"), 32, 1);
        b.insert(v6("2001:db8:0:1::"), 64, 2);
        b.insert(v6("2001:db8:0:1::5"), 128, 3);
        b.insert(v4("0.0.0.0"), 0, 9);
        let m = b.build();
        assert_eq!(m.lookup(v6("2001:db8:0:1::5")), 3);
        assert_eq!(m.lookup(v6("2001:db8:0:1::6")), 2);
        assert_eq!(m.lookup(v6("2001:db8:0:2::6")), 1);
        assert_eq!(m.lookup(v6("2001:db9::")), WORLD);
        assert_eq!(m.lookup(v6("::ffff:1.2.3.4")), WORLD);
        assert_eq!(m.lookup(v4("1.2.3.4")), 9);
    }

    #[test]
    fn overlong_lengths_are_clamped() {
        let mut b = IdentityMapBuilder::new();
        b.insert(v4("1.2.3.4"), 40, 5);
        let m = b.build();
        assert_eq!(m.lookup(v4("1.2.3.4")), 5);
        assert_eq!(m.lookup(v4("1.2.3.5")), WORLD);
        assert_eq!(reference_lookup(&[(v4("1.2.3.4"), 40, 5)], v4("1.2.3.4")), 5);
    }

    #[test]
    #[should_panic(expected = "must be < 2^31")]
    fn identity_ids_above_the_format_are_refused() {
        IdentityMapBuilder::new().insert(v4("1.2.3.4"), 32, 1 << 31);
    }

    #[test]
    fn memory_is_small_for_small_maps() {
        let mut b = IdentityMapBuilder::new();
        b.insert(v4("10.1.2.3"), 32, 1);
        let m = b.build();
        // Root (256 KiB) + one chunk per level below it.
        assert_eq!(m.memory_bytes(), (65536 + 256 + 16 + 16) * 4);
        assert!(format!("{m:?}").contains("prefixes: 1"));
    }
}
