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
//! Tier 0 is the identity tier ([`TierKind::Identity`]): deny rules get priorities below every
//! allow (`0..` for denies — explicit-enforce denies first, then inherited-mode denies, then
//! explicit-monitor denies, each in file order; `2^31 + file order` for allows), so the lowest
//! priority that matches is a deny whenever any deny matches (deny-overrides) and it is the most
//! binding one. Each `AclTier` becomes one [`TierKind::Acl`] tier after it, priority = line
//! index (first match wins). The table set combines tiers: any deny beats any allow.

use crate::diag::{Diagnostics, Loc};
use crate::model::*;
use bulkhead_tables::{
    Action, ClassifierBuilder, ClassifierRule, IdentityId, IdentityMapBuilder, Mode, Quarantine,
    QuarantineException, RuleMeta, TableSet, Tier, TierKind, WORLD,
};
use rustc_hash::{FxHashMap, FxHashSet};
use std::time::{Duration, Instant};

/// Upper bound on classifier entries in one table set (bounds memory for hostile policies).
pub const MAX_ENTRIES: usize = 16 << 20;

/// Priority base of allow rules in the identity tier; denies sit below it.
pub const ALLOW_PRIORITY_BASE: u32 = 1 << 31;

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
    /// Atom assignment, including inserting every prefix into the LPM builder.
    pub atoms_time: Duration,
    pub resolve_time: Duration,
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
    /// Per policy identity: its atom ids (the first is its base atom).
    pub identity_atoms: Vec<Vec<IdentityId>>,
    /// Per tier, per rule id: where the entry came from.
    pub sources: Vec<Vec<RuleSource>>,
    pub stats: CompileStats,
}

impl CompiledPolicy {
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
type Ranges = Vec<(u32, u32)>;

struct Atoms {
    /// Per atom: base identity (policy index) or None.
    base: Vec<Option<u32>>,
    /// Per policy identity: (first atom id, last atom id) of its block.
    block: Vec<(u32, u32)>,
    /// Number of world atoms (ids `0..world_count`).
    world_count: u32,
    /// Per rule-cidr prefix index: atoms whose signature contains it (sorted).
    by_prefix: Vec<Vec<u32>>,
    /// Per rule-cidr prefix index of each atom's signature (sorted), for cidr selectors.
    sig: Vec<Vec<u32>>,
    /// `used_before[i]` = number of atoms `< i` that an LPM lookup can return.
    used_before: Vec<u32>,
    /// Number of LPM entries inserted.
    n_lpm: usize,
}

impl Atoms {
    /// True when every id strictly between `a` and `b` is unused (so a range may span them).
    fn gap_free(&self, a: u32, b: u32) -> bool {
        b <= a + 1 || self.used_before[b as usize] == self.used_before[a as usize + 1]
    }

    /// Sorted ids -> ranges, spanning don't-care gaps.
    fn ranges(&self, ids: &mut [(u32, u32)]) -> Ranges {
        ids.sort_unstable();
        let mut out: Ranges = Vec::with_capacity(ids.len());
        for &(lo, hi) in ids.iter() {
            match out.last_mut() {
                Some(last) if lo <= last.1.saturating_add(1) || self.gap_free(last.1, lo) => {
                    last.1 = last.1.max(hi)
                }
                _ => out.push((lo, hi)),
            }
        }
        out
    }
}

/// Orders identities so that label selectors become few contiguous runs.
fn identity_order(p: &Policy) -> Vec<u32> {
    let mut freq: FxHashMap<&str, usize> = FxHashMap::default();
    for r in &p.rules {
        for s in r.from.iter().chain(&r.to) {
            if let Selector::Labels { labels, exprs } = &s.sel {
                for k in labels.keys() {
                    *freq.entry(k).or_default() += 1;
                }
                for e in exprs {
                    let (Expr::In(k, _) | Expr::NotIn(k, _) | Expr::Exists(k) | Expr::DoesNotExist(k)) = e;
                    *freq.entry(k).or_default() += 1;
                }
            }
        }
    }
    *freq.entry("zone").or_default() += 1;
    let mut keys: Vec<(&str, usize)> = freq.into_iter().collect();
    keys.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    keys.truncate(8); // deeper keys rarely matter for contiguity; bounded work per identity
                      // Rank every value per key once, then sort identities by small integer vectors.
    let n = p.identities.len();
    let mut ranks: Vec<u32> = vec![0; n * keys.len()];
    for (ki, (k, _)) in keys.iter().enumerate() {
        let mut vals: Vec<&str> =
            p.identities.iter().filter_map(|i| i.labels.get(*k).map(String::as_str)).collect();
        vals.sort_unstable();
        vals.dedup();
        for (i, id) in p.identities.iter().enumerate() {
            // 0 = key absent; values rank from 1 in sorted order.
            ranks[i * keys.len() + ki] =
                id.labels.get(*k).map_or(0, |v| vals.binary_search(&v.as_str()).map_or(0, |r| r as u32 + 1));
        }
    }
    let w = keys.len();
    let mut order: Vec<u32> = (0..n as u32).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (a as usize, b as usize);
        ranks[a * w..a * w + w].cmp(&ranks[b * w..b * w + w]).then(a.cmp(&b))
    });
    order
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
fn build_atoms(p: &Policy, order: &[u32], lpm: &mut IdentityMapBuilder) -> Atoms {
    // Rule cidr prefixes.
    let mut sel_prefixes: Vec<Cidr> = Vec::new();
    let mut sel_index: FxHashMap<Cidr, u32> = FxHashMap::default();
    for r in &p.rules {
        for s in r.from.iter().chain(&r.to) {
            if let Selector::Cidr { cidr, except } = &s.sel {
                for c in std::iter::once(cidr).chain(except) {
                    sel_index.entry(*c).or_insert_with(|| {
                        sel_prefixes.push(*c);
                        sel_prefixes.len() as u32 - 1
                    });
                }
            }
        }
    }
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
    // Signature per identity prefix (flattened in identity order of the policy).
    let mut prefix_sig: Vec<u32> = Vec::new();
    if !sel_prefixes.is_empty() {
        prefix_sig.reserve(p.identities.iter().map(|i| i.addresses.len()).sum());
        for id in &p.identities {
            for (c, _) in &id.addresses {
                prefix_sig.push(sig_of(c));
            }
        }
    }
    // Rule-cidr prefixes that are not identity prefixes: their base identity and signature.
    let mut extra: Vec<(Cidr, Option<u32>, u32)> = Vec::new();
    if !sel_prefixes.is_empty() {
        let max4 = sl4.first().copied().unwrap_or(0);
        let max6 = sl6.first().copied().unwrap_or(0);
        let mut id_index: FxHashMap<Cidr, u32> = FxHashMap::default();
        for (idx, id) in p.identities.iter().enumerate() {
            for (c, _) in &id.addresses {
                if c.len <= if c.addr.is_ipv4() { max4 } else { max6 } {
                    id_index.insert(*c, idx as u32);
                }
            }
        }
        let (il4, il6) = lengths(id_index.keys());
        for q in &sel_prefixes {
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
    // Distinct non-empty signatures per base (None = world), in first-seen order then sorted.
    let mut frags: FxHashMap<Option<u32>, Vec<u32>> = FxHashMap::default();
    let mut k = 0usize;
    for (idx, id) in p.identities.iter().enumerate() {
        for _ in &id.addresses {
            let sg = prefix_sig.get(k).copied().unwrap_or(0);
            if sg != 0 {
                frags.entry(Some(idx as u32)).or_default().push(sg);
            }
            k += 1;
        }
    }
    for (_, base, sg) in &extra {
        frags.entry(*base).or_default().push(*sg);
    }
    for v in frags.values_mut() {
        v.sort_unstable();
        v.dedup();
    }
    // Assign ids: world, world fragments, then per identity its base and its fragments.
    let mut base_of: Vec<Option<u32>> = vec![None];
    let mut sig: Vec<u32> = vec![0];
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
        for &sg in frags.get(&Some(i)).unwrap_or(&empty) {
            frag_id.insert((Some(i), sg), base_of.len() as u32);
            base_of.push(Some(i));
            sig.push(sg);
        }
        block[i as usize] = (first, base_of.len() as u32 - 1);
    }
    // Fill the LPM.
    let n_atoms = base_of.len();
    let mut used = vec![false; n_atoms];
    used[WORLD as usize] = true;
    let mut k = 0usize;
    let mut n_lpm = 0usize;
    for (idx, id) in p.identities.iter().enumerate() {
        for (c, _) in &id.addresses {
            let sg = prefix_sig.get(k).copied().unwrap_or(0);
            k += 1;
            let atom = if sg == 0 { block[idx].0 } else { frag_id[&(Some(idx as u32), sg)] };
            used[atom as usize] = true;
            lpm.insert(c.addr, c.len, atom);
            n_lpm += 1;
        }
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
    for (a, &sg) in sig.iter().enumerate() {
        for &kk in &sigs[sg as usize] {
            by_prefix[kk as usize].push(a as u32);
        }
    }
    let sig = sig.iter().map(|&sg| sigs[sg as usize].clone()).collect();
    Atoms { base: base_of, block, world_count, by_prefix, sig, used_before, n_lpm }
}

/// Resolves selectors to atom-id ranges, memoised per distinct selector.
struct Resolver<'p> {
    p: &'p Policy,
    atoms: &'p Atoms,
    /// Rule-cidr prefix -> index (same numbering as `Atoms::by_prefix`).
    prefix_index: FxHashMap<Cidr, u32>,
    /// (key, value) -> identities with that label (policy indices, ascending).
    postings: FxHashMap<(&'p str, &'p str), Vec<u32>>,
    /// key -> identities having the key.
    key_postings: FxHashMap<&'p str, Vec<u32>>,
    memo: FxHashMap<&'p Selector, Ranges>,
}

impl<'p> Resolver<'p> {
    fn new(p: &'p Policy, atoms: &'p Atoms) -> Self {
        let mut prefix_index = FxHashMap::default();
        for r in &p.rules {
            for s in r.from.iter().chain(&r.to) {
                if let Selector::Cidr { cidr, except } = &s.sel {
                    for c in std::iter::once(cidr).chain(except) {
                        let n = prefix_index.len() as u32;
                        prefix_index.entry(*c).or_insert(n);
                    }
                }
            }
        }
        let mut postings: FxHashMap<(&str, &str), Vec<u32>> = FxHashMap::default();
        let mut key_postings: FxHashMap<&str, Vec<u32>> = FxHashMap::default();
        for (i, id) in p.identities.iter().enumerate() {
            for (k, v) in &id.labels {
                postings.entry((k.as_str(), v.as_str())).or_default().push(i as u32);
                key_postings.entry(k.as_str()).or_default().push(i as u32);
            }
        }
        Self { p, atoms, prefix_index, postings, key_postings, memo: FxHashMap::default() }
    }

    /// Identities (policy indices) a label/identity selector selects.
    fn identities(&self, sel: &Selector) -> Vec<u32> {
        let p = self.p;
        let empty: Vec<u32> = Vec::new();
        let candidates: Box<dyn Iterator<Item = u32>> = match sel {
            Selector::Identity(n) => {
                return p
                    .identities
                    .iter()
                    .position(|i| &i.name == n)
                    .map(|i| vec![i as u32])
                    .unwrap_or_default();
            }
            Selector::Labels { labels, exprs } => {
                // Smallest positive posting list, then filter.
                let best = labels
                    .iter()
                    .map(|(k, v)| self.postings.get(&(k.as_str(), v.as_str())).unwrap_or(&empty))
                    .chain(exprs.iter().filter_map(|e| match e {
                        Expr::Exists(k) => Some(self.key_postings.get(k.as_str()).unwrap_or(&empty)),
                        _ => None,
                    }))
                    .min_by_key(|v| v.len());
                match best {
                    Some(v) => Box::new(v.clone().into_iter()),
                    None => Box::new(0..p.identities.len() as u32),
                }
            }
            _ => return Vec::new(),
        };
        candidates
            .filter(|&i| sel.matches_labels(&p.identities[i as usize].name, &p.identities[i as usize].labels))
            .collect()
    }

    fn resolve_into(&mut self, sel: &'p Selector, out: &mut Vec<(u32, u32)>) {
        if let Some(r) = self.memo.get(sel) {
            out.extend_from_slice(r);
            return;
        }
        {
            let a = self.atoms;
            let mut ids: Vec<(u32, u32)> = match sel {
                Selector::World => vec![(0, a.world_count - 1)],
                Selector::Cidr { cidr, except } => {
                    let k = self.prefix_index[cidr];
                    let ex: FxHashSet<u32> = except.iter().map(|c| self.prefix_index[c]).collect();
                    a.by_prefix[k as usize]
                        .iter()
                        .filter(|&&atom| !a.sig[atom as usize].iter().any(|s| ex.contains(s)))
                        .map(|&atom| (atom, atom))
                        .collect()
                }
                _ => self.identities(sel).into_iter().map(|i| a.block[i as usize]).collect(),
            };
            let r = a.ranges(&mut ids);
            out.extend_from_slice(&r);
            self.memo.insert(sel, r);
        }
    }

    /// Union of a selector list.
    fn resolve_list(&mut self, list: &'p [SelectorAt]) -> Ranges {
        let mut all: Vec<(u32, u32)> = Vec::new();
        for s in list {
            self.resolve_into(&s.sel, &mut all);
        }
        self.atoms.ranges(&mut all)
    }
}

fn proto_field(p: Option<u8>) -> (u8, u8) {
    p.map_or((0, 0), |v| (v, 0xff))
}

/// Rank of a deny rule's mode: explicit enforce first, inherited next, explicit monitor last.
fn deny_rank(m: Option<Mode>) -> u8 {
    match m {
        Some(Mode::Enforce) => 0,
        None => 1,
        Some(Mode::Monitor) => 2,
    }
}

/// Priorities of identity rules, indexed like `Policy::rules` (see the module docs).
pub fn identity_priorities(rules: &[Rule]) -> Vec<u32> {
    let mut denies: Vec<usize> = (0..rules.len()).filter(|&i| rules[i].action == Action::Deny).collect();
    denies.sort_by_key(|&i| (deny_rank(rules[i].mode), i));
    let mut prio = vec![0u32; rules.len()];
    for (rank, &i) in denies.iter().enumerate() {
        prio[i] = rank as u32;
    }
    let mut allow_rank = 0u32;
    for (i, r) in rules.iter().enumerate() {
        if r.action == Action::Allow {
            prio[i] = ALLOW_PRIORITY_BASE + allow_rank;
            allow_rank += 1;
        }
    }
    prio
}

/// Compiles a validated policy into a table set with the given generation.
///
/// # Errors
/// Only for policies too large for the table format (more than [`MAX_ENTRIES`] classifier
/// entries, more than `u32` identity ids or `u16` segments); every other problem was rejected by
/// validation.
pub fn compile(p: &Policy, generation: u64) -> Result<CompiledPolicy, Diagnostics> {
    let t0 = Instant::now();
    let mut stats =
        CompileStats { identities: p.identities.len(), rules: p.rules.len(), ..CompileStats::default() };
    let order = identity_order(p);
    let mut lb = IdentityMapBuilder::new();
    let t_atoms = Instant::now();
    let atoms = build_atoms(p, &order, &mut lb);
    stats.atoms_time = t_atoms.elapsed();
    let n_atoms = atoms.base.len();
    if n_atoms > u32::MAX as usize - 1 {
        return Err(Diagnostics::single(&Loc::file("policy"), "too many identity ids"));
    }
    stats.atoms = n_atoms;

    // Segments.
    let mut zones: Vec<&str> = p.identities.iter().filter_map(Identity::zone).collect();
    zones.sort_unstable();
    zones.dedup();
    if zones.len() >= u16::MAX as usize {
        return Err(Diagnostics::single(
            &Loc::file("policy"),
            format!("too many segments ({})", zones.len()),
        ));
    }
    let zone_index: FxHashMap<&str, u16> = zones.iter().enumerate().map(|(i, z)| (*z, i as u16)).collect();
    let segment_mode: Vec<Option<Mode>> =
        zones.iter().map(|z| p.settings.segments.get(*z).and_then(|s| s.mode)).collect();
    let identity_names: Vec<String> = atoms
        .base
        .iter()
        .map(|b| b.map_or_else(|| "world".to_string(), |i| p.identities[i as usize].name.clone()))
        .collect();
    let identity_segment: Vec<u16> = atoms
        .base
        .iter()
        .map(|b| b.and_then(|i| p.identities[i as usize].zone()).map_or(u16::MAX, |z| zone_index[z]))
        .collect();

    // Identity tier.
    let t_resolve = Instant::now();
    let mut resolver = Resolver::new(p, &atoms);
    let prio = identity_priorities(&p.rules);
    let mut resolved: Vec<(Ranges, Ranges)> = Vec::with_capacity(p.rules.len());
    let mut total = 0usize;
    for r in &p.rules {
        let from = resolver.resolve_list(&r.from);
        let to = resolver.resolve_list(&r.to);
        let n = from.len() * to.len() * r.ports.len().max(1);
        total = total.saturating_add(n);
        if total > MAX_ENTRIES {
            return Err(Diagnostics::single(
                &r.loc,
                format!("policy expands to more than {MAX_ENTRIES} classifier entries (this rule adds {n}); split or simplify selectors"),
            ));
        }
        resolved.push((from, to));
    }
    stats.resolve_time = t_resolve.elapsed();
    let t_cls = Instant::now();
    let mut builder = ClassifierBuilder::new();
    let mut metas = Vec::with_capacity(total);
    let mut sources = Vec::with_capacity(total);
    let any_port = [PortMatch::ANY];
    for (ri, (r, (from, to))) in p.rules.iter().zip(&resolved).enumerate() {
        let ports: &[PortMatch] = if r.ports.is_empty() { &any_port } else { &r.ports };
        for &src in from {
            for &dst in to {
                for pm in ports {
                    builder.push(ClassifierRule {
                        src,
                        dst,
                        proto: proto_field(pm.proto),
                        sport: pm.sport,
                        dport: pm.dport,
                        priority: prio[ri],
                    });
                    metas.push(RuleMeta { name: r.name.clone(), action: r.action, mode: r.mode });
                    sources.push(RuleSource::Identity(ri as u32));
                }
            }
        }
    }
    stats.entries.push(metas.len());
    let mut tiers =
        vec![Tier { name: "identity".to_string(), kind: TierKind::Identity, classifier: builder.build() }];
    let mut rules = vec![metas];
    let mut all_sources = vec![sources];

    // ACL tiers.
    for (ti, t) in p.acl_tiers.iter().enumerate() {
        let mut b = ClassifierBuilder::new();
        let mut metas = Vec::with_capacity(t.rules.len());
        let mut src = Vec::with_capacity(t.rules.len());
        for (li, r) in t.rules.iter().enumerate() {
            b.push(ClassifierRule {
                src: r.src,
                dst: r.dst,
                proto: r.proto,
                sport: r.sport,
                dport: r.dport,
                priority: li as u32,
            });
            metas.push(RuleMeta { name: r.name.clone(), action: r.action, mode: r.mode });
            src.push(RuleSource::Acl(ti as u32, li as u32));
        }
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

    let identity_atoms: Vec<Vec<IdentityId>> =
        atoms.block.iter().map(|&(lo, hi)| (lo..=hi).collect()).collect();
    let tables = TableSet {
        generation,
        identity_names,
        identity_segment,
        segment_names: zones.iter().map(|z| (*z).to_string()).collect(),
        segment_mode,
        global_mode: p.settings.mode,
        identities,
        tiers,
        rules,
        quarantine: q,
        config: p.settings.dataplane.clone(),
    };
    stats.total_time = t0.elapsed();
    stats.estimated_bytes = estimate_bytes(&tables, stats.prefixes);
    Ok(CompiledPolicy { tables, atom_identity: atoms.base, identity_atoms, sources: all_sources, stats })
}

/// Heap bytes of a table set: the classifiers' and the LPM's own accounting plus rule metadata
/// and identity names.
fn estimate_bytes(t: &TableSet, _prefixes: usize) -> usize {
    let cls: usize = t.tiers.iter().map(|x| x.classifier.memory_bytes()).sum();
    let meta: usize = t.rules.iter().flatten().map(|m| std::mem::size_of::<RuleMeta>() + m.name.len()).sum();
    let names: usize = t.identity_names.iter().map(|n| std::mem::size_of::<String>() + n.len() + 2).sum();
    cls + t.identities.memory_bytes() + meta + names
}
