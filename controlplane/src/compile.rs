//! The compiler: a validated [`Policy`] -> an immutable `bulkhead_tables::TableSet`.
//!
//! # Identity ids ("atoms")
//! The dataplane resolves each address to one [`IdentityId`] by longest-prefix match and the
//! identity tier classifies on (src id, dst id, proto, ports). Label selectors are sets of
//! identities, but `cidr` selectors are sets of *addresses*, and a cidr can cover part of an
//! identity (or part of `world`). To keep one tier and exact semantics, the compiler refines
//! identities into **atoms**: an atom is a pair (base identity or world, set of rule cidr prefixes
//! containing the address). Every rule-cidr prefix (and `except` prefix) is inserted into the LPM
//! beside the identity prefixes; the LPM answer for an address is then the longest prefix in the
//! combined set, and that prefix alone determines both the base identity (the longest *identity*
//! prefix containing it) and which rule cidrs contain the address. So a cidr selector compiles to
//! exactly the atoms whose signature contains it, and a label selector to every atom of every
//! matching identity. With no cidr selectors there is exactly one atom per identity.
//!
//! Atom ids are the identity ids of the table set: id 0 is plain `world`, then world fragments
//! (addresses outside every identity but inside some rule cidr), then for each identity its base
//! atom followed by its fragments. Every atom carries its base identity's name and segment, so
//! traces, flow logs and per-segment modes see the identity the operator wrote.
//!
//! # Keeping ranges few
//! Identities are ordered by their label values, most-selected label key first (usually `zone`),
//! so that a label selector covers few contiguous id runs. Ids that no LPM entry can return
//! (e.g. the base atom of an identity entirely inside a rule cidr) are "don't care": a range may
//! span them freely, which merges runs further.
//!
//! # Tiers and priorities
//! Tier 0 is the identity tier ([`TierKind::Identity`]). Every rule has a sparse *order key*
//! `k < 2^29` that grows with file order (rule `i` of `n` gets `(i + 1) * gap`, `gap =
//! min(4096, 2^29 / (n + 1))`), and its priority is `class * 2^29 + k` for denies (class 0 =
//! explicit `enforce`, 1 = inherited mode, 2 = explicit `monitor`) and `2^31 + k` for allows. So
//! the lowest priority that matches is a deny whenever any deny matches (deny-overrides), it is
//! the most binding one, ties go by file order, and the first allow in file order reports an
//! allow. The gaps let [`crate::incremental`] insert a rule between two others without
//! renumbering. Each `AclTier` becomes one [`TierKind::Acl`] tier after it with priority = the
//! line's order key (first match wins). The table set combines tiers: any deny beats any allow.
//!
//! # Speed (see docs/policy.md, "Compilation")
//! Label strings are interned once ([`LabelIndex`]); every selector is encoded as a short
//! `[u32]` word string over those symbols and memoised by it, so each distinct selector is
//! resolved once through posting lists of interned (key, value) pairs and no per-rule work hashes
//! or compares a string. Label posting lists are one flat array built by counting sort. The
//! rules are walked once (rule cidrs are numbered and identity names indexed on first use), the
//! identity prefixes once for sizes and cidr signatures (only in families that have rule cidrs;
//! the few non-empty signatures are kept as a short list) and once to fill the LPM. Identities
//! are ordered by one packed integer per identity. The LPM is filled straight into per-length
//! vectors sized up front, and every classifier entry of a rule shares the rule's one `Arc<str>`
//! name. (Memoising selectors or label maps by their strings was measured slower than interning
//! each string: comparing against the remembered copy costs more cache misses than it saves.)

use crate::diag::{Diagnostics, Loc};
use crate::model::*;
use bulkhead_tables::{
    Action, ClassifierBuilder, ClassifierRule, IdentityId, IdentityMapBuilder, Mode, Quarantine,
    QuarantineException, RuleMeta, TableSet, Tier, TierKind, WORLD,
};
use rustc_hash::FxHashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Upper bound on classifier entries in one table set (bounds memory for hostile policies).
pub const MAX_ENTRIES: usize = 16 << 20;

/// Priority base of allow rules in the identity tier; denies sit below it.
pub const ALLOW_PRIORITY_BASE: u32 = 1 << 31;

/// Order keys (file order, sparse) are below this; each deny class spans this many priorities.
pub const ORDER_SPAN: u32 = 1 << 29;

/// Largest gap between consecutive order keys a full compile leaves (room for inserts).
pub const MAX_ORDER_GAP: u32 = 1 << 12;

/// Where a classifier entry came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleSource {
    /// Index into `Policy::rules`.
    Identity(u32),
    /// (ACL tier index in `Policy::acl_tiers`, line index).
    Acl(u32, u32),
}

/// Numbers about one compilation, for `policy check --stats` and the benchmark.
#[derive(Clone, Debug, Default)]
pub struct CompileStats {
    pub identities: usize,
    pub atoms: usize,
    pub prefixes: usize,
    pub rules: usize,
    pub acl_rules: usize,
    /// Classifier entries per tier.
    pub entries: Vec<usize>,
    /// Label interning, selector interning and identity ordering.
    pub index_time: Duration,
    /// Atom assignment, including inserting every prefix into the LPM builder.
    pub atoms_time: Duration,
    pub resolve_time: Duration,
    /// Classifier entries and rule metadata of every tier, and `ClassifierBuilder::build`.
    pub classifier_time: Duration,
    /// `IdentityMapBuilder::build`.
    pub lpm_time: Duration,
    pub total_time: Duration,
    /// Heap bytes of the table set: classifier and LPM structures (as they account for
    /// themselves), rule metadata and identity names.
    pub estimated_bytes: usize,
}

/// A compiled policy: the table set plus the maps the CLI needs to explain it.
#[derive(Debug)]
pub struct CompiledPolicy {
    pub tables: TableSet,
    /// Per identity id (atom): the index of its identity in `Policy::identities`, `None` = world.
    pub atom_identity: Vec<Option<u32>>,
    /// Per policy identity: its atom ids as an inclusive range (the first is its base atom;
    /// see [`CompiledPolicy::identity_atoms`]).
    pub identity_blocks: Vec<(IdentityId, IdentityId)>,
    /// Per tier, per rule id: where the entry came from.
    pub sources: Vec<Vec<RuleSource>>,
    pub stats: CompileStats,
}

impl CompiledPolicy {
    /// The atom ids of policy identity `i` (index in `Policy::identities`), base atom first.
    pub fn identity_atoms(&self, i: usize) -> std::ops::RangeInclusive<IdentityId> {
        let (lo, hi) = self.identity_blocks[i];
        lo..=hi
    }

    /// All identity ids that carry identity `name` (base atom and cidr fragments); `world` gives
    /// every world atom. Use this, not a search in `identity_names`, to quarantine by name.
    pub fn ids_of(&self, name: &str) -> Vec<IdentityId> {
        if name == "world" {
            return (0..self.atom_identity.len() as u32)
                .filter(|&a| self.atom_identity[a as usize].is_none())
                .collect();
        }
        self.tables
            .identity_names
            .iter()
            .enumerate()
            .filter(|(i, n)| *n == name && self.atom_identity[*i].is_some())
            .map(|(i, _)| i as IdentityId)
            .collect()
    }
}

/// Sorted, merged inclusive ranges of ids.
pub(crate) type Ranges = Vec<(u32, u32)>;

// ---------------------------------------------------------------------------------------------
// Interned labels

/// Interned label strings, and per identity its labels as (key, value) symbol pairs.
#[derive(Debug, Default)]
pub(crate) struct LabelIndex {
    syms: FxHashMap<Box<str>, u32>,
    strs: Vec<Box<str>>,
    /// Label sets ("rows"): row `r`'s labels are `pairs[off[r]..off[r + 1]]`, sorted by key
    /// symbol. (Today one row per identity; sharing rows between identities with equal label
    /// maps was measured slower: comparing label maps costs more cache misses than it saves.)
    pairs: Vec<(u32, u32)>,
    off: Vec<u32>,
    /// Per identity: its row.
    row_of: Vec<u32>,
    /// (key, value) -> posting list (identities with that label, ascending).
    postings: FxHashMap<(u32, u32), u32>,
    /// key -> posting list (identities having the key, ascending).
    key_postings: FxHashMap<u32, u32>,
    /// Posting list `l` is `lists[lists_off[l]..lists_off[l + 1]]`.
    lists: Vec<u32>,
    lists_off: Vec<u32>,
    /// Identity name -> index (built only when an `identity:` selector needs it).
    names: Option<FxHashMap<Box<str>, u32>>,
}

impl LabelIndex {
    pub(crate) fn new(ids: &[Identity]) -> Self {
        let mut ix = LabelIndex::default();
        ix.off.reserve(ids.len() + 1);
        ix.off.push(0);
        ix.row_of.reserve(ids.len());
        ix.pairs.reserve(ids.len() * 4);
        // Per row: the posting lists of its pairs, then of its keys.
        let mut row_lists: Vec<u32> = Vec::with_capacity(ids.len() * 4);
        let mut row_lists_off: Vec<u32> = Vec::with_capacity(ids.len() + 1);
        row_lists_off.push(0);
        let mut n_lists = 0u32;
        let mut row: Vec<(u32, u32)> = Vec::new();
        for id in ids {
            row.clear();
            for (k, v) in &id.labels {
                let (k, v) = (ix.intern(k), ix.intern(v));
                row.push((k, v));
            }
            row.sort_unstable();
            for &(k, v) in &row {
                let l = *ix.postings.entry((k, v)).or_insert_with(|| {
                    n_lists += 1;
                    n_lists - 1
                });
                row_lists.push(l);
            }
            for &(k, _) in &row {
                let l = *ix.key_postings.entry(k).or_insert_with(|| {
                    n_lists += 1;
                    n_lists - 1
                });
                row_lists.push(l);
            }
            row_lists_off.push(row_lists.len() as u32);
            ix.pairs.extend_from_slice(&row);
            ix.off.push(ix.pairs.len() as u32);
            ix.row_of.push(ix.row_of.len() as u32);
        }
        // Posting lists by counting sort (identities ascending within each list).
        let lists_of =
            |r: u32| &row_lists[row_lists_off[r as usize] as usize..row_lists_off[r as usize + 1] as usize];
        let mut start = vec![0u32; n_lists as usize + 1];
        for &r in &ix.row_of {
            for &l in lists_of(r) {
                start[l as usize + 1] += 1;
            }
        }
        for l in 1..start.len() {
            start[l] += start[l - 1];
        }
        ix.lists = vec![0; start[n_lists as usize] as usize];
        ix.lists_off = start.clone();
        for (i, &r) in ix.row_of.iter().enumerate() {
            for &l in lists_of(r) {
                ix.lists[start[l as usize] as usize] = i as u32;
                start[l as usize] += 1;
            }
        }
        ix
    }

    /// Where posting list `l` lies in `lists` (empty for `None`).
    fn list_range(&self, l: Option<u32>) -> std::ops::Range<usize> {
        l.map_or(0..0, |l| self.lists_off[l as usize] as usize..self.lists_off[l as usize + 1] as usize)
    }

    /// Where in `lists` the identities (ascending) with label `k = v` are.
    fn posting(&self, kv: (u32, u32)) -> std::ops::Range<usize> {
        self.list_range(self.postings.get(&kv).copied())
    }

    /// Where in `lists` the identities (ascending) having key `k` are.
    fn key_posting(&self, k: u32) -> std::ops::Range<usize> {
        self.list_range(self.key_postings.get(&k).copied())
    }

    fn intern(&mut self, s: &str) -> u32 {
        if let Some(&x) = self.syms.get(s) {
            return x;
        }
        let x = self.strs.len() as u32;
        self.strs.push(s.into());
        self.syms.insert(s.into(), x);
        x
    }

    fn sym(&self, s: &str) -> Option<u32> {
        self.syms.get(s).copied()
    }

    fn len(&self) -> usize {
        self.row_of.len()
    }

    fn labels(&self, i: u32) -> &[(u32, u32)] {
        let r = self.row_of[i as usize] as usize;
        &self.pairs[self.off[r] as usize..self.off[r + 1] as usize]
    }

    fn value(&self, i: u32, k: u32) -> Option<u32> {
        self.labels(i).iter().find(|p| p.0 == k).map(|p| p.1)
    }

    /// Makes `identity:` selectors resolvable (name -> index).
    pub(crate) fn ensure_names(&mut self, ids: &[Identity]) {
        if self.names.is_none() {
            self.names =
                Some(ids.iter().enumerate().map(|(i, id)| (id.name.as_str().into(), i as u32)).collect());
        }
    }
}

/// Rule-cidr prefixes (and `except` prefixes), numbered in first-use order.
#[derive(Debug, Default)]
pub(crate) struct CidrIndex {
    pub(crate) prefixes: Vec<Cidr>,
    pub(crate) index: FxHashMap<Cidr, u32>,
}

impl CidrIndex {
    /// Numbers a cidr selector's prefix and exceptions (first use first).
    fn add(&mut self, cidr: &Cidr, except: &[Cidr]) {
        for c in std::iter::once(cidr).chain(except) {
            self.index.entry(*c).or_insert_with(|| {
                self.prefixes.push(*c);
                self.prefixes.len() as u32 - 1
            });
        }
    }
}

// Selector encoding: a selector becomes a short word string over interned symbols, the key of the
// resolution memo. Conditions on strings no identity carries are decided at encoding time.
const T_NEVER: u32 = 0;
const T_LABELS: u32 = 1;
const T_IDENTITY: u32 = 2;
const T_CIDR: u32 = 3;
const T_WORLD: u32 = 4;
const OP_IN: u32 = 0;
const OP_NOT_IN: u32 = 1;
const OP_EXISTS: u32 = 2;
const OP_NOT_EXISTS: u32 = 3;

/// Why a selector could not be encoded: it names a cidr prefix that has no atoms yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NewCidr(pub(crate) Cidr);

/// Encodes `sel` into `out` (cleared first).
pub(crate) fn encode_selector(
    sel: &Selector,
    ix: &LabelIndex,
    cidrs: &CidrIndex,
    out: &mut Vec<u32>,
) -> Result<(), NewCidr> {
    out.clear();
    match sel {
        Selector::World => out.push(T_WORLD),
        Selector::Identity(n) => {
            match ix.names.as_ref().and_then(|m| m.get(n.as_str())) {
                Some(&i) => out.extend([T_IDENTITY, i]),
                None => out.push(T_NEVER),
            };
        }
        Selector::Cidr { cidr, except } => {
            out.push(T_CIDR);
            out.push(*cidrs.index.get(cidr).ok_or(NewCidr(*cidr))?);
            for e in except {
                out.push(*cidrs.index.get(e).ok_or(NewCidr(*e))?);
            }
        }
        Selector::Labels { labels, exprs } => {
            out.extend([T_LABELS, labels.len() as u32]);
            for (k, v) in labels {
                match (ix.sym(k), ix.sym(v)) {
                    (Some(k), Some(v)) => out.extend([k, v]),
                    _ => {
                        out.clear();
                        out.push(T_NEVER);
                        return Ok(());
                    }
                }
            }
            let n_at = out.len();
            out.push(0);
            let mut n = 0;
            for e in exprs {
                match e {
                    Expr::In(k, vs) | Expr::NotIn(k, vs) => {
                        let is_in = matches!(e, Expr::In(..));
                        let Some(k) = ix.sym(k) else {
                            if is_in {
                                out.clear();
                                out.push(T_NEVER);
                                return Ok(());
                            }
                            continue; // NotIn on a key nobody has: always true
                        };
                        let at = out.len();
                        out.extend([if is_in { OP_IN } else { OP_NOT_IN }, k, 0]);
                        let mut m = 0;
                        for v in vs {
                            if let Some(v) = ix.sym(v) {
                                out.push(v);
                                m += 1;
                            }
                        }
                        if m == 0 {
                            out.truncate(at);
                            if is_in {
                                out.clear();
                                out.push(T_NEVER);
                                return Ok(());
                            }
                            continue;
                        }
                        out[at + 2] = m;
                        out[at + 3..].sort_unstable();
                        n += 1;
                    }
                    Expr::Exists(k) => match ix.sym(k) {
                        Some(k) => {
                            out.extend([OP_EXISTS, k]);
                            n += 1;
                        }
                        None => {
                            out.clear();
                            out.push(T_NEVER);
                            return Ok(());
                        }
                    },
                    Expr::DoesNotExist(k) => {
                        if let Some(k) = ix.sym(k) {
                            out.extend([OP_NOT_EXISTS, k]);
                            n += 1;
                        }
                    }
                }
            }
            out[n_at] = n;
        }
    }
    Ok(())
}

/// Pushes `emit(identity, position)` onto `out` for every identity a `T_LABELS` / `T_IDENTITY`
/// encoding selects, ascending; `position` is the identity's place in `ix.lists` when it came
/// from a posting list (see [`Atoms::index_postings`]).
///
/// The shortest posting list among the selector's equalities and `exists` terms is walked, and
/// only the *other* terms are checked per identity: a single `key: value` selector reads its
/// posting list and nothing else (each check is a few cache misses on a cold index, and a cold
/// index is what an incremental update usually meets).
fn push_selected(
    key: &[u32],
    ix: &LabelIndex,
    out: &mut Ranges,
    emit: impl Fn(u32, Option<usize>) -> (u32, u32),
) {
    match key[0] {
        T_IDENTITY => return out.push(emit(key[1], None)),
        T_LABELS => {}
        _ => return,
    }
    let n_eq = key[1] as usize;
    let eq = &key[2..2 + 2 * n_eq];
    // Expressions: (op, key, values) in encoding order, at most a selector's worth.
    let mut exprs: Vec<(u32, u32, &[u32])> = Vec::new();
    let mut at = 2 + 2 * n_eq;
    let n_ex = key[at] as usize;
    at += 1;
    for _ in 0..n_ex {
        let (op, k) = (key[at], key[at + 1]);
        if op == OP_IN || op == OP_NOT_IN {
            let m = key[at + 2] as usize;
            exprs.push((op, k, &key[at + 3..at + 3 + m]));
            at += 3 + m;
        } else {
            exprs.push((op, k, &[]));
            at += 2;
        }
    }
    // The walked list: (range in ix.lists, index of its equality or expression).
    let mut best: Option<(std::ops::Range<usize>, usize)> = None;
    for (j, c) in eq.chunks(2).enumerate() {
        let r = ix.posting((c[0], c[1]));
        if best.as_ref().is_none_or(|b| r.len() < b.0.len()) {
            best = Some((r, j));
        }
    }
    for (j, e) in exprs.iter().enumerate() {
        if e.0 == OP_EXISTS {
            let r = ix.key_posting(e.1);
            if best.as_ref().is_none_or(|b| r.len() < b.0.len()) {
                best = Some((r, n_eq + j));
            }
        }
    }
    let skip = best.as_ref().map_or(usize::MAX, |b| b.1);
    let ok = |i: u32| {
        eq.chunks(2).enumerate().all(|(j, c)| j == skip || ix.value(i, c[0]) == Some(c[1]))
            && exprs.iter().enumerate().all(|(j, &(op, k, vs))| {
                if n_eq + j == skip {
                    return true;
                }
                let have = ix.value(i, k);
                match op {
                    OP_IN => have.is_some_and(|v| vs.binary_search(&v).is_ok()),
                    OP_NOT_IN => have.is_none_or(|v| vs.binary_search(&v).is_err()),
                    OP_EXISTS => have.is_some(),
                    _ => have.is_none(),
                }
            })
    };
    out.reserve(best.as_ref().map_or(ix.len(), |b| b.0.len()));
    match best {
        Some((r, _)) => {
            for pos in r {
                let i = ix.lists[pos];
                if ok(i) {
                    out.push(emit(i, Some(pos)));
                }
            }
        }
        None => {
            for i in 0..ix.len() as u32 {
                if ok(i) {
                    out.push(emit(i, None));
                }
            }
        }
    }
}

/// Atom-id ranges an encoded selector selects.
pub(crate) fn resolve_key(key: &[u32], ix: &LabelIndex, atoms: &Atoms) -> Ranges {
    let mut ids: Ranges = match key[0] {
        T_NEVER => Vec::new(),
        T_WORLD => vec![(0, atoms.world_count - 1)],
        T_CIDR => {
            let ex = &key[2..];
            atoms.by_prefix[key[1] as usize]
                .iter()
                .filter(|&&a| !atoms.sig[a as usize].iter().any(|s| ex.contains(s)))
                .map(|&a| (a, a))
                .collect()
        }
        _ => {
            let mut v = Vec::new();
            push_selected(key, ix, &mut v, |i, pos| atoms.block_of(i, pos));
            v
        }
    };
    atoms.merge(&mut ids);
    ids
}

/// Distinct encoded selectors, numbered, with their occurrence counts and resolved ranges.
#[derive(Debug, Default)]
pub(crate) struct SelectorMemo {
    ids: FxHashMap<Box<[u32]>, u32>,
    pub(crate) keys: Vec<Box<[u32]>>,
    counts: Vec<u32>,
    pub(crate) ranges: Vec<Ranges>,
}

impl SelectorMemo {
    /// Room for `additional` more distinct selectors without a rehash (incremental updates).
    pub(crate) fn reserve(&mut self, additional: usize) {
        self.ids.reserve(additional);
        self.keys.reserve(additional);
        self.counts.reserve(additional);
        self.ranges.reserve(additional);
    }

    /// The id of an encoded selector (new ones get the next id; resolve them with `resolve_new`).
    pub(crate) fn id(&mut self, key: &[u32]) -> u32 {
        if let Some(&id) = self.ids.get(key) {
            self.counts[id as usize] += 1;
            return id;
        }
        let id = self.keys.len() as u32;
        self.ids.insert(key.into(), id);
        self.keys.push(key.into());
        self.counts.push(1);
        id
    }

    /// Resolves every selector that has no ranges yet.
    pub(crate) fn resolve_new(&mut self, ix: &LabelIndex, atoms: &Atoms) {
        for k in self.ranges.len()..self.keys.len() {
            let r = resolve_key(&self.keys[k], ix, atoms);
            self.ranges.push(r);
        }
    }
}

/// Orders identities so that label selectors become few contiguous runs: by the rank of their
/// value for each label key, most-selected key first (up to 8 keys), ties by policy order.
fn identity_order(ix: &LabelIndex, memo: &SelectorMemo) -> Vec<u32> {
    let mut freq: FxHashMap<u32, usize> = FxHashMap::default();
    for (key, &count) in memo.keys.iter().zip(&memo.counts) {
        if key[0] != T_LABELS {
            continue;
        }
        let n_eq = key[1] as usize;
        for c in key[2..2 + 2 * n_eq].chunks(2) {
            *freq.entry(c[0]).or_default() += count as usize;
        }
        let mut at = 2 + 2 * n_eq;
        let n_ex = key[at];
        at += 1;
        for _ in 0..n_ex {
            *freq.entry(key[at + 1]).or_default() += count as usize;
            at += if key[at] == OP_IN || key[at] == OP_NOT_IN { 3 + key[at + 2] as usize } else { 2 };
        }
    }
    if let Some(z) = ix.sym("zone") {
        *freq.entry(z).or_default() += 1;
    }
    let mut keys: Vec<(u32, usize)> =
        freq.into_iter().filter(|k| ix.key_postings.contains_key(&k.0)).collect();
    keys.sort_by(|a, b| b.1.cmp(&a.1).then(ix.strs[a.0 as usize].cmp(&ix.strs[b.0 as usize])));
    keys.truncate(8); // deeper keys rarely matter for contiguity; bounded work per identity
                      // Rank of every value per chosen key (0 = key absent; values from 1 in string order).
    let mut values: Vec<Vec<u32>> = vec![Vec::new(); keys.len()];
    let pos: FxHashMap<u32, usize> = keys.iter().enumerate().map(|(i, k)| (k.0, i)).collect();
    for &(k, v) in ix.postings.keys() {
        if let Some(&i) = pos.get(&k) {
            values[i].push(v);
        }
    }
    let mut rank: Vec<Vec<u32>> = Vec::with_capacity(keys.len());
    let mut bits: Vec<u32> = Vec::with_capacity(keys.len());
    for vals in &mut values {
        vals.sort_unstable_by(|a, b| ix.strs[*a as usize].cmp(&ix.strs[*b as usize]));
        let mut r = vec![0u32; ix.strs.len()];
        for (i, &v) in vals.iter().enumerate() {
            r[v as usize] = i as u32 + 1;
        }
        rank.push(r);
        bits.push(32 - (vals.len() as u32).leading_zeros());
    }
    let n = ix.len() as u32;
    let rank_of = |i: u32, ki: usize| ix.value(i, keys[ki].0).map_or(0, |v| rank[ki][v as usize]);
    if bits.iter().sum::<u32>() <= 64 {
        let mut packed: Vec<(u64, u32)> = (0..n)
            .map(|i| {
                let mut key = 0u64;
                for (ki, &b) in bits.iter().enumerate() {
                    key = (key << b) | u64::from(rank_of(i, ki));
                }
                (key, i)
            })
            .collect();
        packed.sort_unstable();
        return packed.into_iter().map(|(_, i)| i).collect();
    }
    let w = keys.len();
    let mut ranks: Vec<u32> = Vec::with_capacity(n as usize * w);
    for i in 0..n {
        ranks.extend((0..w).map(|ki| rank_of(i, ki)));
    }
    let mut order: Vec<u32> = (0..n).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (a as usize, b as usize);
        ranks[a * w..a * w + w].cmp(&ranks[b * w..b * w + w]).then(a.cmp(&b))
    });
    order
}

// ---------------------------------------------------------------------------------------------
// Atoms

#[derive(Debug)]
pub(crate) struct Atoms {
    /// Per atom: base identity (policy index) or None.
    pub(crate) base: Vec<Option<u32>>,
    /// Per policy identity: (first atom id, last atom id) of its block.
    pub(crate) block: Vec<(u32, u32)>,
    /// Number of world atoms (ids `0..world_count`).
    world_count: u32,
    /// Per rule-cidr prefix index: atoms whose signature contains it (sorted).
    by_prefix: Vec<Vec<u32>>,
    /// Per atom: the rule-cidr prefix indices of its signature (sorted), for cidr selectors.
    sig: Vec<Vec<u32>>,
    /// `used_before[i]` = number of atoms `< i` that an LPM lookup can return.
    used_before: Vec<u32>,
    /// Number of LPM entries inserted.
    n_lpm: usize,
    /// Per position in the label index's posting lists: that identity's block (empty until
    /// [`Atoms::index_postings`]; then a new label selector reads its blocks in one sweep
    /// instead of one random access per identity).
    list_block: Vec<(u32, u32)>,
}

impl Atoms {
    /// True when every id strictly between `a` and `b` is unused (so a range may span them).
    fn gap_free(&self, a: u32, b: u32) -> bool {
        b <= a + 1 || self.used_before[b as usize] == self.used_before[a as usize + 1]
    }

    /// The block of identity `i`, found at `pos` in the posting lists when given.
    fn block_of(&self, i: u32, pos: Option<usize>) -> (u32, u32) {
        match pos.and_then(|p| self.list_block.get(p)) {
            Some(&b) => b,
            None => self.block[i as usize],
        }
    }

    /// Copies every identity's block beside its places in `ix`'s posting lists (8 bytes per
    /// posting entry), for [`resolve_key`] during incremental updates. Not done by a plain
    /// compile, which resolves every selector in one pass while the blocks are hot anyway.
    pub(crate) fn index_postings(&mut self, ix: &LabelIndex) {
        self.list_block = ix.lists.iter().map(|&i| self.block[i as usize]).collect();
    }

    /// Sorts and merges ranges in place, spanning don't-care gaps.
    pub(crate) fn merge(&self, v: &mut Ranges) {
        if v.len() <= 64 {
            // Insertion sort: the usual selector has a few dozen blocks, and this loop is a
            // fraction of the general sort's code (which an update on a cold cache pays for
            // in instruction-cache misses).
            for i in 1..v.len() {
                let mut j = i;
                while j > 0 && v[j - 1] > v[j] {
                    v.swap(j - 1, j);
                    j -= 1;
                }
            }
        } else {
            v.sort_unstable();
        }
        let mut w = 0usize;
        for i in 0..v.len() {
            let (lo, hi) = v[i];
            if w > 0 && (lo <= v[w - 1].1.saturating_add(1) || self.gap_free(v[w - 1].1, lo)) {
                v[w - 1].1 = v[w - 1].1.max(hi);
            } else {
                v[w] = (lo, hi);
                w += 1;
            }
        }
        v.truncate(w);
    }
}

/// Distinct prefix lengths per family, longest first.
fn lengths<'a>(it: impl Iterator<Item = &'a Cidr>) -> (Vec<u8>, Vec<u8>) {
    let (mut v4, mut v6) = ([false; 33], [false; 129]);
    for c in it {
        if c.addr.is_ipv4() {
            v4[c.len as usize] = true;
        } else {
            v6[c.len as usize] = true;
        }
    }
    let pick = |v: &[bool]| (0..v.len()).rev().filter(|&l| v[l]).map(|l| l as u8).collect::<Vec<u8>>();
    (pick(&v4), pick(&v6))
}

/// Builds atoms and fills the LPM.
///
/// Work is linear in the number of prefixes with small constants: no per-prefix allocation, and
/// only identity prefixes short enough to contain a rule cidr are indexed.
fn build_atoms(p: &Policy, order: &[u32], sel: &CidrIndex, lpm: &mut IdentityMapBuilder) -> Atoms {
    let sel_prefixes = &sel.prefixes;
    let sel_index = &sel.index;
    let n_ids = p.identities.len();
    let (sl4, sl6) = lengths(sel_prefixes.iter());
    // Interned signatures (sets of rule-cidr indices); id 0 = the empty set.
    let mut sigs: Vec<Vec<u32>> = vec![Vec::new()];
    let mut sig_ids: FxHashMap<Vec<u32>, u32> = FxHashMap::default();
    sig_ids.insert(Vec::new(), 0);
    let mut scratch: Vec<u32> = Vec::new();
    let mut sig_of = |q: &Cidr| -> u32 {
        let lens = if q.addr.is_ipv4() { &sl4 } else { &sl6 };
        scratch.clear();
        for &l in lens.iter().filter(|&&l| l <= q.len) {
            if let Some(&k) = sel_index.get(&Cidr { addr: mask_addr(q.addr, l), len: l }) {
                scratch.push(k);
            }
        }
        if scratch.is_empty() {
            return 0;
        }
        scratch.sort_unstable();
        if let Some(&id) = sig_ids.get(&scratch) {
            return id;
        }
        let id = sigs.len() as u32;
        sigs.push(scratch.clone());
        sig_ids.insert(scratch.clone(), id);
        id
    };
    // One pass over the identity prefixes: the LPM sizes per (family, length), the non-empty
    // signatures (flat prefix index, identity, signature; most prefixes lie in no rule cidr, so
    // this list is short), and the identity prefixes short enough to contain a rule cidr.
    let mut counts = [[0usize; 129]; 2];
    let mut nonempty: Vec<(usize, u32, u32)> = Vec::new();
    let max4 = sl4.first().copied();
    let max6 = sl6.first().copied();
    let mut id_index: FxHashMap<Cidr, u32> = FxHashMap::default();
    let mut k = 0usize;
    for (idx, id) in p.identities.iter().enumerate() {
        for (c, _) in &id.addresses {
            let v6 = c.addr.is_ipv6();
            counts[usize::from(v6)][c.len as usize] += 1;
            let max = if v6 { max6 } else { max4 };
            if let Some(max) = max {
                // Only families with rule cidrs can have non-empty signatures.
                let sg = sig_of(c);
                if sg != 0 {
                    nonempty.push((k, idx as u32, sg));
                }
                if c.len <= max {
                    id_index.insert(*c, idx as u32);
                }
            }
            k += 1;
        }
    }
    for (f, row) in counts.iter().enumerate() {
        for (l, &n) in row.iter().enumerate() {
            if n > 0 {
                lpm.reserve(f == 1, l as u8, n);
            }
        }
    }
    // Rule-cidr prefixes that are not identity prefixes: their base identity and signature.
    let mut extra: Vec<(Cidr, Option<u32>, u32)> = Vec::new();
    if !sel_prefixes.is_empty() {
        let (il4, il6) = lengths(id_index.keys());
        for q in sel_prefixes {
            if id_index.contains_key(q) {
                continue; // an identity prefix; handled with the identity's prefixes
            }
            let lens = if q.addr.is_ipv4() { &il4 } else { &il6 };
            let base = lens
                .iter()
                .filter(|&&l| l <= q.len)
                .find_map(|&l| id_index.get(&Cidr { addr: mask_addr(q.addr, l), len: l }).copied());
            extra.push((*q, base, sig_of(q)));
        }
    }
    // Distinct non-empty signatures per base (None = world), sorted.
    let mut frags: FxHashMap<Option<u32>, Vec<u32>> = FxHashMap::default();
    for &(_, idx, sg) in &nonempty {
        frags.entry(Some(idx)).or_default().push(sg);
    }
    for (_, base, sg) in &extra {
        frags.entry(*base).or_default().push(*sg);
    }
    for v in frags.values_mut() {
        v.sort_unstable();
        v.dedup();
    }
    // Assign ids: world, world fragments, then per identity its base and its fragments.
    let mut base_of: Vec<Option<u32>> = Vec::with_capacity(n_ids + 1);
    base_of.push(None);
    let mut sig: Vec<u32> = Vec::with_capacity(n_ids + 1);
    sig.push(0);
    let mut frag_id: FxHashMap<(Option<u32>, u32), u32> = FxHashMap::default();
    let empty = Vec::new();
    for &sg in frags.get(&None).unwrap_or(&empty) {
        frag_id.insert((None, sg), base_of.len() as u32);
        base_of.push(None);
        sig.push(sg);
    }
    let world_count = base_of.len() as u32;
    let mut block = vec![(0u32, 0u32); n_ids];
    for &i in order {
        let first = base_of.len() as u32;
        base_of.push(Some(i));
        sig.push(0);
        if !frags.is_empty() {
            for &sg in frags.get(&Some(i)).unwrap_or(&empty) {
                frag_id.insert((Some(i), sg), base_of.len() as u32);
                base_of.push(Some(i));
                sig.push(sg);
            }
        }
        block[i as usize] = (first, base_of.len() as u32 - 1);
    }
    // Fill the LPM.
    let n_atoms = base_of.len();
    let mut used = vec![false; n_atoms];
    used[WORLD as usize] = true;
    let mut k = 0usize;
    let mut n_lpm = 0usize;
    let mut next_sig = nonempty.iter().peekable();
    for (idx, id) in p.identities.iter().enumerate() {
        let base_atom = block[idx].0;
        let mut base_used = false;
        for (c, _) in &id.addresses {
            let atom = match next_sig.peek() {
                Some(&&(at, _, sg)) if at == k => {
                    next_sig.next();
                    let atom = frag_id[&(Some(idx as u32), sg)];
                    used[atom as usize] = true;
                    atom
                }
                _ => {
                    base_used = true;
                    base_atom
                }
            };
            k += 1;
            lpm.insert(c.addr, c.len, atom);
        }
        used[base_atom as usize] |= base_used;
        n_lpm += id.addresses.len();
    }
    for (c, base, sg) in &extra {
        let atom = frag_id[&(*base, *sg)];
        used[atom as usize] = true;
        lpm.insert(c.addr, c.len, atom);
        n_lpm += 1;
    }
    let mut used_before = Vec::with_capacity(n_atoms + 1);
    let mut acc = 0u32;
    for u in &used {
        used_before.push(acc);
        acc += u32::from(*u);
    }
    used_before.push(acc);
    let mut by_prefix = vec![Vec::new(); sel_prefixes.len()];
    let mut sig_sets: Vec<Vec<u32>> = Vec::with_capacity(n_atoms);
    for (a, &sg) in sig.iter().enumerate() {
        for &kk in &sigs[sg as usize] {
            by_prefix[kk as usize].push(a as u32);
        }
        sig_sets.push(if sg == 0 { Vec::new() } else { sigs[sg as usize].clone() });
    }
    Atoms {
        base: base_of,
        block,
        world_count,
        by_prefix,
        sig: sig_sets,
        used_before,
        n_lpm,
        list_block: Vec::new(),
    }
}

fn proto_field(p: Option<u8>) -> (u8, u8) {
    p.map_or((0, 0), |v| (v, 0xff))
}

/// Rank of a deny rule's mode: explicit enforce first, inherited next, explicit monitor last.
fn deny_rank(m: Option<Mode>) -> u32 {
    match m {
        Some(Mode::Enforce) => 0,
        None => 1,
        Some(Mode::Monitor) => 2,
    }
}

/// The identity-tier priority of a rule with this action, mode and order key (see module docs).
pub fn identity_priority(action: Action, mode: Option<Mode>, order_key: u32) -> u32 {
    debug_assert!(order_key < ORDER_SPAN);
    match action {
        Action::Deny => deny_rank(mode) * ORDER_SPAN + order_key,
        Action::Allow => ALLOW_PRIORITY_BASE + order_key,
    }
}

/// The gap between consecutive order keys of a full compile of `n` rules.
pub fn order_gap(n: usize) -> u32 {
    ((ORDER_SPAN as usize - 1) / (n + 1)).clamp(1, MAX_ORDER_GAP as usize) as u32
}

/// Priorities of identity rules, indexed like `Policy::rules` (see the module docs).
pub fn identity_priorities(rules: &[Rule]) -> Vec<u32> {
    let gap = order_gap(rules.len());
    rules.iter().enumerate().map(|(i, r)| identity_priority(r.action, r.mode, (i as u32 + 1) * gap)).collect()
}

/// Everything a full compile learned that an incremental update needs (see
/// [`crate::incremental`]).
#[derive(Debug)]
pub(crate) struct CompileIndex {
    pub(crate) labels: LabelIndex,
    pub(crate) cidrs: CidrIndex,
    pub(crate) atoms: Atoms,
    pub(crate) memo: SelectorMemo,
    /// Per identity rule: its classifier entries are rule ids `entries[i]..entries[i + 1]`.
    pub(crate) entries: Vec<u32>,
    /// Order-key gap of the identity rules and of each ACL tier.
    pub(crate) gap: u32,
    pub(crate) acl_gaps: Vec<u32>,
}

/// Compiles a validated policy into a table set with the given generation.
///
/// # Errors
/// Only for policies too large for the table format (more than [`MAX_ENTRIES`] classifier
/// entries, more than `u32` identity ids or `u16` segments); every other problem was rejected by
/// validation.
pub fn compile(p: &Policy, generation: u64) -> Result<CompiledPolicy, Diagnostics> {
    compile_indexed(p, generation, false).map(|(c, _)| c)
}

/// [`compile`], also returning the index an incremental update needs.
pub(crate) fn compile_indexed(
    p: &Policy,
    generation: u64,
    for_updates: bool,
) -> Result<(CompiledPolicy, CompileIndex), Diagnostics> {
    let t0 = Instant::now();
    let mut stats =
        CompileStats { identities: p.identities.len(), rules: p.rules.len(), ..CompileStats::default() };
    if p.rules.len() >= (ORDER_SPAN / 2) as usize {
        return Err(Diagnostics::single(&Loc::file("policy"), "too many rules"));
    }

    // Labels, rule cidrs, selectors, identity order (one walk over the rules: cidr prefixes are
    // numbered and identity names indexed when first needed).
    let mut labels = LabelIndex::new(&p.identities);
    let mut cidrs = CidrIndex::default();
    if for_updates {
        labels.ensure_names(&p.identities);
    }
    let mut memo = SelectorMemo::default();
    // Per rule: its from ids are sel[so[2i]..so[2i+1]], its to ids sel[so[2i+1]..so[2i+2]].
    let mut sel: Vec<u32> = Vec::with_capacity(p.rules.len() * 2);
    let mut so: Vec<u32> = Vec::with_capacity(p.rules.len() * 2 + 1);
    let mut buf: Vec<u32> = Vec::new();
    so.push(0);
    for r in &p.rules {
        for list in [&r.from, &r.to] {
            for s in list {
                match &s.sel {
                    Selector::Cidr { cidr, except } => cidrs.add(cidr, except),
                    Selector::Identity(_) => labels.ensure_names(&p.identities),
                    _ => {}
                }
                encode_selector(&s.sel, &labels, &cidrs, &mut buf).expect("rule cidrs are indexed");
                sel.push(memo.id(&buf));
            }
            so.push(sel.len() as u32);
        }
    }
    let order = identity_order(&labels, &memo);
    stats.index_time = t0.elapsed();

    let mut lb = IdentityMapBuilder::new();
    let t_atoms = Instant::now();
    let atoms = build_atoms(p, &order, &cidrs, &mut lb);
    stats.atoms_time = t_atoms.elapsed();
    let n_atoms = atoms.base.len();
    if n_atoms > u32::MAX as usize - 1 {
        return Err(Diagnostics::single(&Loc::file("policy"), "too many identity ids"));
    }
    stats.atoms = n_atoms;

    // Segments: the distinct values of the `zone` label, in string order.
    let zone_key = labels.sym("zone");
    let mut zones: Vec<u32> = match zone_key {
        Some(z) => labels.postings.keys().filter(|kv| kv.0 == z).map(|kv| kv.1).collect(),
        None => Vec::new(),
    };
    zones.sort_unstable_by(|a, b| labels.strs[*a as usize].cmp(&labels.strs[*b as usize]));
    if zones.len() >= u16::MAX as usize {
        return Err(Diagnostics::single(
            &Loc::file("policy"),
            format!("too many segments ({})", zones.len()),
        ));
    }
    let mut zone_of_sym = vec![u16::MAX; labels.strs.len()];
    for (i, &z) in zones.iter().enumerate() {
        zone_of_sym[z as usize] = i as u16;
    }
    let segment_names: Vec<String> = zones.iter().map(|&z| labels.strs[z as usize].to_string()).collect();
    let segment_mode: Vec<Option<Mode>> =
        segment_names.iter().map(|z| p.settings.segments.get(z).and_then(|s| s.mode)).collect();
    let id_zone: Vec<u16> = (0..p.identities.len() as u32)
        .map(|i| zone_key.and_then(|z| labels.value(i, z)).map_or(u16::MAX, |v| zone_of_sym[v as usize]))
        .collect();
    let identity_names: Vec<String> = atoms
        .base
        .iter()
        .map(|b| b.map_or_else(|| "world".to_string(), |i| p.identities[i as usize].name.clone()))
        .collect();
    let identity_segment: Vec<u16> =
        atoms.base.iter().map(|b| b.map_or(u16::MAX, |i| id_zone[i as usize])).collect();

    // Identity tier: resolve each distinct selector once, then expand rules.
    let t_resolve = Instant::now();
    memo.resolve_new(&labels, &atoms);
    let mut total = 0usize;
    for (ri, r) in p.rules.iter().enumerate() {
        let count = |lo: u32, hi: u32| -> usize {
            let ids = &sel[so[lo as usize] as usize..so[hi as usize] as usize];
            match ids {
                [one] => memo.ranges[*one as usize].len(),
                _ => ids.iter().map(|&i| memo.ranges[i as usize].len()).sum(), // upper bound
            }
        };
        let n = count(2 * ri as u32, 2 * ri as u32 + 1)
            * count(2 * ri as u32 + 1, 2 * ri as u32 + 2)
            * r.ports.len().max(1);
        total = total.saturating_add(n);
        if total > MAX_ENTRIES {
            return Err(Diagnostics::single(
                &r.loc,
                format!("policy expands to more than {MAX_ENTRIES} classifier entries (this rule adds {n}); split or simplify selectors"),
            ));
        }
    }
    stats.resolve_time = t_resolve.elapsed();

    let t_cls = Instant::now();
    let gap = order_gap(p.rules.len());
    let mut builder = ClassifierBuilder::new();
    builder.reserve(total);
    let mut metas = Vec::with_capacity(total);
    let mut sources = Vec::with_capacity(total);
    let mut entries = Vec::with_capacity(p.rules.len() + 1);
    entries.push(0u32);
    let any_port = [PortMatch::ANY];
    let (mut from_buf, mut to_buf): (Ranges, Ranges) = (Vec::new(), Vec::new());
    for (ri, r) in p.rules.iter().enumerate() {
        let list = |lo: usize, hi: usize, buf: &mut Ranges| -> bool {
            let ids = &sel[so[lo] as usize..so[hi] as usize];
            if ids.len() == 1 {
                return false;
            }
            buf.clear();
            for &i in ids {
                buf.extend_from_slice(&memo.ranges[i as usize]);
            }
            atoms.merge(buf);
            true
        };
        let from: &[(u32, u32)] = if list(2 * ri, 2 * ri + 1, &mut from_buf) {
            &from_buf
        } else {
            &memo.ranges[sel[so[2 * ri] as usize] as usize]
        };
        let to: &[(u32, u32)] = if list(2 * ri + 1, 2 * ri + 2, &mut to_buf) {
            &to_buf
        } else {
            &memo.ranges[sel[so[2 * ri + 1] as usize] as usize]
        };
        let ports: &[PortMatch] = if r.ports.is_empty() { &any_port } else { &r.ports };
        let priority = identity_priority(r.action, r.mode, (ri as u32 + 1) * gap);
        let meta = RuleMeta { name: Arc::from(r.name.as_str()), action: r.action, mode: r.mode };
        for &src in from {
            for &dst in to {
                for pm in ports {
                    builder.push(ClassifierRule {
                        src,
                        dst,
                        proto: proto_field(pm.proto),
                        sport: pm.sport,
                        dport: pm.dport,
                        priority,
                    });
                    metas.push(meta.clone());
                    sources.push(RuleSource::Identity(ri as u32));
                }
            }
        }
        entries.push(metas.len() as u32);
    }
    stats.entries.push(metas.len());
    let mut tiers =
        vec![Tier { name: "identity".to_string(), kind: TierKind::Identity, classifier: builder.build() }];
    let mut rules = vec![metas];
    let mut all_sources = vec![sources];

    // ACL tiers.
    let mut acl_gaps = Vec::with_capacity(p.acl_tiers.len());
    for (ti, t) in p.acl_tiers.iter().enumerate() {
        let mut b = ClassifierBuilder::new();
        b.reserve(t.rules.len());
        let mut metas = Vec::with_capacity(t.rules.len());
        let mut src = Vec::with_capacity(t.rules.len());
        let agap = acl_gap(t.rules.len());
        for (li, r) in t.rules.iter().enumerate() {
            b.push(ClassifierRule {
                src: r.src,
                dst: r.dst,
                proto: r.proto,
                sport: r.sport,
                dport: r.dport,
                priority: (li as u32 + 1) * agap,
            });
            metas.push(RuleMeta { name: Arc::from(r.name.as_str()), action: r.action, mode: r.mode });
            src.push(RuleSource::Acl(ti as u32, li as u32));
        }
        acl_gaps.push(agap);
        stats.acl_rules += t.rules.len();
        stats.entries.push(metas.len());
        tiers.push(Tier { name: t.name.clone(), kind: TierKind::Acl, classifier: b.build() });
        rules.push(metas);
        all_sources.push(src);
    }
    stats.classifier_time = t_cls.elapsed();

    // LPM.
    let t_lpm = Instant::now();
    let identities = lb.build();
    stats.lpm_time = t_lpm.elapsed();
    stats.prefixes = atoms.n_lpm;

    // Quarantine.
    let mut q = Quarantine::default();
    for (name, _) in &p.quarantine.identities {
        if let Some(i) = p.identities.iter().position(|x| &x.name == name) {
            let (lo, hi) = atoms.block[i];
            q.identities.extend(lo..=hi);
        }
    }
    q.identities.sort_unstable();
    q.identities.dedup();
    q.prefixes = p.quarantine.addresses.iter().map(|(c, _)| (c.addr, c.len)).collect();
    for e in &p.quarantine.exceptions {
        let ports: &[PortMatch] = if e.ports.is_empty() { &any_port } else { &e.ports };
        for pm in ports {
            q.exceptions.push(QuarantineException {
                peer: (e.peer.addr, e.peer.len),
                proto: pm.proto,
                ports: pm.dport,
            });
        }
    }

    let identity_blocks = atoms.block.clone();
    let tables = TableSet {
        generation,
        identity_names,
        identity_segment,
        segment_names,
        segment_mode,
        global_mode: p.settings.mode,
        identities,
        tiers,
        rules,
        quarantine: q,
        config: p.settings.dataplane.clone(),
    };
    let atom_identity = atoms.base.clone();
    let index = CompileIndex { labels, cidrs, atoms, memo, entries, gap, acl_gaps };
    stats.total_time = t0.elapsed();
    stats.estimated_bytes = estimate_bytes(&tables);
    Ok((CompiledPolicy { tables, atom_identity, identity_blocks, sources: all_sources, stats }, index))
}

/// The gap between consecutive order keys (= priorities) of an ACL tier of `n` lines.
pub fn acl_gap(n: usize) -> u32 {
    ((u32::MAX as usize - 1) / (n + 2)).clamp(1, MAX_ORDER_GAP as usize) as u32
}

/// Heap bytes of a table set: the classifiers' and the LPM's own accounting plus rule metadata
/// (names counted once per distinct allocation) and identity names.
pub(crate) fn estimate_bytes(t: &TableSet) -> usize {
    let cls: usize = t.tiers.iter().map(|x| x.classifier.memory_bytes()).sum();
    let mut meta = 0usize;
    for tier in &t.rules {
        meta += tier.capacity() * std::mem::size_of::<RuleMeta>();
        let mut last: *const u8 = std::ptr::null();
        for m in tier {
            if m.name.as_ptr() != last {
                meta += m.name.len() + 16;
                last = m.name.as_ptr();
            }
        }
    }
    let names: usize = t.identity_names.iter().map(|n| std::mem::size_of::<String>() + n.len() + 2).sum();
    cls + t.identities.memory_bytes() + meta + names
}
