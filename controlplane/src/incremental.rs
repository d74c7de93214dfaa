//! Incremental policy updates: add or remove one identity rule or one ACL line in microseconds,
//! without recompiling, and publish the result without copying the classifier.
//!
//! # What is kept beside the table set
//! [`IncrementalPolicy`] owns the policy (rules keyed by their sparse *order key*, see
//! [`crate::compile`]) and the full compile's index: interned labels, rule-cidr prefixes, atoms,
//! and the memo of every distinct selector's atom-id ranges. Adding a rule encodes its
//! selectors, resolves the ones not seen before through the label posting lists (microseconds),
//! and inserts `|from ranges| x |to ranges| x |ports|` entries into the classifier
//! (`Classifier::insert`, about 1 us each) with a priority computed from its order key, so it
//! decides exactly as in a full compile of the same rule list. Removing a rule removes its
//! entries. ACL lines work the same way in their tier.
//!
//! Falls back to a full rebuild (and says so: [`Applied::Rebuilt`]) when a rule needs a
//! `cidr` / `except` prefix that no rule used when the atoms were built (it would change the
//! LPM), or when no order key is left between two neighbours. Removing the last user of a cidr
//! keeps its atoms (a finer split than needed, never a wrong answer). Identity, settings,
//! quarantine changes are full rebuilds ([`IncrementalPolicy::update_to`] decides).
//!
//! # Publication: left-right
//! Workers hold `Arc<TableSet>` from a `TableHandle` and read it once per batch; a published set
//! is never mutated while any worker can see it. The updater keeps **two** table sets, `live`
//! (published) and `spare`, which share the LPM (`IdentityMap` clones are O(1)) and each own a
//! copy of the classifiers and rule metadata. A delta is applied to `spare` only, after replaying
//! the previous delta (which went to the other copy), and `spare` becomes the new `live`:
//! publish it with `TableHandle::publish_arc`. Mutating `spare` needs `Arc::get_mut`, which
//! succeeds once every worker has moved past the generation that used it (one batch after the
//! previous publication). If some reader still holds it, the update deep-copies `live` instead
//! ([`Applied::Delta::copied`] = true): slower (tens of ms at 100k rules), never unsafe. So the
//! engine's per-packet path is unchanged (same `TableSet`, same fields, no extra indirection);
//! the cost is a second copy of the classifiers and metadata (~10 MB at 100k rules).
//!
//! Rule ids stay identical in both copies: they start from the same build and receive the same
//! operations in the same order, and `Classifier::insert` hands out the next unused id.
//! Removed entries keep their (dead) metadata slot until the next full rebuild, which compacts.

use crate::compile::{compile_indexed, encode_selector, identity_priority, CompileIndex, Ranges, ORDER_SPAN};
use crate::diag::Diagnostics;
use crate::model::*;
use bulkhead_tables::{ClassifierRule, RuleId, RuleMeta, TableSet};
use rustc_hash::FxHashMap;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// Where a new rule goes in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Position {
    Start,
    End,
    /// Right after the rule (or ACL line) with this name.
    After(String),
    /// Right before the rule (or ACL line) with this name.
    Before(String),
}

/// What an update did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Applied in place to the spare copy, which is now the current table set.
    Delta {
        generation: u64,
        entries_added: usize,
        entries_removed: usize,
        /// True when a reader still held the spare copy, so the current set was deep-copied.
        copied: bool,
    },
    /// The change needed a full rebuild (the reason says why).
    Rebuilt { generation: u64, reason: String },
    /// Nothing to do (the new policy equals the current one).
    Unchanged,
}

/// A change the updater refused (nothing was modified).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpdateError(pub String);

impl fmt::Display for UpdateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UpdateError {}

/// One classifier operation, replayed on the other copy later.
#[derive(Clone, Debug)]
enum Op {
    Insert { tier: usize, rule: ClassifierRule, meta: RuleMeta },
    Remove { tier: usize, id: RuleId },
}

fn apply_op(t: &mut TableSet, op: &Op) -> RuleId {
    match op {
        Op::Insert { tier, rule, meta } => {
            let id = t.tiers[*tier].classifier.insert(*rule);
            let metas = &mut t.rules[*tier];
            debug_assert_eq!(id as usize, metas.len(), "rule ids and metadata stay aligned");
            metas.push(meta.clone());
            id
        }
        Op::Remove { tier, id } => {
            t.tiers[*tier].classifier.remove(*id);
            *id
        }
    }
}

/// A live identity rule: the rule and its classifier entries.
#[derive(Debug)]
struct LiveRule {
    rule: Rule,
    ids: Vec<RuleId>,
}

#[derive(Debug)]
struct LiveAcl {
    line: AclRule,
    id: RuleId,
}

#[derive(Debug)]
struct AclState {
    lines: BTreeMap<u32, LiveAcl>,
    keys: FxHashMap<String, u32>,
    gap: u32,
}

/// A compiled policy that accepts single-rule updates (see the module docs).
pub struct IncrementalPolicy {
    /// The policy without its rules and ACL lines (those live in `rules` / `acl`).
    base: Policy,
    rules: BTreeMap<u32, LiveRule>,
    keys: FxHashMap<String, u32>,
    acl: Vec<AclState>,
    index: CompileIndex,
    gap: u32,
    live: Arc<TableSet>,
    spare: Arc<TableSet>,
    /// Applied to `live`, not yet to `spare`.
    pending: Vec<Op>,
    scratch: Vec<u32>,
    /// Entries reserved per copy at the last build (see [`update_headroom`]).
    headroom: usize,
    /// While [`IncrementalPolicy::update_to`] applies several rule changes: the operations
    /// applied to `spare` so far (published together as one generation at the end), and whether
    /// preparing `spare` had to deep-copy `live`.
    batch: Option<(Vec<Op>, bool)>,
}

impl fmt::Debug for IncrementalPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IncrementalPolicy")
            .field("rules", &self.rules.len())
            .field("generation", &self.live.generation)
            .finish()
    }
}

impl IncrementalPolicy {
    /// Compiles `p` (a full build) and keeps what later updates need.
    ///
    /// # Errors
    /// As [`crate::compile`].
    pub fn new(p: Policy, generation: u64) -> Result<Self, Diagnostics> {
        let (c, index) = compile_indexed(&p, generation, true)?;
        let mut base = p;
        let rule_list = std::mem::take(&mut base.rules);
        let mut rules = BTreeMap::new();
        let mut keys = FxHashMap::default();
        let gap = index.gap;
        for (i, rule) in rule_list.into_iter().enumerate() {
            let k = (i as u32 + 1) * gap;
            let ids: Vec<RuleId> = (index.entries[i]..index.entries[i + 1]).collect();
            keys.insert(rule.name.clone(), k);
            rules.insert(k, LiveRule { rule, ids });
        }
        let mut acl = Vec::with_capacity(base.acl_tiers.len());
        for (t, g) in base.acl_tiers.iter_mut().zip(&index.acl_gaps) {
            let mut st = AclState { lines: BTreeMap::new(), keys: FxHashMap::default(), gap: *g };
            for (li, line) in std::mem::take(&mut t.rules).into_iter().enumerate() {
                let k = (li as u32 + 1) * g;
                st.keys.insert(line.name.clone(), k);
                st.lines.insert(k, LiveAcl { line, id: li as RuleId });
            }
            acl.push(st);
        }
        let mut live = c.tables;
        let headroom = update_headroom(live.rules.iter().map(Vec::len).sum());
        let mut spare = live.clone();
        reserve_headroom(&mut live, headroom);
        reserve_headroom(&mut spare, headroom);
        keys.reserve(headroom);
        let mut index = index;
        index.memo.reserve(headroom.min(1 << 14));
        index.atoms.index_postings(&index.labels);
        Ok(Self {
            base,
            rules,
            keys,
            acl,
            index,
            gap,
            live: Arc::new(live),
            spare: Arc::new(spare),
            pending: Vec::new(),
            headroom,
            scratch: Vec::new(),
            batch: None,
        })
    }

    /// The current table set (publish it with `TableHandle::publish_arc`).
    pub fn current(&self) -> Arc<TableSet> {
        Arc::clone(&self.live)
    }

    pub fn generation(&self) -> u64 {
        self.live.generation
    }

    /// Number of identity rules.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// The current policy, rules and ACL lines in order (what a full rebuild compiles).
    pub fn policy(&self) -> Policy {
        let mut p = self.base.clone();
        p.rules = self.rules.values().map(|r| r.rule.clone()).collect();
        for (t, st) in p.acl_tiers.iter_mut().zip(&self.acl) {
            t.rules = st.lines.values().map(|l| l.line.clone()).collect();
        }
        p
    }

    /// Adds identity rule `rule` at `pos`.
    ///
    /// # Errors
    /// A rule of that name exists, or the anchor of `pos` does not.
    pub fn add_rule(&mut self, rule: Rule, pos: Position) -> Result<Applied, UpdateError> {
        if self.keys.contains_key(&rule.name) {
            return Err(UpdateError(format!("a rule named {} exists", rule.name)));
        }
        let key = match between(&self.rules, &self.keys, &pos, self.gap, ORDER_SPAN)? {
            Some(k) => k,
            None => {
                let name = rule.name.clone();
                return Ok(self.rebuild_with(|p| insert_at(&mut p.rules, rule, &pos, |r| &r.name), &name));
            }
        };
        let (from, to) = match (self.ranges_of(&rule.from), self.ranges_of(&rule.to)) {
            (Ok(f), Ok(t)) => (f, t),
            (Err(c), _) | (_, Err(c)) => {
                let reason = format!("cidr {c} is new (the identity map must be rebuilt)");
                return Ok(self.rebuild_with(|p| insert_at(&mut p.rules, rule, &pos, |r| &r.name), &reason));
            }
        };
        let priority = identity_priority(rule.action, rule.mode, key);
        let meta = RuleMeta { name: Arc::from(rule.name.as_str()), action: rule.action, mode: rule.mode };
        let any = [PortMatch::ANY];
        let ports: &[PortMatch] = if rule.ports.is_empty() { &any } else { &rule.ports };
        let mut ops = Vec::with_capacity(from.len() * to.len() * ports.len());
        for &src in &from {
            for &dst in &to {
                for pm in ports {
                    ops.push(Op::Insert {
                        tier: 0,
                        rule: ClassifierRule {
                            src,
                            dst,
                            proto: pm.proto.map_or((0, 0), |v| (v, 0xff)),
                            sport: pm.sport,
                            dport: pm.dport,
                            priority,
                        },
                        meta: meta.clone(),
                    });
                }
            }
        }
        let (applied, ids) = self.commit(ops);
        self.keys.insert(rule.name.clone(), key);
        self.rules.insert(key, LiveRule { rule, ids });
        Ok(applied)
    }

    /// Removes the identity rule named `name`.
    ///
    /// # Errors
    /// No such rule.
    pub fn remove_rule(&mut self, name: &str) -> Result<Applied, UpdateError> {
        let key = self.keys.remove(name).ok_or_else(|| UpdateError(format!("no rule named {name}")))?;
        let live = self.rules.remove(&key).expect("keys and rules agree");
        let ops = live.ids.iter().map(|&id| Op::Remove { tier: 0, id }).collect();
        Ok(self.commit(ops).0)
    }

    /// Adds a line to ACL tier `tier` at `pos` (first match wins, in line order).
    ///
    /// # Errors
    /// No such tier, a line of that name exists in it, or the anchor does not.
    pub fn add_acl_line(&mut self, tier: &str, line: AclRule, pos: Position) -> Result<Applied, UpdateError> {
        let ti = self.tier_index(tier)?;
        let st = &self.acl[ti];
        if st.keys.contains_key(&line.name) {
            return Err(UpdateError(format!("tier {tier} has a line named {}", line.name)));
        }
        let Some(key) = between(&st.lines, &st.keys, &pos, st.gap, u32::MAX)? else {
            let reason = format!("no room for a new line in tier {tier}");
            return Ok(self
                .rebuild_with(|p| insert_at(&mut p.acl_tiers[ti].rules, line, &pos, |l| &l.name), &reason));
        };
        let op = Op::Insert {
            tier: ti + 1,
            rule: ClassifierRule {
                src: line.src,
                dst: line.dst,
                proto: line.proto,
                sport: line.sport,
                dport: line.dport,
                priority: key,
            },
            meta: RuleMeta { name: Arc::from(line.name.as_str()), action: line.action, mode: line.mode },
        };
        let (applied, ids) = self.commit(vec![op]);
        let st = &mut self.acl[ti];
        st.keys.insert(line.name.clone(), key);
        st.lines.insert(key, LiveAcl { line, id: ids[0] });
        Ok(applied)
    }

    /// Removes line `name` from ACL tier `tier`.
    ///
    /// # Errors
    /// No such tier or line.
    pub fn remove_acl_line(&mut self, tier: &str, name: &str) -> Result<Applied, UpdateError> {
        let ti = self.tier_index(tier)?;
        let st = &mut self.acl[ti];
        let key =
            st.keys.remove(name).ok_or_else(|| UpdateError(format!("tier {tier} has no line {name}")))?;
        let live = st.lines.remove(&key).expect("keys and lines agree");
        Ok(self.commit(vec![Op::Remove { tier: ti + 1, id: live.id }]).0)
    }

    /// Moves to policy `new`: when only identity rules differ, and by at most `max_changes` rules
    /// (a changed rule counts as a removal plus an addition), applies them as deltas (each one a
    /// generation); otherwise rebuilds. This is what a reload that diffs old and new files calls.
    ///
    /// # Errors
    /// As [`crate::compile`], for a rebuild that fails (the current policy stays).
    pub fn update_to(&mut self, new: Policy, max_changes: usize) -> Result<Applied, Diagnostics> {
        let start = self.live.generation;
        let applied = self.update_steps(new, max_changes)?;
        Ok(self.as_one_generation(start, applied))
    }

    /// A new generation with no change (a reload of an unchanged policy still publishes one, as
    /// a full rebuild would).
    pub fn bump(&mut self) -> Applied {
        self.commit(Vec::new()).0
    }

    /// When a step of [`IncrementalPolicy::update_to`] had to rebuild, the steps after it commit
    /// one by one; nobody saw those intermediate sets, so the result is numbered `start + 1`,
    /// one generation per update.
    fn as_one_generation(&mut self, start: u64, applied: Applied) -> Applied {
        let g = start + 1;
        if self.live.generation == g || matches!(applied, Applied::Unchanged) {
            return applied;
        }
        // Unique: the new live set has not been handed out yet.
        let Some(live) = Arc::get_mut(&mut self.live) else { return applied };
        live.generation = g;
        match applied {
            Applied::Delta { entries_added, entries_removed, copied, .. } => {
                Applied::Delta { generation: g, entries_added, entries_removed, copied }
            }
            Applied::Rebuilt { reason, .. } => Applied::Rebuilt { generation: g, reason },
            Applied::Unchanged => Applied::Unchanged,
        }
    }

    fn update_steps(&mut self, new: Policy, max_changes: usize) -> Result<Applied, Diagnostics> {
        /// What the comparison decided (computed on borrows of `self`, acted on after).
        enum Plan {
            Rebuild(&'static str),
            Unchanged,
            Steps { removed: Vec<String>, added: Vec<usize> },
        }
        // Compared in place (no copy of the current policy: at 20k rules a clone cost more than
        // the update itself).
        let plan = {
            let base = &self.base;
            let same_base = same_identities(&base.identities, &new.identities)
                && same_acls(&base.acl_tiers, &self.acl, &new.acl_tiers)
                && strip_settings(&base.settings) == strip_settings(&new.settings)
                && same_quarantine(&base.quarantine, &new.quarantine);
            if same_base {
                let cur: Vec<&Rule> = self.rules.values().map(|l| &l.rule).collect();
                plan_rule_changes(&cur, &new.rules, max_changes)
            } else {
                Plan::Rebuild("identities, ACL tiers, settings or quarantine changed")
            }
        };
        fn plan_rule_changes(cur: &[&Rule], new: &[Rule], max_changes: usize) -> Plan {
            // Edits are local: skip the common head and tail in order (one comparison per kept
            // rule), and match names only in the middle that differs.
            let head = cur.iter().zip(new).take_while(|(a, b)| same_rule(a, b)).count();
            let (cur_mid, new_mid) = (&cur[head..], &new[head..]);
            let tail =
                cur_mid.iter().rev().zip(new_mid.iter().rev()).take_while(|(a, b)| same_rule(a, b)).count();
            let (cur_mid, new_mid) = (&cur_mid[..cur_mid.len() - tail], &new_mid[..new_mid.len() - tail]);
            let old_by_name: FxHashMap<&str, &Rule> = cur_mid.iter().map(|r| (r.name.as_str(), *r)).collect();
            let new_names: FxHashMap<&str, &Rule> = new_mid.iter().map(|r| (r.name.as_str(), r)).collect();
            let removed: Vec<&str> = cur_mid
                .iter()
                .filter(|r| new_names.get(r.name.as_str()).is_none_or(|n| !same_rule(r, n)))
                .map(|r| r.name.as_str())
                .collect();
            let added: Vec<usize> = (0..new_mid.len())
                .filter(|&i| {
                    old_by_name.get(new_mid[i].name.as_str()).is_none_or(|o| !same_rule(o, &new_mid[i]))
                })
                .collect();
            // Kept rules must keep their relative order (else priorities would have to move).
            let removed_set: std::collections::HashSet<&str> = removed.iter().copied().collect();
            let added_set: std::collections::HashSet<usize> = added.iter().copied().collect();
            let kept_old = cur_mid.iter().map(|r| r.name.as_str()).filter(|n| !removed_set.contains(n));
            let kept_new =
                (0..new_mid.len()).filter(|i| !added_set.contains(i)).map(|i| new_mid[i].name.as_str());
            let same_order = kept_old.eq(kept_new);
            // (Rule names are unique, so no rule of the head or tail can reappear in the middle.)
            if removed.is_empty() && added.is_empty() && same_order {
                Plan::Unchanged
            } else if removed.len() + added.len() > max_changes || !same_order {
                Plan::Rebuild("too many rule changes, or rules reordered")
            } else {
                let added = added.into_iter().map(|i| i + head).collect();
                Plan::Steps { removed: removed.into_iter().map(str::to_string).collect(), added }
            }
        }
        let (removed, added) = match plan {
            Plan::Rebuild(why) => return self.replace(new, why),
            Plan::Unchanged => return Ok(Applied::Unchanged),
            Plan::Steps { removed, added } => (removed, added),
        };
        // One batch: every change goes to the spare copy, published once at the end (a second
        // commit would find the spare to be the set just published, still held by readers).
        let copied = self.prepare_spare();
        self.batch = Some((Vec::new(), copied));
        let mut total = Applied::Unchanged;
        let mut rebuilt = None;
        for name in &removed {
            total = sum(total, self.remove_rule(name).expect("a current rule"));
        }
        for &i in &added {
            let pos = if i == 0 { Position::Start } else { Position::After(new.rules[i - 1].name.clone()) };
            let step = self.add_rule(new.rules[i].clone(), pos).expect("anchors exist, names are free");
            if let Applied::Rebuilt { .. } = step {
                rebuilt = Some(step.clone());
            }
            total = sum(total, step);
        }
        // Still batching unless a step rebuilt (which replaced `self`, batch and all).
        if let Some((ops, _)) = self.batch.take() {
            self.finish(ops);
        }
        Ok(rebuilt.unwrap_or(total))
    }

    /// Replaces the policy by `p` with a full rebuild.
    fn replace(&mut self, p: Policy, reason: &str) -> Result<Applied, Diagnostics> {
        let g = self.live.generation + 1;
        let fresh = IncrementalPolicy::new(p, g)?;
        *self = fresh;
        Ok(Applied::Rebuilt { generation: g, reason: reason.to_string() })
    }

    /// Full rebuild of the current policy changed by `edit` (which cannot fail: validated).
    fn rebuild_with(&mut self, edit: impl FnOnce(&mut Policy), reason: &str) -> Applied {
        let mut p = self.policy();
        edit(&mut p);
        match self.replace(p, reason) {
            Ok(a) => a,
            Err(d) => {
                Applied::Rebuilt { generation: self.live.generation, reason: format!("rebuild failed: {d}") }
            }
        }
    }

    fn tier_index(&self, tier: &str) -> Result<usize, UpdateError> {
        self.base
            .acl_tiers
            .iter()
            .position(|t| t.name == tier)
            .ok_or_else(|| UpdateError(format!("no ACL tier named {tier}")))
    }

    /// Merged atom-id ranges of a selector list, or the cidr that has no atoms.
    fn ranges_of(&mut self, list: &[SelectorAt]) -> Result<Ranges, Cidr> {
        let mut out: Ranges = Vec::new();
        for s in list {
            encode_selector(&s.sel, &self.index.labels, &self.index.cidrs, &mut self.scratch)
                .map_err(|e| e.0)?;
            let id = self.index.memo.id(&self.scratch) as usize;
            self.index.memo.resolve_new(&self.index.labels, &self.index.atoms);
            out.extend_from_slice(&self.index.memo.ranges[id]);
        }
        self.index.atoms.merge(&mut out);
        Ok(out)
    }

    /// Makes `spare` writable and up to date: replays the previous delta on it, or deep-copies
    /// `live` when a reader still holds `spare`. Returns whether it copied.
    fn prepare_spare(&mut self) -> bool {
        let copied = Arc::get_mut(&mut self.spare).is_none();
        if copied {
            let mut t = (*self.live).clone();
            reserve_headroom(&mut t, self.headroom);
            self.spare = Arc::new(t);
            self.pending.clear();
        }
        let spare = Arc::get_mut(&mut self.spare).expect("unique: just checked or copied");
        for op in self.pending.drain(..) {
            apply_op(spare, &op);
        }
        copied
    }

    /// Makes the prepared `spare`, with `ops` applied, the new generation.
    fn finish(&mut self, ops: Vec<Op>) -> u64 {
        let generation = self.live.generation + 1;
        Arc::get_mut(&mut self.spare).expect("prepared").generation = generation;
        std::mem::swap(&mut self.live, &mut self.spare);
        self.pending = ops;
        generation
    }

    /// Applies `ops` as one new generation (see the module docs), or adds them to the batch of
    /// [`IncrementalPolicy::update_to`]; returns the ids inserts got.
    fn commit(&mut self, ops: Vec<Op>) -> (Applied, Vec<RuleId>) {
        let copied = match &self.batch {
            Some((_, copied)) => *copied,
            None => self.prepare_spare(),
        };
        let spare = Arc::get_mut(&mut self.spare).expect("prepared");
        let mut ids = Vec::new();
        let (mut added, mut removed) = (0, 0);
        for op in &ops {
            let id = apply_op(spare, op);
            match op {
                Op::Insert { .. } => {
                    ids.push(id);
                    added += 1;
                }
                Op::Remove { .. } => removed += 1,
            }
        }
        let generation = match self.batch.as_mut() {
            Some((batch, _)) => {
                batch.extend(ops);
                self.live.generation + 1
            }
            None => self.finish(ops),
        };
        (Applied::Delta { generation, entries_added: added, entries_removed: removed, copied }, ids)
    }
}

/// Two steps of one update as one: entry counts add up, the later generation stands.
fn sum(a: Applied, b: Applied) -> Applied {
    match (a, b) {
        (
            Applied::Delta { entries_added: a1, entries_removed: r1, copied: c1, .. },
            Applied::Delta { generation, entries_added: a2, entries_removed: r2, copied: c2 },
        ) => {
            Applied::Delta { generation, entries_added: a1 + a2, entries_removed: r1 + r2, copied: c1 || c2 }
        }
        (_, b) => b,
    }
}

/// Classifier entries reserved in each table-set copy beyond the full build: an eighth of the
/// built entries, at least 4096 and at most 1M. Within it an update neither doubles the 100k-entry
/// rule arrays nor rehashes a large bucket map (each a multi-millisecond stall); past it, arrays
/// grow by doubling as usual (amortised), and the next full rebuild reserves again. Memory: about
/// 64 bytes per reserved entry and copy (rule slot, table index, metadata), touched up front.
pub fn update_headroom(entries: usize) -> usize {
    (entries / 8).clamp(4096, 1 << 20)
}

/// Reserves `headroom` more entries in every tier of `t` (classifier arrays, bucket maps and
/// rule metadata), touching the metadata's new memory so updates do not take its page faults.
fn reserve_headroom(t: &mut TableSet, headroom: usize) {
    for (tier, metas) in t.tiers.iter_mut().zip(&mut t.rules) {
        tier.classifier.reserve(headroom);
        let n = metas.len();
        let filler = RuleMeta { name: Arc::from(""), action: bulkhead_tables::Action::Deny, mode: None };
        metas.resize(n + headroom, filler);
        metas.truncate(n);
    }
}

/// An order key strictly between the neighbours `pos` names, or `None` when there is no room.
fn between<V>(
    map: &BTreeMap<u32, V>,
    keys: &FxHashMap<String, u32>,
    pos: &Position,
    gap: u32,
    span: u32,
) -> Result<Option<u32>, UpdateError> {
    let anchor =
        |n: &str| keys.get(n).copied().ok_or_else(|| UpdateError(format!("no rule or line named {n}")));
    let (lo, hi) = match pos {
        Position::Start => (0, map.keys().next().copied()),
        Position::End => (map.keys().next_back().copied().unwrap_or(0), None),
        Position::After(n) => {
            let k = anchor(n)?;
            (k, map.range(k + 1..).next().map(|(k, _)| *k))
        }
        Position::Before(n) => {
            let k = anchor(n)?;
            (map.range(..k).next_back().map_or(0, |(k, _)| *k), Some(k))
        }
    };
    Ok(match hi {
        Some(hi) => (hi - lo >= 2).then(|| lo + (hi - lo) / 2),
        None => lo.checked_add(gap).filter(|&k| k < span),
    })
}

/// Inserts `item` into `list` at `pos` (anchors by name).
fn insert_at<T>(list: &mut Vec<T>, item: T, pos: &Position, name: impl Fn(&T) -> &String) {
    let at = match pos {
        Position::Start => 0,
        Position::End => list.len(),
        Position::After(n) => list.iter().position(|x| name(x) == n).map_or(list.len(), |i| i + 1),
        Position::Before(n) => list.iter().position(|x| name(x) == n).unwrap_or(list.len()),
    };
    list.insert(at, item);
}

fn same_sels(a: &[SelectorAt], b: &[SelectorAt]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.sel == y.sel)
}

/// Same rule, ignoring source positions.
fn same_rule(a: &Rule, b: &Rule) -> bool {
    a.name == b.name
        && a.action == b.action
        && a.mode == b.mode
        && a.ports == b.ports
        && same_sels(&a.from, &b.from)
        && same_sels(&a.to, &b.to)
}

fn same_identities(a: &[Identity], b: &[Identity]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.name == y.name
                && x.labels == y.labels
                && x.addresses.len() == y.addresses.len()
                && x.addresses.iter().zip(&y.addresses).all(|(p, q)| p.0 == q.0)
        })
}

/// The current tiers (names in `base`, lines in `lines`) against `new`'s.
fn same_acls(base: &[AclTier], lines: &[AclState], new: &[AclTier]) -> bool {
    base.len() == new.len()
        && base.iter().zip(lines).zip(new).all(|((x, st), y)| {
            x.name == y.name
                && st.lines.len() == y.rules.len()
                && st.lines.values().map(|l| &l.line).zip(&y.rules).all(|(p, q)| {
                    (&p.name, p.src, p.dst, p.proto, p.sport, p.dport, p.action, p.mode)
                        == (&q.name, q.src, q.dst, q.proto, q.sport, q.dport, q.action, q.mode)
                })
        })
}

type SettingsKey =
    (bulkhead_tables::Mode, Vec<(String, Option<bulkhead_tables::Mode>)>, bulkhead_tables::DataplaneConfig);

fn strip_settings(s: &Settings) -> SettingsKey {
    (s.mode, s.segments.iter().map(|(k, v)| (k.clone(), v.mode)).collect(), s.dataplane.clone())
}

fn same_quarantine(a: &QuarantineSpec, b: &QuarantineSpec) -> bool {
    let ids = |q: &QuarantineSpec| q.identities.iter().map(|x| x.0.clone()).collect::<Vec<_>>();
    let addrs = |q: &QuarantineSpec| q.addresses.iter().map(|x| x.0).collect::<Vec<_>>();
    let ex = |q: &QuarantineSpec| {
        q.exceptions.iter().map(|e| (e.name.clone(), e.peer, e.ports.clone())).collect::<Vec<_>>()
    };
    ids(a) == ids(b) && addrs(a) == addrs(b) && ex(a) == ex(b)
}
