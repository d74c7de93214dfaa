//! Packet classifier: the lowest-priority-number rule whose five fields all match a key.
//!
//! CONTRACT (owned by the classifier work; the engine and compiler rely only on this):
//! - A rule has five fields: `src` and `dst` as inclusive u32 ranges (an IPv4 prefix, or a range
//!   of identity ids), `proto` as value/mask, `sport` and `dport` as inclusive u16 ranges.
//! - `classify` returns the `RuleId` of the matching rule with the smallest `priority`
//!   (ties: smallest `RuleId`), or `None`.
//! - Built off the hot path by [`ClassifierBuilder`]; `classify` allocates nothing.
//! - [`Classifier::insert`] / [`Classifier::remove`] update a classifier in place (on a private
//!   clone: a published table set is immutable); ids are never reused.
//!
//! [`reference_classify`] is the naive linear scan, kept as the reference evaluator for tests.
//!
//! # Design: TupleMerge-style tuple-space search
//!
//! Tuple-space search (Srinivasan et al.) groups rules by the *tuple* of their field lengths and
//! keeps one hash table per tuple: a lookup masks the key with each table's tuple and probes. Its
//! strength is updates (insert/remove = one hash-table operation), its weakness is the number of
//! tables. TupleMerge (Daly, Liu, Torng, ToN 2019) cuts the number of tables by letting a rule live
//! in any table whose tuple is *no more specific* than the rule's own: the table hashes fewer bits,
//! rules that then share a hash key form a short collision list, and every candidate is checked
//! against all five fields. What is implemented here:
//!
//! - **Lengths of arbitrary ranges.** A field's length is the common-prefix length of its bounds
//!   (`(lo ^ hi).leading_zeros()`): exactly the prefix length for a CIDR block, and for any other
//!   range (identity-id ranges, port ranges like 1024-65535) the longest prefix that contains the
//!   whole range. Every key inside the range agrees with `lo` on those bits, so the rule can be
//!   hashed by them and the final five-field check decides. No range is ever split, so a rule costs
//!   exactly one entry whatever its shape. Protocol length = leading ones of the mask.
//! - **Table choice** (insert): among existing tables whose tuple is componentwise <= the rule's,
//!   the most specific one whose bucket for this rule still holds fewer than `collision_limit` (16)
//!   rules. If none has room, a new table, trying ever more specific tuples until the bucket has
//!   room: first the rule's address lengths rounded down to a multiple of 8 with ports and protocol
//!   not hashed at all (the five-field check does them), then with exact ports/protocol hashed, then
//!   addresses rounded to a multiple of 4, then the rule's own tuple. Build inserts rules in
//!   priority order, so high-priority rules shape the first tables. (Tuning on ClassBench 10k/100k:
//!   hashing ports in the coarse tables tripled the probes on fw1 and ipc1; rounding addresses to 16
//!   bits cut probes on acl1 but lengthened collision lists elsewhere.)
//! - **Priority order and early termination.** Each bucket is a singly linked list of rules sorted
//!   by rank `(priority, id)`; each table knows a lower bound of the best rank it holds, and tables
//!   are searched in that order. A lookup stops as soon as the next table cannot hold a better rule
//!   than the one found, and stops walking a list at the first match or at the first rank that
//!   cannot win.
//! - **Compact storage.** Rules live in one array indexed by [`RuleId`] (36 bytes each: the five
//!   ranges, the priority and the list link); a table is a `hashbrown` map from a 64-bit hash of the
//!   masked key to the head of its list. Two different masked keys that collide on 64 bits simply
//!   share a list, which is still correct because every candidate is fully checked.
//!
//! Trade-offs against the alternatives: decision trees (HiCuts, HyperCuts, EffiCuts, CutSplit,
//! NeuroCuts) and DPDK's rte_acl (a multibit trie compiled from the rules) look up in a bounded
//! number of memory accesses but take seconds to minutes and hundreds of MB to build on 100k
//! ClassBench rules, and cannot insert one rule without a rebuild. Tuple spaces build in
//! milliseconds, update in microseconds and use tens of bytes per rule; their lookup cost grows
//! with the number of tables probed, which priority ordering and early termination keep small on
//! real rule sets. Bulkhead swaps policies while traffic flows and the control plane edits rules
//! one at a time, so fast, predictable builds and updates win.
//!
//! After [`Classifier::remove`], a table's best-rank bound is not raised (it would need a scan of
//! the table); a stale bound only costs an extra probe, never a wrong answer. A full rebuild
//! (`ClassifierBuilder`) restores tight bounds and reclaims removed ids.
//!
//! [`Classifier::classify_batch`] walks the tables table-major over 16 keys at a time so that the
//! cache misses of different keys overlap; same answers as `classify`.
//!
//! ## Measured
//!
//! `BULKHEAD_BENCH_SUMMARY=1 cargo bench -p bulkhead-tables --bench classifier` (release, fat LTO),
//! on the 2-core development VM while a dozen other compilers ran (load average 11-16). Times are
//! on-CPU time (`/proc/thread-self/schedstat`), so descheduling does not count, but the caches were
//! shared with that load: treat lookup rates as a floor. Lookups run the whole ClassBench trace
//! (about 10 headers per rule) through `classify`; every answer is checked against the linear
//! first-match scan in `tests/classbench.rs`.
//!
//! | set | rules | tables | Mlookups/s | ns/lookup | batch Mlookups/s | build ms | bytes/rule | insert us | remove us |
//! |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|
//! | acl1_1000 | 931 | 19 | 6.5 | 154.0 | 4.0 | 0.1 | 58 | 0.47 | 0.04 |
//! | fw1_1000 | 808 | 17 | 7.6 | 130.8 | 5.0 | 0.1 | 56 | 0.46 | 0.03 |
//! | ipc1_1000 | 969 | 20 | 6.1 | 163.2 | 3.6 | 0.2 | 62 | 0.40 | 0.05 |
//! | acl1_10000 | 9807 | 19 | 4.9 | 202.9 | 3.5 | 1.6 | 57 | 0.53 | 0.03 |
//! | fw1_10000 | 9304 | 19 | 6.4 | 157.1 | 5.2 | 1.4 | 65 | 0.58 | 0.03 |
//! | ipc1_10000 | 9489 | 34 | 3.0 | 332.3 | 1.9 | 2.4 | 59 | 0.90 | 0.02 |
//! | acl1_100000 | 99354 | 35 | 1.7 | 577.0 | 1.9 | 21.6 | 72 | 0.93 | 0.10 |
//! | fw1_100000 | 88086 | 49 | 1.4 | 721.1 | 1.4 | 17.0 | 66 | 1.16 | 0.07 |
//! | ipc1_100000 | 99250 | 31 | 1.0 | 956.0 | 1.1 | 28.8 | 67 | 0.88 | 0.04 |
//!
//! Against the targets: build of 100k rules 17-29 ms (target <= 250 ms), insert about 1 us and
//! remove under 0.1 us (target <= 10 us), 56-72 bytes per rule (rte_acl needs hundreds of MB for
//! 100k ClassBench rules). Lookups are the open item: 1-7.6 M/s here, below the tens of millions per
//! second rte_acl reaches on small sets; the side-by-side run with `dpdk-test-acl` belongs to the
//! benchmark suite and was not made here. Per lookup the search probes 5-15 tables on average
//! (acl1 5, fw1 6-9, ipc1 14 at 10k/100k, measured with the hidden `probe_stats`), and each probe
//! is a hash plus a hashbrown group load; at 100k rules the bucket and rule loads miss the cache.
//! What would close the gap, in order of expected gain: (1) fewer probes for ipc1-like sets by a
//! first cut on the protocol or on one address byte before the tuple space (CutTSS, Li et al.
//! 2020), (2) a flat per-table open-addressing array holding the head rule's ranges inline so a hit
//! costs one cache line instead of three, (3) on a quiet machine, checking whether the batched
//! path's overlapped misses pay off (here it was slower: the extra pass costs more than the
//! overlap gains with caches shared by a dozen processes).
//!
use hashbrown::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Index of a rule within its tier (its position in the builder's input order).
pub type RuleId = u32;

/// The five header fields a classifier looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct ClassifierKey {
    pub src: u32,
    pub dst: u32,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
}

/// One classifier rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClassifierRule {
    pub src: (u32, u32),
    pub dst: (u32, u32),
    /// (value, mask): matches when `proto & mask == value & mask`.
    pub proto: (u8, u8),
    pub sport: (u16, u16),
    pub dport: (u16, u16),
    /// Lower wins.
    pub priority: u32,
}

impl ClassifierRule {
    /// The rule that matches everything, with the given priority.
    pub fn any(priority: u32) -> Self {
        Self {
            src: (0, u32::MAX),
            dst: (0, u32::MAX),
            proto: (0, 0),
            sport: (0, u16::MAX),
            dport: (0, u16::MAX),
            priority,
        }
    }

    #[inline]
    pub fn matches(&self, k: &ClassifierKey) -> bool {
        k.src >= self.src.0
            && k.src <= self.src.1
            && k.dst >= self.dst.0
            && k.dst <= self.dst.1
            && (k.proto & self.proto.1) == (self.proto.0 & self.proto.1)
            && k.sport >= self.sport.0
            && k.sport <= self.sport.1
            && k.dport >= self.dport.0
            && k.dport <= self.dport.1
    }

    /// True when no key can match (an inverted range).
    pub fn is_empty(&self) -> bool {
        self.src.0 > self.src.1
            || self.dst.0 > self.dst.1
            || self.sport.0 > self.sport.1
            || self.dport.0 > self.dport.1
    }
}

/// Collects rules, then builds a [`Classifier`].
///
/// Rules are stored in the classifier's own slot format, so `build` takes the array over instead
/// of copying it (at 150k rules that is 5 MiB of fresh memory and its page faults saved).
#[derive(Debug, Default, Clone)]
pub struct ClassifierBuilder {
    slots: Vec<Slot>,
}

impl ClassifierBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes room for `additional` more rules.
    pub fn reserve(&mut self, additional: usize) {
        self.slots.reserve(additional);
    }

    /// Adds a rule; its `RuleId` is its insertion index.
    pub fn push(&mut self, rule: ClassifierRule) -> RuleId {
        self.slots.push(Slot::new(&rule));
        (self.slots.len() - 1) as RuleId
    }

    pub fn build(self) -> Classifier {
        self.build_tuned(Tuning::default())
    }

    /// Builds with non-default tuning knobs (for experiments and benchmarks).
    #[doc(hidden)]
    pub fn build_tuned(self, tuning: Tuning) -> Classifier {
        let n = self.slots.len();
        let mut c = Classifier::with_capacity(0);
        c.tuning = tuning;
        // Ranks `(priority << 32) | id`, sorted: the placement order. Policies arrive mostly in
        // priority order already, which the sort detects.
        let mut ranks: Vec<u64> =
            self.slots.iter().enumerate().map(|(i, s)| rank(s.priority, i as RuleId)).collect();
        c.slots = self.slots;
        c.table_of = vec![DEAD; n];
        ranks.sort_unstable();
        // Bulk placement: rules come in ascending rank, so each one is appended at the tail of
        // its bucket list. Per list head, `tail` and `count` make that O(1) (the one-by-one
        // `place` walks the list to count it and again to link).
        let mut bulk = Bulk { tail: vec![NIL; n], count: vec![0u32; n] };
        for r in ranks {
            c.place_bulk(r as u32, &mut bulk);
        }
        c
    }
}

/// Knobs of the table-choice heuristic.
#[doc(hidden)]
#[derive(Clone, Copy, Debug)]
pub struct Tuning {
    /// At most this many rules share one bucket before a more specific table is used.
    pub collision_limit: u32,
    /// New tables round address lengths down to a multiple of this.
    pub addr_step: u8,
    /// New tables hash ports and protocol only when exact (false: never, the rule check does it).
    pub exact_ports: bool,
    /// Prefer the fitting table searched first (best rank) instead of the most specific one.
    pub first_fit: bool,
}

impl Default for Tuning {
    fn default() -> Self {
        Self { collision_limit: 16, addr_step: 8, exact_ports: false, first_fit: false }
    }
}
/// End of a bucket list.
const NIL: u32 = u32::MAX;
/// `table_of` value of a removed rule (or one not yet placed).
const DEAD: u32 = u32::MAX;
/// `table_of` value of a live rule that can match nothing (an inverted range): in no table.
const EMPTY: u32 = u32::MAX - 1;

/// `(priority, id)` as one ordered number: lower wins.
#[inline]
fn rank(priority: u32, id: RuleId) -> u64 {
    (u64::from(priority) << 32) | u64::from(id)
}

/// One rule in the match array, indexed by its `RuleId`.
#[derive(Clone, Copy, Debug)]
struct Slot {
    src: (u32, u32),
    dst: (u32, u32),
    sport: (u16, u16),
    dport: (u16, u16),
    proto: (u8, u8),
    priority: u32,
    /// Next rule in the same bucket (higher rank), or NIL.
    next: u32,
}

impl Slot {
    fn new(r: &ClassifierRule) -> Self {
        Self {
            src: r.src,
            dst: r.dst,
            sport: r.sport,
            dport: r.dport,
            proto: (r.proto.0 & r.proto.1, r.proto.1),
            priority: r.priority,
            next: NIL,
        }
    }

    fn rule(&self) -> ClassifierRule {
        ClassifierRule {
            src: self.src,
            dst: self.dst,
            proto: self.proto,
            sport: self.sport,
            dport: self.dport,
            priority: self.priority,
        }
    }

    #[inline(always)]
    fn matches(&self, k: &ClassifierKey) -> bool {
        // Non-short-circuit `&` keeps this branch-free: one unpredictable branch instead of nine.
        (k.src >= self.src.0)
            & (k.src <= self.src.1)
            & (k.dst >= self.dst.0)
            & (k.dst <= self.dst.1)
            & ((k.proto & self.proto.1) == self.proto.0)
            & (k.sport >= self.sport.0)
            & (k.sport <= self.sport.1)
            & (k.dport >= self.dport.0)
            & (k.dport <= self.dport.1)
    }

    /// The field lengths: how many leading bits every matching key shares with the rule.
    fn tuple(&self) -> Tuple {
        Tuple {
            src: (self.src.0 ^ self.src.1).leading_zeros() as u8,
            dst: (self.dst.0 ^ self.dst.1).leading_zeros() as u8,
            sport: (self.sport.0 ^ self.sport.1).leading_zeros() as u8,
            dport: (self.dport.0 ^ self.dport.1).leading_zeros() as u8,
            proto: self.proto.1.leading_ones() as u8,
        }
    }
}

/// Field lengths of a table (bits of each field that are hashed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Tuple {
    src: u8,
    dst: u8,
    sport: u8,
    dport: u8,
    proto: u8,
}

impl Tuple {
    /// True when a rule with tuple `r` can live in a table with this tuple.
    fn fits(&self, r: &Tuple) -> bool {
        self.src <= r.src
            && self.dst <= r.dst
            && self.sport <= r.sport
            && self.dport <= r.dport
            && self.proto <= r.proto
    }

    fn specificity(&self) -> u32 {
        u32::from(self.src)
            + u32::from(self.dst)
            + u32::from(self.sport)
            + u32::from(self.dport)
            + u32::from(self.proto)
    }

    /// The tuples a new table may get for a rule, coarsest first (so later rules can share it),
    /// ending with the rule's own tuple.
    fn relaxations(&self, t: &Tuning) -> [Tuple; 4] {
        let step = |l: u8, s: u8| l - l % s.max(1);
        let coarse = Tuple {
            src: step(self.src, t.addr_step),
            dst: step(self.dst, t.addr_step),
            sport: if t.exact_ports && self.sport == 16 { 16 } else { 0 },
            dport: if t.exact_ports && self.dport == 16 { 16 } else { 0 },
            proto: if t.exact_ports && self.proto == 8 { 8 } else { 0 },
        };
        let ports = Tuple {
            sport: if self.sport == 16 { 16 } else { 0 },
            dport: if self.dport == 16 { 16 } else { 0 },
            proto: if self.proto == 8 { 8 } else { 0 },
            ..coarse
        };
        let finer =
            Tuple { src: step(self.src, t.addr_step / 2), dst: step(self.dst, t.addr_step / 2), ..ports };
        [coarse, ports, finer, *self]
    }

    fn masks(&self) -> Masks {
        fn m32(l: u8) -> u32 {
            if l == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(l))
            }
        }
        fn m16(l: u8) -> u16 {
            if l == 0 {
                0
            } else {
                u16::MAX << (16 - u32::from(l))
            }
        }
        Masks {
            src: m32(self.src),
            dst: m32(self.dst),
            sport: m16(self.sport),
            dport: m16(self.dport),
            proto: if self.proto == 0 { 0 } else { u8::MAX << (8 - u32::from(self.proto)) },
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Masks {
    src: u32,
    dst: u32,
    sport: u16,
    dport: u16,
    proto: u8,
}

impl Masks {
    /// 64-bit hash of the masked fields (folded 64x64->128 multiply, as in wyhash / foldhash).
    #[inline(always)]
    fn hash(&self, src: u32, dst: u32, sport: u16, dport: u16, proto: u8) -> u64 {
        let a = (u64::from(src & self.src) << 32) | u64::from(dst & self.dst);
        let b = (u64::from(sport & self.sport) << 32)
            | (u64::from(dport & self.dport) << 16)
            | u64::from(proto & self.proto);
        let p = u128::from(a ^ 0x243f_6a88_85a3_08d3) * u128::from(b ^ 0x1319_8a2e_0370_7344);
        (p as u64) ^ ((p >> 64) as u64)
    }

    #[inline(always)]
    fn hash_key(&self, k: &ClassifierKey) -> u64 {
        self.hash(k.src, k.dst, k.sport, k.dport, k.proto)
    }

    fn hash_rule(&self, s: &Slot) -> u64 {
        self.hash(s.src.0, s.dst.0, s.sport.0, s.dport.0, s.proto.0)
    }
}

/// The map keys are already well-mixed 64-bit hashes: pass them through.
#[derive(Clone, Copy, Debug, Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

type Buckets = HashMap<u64, u32, BuildHasherDefault<PassThrough>>;

#[derive(Clone, Debug)]
struct Table {
    masks: Masks,
    /// Lower bound of the best rank of any rule in the table (u64::MAX when empty).
    min_rank: u64,
    tuple: Tuple,
    /// Number of rules in the table.
    count: u32,
    /// Hash of the masked key -> first rule of its bucket list.
    buckets: Buckets,
}

/// A classifier: tuple-space search with merged tuples (see the module docs).
#[derive(Clone)]
pub struct Classifier {
    /// Rules by RuleId (removed rules keep their slot; ids are never reused).
    slots: Vec<Slot>,
    /// Per RuleId: index into `tables`, or DEAD when removed.
    table_of: Vec<u32>,
    /// Tables; an index is stable for the classifier's life (an emptied table is kept for reuse).
    tables: Vec<Table>,
    /// Non-empty tables in ascending `min_rank`: the search order.
    order: Vec<u32>,
    /// Every table, most specific tuple first (ties: older table first): where `place` looks.
    by_spec: Vec<u32>,
    by_tuple: HashMap<Tuple, u32>,
    live: usize,
    tuning: Tuning,
}

impl std::fmt::Debug for Classifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Classifier")
            .field("rules", &self.live)
            .field("tables", &self.order.len())
            .field("memory_bytes", &self.memory_bytes())
            .finish()
    }
}

impl Default for Classifier {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl Classifier {
    fn with_capacity(n: usize) -> Self {
        Self {
            slots: Vec::with_capacity(n),
            table_of: Vec::with_capacity(n),
            tables: Vec::new(),
            order: Vec::new(),
            by_spec: Vec::new(),
            by_tuple: HashMap::new(),
            live: 0,
            tuning: Tuning::default(),
        }
    }

    /// The best matching rule: smallest priority, ties to the smallest id. Allocates nothing.
    #[inline]
    pub fn classify(&self, key: &ClassifierKey) -> Option<RuleId> {
        // Monomorphised for the constant filter: the same code as an unfiltered search.
        self.classify_where(key, |_| true)
    }

    /// The best-ranked matching rule among those `keep` accepts: what [`Classifier::classify`]
    /// would return if the rejected rules were not there. For the rare question "what decides
    /// without these rules?" (see `TableSet::decide`); allocates nothing.
    #[inline]
    pub fn classify_where(&self, key: &ClassifierKey, keep: impl Fn(RuleId) -> bool) -> Option<RuleId> {
        let mut best = u64::MAX;
        for &ti in &self.order {
            let t = &self.tables[ti as usize];
            if t.min_rank >= best {
                break;
            }
            let h = t.masks.hash_key(key);
            let Some(&head) = t.buckets.get(&h) else { continue };
            let mut i = head;
            while i != NIL {
                let s = &self.slots[i as usize];
                let r = rank(s.priority, i);
                if r >= best {
                    break;
                }
                if s.matches(key) && keep(i) {
                    best = r;
                    break;
                }
                i = s.next;
            }
        }
        (best != u64::MAX).then_some(best as u32)
    }

    /// Classifies a batch: `out[i] = classify(&keys[i])` for `i < min(keys.len(), out.len())`.
    ///
    /// Same answers as [`Classifier::classify`], computed table-major over chunks of 16 keys: the
    /// hash probes (and then the rule checks) of different keys are independent loads, so the CPU
    /// overlaps their cache misses instead of paying them one after another. Early termination is
    /// per key; a chunk stops when no key can improve. Allocates nothing.
    pub fn classify_batch(&self, keys: &[ClassifierKey], out: &mut [Option<RuleId>]) {
        const CHUNK: usize = 16;
        for (kc, oc) in keys.chunks(CHUNK).zip(out.chunks_mut(CHUNK)) {
            let n = kc.len().min(oc.len());
            let mut best = [u64::MAX; CHUNK];
            let mut heads = [NIL; CHUNK];
            for &ti in &self.order {
                let t = &self.tables[ti as usize];
                let mut any = false;
                for j in 0..n {
                    heads[j] = NIL;
                    if t.min_rank < best[j] {
                        any = true;
                        if let Some(&h) = t.buckets.get(&t.masks.hash_key(&kc[j])) {
                            heads[j] = h;
                        }
                    }
                }
                if !any {
                    // Tables are in ascending min_rank: no later table can improve any key.
                    break;
                }
                for j in 0..n {
                    let mut i = heads[j];
                    while i != NIL {
                        let s = &self.slots[i as usize];
                        let r = rank(s.priority, i);
                        if r >= best[j] {
                            break;
                        }
                        if s.matches(&kc[j]) {
                            best[j] = r;
                            break;
                        }
                        i = s.next;
                    }
                }
            }
            for j in 0..n {
                oc[j] = (best[j] != u64::MAX).then_some(best[j] as u32);
            }
        }
    }

    /// Number of live rules.
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Search statistics for one key: (tables probed, bucket hits, list nodes checked).
    #[doc(hidden)]
    pub fn probe_stats(&self, key: &ClassifierKey) -> (u32, u32, u32) {
        let (mut tables, mut hits, mut nodes) = (0, 0, 0);
        let mut best = u64::MAX;
        for &ti in &self.order {
            let t = &self.tables[ti as usize];
            if t.min_rank >= best {
                break;
            }
            tables += 1;
            let Some(&head) = t.buckets.get(&t.masks.hash_key(key)) else { continue };
            hits += 1;
            let mut i = head;
            while i != NIL {
                let s = &self.slots[i as usize];
                let r = rank(s.priority, i);
                if r >= best {
                    break;
                }
                nodes += 1;
                if s.matches(key) {
                    best = r;
                    break;
                }
                i = s.next;
            }
        }
        (tables, hits, nodes)
    }

    /// Bucket list lengths of every table, for tuning.
    #[doc(hidden)]
    pub fn bucket_lengths(&self) -> Vec<u32> {
        let mut v = Vec::new();
        for &ti in &self.order {
            for &h in self.tables[ti as usize].buckets.values() {
                v.push(self.list_len(Some(h)));
            }
        }
        v
    }

    /// Number of non-empty tuple tables (each lookup probes at most this many).
    pub fn table_count(&self) -> usize {
        self.order.len()
    }

    /// The live rule with this id.
    pub fn rule(&self, id: RuleId) -> Option<ClassifierRule> {
        (*self.table_of.get(id as usize)? != DEAD).then(|| self.slots[id as usize].rule())
    }

    /// All live rules with their ids, in id order.
    pub fn rules(&self) -> impl Iterator<Item = (RuleId, ClassifierRule)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|&(i, _)| self.table_of[i] != DEAD)
            .map(|(i, s)| (i as RuleId, s.rule()))
    }

    /// One past the largest id handed out (removed ids included).
    pub fn id_bound(&self) -> RuleId {
        self.slots.len() as RuleId
    }

    /// Heap bytes held by the classifier (capacity, not just length).
    pub fn memory_bytes(&self) -> usize {
        use std::mem::size_of;
        self.slots.capacity() * size_of::<Slot>()
            + self.table_of.capacity() * size_of::<u32>()
            + self.tables.capacity() * size_of::<Table>()
            + self.tables.iter().map(|t| t.buckets.allocation_size()).sum::<usize>()
            + self.order.capacity() * size_of::<u32>()
            + self.by_spec.capacity() * size_of::<u32>()
            + self.by_tuple.allocation_size()
    }

    /// Makes room for `additional` more [`Classifier::insert`]s without a reallocation of the
    /// rule arrays, and gives every table's hash map headroom for `min(additional, count / 8 +
    /// 64)` more buckets, so that inserts after it do not pay a Vec doubling or a large rehash
    /// (milliseconds at 100k rules) as long as they stay within that headroom. The rule arrays'
    /// new memory is touched here, so inserts do not take its page faults either. (`Clone` does
    /// not keep spare capacity: reserve on each copy.)
    pub fn reserve(&mut self, additional: usize) {
        let n = self.slots.len();
        let dummy = Slot::new(&ClassifierRule::any(0));
        self.slots.resize(n + additional, dummy);
        self.slots.truncate(n);
        self.table_of.resize(n + additional, DEAD);
        self.table_of.truncate(n);
        for t in &mut self.tables {
            let extra = additional.min(t.count as usize / 8 + 64);
            t.buckets.reserve(extra);
        }
        let more_tables = 64;
        self.tables.reserve(more_tables);
        self.order.reserve(self.tables.len() + more_tables - self.order.len());
        self.by_spec.reserve(more_tables);
        self.by_tuple.reserve(more_tables);
    }

    /// How many more rules fit in the rule arrays before they reallocate.
    pub fn spare_capacity(&self) -> usize {
        (self.slots.capacity() - self.slots.len()).min(self.table_of.capacity() - self.table_of.len())
    }

    /// Adds a rule and returns its id (the next unused id). A few microseconds.
    pub fn insert(&mut self, rule: ClassifierRule) -> RuleId {
        let id = self.slots.len() as RuleId;
        self.slots.push(Slot::new(&rule));
        self.table_of.push(DEAD);
        self.place(id);
        id
    }

    /// Removes a rule; false when the id is unknown or already removed.
    pub fn remove(&mut self, id: RuleId) -> bool {
        let Some(&ti) = self.table_of.get(id as usize) else { return false };
        if ti == DEAD {
            return false;
        }
        if ti == EMPTY {
            self.table_of[id as usize] = DEAD;
            self.live -= 1;
            return true;
        }
        let slot = self.slots[id as usize];
        let t = &mut self.tables[ti as usize];
        let h = t.masks.hash_rule(&slot);
        let head = *t.buckets.get(&h).expect("a placed rule is in its bucket");
        if head == id {
            if slot.next == NIL {
                t.buckets.remove(&h);
            } else {
                *t.buckets.get_mut(&h).expect("bucket exists") = slot.next;
            }
        } else {
            let mut p = head;
            while self.slots[p as usize].next != id {
                p = self.slots[p as usize].next;
                debug_assert_ne!(p, NIL, "rule missing from its bucket list");
            }
            self.slots[p as usize].next = slot.next;
        }
        self.slots[id as usize].next = NIL;
        self.table_of[id as usize] = DEAD;
        t.count -= 1;
        if t.count == 0 {
            t.min_rank = u64::MAX;
            self.order.retain(|&x| x != ti);
        }
        self.live -= 1;
        true
    }

    /// Number of rules in the bucket list starting at `head`.
    fn list_len(&self, head: Option<u32>) -> u32 {
        let mut n = 0;
        let mut i = head.unwrap_or(NIL);
        while i != NIL {
            n += 1;
            i = self.slots[i as usize].next;
        }
        n
    }

    /// The tables `place` may try for a rule with tuple `tup`, in preference order: non-empty
    /// tables that fit, most specific first (ties: earlier search order), or in search order
    /// with `first_fit`. Allocates nothing.
    fn candidates(&self, tup: Tuple) -> impl Iterator<Item = u32> + '_ {
        let list = if self.tuning.first_fit { &self.order } else { &self.by_spec };
        list.iter().copied().filter(move |&ti| {
            let t = &self.tables[ti as usize];
            t.count > 0 && t.tuple.fits(&tup)
        })
    }

    /// Puts an already stored slot into a table.
    fn place(&mut self, id: RuleId) {
        let slot = self.slots[id as usize];
        if slot.rule().is_empty() {
            // Matches nothing: a live rule (ids stay dense, `len` agrees with the input) in no table.
            self.table_of[id as usize] = EMPTY;
            self.live += 1;
            return;
        }
        let tup = slot.tuple();
        // Most specific existing table that fits and whose bucket has room.
        let chosen = self.candidates(tup).find(|&ti| {
            let t = &self.tables[ti as usize];
            let h = t.masks.hash_rule(&slot);
            self.list_len(t.buckets.get(&h).copied()) < self.tuning.collision_limit
        });
        let ti = match chosen {
            Some(ti) => ti,
            None => {
                // Ever more specific new tables until one has room for this rule's bucket.
                let mut ti = u32::MAX;
                for cand in tup.relaxations(&self.tuning) {
                    let t = self.table_for(cand);
                    let tb = &self.tables[t as usize];
                    let h = tb.masks.hash_rule(&slot);
                    ti = t;
                    if self.list_len(tb.buckets.get(&h).copied()) < self.tuning.collision_limit {
                        break;
                    }
                }
                ti
            }
        };
        self.link(id, ti);
    }

    /// The table with this tuple, created if needed (not yet in the search order if empty).
    fn table_for(&mut self, tuple: Tuple) -> u32 {
        if let Some(&ti) = self.by_tuple.get(&tuple) {
            return ti;
        }
        let ti = self.tables.len() as u32;
        self.tables.push(Table {
            masks: tuple.masks(),
            min_rank: u64::MAX,
            tuple,
            count: 0,
            buckets: Buckets::default(),
        });
        self.by_tuple.insert(tuple, ti);
        let tables = &self.tables;
        let spec = tuple.specificity();
        let pos = self.by_spec.partition_point(|&x| tables[x as usize].tuple.specificity() >= spec);
        self.by_spec.insert(pos, ti);
        ti
    }

    /// [`Classifier::place`] for the bulk build: rules arrive in ascending rank, so a rule goes
    /// to the tail of its bucket list, found in O(1) through `bulk` (same table choice as
    /// `place`; no list walk).
    fn place_bulk(&mut self, id: RuleId, bulk: &mut Bulk) {
        let slot = self.slots[id as usize];
        if slot.rule().is_empty() {
            self.table_of[id as usize] = EMPTY;
            self.live += 1;
            return;
        }
        let tup = slot.tuple();
        let limit = self.tuning.collision_limit;
        let len_of = |head: Option<u32>| head.map_or(0, |h| bulk.count[h as usize]);
        let mut pick = None;
        for ti in self.candidates(tup) {
            let t = &self.tables[ti as usize];
            let h = t.masks.hash_rule(&slot);
            let head = t.buckets.get(&h).copied();
            if len_of(head) < limit {
                pick = Some((ti, h, head));
                break;
            }
        }
        let (ti, h, head) = match pick {
            Some(p) => p,
            None => {
                let mut p = (u32::MAX, 0, None);
                for cand in tup.relaxations(&self.tuning) {
                    let ti = self.table_for(cand);
                    let t = &self.tables[ti as usize];
                    let h = t.masks.hash_rule(&slot);
                    let head = t.buckets.get(&h).copied();
                    p = (ti, h, head);
                    if len_of(head) < limit {
                        break;
                    }
                }
                p
            }
        };
        let t = &mut self.tables[ti as usize];
        match head {
            None => {
                t.buckets.insert(h, id);
                bulk.tail[id as usize] = id;
                bulk.count[id as usize] = 1;
            }
            Some(hd) => {
                let tail = bulk.tail[hd as usize];
                debug_assert!(rank(self.slots[tail as usize].priority, tail) < rank(slot.priority, id));
                self.slots[tail as usize].next = id;
                bulk.tail[hd as usize] = id;
                bulk.count[hd as usize] += 1;
            }
        }
        self.account(id, ti);
    }

    /// Bookkeeping after rule `id` was linked into table `ti`: counts and the search order.
    fn account(&mut self, id: RuleId, ti: u32) {
        let r = rank(self.slots[id as usize].priority, id);
        let t = &mut self.tables[ti as usize];
        t.count += 1;
        self.table_of[id as usize] = ti;
        self.live += 1;
        if r < t.min_rank {
            let was_empty = t.min_rank == u64::MAX;
            t.min_rank = r;
            if !was_empty {
                self.order.retain(|&x| x != ti);
            }
            let tables = &self.tables;
            let pos = self.order.partition_point(|&x| tables[x as usize].min_rank <= r);
            self.order.insert(pos, ti);
        }
    }

    /// Links rule `id` into its bucket of table `ti`, keeping lists and the search order sorted.
    fn link(&mut self, id: RuleId, ti: u32) {
        let r = rank(self.slots[id as usize].priority, id);
        let t = &mut self.tables[ti as usize];
        let h = t.masks.hash_rule(&self.slots[id as usize]);
        match t.buckets.get(&h).copied() {
            None => {
                t.buckets.insert(h, id);
            }
            Some(head) => {
                let head_rank = rank(self.slots[head as usize].priority, head);
                if r < head_rank {
                    self.slots[id as usize].next = head;
                    *t.buckets.get_mut(&h).expect("bucket exists") = id;
                } else {
                    let mut p = head;
                    loop {
                        let n = self.slots[p as usize].next;
                        if n == NIL || rank(self.slots[n as usize].priority, n) > r {
                            self.slots[id as usize].next = n;
                            self.slots[p as usize].next = id;
                            break;
                        }
                        p = n;
                    }
                }
            }
        }
        self.account(id, ti);
    }
}

/// Per bucket-list head, during [`ClassifierBuilder::build`]: the list's tail and length.
struct Bulk {
    tail: Vec<u32>,
    count: Vec<u32>,
}

/// The naive reference: a linear scan for the best matching rule.
pub fn reference_classify(rules: &[ClassifierRule], key: &ClassifierKey) -> Option<RuleId> {
    let mut best: Option<(u32, RuleId)> = None;
    for (i, r) in rules.iter().enumerate() {
        if r.matches(key) && best.is_none_or(|(p, _)| r.priority < p) {
            best = Some((r.priority, i as RuleId));
        }
    }
    best.map(|(_, i)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(src: u32, dst: u32, proto: u8, sport: u16, dport: u16) -> ClassifierKey {
        ClassifierKey { src, dst, proto, sport, dport }
    }

    fn build(rules: &[ClassifierRule]) -> Classifier {
        let mut b = ClassifierBuilder::new();
        for r in rules {
            b.push(*r);
        }
        b.build()
    }

    #[test]
    fn empty_classifier_matches_nothing() {
        let c = ClassifierBuilder::new().build();
        assert!(c.is_empty());
        assert_eq!(c.classify(&key(1, 2, 6, 3, 4)), None);
    }

    #[test]
    fn lowest_priority_number_wins_and_ties_go_to_the_smaller_id() {
        let web = ClassifierRule { dport: (443, 443), proto: (6, 0xFF), ..ClassifierRule::any(5) };
        let rules = [ClassifierRule::any(9), web, ClassifierRule::any(5), web];
        let c = build(&rules);
        assert_eq!(c.classify(&key(1, 2, 6, 1000, 443)), Some(1));
        assert_eq!(c.classify(&key(1, 2, 17, 1000, 443)), Some(2));
        assert_eq!(c.len(), 4);
    }

    #[test]
    fn non_prefix_ranges_match_exactly_their_bounds() {
        // Identity ids 3..=17: no prefix; ports 1000..=1999.
        let r = ClassifierRule { src: (3, 17), sport: (1000, 1999), ..ClassifierRule::any(0) };
        let c = build(&[r]);
        for (src, sport, want) in [
            (2, 1500, None),
            (3, 1500, Some(0)),
            (17, 1000, Some(0)),
            (18, 1500, None),
            (10, 999, None),
            (10, 2000, None),
        ] {
            assert_eq!(c.classify(&key(src, 0, 0, sport, 0)), want, "src {src} sport {sport}");
        }
    }

    #[test]
    fn protocol_mask_is_honoured() {
        let r = ClassifierRule { proto: (0x10, 0xF0), ..ClassifierRule::any(0) };
        let c = build(&[r]);
        assert_eq!(c.classify(&key(0, 0, 0x17, 0, 0)), Some(0));
        assert_eq!(c.classify(&key(0, 0, 0x27, 0, 0)), None);
    }

    #[test]
    fn inverted_ranges_match_nothing_but_keep_their_id() {
        let bad = ClassifierRule { sport: (10, 5), ..ClassifierRule::any(0) };
        let mut c = build(&[bad, ClassifierRule::any(1)]);
        assert_eq!(c.len(), 2);
        assert_eq!(c.classify(&key(0, 0, 0, 7, 0)), Some(1));
        assert!(c.remove(0));
        assert!(!c.remove(0));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn insert_and_remove_update_the_answer() {
        let mut c = build(&[ClassifierRule::any(10)]);
        let ssh = c.insert(ClassifierRule { dport: (22, 22), ..ClassifierRule::any(1) });
        assert_eq!(ssh, 1);
        assert_eq!(c.classify(&key(0, 0, 6, 1, 22)), Some(1));
        assert!(c.remove(ssh));
        assert_eq!(c.classify(&key(0, 0, 6, 1, 22)), Some(0));
        assert!(!c.remove(ssh));
        assert!(!c.remove(99));
        assert!(c.remove(0));
        assert!(c.is_empty());
        assert_eq!(c.classify(&key(0, 0, 6, 1, 22)), None);
        assert_eq!(c.table_count(), 0);
        // Ids are never reused.
        assert_eq!(c.insert(ClassifierRule::any(0)), 2);
        assert_eq!(c.classify(&key(0, 0, 6, 1, 22)), Some(2));
        assert_eq!(c.rules().map(|(i, _)| i).collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn reserve_keeps_answers_and_leaves_room_for_inserts() {
        let mut c = build(&[ClassifierRule::any(10)]);
        c.reserve(100);
        assert!(c.spare_capacity() >= 100);
        assert_eq!(c.len(), 1);
        assert_eq!(c.classify(&key(0, 0, 6, 1, 22)), Some(0));
        let ssh = c.insert(ClassifierRule { dport: (22, 22), ..ClassifierRule::any(1) });
        assert_eq!(ssh, 1);
        assert_eq!(c.classify(&key(0, 0, 6, 1, 22)), Some(1));
        assert!(c.spare_capacity() >= 99);
        // A clone does not keep the headroom.
        assert_eq!(c.clone().spare_capacity(), 0);
    }

    #[test]
    fn many_rules_in_one_bucket_overflow_into_more_specific_tables() {
        // 100 /32 sources under one /24: relaxed tuples collide, the collision limit must split.
        let rules: Vec<_> = (0..100u32)
            .map(|i| ClassifierRule { src: (0x0A00_0000 + i, 0x0A00_0000 + i), ..ClassifierRule::any(i) })
            .collect();
        let c = build(&rules);
        for i in 0..100u32 {
            assert_eq!(c.classify(&key(0x0A00_0000 + i, 0, 0, 0, 0)), Some(i));
        }
        assert_eq!(c.classify(&key(0x0A00_0000 + 100, 0, 0, 0, 0)), None);
        assert!(c.memory_bytes() > 0);
        assert!(format!("{c:?}").contains("rules: 100"));
    }
}
