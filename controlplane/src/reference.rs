//! The naive reference evaluator: interprets a [`Policy`] directly, rule by rule, with none of
//! the compiler's machinery (no atoms, no ranges, no classifier, no LPM structure).
//!
//! It encodes the verdict semantics (docs/policy.md) a second time, as plainly as possible, so
//! that the compiled `TableSet::judge` can be checked against it (property tests) and so that
//! `policy trace` can list *every* rule that matches, not just the one that decided.

use crate::model::*;
use bulkhead_tables::{Action, FlowQuery, Mode};
use std::net::IpAddr;

/// What decided, by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefDecision {
    Allow(String),
    Deny(String),
    DefaultDeny,
    Quarantined,
    QuarantineException,
}

impl RefDecision {
    pub fn allows(&self) -> bool {
        matches!(self, RefDecision::Allow(_) | RefDecision::QuarantineException)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefJudgement {
    /// Index into `Policy::identities`; `None` = world.
    pub src: Option<usize>,
    pub dst: Option<usize>,
    pub decision: RefDecision,
    pub mode: Mode,
}

/// Longest-prefix match over every identity address, by linear scan.
pub fn identity_of(p: &Policy, a: IpAddr) -> Option<usize> {
    let mut best: Option<(u8, usize)> = None;
    for (i, id) in p.identities.iter().enumerate() {
        for (c, _) in &id.addresses {
            if c.contains(a) && best.is_none_or(|(l, _)| c.len > l) {
                best = Some((c.len, i));
            }
        }
    }
    best.map(|(_, i)| i)
}

/// Does one selector select the endpoint (address `a` with identity `id`)?
pub fn selector_matches(p: &Policy, s: &Selector, a: IpAddr, id: Option<usize>) -> bool {
    match s {
        Selector::World => id.is_none(),
        Selector::Cidr { .. } => s.cidr_matches(a),
        _ => id.is_some_and(|i| s.matches_labels(&p.identities[i].name, &p.identities[i].labels)),
    }
}

/// Does identity rule `r` match the query?
pub fn rule_matches(p: &Policy, r: &Rule, q: &FlowQuery, src: Option<usize>, dst: Option<usize>) -> bool {
    r.from.iter().any(|s| selector_matches(p, &s.sel, q.src, src))
        && r.to.iter().any(|s| selector_matches(p, &s.sel, q.dst, dst))
        && r.port_matches(q.proto, q.sport, q.dport)
}

/// Indices of every identity rule that matches.
pub fn matching_rules(p: &Policy, q: &FlowQuery) -> Vec<usize> {
    let (src, dst) = (identity_of(p, q.src), identity_of(p, q.dst));
    (0..p.rules.len()).filter(|&i| rule_matches(p, &p.rules[i], q, src, dst)).collect()
}

/// Per ACL tier, the index of the first matching line (IPv4 only).
pub fn acl_matches(p: &Policy, q: &FlowQuery) -> Vec<Option<usize>> {
    p.acl_tiers
        .iter()
        .map(|t| match (q.src, q.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                t.rules.iter().position(|r| r.matches(u32::from(s), u32::from(d), q.proto, q.sport, q.dport))
            }
            _ => None,
        })
        .collect()
}

fn segment_mode(p: &Policy, id: Option<usize>) -> Option<Mode> {
    let z = p.identities.get(id?)?.zone()?;
    p.settings.segments.get(z)?.mode
}

/// Whether (source, destination) are quarantined.
fn quarantined(p: &Policy, q: &FlowQuery, src: Option<usize>, dst: Option<usize>) -> (bool, bool) {
    let named = |id: Option<usize>| {
        id.is_some_and(|i| p.quarantine.identities.iter().any(|(n, _)| *n == p.identities[i].name))
    };
    let listed = |a: IpAddr| p.quarantine.addresses.iter().any(|(c, _)| c.contains(a));
    (named(src) || listed(q.src), named(dst) || listed(q.dst))
}

/// A quarantine exception covers the flow: for a quarantined source, the destination is a peer
/// on a listed protocol / destination port (no `ports` = any); for a quarantined destination, the
/// source is a peer of an entry that restricts neither protocol nor port. Written on its own,
/// independently of the compiled tables.
pub fn exception(p: &Policy, q: &FlowQuery) -> bool {
    let (src, dst) = (identity_of(p, q.src), identity_of(p, q.dst));
    let (sq, dq) = quarantined(p, q, src, dst);
    let entries = || {
        p.quarantine.exceptions.iter().flat_map(|e| {
            let ports = if e.ports.is_empty() { vec![PortMatch::ANY] } else { e.ports.clone() };
            ports.into_iter().map(move |pm| (e.peer, pm))
        })
    };
    let to_peer = entries().any(|(peer, pm)| {
        pm.proto.is_none_or(|x| x == q.proto)
            && peer.contains(q.dst)
            && q.dport >= pm.dport.0
            && q.dport <= pm.dport.1
    });
    let from_peer =
        entries().any(|(peer, pm)| pm.proto.is_none() && pm.dport == ANY_PORT && peer.contains(q.src));
    // A quarantined host is nobody's peer.
    match (sq, dq) {
        (true, true) => false,
        (true, false) => to_peer,
        (false, true) => from_peer,
        (false, false) => true,
    }
}

/// Judges a connection-opening query the slow, obvious way.
pub fn judge(p: &Policy, q: &FlowQuery) -> RefJudgement {
    let (src, dst) = (identity_of(p, q.src), identity_of(p, q.dst));
    let rules = rule_judgement(p, q, src, dst);
    let (sq, dq) = quarantined(p, q, src, dst);
    if sq || dq {
        // An exception exempts only what the rules allow (quarantine never grants access).
        let exempt = exception(p, q) && matches!(rules.decision, RefDecision::Allow(_));
        let decision = if exempt { RefDecision::QuarantineException } else { RefDecision::Quarantined };
        return RefJudgement { src, dst, decision, mode: Mode::Enforce };
    }
    rules
}

/// The judgement of the rules alone, as if nothing were quarantined (what a quarantine
/// exception defers to).
pub fn judge_rules(p: &Policy, q: &FlowQuery) -> RefJudgement {
    rule_judgement(p, q, identity_of(p, q.src), identity_of(p, q.dst))
}

/// The judgement of the rules alone, as if nothing were quarantined.
fn rule_judgement(p: &Policy, q: &FlowQuery, src: Option<usize>, dst: Option<usize>) -> RefJudgement {
    let inherited = segment_mode(p, dst).or_else(|| segment_mode(p, src)).unwrap_or(p.settings.mode);
    let all = rule_decision(p, q, src, dst, false);
    // An explicit monitor deny only reports: the packet passes only if the policy without monitor
    // denies would pass it; otherwise that policy decides (adding a deny never opens traffic).
    let (decision, rule_mode) = match all {
        (RefDecision::Deny(_), Some(Mode::Monitor)) => {
            let without = rule_decision(p, q, src, dst, true);
            if !without.0.allows() && without.1.unwrap_or(inherited) == Mode::Enforce {
                without
            } else {
                all
            }
        }
        _ => all,
    };
    let mode = rule_mode.unwrap_or(inherited);
    RefJudgement { src, dst, decision, mode }
}

/// The decision of the rule tiers and the deciding rule's own mode; with `skip_monitor`, as if
/// the explicit `mode: monitor` deny rules were not there.
fn rule_decision(
    p: &Policy,
    q: &FlowQuery,
    src: Option<usize>,
    dst: Option<usize>,
    skip_monitor: bool,
) -> (RefDecision, Option<Mode>) {
    let kept = |a: Action, m: Option<Mode>| !(skip_monitor && a == Action::Deny && m == Some(Mode::Monitor));
    // Identity tier: deny-overrides, the most binding deny (see compile::identity_priorities).
    // Written independently of the compiler's priority numbers: any deny beats any allow; among
    // denies an explicit `enforce` one is the most binding, then one with the inherited mode,
    // then an explicit `monitor` one; ties and allows go by file order.
    let hits: Vec<usize> = (0..p.rules.len())
        .filter(|&i| kept(p.rules[i].action, p.rules[i].mode) && rule_matches(p, &p.rules[i], q, src, dst))
        .collect();
    let mut tier_results: Vec<Option<(Action, String, Option<Mode>)>> = Vec::new();
    let binding = |m: Option<Mode>| match m {
        Some(Mode::Enforce) => 0,
        None => 1,
        Some(Mode::Monitor) => 2,
    };
    let best_deny = hits
        .iter()
        .copied()
        .filter(|&i| p.rules[i].action == Action::Deny)
        .min_by_key(|&i| (binding(p.rules[i].mode), i));
    let best = best_deny.or_else(|| hits.first().copied());
    tier_results.push(best.map(|i| (p.rules[i].action, p.rules[i].name.clone(), p.rules[i].mode)));
    if let (IpAddr::V4(s), IpAddr::V4(d)) = (q.src, q.dst) {
        for t in &p.acl_tiers {
            let hit = t.rules.iter().find(|r| {
                kept(r.action, r.mode) && r.matches(u32::from(s), u32::from(d), q.proto, q.sport, q.dport)
            });
            tier_results.push(hit.map(|r| (r.action, r.name.clone(), r.mode)));
        }
    }
    // Across tiers too: the most binding deny; ties to the earlier tier.
    let deny = tier_results.iter().flatten().filter(|r| r.0 == Action::Deny).min_by_key(|r| binding(r.2));
    let allow = tier_results.iter().flatten().find(|r| r.0 == Action::Allow);
    match (deny, allow) {
        (Some((_, n, m)), _) => (RefDecision::Deny(n.clone()), *m),
        (None, Some((_, n, m))) => (RefDecision::Allow(n.clone()), *m),
        (None, None) => (RefDecision::DefaultDeny, None),
    }
}

/// The user-facing verdict word: `allow`, `deny` or `would_deny`.
pub fn verdict_word(allows: bool, mode: Mode) -> &'static str {
    match (allows, mode) {
        (true, _) => "allow",
        (false, Mode::Enforce) => "deny",
        (false, Mode::Monitor) => "would_deny",
    }
}
