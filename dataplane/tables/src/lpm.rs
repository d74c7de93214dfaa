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
use std::net::IpAddr;
use std::sync::Arc;

/// Bit 31 of a trie entry: the rest is a chunk index, not an identity.
const CHILD: u32 = 1 << 31;

/// Collects prefixes, then builds an [`IdentityMap`].
///
/// Prefixes are appended to one vector per (family, length): inserting is a sequential write.
/// `build` fills the IPv4 trie length by length (shortest first, in insertion order, so a later
/// insert of the same prefix overwrites the earlier one) and builds each IPv6 length's table in
/// one sorted pass (see `ProbeTable`). [`IdentityMapBuilder::reserve`] sizes a length's vector up
/// front (the compiler knows the counts).
#[derive(Debug, Clone)]
pub struct IdentityMapBuilder {
    /// Per IPv4 length 0..=32: (masked address, id) in insertion order.
    v4: Vec<Vec<(u32, IdentityId)>>,
    /// Per IPv6 length 0..=64: records keyed by the masked top 64 bits.
    v6_short: Vec<Vec<Rec<u64>>>,
    /// Per IPv6 length 65..=128 (index `len - 65`): records keyed by the masked address.
    v6_long: Vec<Vec<Rec<u128>>>,
}

impl Default for IdentityMapBuilder {
    fn default() -> Self {
        Self { v4: vec![Vec::new(); 33], v6_short: vec![Vec::new(); 65], v6_long: vec![Vec::new(); 64] }
    }
}

impl IdentityMapBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `prefix/len -> id`, replacing an earlier entry for the same prefix.
    ///
    /// # Panics
    /// When `id >= 2^31` (identity ids are dense indices; see the module docs).
    #[inline]
    pub fn insert(&mut self, prefix: IpAddr, len: u8, id: IdentityId) {
        assert!(id < CHILD, "identity id {id} does not fit the LPM entry format (must be < 2^31)");
        match prefix {
            IpAddr::V4(a) => {
                let len = len.min(32);
                self.v4[len as usize].push((u32::from(a) & mask32(len), id));
            }
            IpAddr::V6(a) => {
                let len = len.min(128);
                let a = u128::from(a) & mask128(len);
                if len <= 64 {
                    self.v6_short[len as usize].push(Rec { key: (a >> 64) as u64, id, home: 0 });
                } else {
                    self.v6_long[len as usize - 65].push(Rec { key: a, id, home: 0 });
                }
            }
        }
    }

    /// Makes room for `additional` more prefixes of this family and length (a hint; clamped like
    /// `insert`).
    pub fn reserve(&mut self, v6: bool, len: u8, additional: usize) {
        if !v6 {
            self.v4[len.min(32) as usize].reserve(additional);
        } else if len <= 64 {
            self.v6_short[len as usize].reserve(additional);
        } else {
            self.v6_long[len.min(128) as usize - 65].reserve(additional);
        }
    }

    /// Number of insertions so far (a prefix inserted twice counts twice here; the built map
    /// keeps the last one and [`IdentityMap::len`] counts it once).
    pub fn len(&self) -> usize {
        self.v4.iter().map(Vec::len).sum::<usize>()
            + self.v6_short.iter().map(Vec::len).sum::<usize>()
            + self.v6_long.iter().map(Vec::len).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn build(self) -> IdentityMap {
        let mut n = 0usize;
        for v in &self.v4 {
            // Distinct prefixes; inserts usually come in ascending order, which needs no copy.
            if v.windows(2).all(|w| w[0].0 < w[1].0) {
                n += v.len();
            } else {
                let mut a: Vec<u32> = v.iter().map(|e| e.0).collect();
                a.sort_unstable();
                a.dedup();
                n += a.len();
            }
        }
        let v4 = V4Trie::build(&self.v4);
        let v6 = V6Table::build(self.v6_short, self.v6_long);
        n += v6.long.iter().map(|t| t.1.len()).sum::<usize>()
            + v6.short.iter().map(|t| t.1.len()).sum::<usize>();
        IdentityMap { v4, v6, len: n }
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

/// The 16-8-4-4 IPv4 trie. The arrays are `Arc<[u32]>` so that cloning a map (every table set of
/// an incremental update shares its LPM with the previous one) is O(1); indexing an `Arc<[u32]>`
/// costs the same loads as indexing a `Vec<u32>`.
#[derive(Clone)]
struct V4Trie {
    root: Arc<[u32]>,
    /// Per level below the root: chunks of `1 << STRIDES[i]` entries, back to back.
    levels: [Arc<[u32]>; 3],
}

/// The mutable trie while it is being filled.
struct V4Fill {
    root: Vec<u32>,
    levels: [Vec<u32>; 3],
}

impl V4Trie {
    /// `by_len[l]` holds the prefixes of length `l`: filling shortest first lets a longer prefix
    /// overwrite its part of a shorter one.
    fn build(by_len: &[Vec<(u32, IdentityId)>]) -> Self {
        let mut t = V4Fill { root: vec![WORLD; 1 << 16], levels: [Vec::new(), Vec::new(), Vec::new()] };
        for (len, m) in by_len.iter().enumerate() {
            for &(addr, id) in m {
                t.write(addr, len as u8, id);
            }
        }
        let [l0, l1, l2] = t.levels;
        V4Trie { root: t.root.into(), levels: [l0.into(), l1.into(), l2.into()] }
    }
}

impl V4Fill {
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
}

impl V4Trie {
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
        (self.root.len() + self.levels.iter().map(|l| l.len()).sum::<usize>()) * 4
    }
}

/// An IPv6 table key: a masked address (or its top 64 bits) and a well-mixed 64-bit hash of it.
trait ProbeKey: Copy + Eq + std::fmt::Debug {
    fn hash(self) -> u64;
}

impl ProbeKey for u64 {
    #[inline(always)]
    fn hash(self) -> u64 {
        let p = u128::from(self ^ 0x243f_6a88_85a3_08d3) * 0x1319_8a2e_0370_7344_u128;
        (p as u64) ^ ((p >> 64) as u64)
    }
}

impl ProbeKey for u128 {
    #[inline(always)]
    fn hash(self) -> u64 {
        let p = u128::from((self as u64) ^ 0x243f_6a88_85a3_08d3)
            * u128::from(((self >> 64) as u64) ^ 0x1319_8a2e_0370_7344);
        (p as u64) ^ ((p >> 64) as u64)
    }
}

/// One builder record / table slot: key, identity (`EMPTY` marks a free slot) and, while
/// building, the home slot.
#[derive(Clone, Copy, Debug)]
struct Rec<K> {
    key: K,
    id: IdentityId,
    home: u32,
}

/// `id` of a free slot (identity ids are below 2^31).
const EMPTY: IdentityId = u32::MAX;

/// Home slot of a hash in a table of `size` slots (multiply-shift range reduction).
#[inline(always)]
fn home_of(h: u64, size: u32) -> u32 {
    ((u128::from(h) * u128::from(size)) >> 64) as u32
}

/// An immutable open-addressing table with linear probing, **built sorted by home slot**.
///
/// Build: hash every record, radix-sort the records by home slot (LSD, 11-bit digits, stable so
/// that of two inserts of one prefix the later wins), then place them left to right, each at
/// `max(home, previous + 1)`. The writes are sequential (the old per-prefix hash-map insert was
/// two cache misses per prefix: 1M prefixes took ~200 ms, this takes a few tens). Because slots
/// are in home order, a lookup stops at the first free slot *or* at the first slot whose key
/// has a later home (Robin Hood order), so a miss costs about as much as a hit even at a load
/// of 0.8. A slot holds key and id together: a hit is one cache line (hashbrown's separate
/// control bytes cost a second). Placement never wraps: the array is extended past `size`
/// instead, and ends with a free slot so every probe terminates.
#[derive(Clone)]
struct ProbeTable<K> {
    slots: Box<[Rec<K>]>,
    size: u32,
    len: usize,
}

impl<K: ProbeKey + Default> ProbeTable<K> {
    fn build(mut recs: Vec<Rec<K>>) -> Self {
        let n = recs.len();
        let size = ((n as u64 * 5 / 4) as u32).max(1);
        for r in recs.iter_mut() {
            r.home = home_of(r.key.hash(), size);
        }
        // LSD radix sort on `home` (stable), digits of at most 12 bits. The scratch buffer is
        // allocated with the capacity of the final table; with an even number of passes the sorted
        // records end up back in `recs` and the scratch becomes the table, so a large build
        // touches fresh memory for one buffer, not two (page faults cost ~1 ms per MiB here).
        let bits = 32 - size.leading_zeros();
        let passes = match bits {
            0 => 0,
            1..=11 => 1,
            12..=24 => 2,
            _ => 4,
        };
        let free = Rec { key: K::default(), id: EMPTY, home: 0 };
        let cap = size as usize + 16;
        let mut tmp: Vec<Rec<K>> = Vec::with_capacity(if passes > 0 { cap.max(n) } else { 0 });
        if passes > 0 {
            tmp.resize(n, free);
            let digit = bits.div_ceil(passes);
            let radix = 1usize << digit;
            let mask = (radix - 1) as u32;
            let mut count = vec![0u32; radix + 1];
            for pass in 0..passes {
                let shift = pass * digit;
                count.fill(0);
                for r in &recs {
                    count[((r.home >> shift) & mask) as usize + 1] += 1;
                }
                for i in 1..=radix {
                    count[i] += count[i - 1];
                }
                for r in &recs {
                    let d = ((r.home >> shift) & mask) as usize;
                    tmp[count[d] as usize] = *r;
                    count[d] += 1;
                }
                std::mem::swap(&mut recs, &mut tmp);
            }
        }
        // Place in home order; a repeated key replaces the earlier entry (same home, so it is in
        // the current run of that home).
        let mut slots = if passes % 2 == 0 && tmp.capacity() >= cap { tmp } else { Vec::with_capacity(cap) };
        slots.clear();
        slots.resize(size as usize, free);
        let mut next = 0usize; // first slot not yet used
        let mut run_start = 0usize; // first slot of the current home's run
        let mut run_home = u32::MAX;
        let mut len = 0usize;
        for r in &recs {
            if r.home != run_home {
                run_home = r.home;
                run_start = next.max(r.home as usize);
                next = run_start;
            } else if let Some(s) = slots[run_start..next].iter_mut().find(|s| s.key == r.key) {
                s.id = r.id;
                continue;
            }
            if next >= slots.len() {
                slots.push(free);
            }
            slots[next] = Rec { key: r.key, id: r.id, home: r.home };
            next += 1;
            len += 1;
        }
        if next >= slots.len() {
            slots.push(free);
        }
        slots.push(free);
        Self { slots: slots.into_boxed_slice(), size, len }
    }

    #[inline]
    fn get(&self, key: K) -> Option<IdentityId> {
        let home = home_of(key.hash(), self.size);
        let mut i = home as usize;
        loop {
            let s = &self.slots[i];
            if s.id == EMPTY || s.home > home {
                return None;
            }
            if s.key == key {
                return Some(s.id);
            }
            i += 1;
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn memory_bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<Rec<K>>()
    }
}

/// Per-length IPv6 tables, longest length first: lengths above 64 keyed by the whole masked
/// address, lengths up to 64 (the common /48, /56, /64) by its top 64 bits, which halves their
/// memory (16 instead of 32 bytes per slot) and hashes one word instead of two.
#[derive(Clone)]
struct V6Table {
    long: Arc<[(u128, ProbeTable<u128>)]>,
    short: Arc<[(u64, ProbeTable<u64>)]>,
}

impl V6Table {
    fn build(short: Vec<Vec<Rec<u64>>>, long: Vec<Vec<Rec<u128>>>) -> Self {
        let long: Vec<(u128, ProbeTable<u128>)> = long
            .into_iter()
            .enumerate()
            .rev()
            .filter(|(_, m)| !m.is_empty())
            .map(|(i, m)| (mask128(i as u8 + 65), ProbeTable::build(m)))
            .collect();
        let short: Vec<(u64, ProbeTable<u64>)> = short
            .into_iter()
            .enumerate()
            .rev()
            .filter(|(_, m)| !m.is_empty())
            .map(|(l, m)| ((mask128(l as u8) >> 64) as u64, ProbeTable::build(m)))
            .collect();
        V6Table { long: long.into(), short: short.into() }
    }

    #[inline]
    fn lookup(&self, a: u128) -> IdentityId {
        for (mask, t) in self.long.iter() {
            if let Some(id) = t.get(a & mask) {
                return id;
            }
        }
        let hi = (a >> 64) as u64;
        for (mask, t) in self.short.iter() {
            if let Some(id) = t.get(hi & mask) {
                return id;
            }
        }
        WORLD
    }

    fn lengths(&self) -> usize {
        self.long.len() + self.short.len()
    }

    fn memory_bytes(&self) -> usize {
        self.long.len() * std::mem::size_of::<(u128, ProbeTable<u128>)>()
            + self.short.len() * std::mem::size_of::<(u64, ProbeTable<u64>)>()
            + self.long.iter().map(|(_, t)| t.memory_bytes()).sum::<usize>()
            + self.short.iter().map(|(_, t)| t.memory_bytes()).sum::<usize>()
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
            .field("v6_lengths", &self.v6.lengths())
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
    fn large_ipv6_tables_keep_every_prefix_and_the_last_duplicate() {
        // Sizes whose home slots take 10, 13 and 16 bits: one radix pass (separate table buffer)
        // and two (the scratch buffer becomes the table).
        for n in [700u128, 5000, 40_000] {
            let mut b = IdentityMapBuilder::new();
            let key = |i: u128| IpAddr::V6(Ipv6Addr::from((0x2001_0db8u128 << 96) | (i << 64)));
            for i in 0..n {
                b.insert(key(i), 64, (i % 1000) as IdentityId + 1);
            }
            // Re-insert every 7th prefix (out of order): the later insert wins.
            for i in (0..n).rev().step_by(7) {
                b.insert(key(i), 64, 5000);
            }
            let m = b.build();
            assert_eq!(m.len(), n as usize);
            for i in (0..n).step_by(97).chain([0, n - 1]) {
                let want = if (n - 1 - i) % 7 == 0 { 5000 } else { (i % 1000) as IdentityId + 1 };
                assert_eq!(m.lookup(key(i)), want, "prefix {i} of {n}");
            }
            assert_eq!(m.lookup(key(n)), WORLD);
        }
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
