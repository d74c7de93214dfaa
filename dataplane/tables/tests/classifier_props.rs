//! Property tests: the tuple-space classifier agrees with the linear reference on random rule sets,
//! including ranges that are not prefixes, wildcards, equal priorities and insert/remove sequences.

use bulkhead_tables::classifier::{reference_classify, Tuning};
use bulkhead_tables::{ClassifierBuilder, ClassifierKey, ClassifierRule, RuleId};
use proptest::prelude::*;

/// Addresses come from a few clustered bases so that random rules overlap a lot.
fn addr() -> impl Strategy<Value = u32> {
    (prop::sample::select(vec![0u32, 0x0A00_0000, 0x0A00_0100, 0xC0A8_0000, 0xFFFF_FF00]), 0u32..512)
        .prop_map(|(b, o)| b.wrapping_add(o))
}

fn addr_range() -> impl Strategy<Value = (u32, u32)> {
    prop_oneof![
        1 => Just((0, u32::MAX)),
        3 => (addr(), 0u32..=32).prop_map(|(a, len)| {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            (a & mask, (a & mask) | !mask)
        }),
        // Arbitrary ranges, e.g. identity-id ranges.
        3 => (addr(), 0u32..300).prop_map(|(a, w)| (a, a.saturating_add(w))),
        1 => addr().prop_map(|a| (a, a)),
    ]
}

fn port() -> impl Strategy<Value = u16> {
    prop_oneof![
        Just(0u16),
        Just(22),
        Just(53),
        Just(80),
        Just(443),
        Just(1023),
        Just(1024),
        Just(65535),
        any::<u16>()
    ]
}

fn port_range() -> impl Strategy<Value = (u16, u16)> {
    prop_oneof![
        2 => Just((0, u16::MAX)),
        2 => port().prop_map(|p| (p, p)),
        2 => (port(), port()).prop_map(|(a, b)| (a.min(b), a.max(b))),
        1 => Just((1024, u16::MAX)),
    ]
}

fn proto() -> impl Strategy<Value = (u8, u8)> {
    prop_oneof![Just((0, 0)), Just((6, 0xFF)), Just((17, 0xFF)), Just((1, 0xFF)), (any::<u8>(), any::<u8>())]
}

fn rule() -> impl Strategy<Value = ClassifierRule> {
    (addr_range(), addr_range(), proto(), port_range(), port_range(), 0u32..40).prop_map(
        |(src, dst, proto, sport, dport, priority)| ClassifierRule {
            src,
            dst,
            proto,
            sport,
            dport,
            priority,
        },
    )
}

/// Keys near the rule bounds hit the edges of ranges.
fn keys_for(rules: &[ClassifierRule], extra: &[ClassifierKey]) -> Vec<ClassifierKey> {
    let mut keys = extra.to_vec();
    for r in rules {
        for (s, d, sp, dp) in [
            (r.src.0, r.dst.0, r.sport.0, r.dport.0),
            (r.src.1, r.dst.1, r.sport.1, r.dport.1),
            (r.src.0.wrapping_sub(1), r.dst.1, r.sport.0, r.dport.1),
            (r.src.1.wrapping_add(1), r.dst.0, r.sport.1.wrapping_add(1), r.dport.0.wrapping_sub(1)),
        ] {
            keys.push(ClassifierKey { src: s, dst: d, proto: r.proto.0, sport: sp, dport: dp });
            keys.push(ClassifierKey { src: s, dst: d, proto: r.proto.0 ^ 1, sport: sp, dport: dp });
        }
    }
    keys
}

fn key() -> impl Strategy<Value = ClassifierKey> {
    (addr(), addr(), prop_oneof![Just(6u8), Just(17), Just(1), any::<u8>()], port(), port())
        .prop_map(|(src, dst, proto, sport, dport)| ClassifierKey { src, dst, proto, sport, dport })
}

/// Reference over a rule list with holes (removed rules).
fn reference_live(rules: &[Option<ClassifierRule>], k: &ClassifierKey) -> Option<RuleId> {
    let mut best: Option<(u32, RuleId)> = None;
    for (i, r) in rules.iter().enumerate() {
        if let Some(r) = r {
            if r.matches(k) && best.is_none_or(|(p, _)| r.priority < p) {
                best = Some((r.priority, i as RuleId));
            }
        }
    }
    best.map(|(_, i)| i)
}

#[derive(Clone, Debug)]
enum Op {
    Insert(ClassifierRule),
    /// Removes the n-th id ever handed out (modulo the count), live or not.
    Remove(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![3 => rule().prop_map(Op::Insert), 2 => any::<usize>().prop_map(Op::Remove)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn built_classifier_matches_reference(
        rules in prop::collection::vec(rule(), 0..120),
        extra in prop::collection::vec(key(), 0..200),
    ) {
        let mut b = ClassifierBuilder::new();
        for r in &rules {
            b.push(*r);
        }
        // A tiny collision limit forces every relaxation step and many tables.
        let tight = Tuning { collision_limit: 1, addr_step: 8, exact_ports: false, first_fit: false };
        let c2 = b.clone().build_tuned(tight);
        let c = b.build();
        prop_assert_eq!(c.len(), rules.len());
        let keys = keys_for(&rules, &extra);
        let mut batch = vec![Some(u32::MAX); keys.len()];
        c.classify_batch(&keys, &mut batch);
        for (k, got) in keys.iter().zip(&batch) {
            let want = reference_classify(&rules, k);
            prop_assert_eq!(c.classify(k), want, "key {:?}", k);
            prop_assert_eq!(*got, want, "batch, key {:?}", k);
            prop_assert_eq!(c2.classify(k), want, "tight tuning, key {:?}", k);
            // Filtered: the odd ids as if the even ones were not there.
            let want_odd = rules
                .iter()
                .enumerate()
                .filter(|&(i, r)| i % 2 == 1 && r.matches(k))
                .min_by_key(|&(i, r)| (r.priority, i))
                .map(|(i, _)| i as u32);
            prop_assert_eq!(c.classify_where(k, |i| i % 2 == 1), want_odd, "odd ids only, key {:?}", k);
        }
    }

    #[test]
    fn incremental_updates_match_reference(
        initial in prop::collection::vec(rule(), 0..60),
        ops in prop::collection::vec(op(), 1..80),
        extra in prop::collection::vec(key(), 0..100),
    ) {
        let mut b = ClassifierBuilder::new();
        for r in &initial {
            b.push(*r);
        }
        let mut c = b.build();
        let mut model: Vec<Option<ClassifierRule>> = initial.iter().copied().map(Some).collect();
        let all: Vec<ClassifierRule> = initial.iter().copied().chain(ops.iter().filter_map(|o| match o {
            Op::Insert(r) => Some(*r),
            Op::Remove(_) => None,
        })).collect();
        let keys = keys_for(&all, &extra);
        for (step, o) in ops.iter().enumerate() {
            match o {
                Op::Insert(r) => {
                    let id = c.insert(*r);
                    prop_assert_eq!(id as usize, model.len());
                    model.push(Some(*r));
                }
                Op::Remove(n) => {
                    if model.is_empty() {
                        continue;
                    }
                    let id = n % model.len();
                    let was_live = model[id].take().is_some();
                    prop_assert_eq!(c.remove(id as RuleId), was_live);
                }
            }
            prop_assert_eq!(c.len(), model.iter().flatten().count());
            // Check every few steps (and at the end) to keep the case fast.
            if step % 8 == 7 || step + 1 == ops.len() {
                let mut batch = vec![None; keys.len()];
                c.classify_batch(&keys, &mut batch);
                for (k, got) in keys.iter().zip(&batch) {
                    let want = reference_live(&model, k);
                    prop_assert_eq!(c.classify(k), want, "after step {} key {:?}", step, k);
                    prop_assert_eq!(*got, want, "batch after step {} key {:?}", step, k);
                }
            }
        }
        let live: Vec<(RuleId, ClassifierRule)> = c.rules().collect();
        let want: Vec<(RuleId, ClassifierRule)> = model
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.map(|r| (i as RuleId, r)))
            .map(|(i, r)| (i, ClassifierRule { proto: (r.proto.0 & r.proto.1, r.proto.1), ..r }))
            .collect();
        prop_assert_eq!(live, want);
    }
}

/// Many rules sharing one relaxed tuple force collision-limit splits; equal priorities everywhere.
#[test]
fn dense_equal_priority_rules_match_reference() {
    let mut rules = Vec::new();
    for i in 0..600u32 {
        let src = 0x0A00_0000 + (i % 64);
        rules.push(ClassifierRule {
            src: (src, src + (i % 3)),
            dst: (0xC0A8_0000, 0xC0A8_00FF),
            proto: if i % 2 == 0 { (6, 0xFF) } else { (0, 0) },
            sport: (0, u16::MAX),
            dport: ((i % 7) as u16 * 10, (i % 7) as u16 * 10 + (i % 5) as u16),
            priority: i % 4,
        });
    }
    let mut b = ClassifierBuilder::new();
    for r in &rules {
        b.push(*r);
    }
    let c = b.build();
    for src in 0x0A00_0000 - 1..0x0A00_0000 + 70 {
        for dport in 0..70u16 {
            for proto in [6u8, 17] {
                let k = ClassifierKey { src, dst: 0xC0A8_0010, proto, sport: 5, dport };
                assert_eq!(c.classify(&k), reference_classify(&rules, &k), "{k:?}");
            }
        }
    }
}
