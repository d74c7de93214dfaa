//! Property test: after any sequence of incremental rule / ACL-line additions and removals, the
//! updated table set judges every probed query exactly as a full rebuild of the same final policy
//! and as the reference evaluator (identities by name, deciding rule by name, effective mode).
//! Also: left-right publication never mutates a table set a reader still holds.

mod common;

use bulkhead_control::incremental::{Applied, IncrementalPolicy, Position};
use bulkhead_control::model::*;
use bulkhead_control::{compile, reference};
use bulkhead_tables::{Action, FlowQuery, TableHandle, TableSet};
use common::Rng;
use common::*;
use proptest::prelude::*;
use std::collections::BTreeMap;

/// Compares `t` with a full rebuild of `p` and with the reference evaluator on random queries.
fn same_answers(t: &TableSet, p: &Policy, seed: u64, step: usize) -> Result<(), TestCaseError> {
    let full = compile(p, 1).expect("compiles");
    let addrs = probe_addresses(p);
    let mut r = Rng(seed.wrapping_mul(131).wrapping_add(step as u64) | 1);
    for _ in 0..150 {
        let q = FlowQuery {
            src: *r.pick(&addrs),
            dst: *r.pick(&addrs),
            proto: *r.pick(&[6u8, 6, 17, 1, 58, 132, 47]),
            sport: *r.pick(&[0u16, 3, 8, 22, 1234, 65535]),
            dport: *r.pick(&[0u16, 22, 53, 80, 443, 500, 8000, 8080, 8081]),
        };
        let got = t.judge(&q);
        let want = full.tables.judge(&q);
        let oracle = reference::judge(p, &q);
        let ctx = format!("seed {seed} step {step} {q:?}");
        prop_assert_eq!(
            t.identity_name(got.src_identity),
            full.tables.identity_name(want.src_identity),
            "{}",
            ctx
        );
        prop_assert_eq!(
            t.identity_name(got.dst_identity),
            full.tables.identity_name(want.dst_identity),
            "{}",
            ctx
        );
        prop_assert_eq!(
            compiled_decision(t, got.decision),
            compiled_decision(&full.tables, want.decision),
            "{}",
            ctx
        );
        prop_assert_eq!(got.mode, want.mode, "{}", ctx);
        prop_assert_eq!(compiled_decision(t, got.decision), oracle.decision, "oracle {}", ctx);
        prop_assert_eq!(got.mode, oracle.mode, "oracle mode {}", ctx);
    }
    Ok(())
}

/// Extra rules (new names) over the policy's identities, to add later.
fn pool(p: &Policy, r: &mut Rng) -> Vec<Rule> {
    let names: Vec<String> = p.identities.iter().map(|i| i.name.clone()).collect();
    (0..8)
        .map(|i| Rule {
            name: format!("x/r{i}"),
            loc: loc(),
            from: (0..1 + r.below(2))
                .map(|_| SelectorAt { sel: rand_selector(r, &names), loc: loc() })
                .collect(),
            to: (0..1 + r.below(2))
                .map(|_| SelectorAt { sel: rand_selector(r, &names), loc: loc() })
                .collect(),
            ports: rand_ports(r),
            action: if r.chance(35) { Action::Deny } else { Action::Allow },
            mode: rand_mode(r),
        })
        .collect()
}

fn rand_position(r: &mut Rng, names: &[String]) -> Position {
    if names.is_empty() {
        return if r.chance(50) { Position::Start } else { Position::End };
    }
    match r.below(4) {
        0 => Position::Start,
        1 => Position::End,
        2 => Position::After(r.pick(names).clone()),
        _ => Position::Before(r.pick(names).clone()),
    }
}

/// Runs random updates; returns how many were applied as deltas.
fn check(seed: u64) -> Result<usize, TestCaseError> {
    let full = rand_policy(seed);
    let mut r = Rng(seed.wrapping_mul(7) | 1);
    // Start from a random subset of the rules; the rest and the pool are candidates to add.
    let mut start = full.clone();
    let mut candidates: Vec<Rule> = Vec::new();
    start.rules.retain(|rule| {
        let keep = r.chance(60);
        if !keep {
            candidates.push(rule.clone());
        }
        keep
    });
    candidates.extend(pool(&full, &mut r));
    let acl_pool: Vec<(String, AclRule)> = full
        .acl_tiers
        .iter()
        .flat_map(|t| {
            t.rules
                .iter()
                .map(move |l| (t.name.clone(), AclRule { name: format!("{}-n", l.name), ..l.clone() }))
        })
        .collect();
    let mut inc = IncrementalPolicy::new(start, 1).expect("compiles");
    let handle = TableHandle::new(TableSet::empty(0));
    handle.publish_arc(inc.current()).expect("newer");
    let mut deltas = 0;
    for step in 0..12 {
        let cur = inc.policy();
        let names: Vec<String> = cur.rules.iter().map(|x| x.name.clone()).collect();
        let applied = match r.below(6) {
            0..=2 if !candidates.is_empty() => {
                let i = r.below(candidates.len() as u64) as usize;
                let rule = candidates.swap_remove(i);
                let pos = rand_position(&mut r, &names);
                inc.add_rule(rule, pos).expect("valid add")
            }
            3 if !acl_pool.is_empty() => {
                let (tier, line) = r.pick(&acl_pool).clone();
                let t = cur.acl_tiers.iter().find(|t| t.name == tier).unwrap();
                let lines: Vec<String> = t.rules.iter().map(|l| l.name.clone()).collect();
                if lines.contains(&line.name) {
                    inc.remove_acl_line(&tier, &line.name).expect("present")
                } else {
                    let pos = rand_position(&mut r, &lines);
                    inc.add_acl_line(&tier, line, pos).expect("valid add")
                }
            }
            _ if !names.is_empty() => {
                let name = r.pick(&names).clone();
                let rule = cur.rules.iter().find(|x| x.name == name).unwrap().clone();
                candidates.push(rule);
                inc.remove_rule(&name).expect("present")
            }
            _ => continue,
        };
        if let Applied::Delta { copied, .. } = applied {
            deltas += 1;
            prop_assert!(!copied, "nobody but the handle held the spare copy");
        }
        handle.publish_arc(inc.current()).expect("generations increase");
        same_answers(&handle.load(), &inc.policy(), seed, step)?;
    }
    Ok(deltas)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]
    #[test]
    fn incremental_matches_full_rebuild(seed in any::<u64>()) {
        check(seed)?;
    }
}

#[test]
fn fixed_seeds_mostly_take_the_delta_path() {
    let mut deltas = 0;
    for seed in 1..120u64 {
        deltas += check(seed * 104_729).unwrap();
    }
    // Most updates are deltas; new cidr prefixes force some rebuilds.
    assert!(deltas > 300, "only {deltas} deltas");
}

fn label_policy() -> Policy {
    let mut p = Policy::default();
    for (i, (zone, tier)) in [("prod", "web"), ("prod", "db"), ("dev", "web")].iter().enumerate() {
        let mut labels = BTreeMap::new();
        labels.insert("zone".to_string(), zone.to_string());
        labels.insert("tier".to_string(), tier.to_string());
        let c = Cidr::new(format!("198.18.{i}.0").parse().unwrap(), 24).unwrap();
        p.identities.push(Identity {
            name: format!("{zone}-{tier}"),
            loc: loc(),
            labels,
            addresses: vec![(c, loc())],
        });
    }
    p
}

fn labels_sel(k: &str, v: &str) -> SelectorAt {
    let mut labels = BTreeMap::new();
    labels.insert(k.to_string(), v.to_string());
    SelectorAt { sel: Selector::Labels { labels, exprs: Vec::new() }, loc: loc() }
}

fn rule(name: &str, from: SelectorAt, to: SelectorAt, port: u16, action: Action) -> Rule {
    Rule {
        name: name.into(),
        loc: loc(),
        from: vec![from],
        to: vec![to],
        ports: vec![PortMatch { proto: Some(6), sport: ANY_PORT, dport: (port, port) }],
        action,
        mode: None,
    }
}

fn q(src: &str, dst: &str, dport: u16) -> FlowQuery {
    FlowQuery { src: src.parse().unwrap(), dst: dst.parse().unwrap(), proto: 6, sport: 40000, dport }
}

#[test]
fn a_held_generation_is_never_mutated_and_the_update_copies_instead() {
    let mut p = label_policy();
    p.rules.push(rule("p/web-db", labels_sel("tier", "web"), labels_sel("tier", "db"), 5432, Action::Allow));
    let mut inc = IncrementalPolicy::new(p, 1).unwrap();
    let g1 = inc.current();
    let web_db = q("198.18.0.5", "198.18.1.5", 5432);
    assert!(g1.judge(&web_db).decision.allows());
    // A worker still holds g1 and another old set: the first delta goes to the spare (unheld).
    let a = inc
        .add_rule(
            rule("p/no-dev", labels_sel("zone", "dev"), labels_sel("tier", "db"), 5432, Action::Deny),
            Position::End,
        )
        .unwrap();
    assert!(matches!(a, Applied::Delta { generation: 2, entries_added: 1, copied: false, .. }), "{a:?}");
    let g2 = inc.current();
    // The second delta would go to g1's copy, which a reader holds: it must copy instead.
    let b = inc.remove_rule("p/web-db").unwrap();
    assert!(matches!(b, Applied::Delta { generation: 3, entries_removed: 1, copied: true, .. }), "{b:?}");
    assert!(g1.judge(&web_db).decision.allows(), "generation 1 unchanged");
    assert!(g2.judge(&web_db).decision.allows(), "generation 2 unchanged");
    assert!(!inc.current().judge(&web_db).decision.allows(), "generation 3 has no allow");
    drop((g1, g2));
    // Nobody holds the spare now: in place again.
    let c = inc
        .add_rule(
            rule("p/web-db", labels_sel("tier", "web"), labels_sel("tier", "db"), 5432, Action::Allow),
            Position::Start,
        )
        .unwrap();
    assert!(matches!(c, Applied::Delta { copied: false, .. }), "{c:?}");
    assert!(inc.current().judge(&web_db).decision.allows());
    assert_eq!(inc.policy().rules[0].name, "p/web-db");
}

#[test]
fn a_new_cidr_falls_back_to_a_rebuild_and_says_why() {
    let mut inc = IncrementalPolicy::new(label_policy(), 1).unwrap();
    let cidr = SelectorAt {
        sel: Selector::Cidr { cidr: Cidr::new("198.18.0.128".parse().unwrap(), 25).unwrap(), except: vec![] },
        loc: loc(),
    };
    let a = inc
        .add_rule(rule("p/half", labels_sel("tier", "db"), cidr, 80, Action::Allow), Position::End)
        .unwrap();
    match a {
        Applied::Rebuilt { generation: 2, reason } => assert!(reason.contains("198.18.0.128/25"), "{reason}"),
        other => panic!("{other:?}"),
    }
    let t = inc.current();
    assert!(t.judge(&q("198.18.1.1", "198.18.0.200", 80)).decision.allows());
    assert!(!t.judge(&q("198.18.1.1", "198.18.0.100", 80)).decision.allows());
    // The same cidr again is now a delta.
    let sel = inc.policy().rules[0].to[0].clone();
    let b = inc
        .add_rule(rule("p/half2", labels_sel("tier", "web"), sel, 81, Action::Allow), Position::End)
        .unwrap();
    assert!(matches!(b, Applied::Delta { .. }), "{b:?}");
}

#[test]
fn update_to_applies_a_few_rule_changes_as_deltas() {
    let mut p = label_policy();
    p.rules.push(rule("p/a", labels_sel("tier", "web"), labels_sel("tier", "db"), 5432, Action::Allow));
    p.rules.push(rule("p/b", labels_sel("zone", "dev"), labels_sel("zone", "prod"), 22, Action::Deny));
    let mut inc = IncrementalPolicy::new(p.clone(), 1).unwrap();
    assert_eq!(inc.update_to(p.clone(), 8).unwrap(), Applied::Unchanged);
    let mut next = p.clone();
    next.rules
        .insert(1, rule("p/mid", labels_sel("zone", "prod"), labels_sel("zone", "prod"), 443, Action::Allow));
    next.rules[0].ports[0].dport = (5433, 5433); // changed: remove + add
                                                 // A reader holds the published set (a worker mid-batch): the three steps go to the spare
                                                 // copy as one batch, so nothing is deep-copied.
    let held = inc.current();
    let a = inc.update_to(next.clone(), 8).unwrap();
    assert!(matches!(a, Applied::Delta { copied: false, .. }), "{a:?}");
    drop(held);
    // Three steps (remove, add, add), one generation; the entry counts add up.
    assert!(
        matches!(a, Applied::Delta { generation: 2, entries_added: 3.., entries_removed: 1.., .. }),
        "{a:?}"
    );
    assert_eq!(inc.current().generation, 2);
    let names: Vec<String> = inc.policy().rules.iter().map(|r| r.name.clone()).collect();
    assert_eq!(names, ["p/a", "p/mid", "p/b"]);
    same_answers(&inc.current(), &next, 5, 0).unwrap();
    // An identity change is a rebuild.
    let mut moved = next.clone();
    moved.identities[0].labels.insert("tier".into(), "db".into());
    assert!(matches!(inc.update_to(moved.clone(), 8).unwrap(), Applied::Rebuilt { generation: 3, .. }));
    same_answers(&inc.current(), &moved, 6, 0).unwrap();
    // No change still makes a generation when asked (a reload always publishes one).
    assert!(matches!(inc.bump(), Applied::Delta { generation: 4, entries_added: 0, entries_removed: 0, .. }));
    same_answers(&inc.current(), &moved, 7, 0).unwrap();
}

#[test]
fn errors_leave_the_policy_unchanged() {
    let mut p = label_policy();
    p.rules.push(rule("p/a", labels_sel("tier", "web"), labels_sel("tier", "db"), 5432, Action::Allow));
    let mut inc = IncrementalPolicy::new(p, 1).unwrap();
    let dup = rule("p/a", labels_sel("tier", "web"), labels_sel("tier", "db"), 1, Action::Allow);
    assert!(inc.add_rule(dup.clone(), Position::End).unwrap_err().0.contains("exists"));
    let mut other = dup;
    other.name = "p/z".into();
    assert!(inc.add_rule(other, Position::After("p/nope".into())).unwrap_err().0.contains("p/nope"));
    assert!(inc.remove_rule("p/nope").is_err());
    assert!(inc.remove_acl_line("nope", "x").is_err());
    assert_eq!(inc.generation(), 1);
    assert_eq!(inc.rule_count(), 1);
}

#[test]
fn both_copies_keep_headroom_for_updates_also_after_a_deep_copy() {
    use bulkhead_control::incremental::update_headroom;
    let mut p = label_policy();
    p.rules.push(rule("p/web-db", labels_sel("tier", "web"), labels_sel("tier", "db"), 5432, Action::Allow));
    let mut inc = IncrementalPolicy::new(p, 1).unwrap();
    let room =
        |t: &TableSet| (t.tiers[0].classifier.spare_capacity(), t.rules[0].capacity() - t.rules[0].len());
    let h = update_headroom(1);
    assert!(room(&inc.current()).0 >= h && room(&inc.current()).1 >= h);
    // Hold the current set so that the second update must deep-copy; the copy is re-reserved.
    let held = inc.current();
    inc.add_rule(
        rule("p/a", labels_sel("zone", "dev"), labels_sel("tier", "db"), 1, Action::Deny),
        Position::End,
    )
    .unwrap();
    let b = inc
        .add_rule(
            rule("p/b", labels_sel("zone", "dev"), labels_sel("tier", "web"), 2, Action::Deny),
            Position::End,
        )
        .unwrap();
    assert!(matches!(b, Applied::Delta { copied: true, .. }), "{b:?}");
    let (cls, meta) = room(&inc.current());
    assert!(cls >= h - 2 && meta >= h - 2, "{cls} {meta}");
    assert!(!inc.current().judge(&q("198.18.2.5", "198.18.0.5", 2)).decision.allows());
    drop(held);
}

/// `update_to` diffs in place: rules kept in order at the head and tail are skipped, a change in
/// the middle is a delta, a swap of two rules is a reorder (a rebuild).
#[test]
fn update_to_finds_middle_changes_and_reorders() {
    let mut p = label_policy();
    for (i, port) in [5432u16, 22, 443, 80, 8080].iter().enumerate() {
        p.rules.push(rule(
            &format!("p/r{i}"),
            labels_sel("tier", "web"),
            labels_sel("tier", "db"),
            *port,
            Action::Allow,
        ));
    }
    let mut inc = IncrementalPolicy::new(p.clone(), 1).unwrap();
    let mut mid = p.clone();
    mid.rules[2].ports[0].dport = (444, 444);
    let a = inc.update_to(mid.clone(), 8).unwrap();
    assert!(matches!(a, Applied::Delta { entries_added: 1.., entries_removed: 1.., .. }), "{a:?}");
    same_answers(&inc.current(), &mid, 11, 0).unwrap();
    let mut swapped = mid.clone();
    swapped.rules.swap(1, 3);
    match inc.update_to(swapped.clone(), 8).unwrap() {
        Applied::Rebuilt { reason, .. } => assert!(reason.contains("reordered"), "{reason}"),
        other => panic!("expected a rebuild, got {other:?}"),
    }
    same_answers(&inc.current(), &swapped, 12, 0).unwrap();
}
