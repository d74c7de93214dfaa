//! Property test: the compiled `TableSet::judge` agrees with the naive reference evaluator over
//! the parsed model, on random policies (label, identity, cidr-with-except and world selectors,
//! nested and IPv6 prefixes, ports / ranges / ICMP, modes per rule / segment / global,
//! quarantine with exceptions, and ordered ACL tiers) and random queries.

mod common;

use bulkhead_control::compile;
use bulkhead_control::reference;
use bulkhead_tables::FlowQuery;
use common::*;
use proptest::prelude::*;

fn check(seed: u64) -> Result<(), TestCaseError> {
    let p = rand_policy(seed);
    let c = compile(&p, 1).expect("compiles");
    let addrs = probe_addresses(&p);
    let mut r = Rng(seed.wrapping_mul(31) | 1);
    for _ in 0..300 {
        let src = *r.pick(&addrs);
        let dst = *r.pick(&addrs);
        let proto = *r.pick(&[6u8, 6, 17, 1, 58, 132, 47]);
        let sport = *r.pick(&[0u16, 3, 8, 22, 1234, 65535]);
        let dport = *r.pick(&[0u16, 22, 53, 80, 443, 500, 8000, 8080, 8081]);
        let q = FlowQuery { src, dst, proto, sport, dport };
        let got = c.tables.judge(&q);
        let want = reference::judge(&p, &q);
        let name = |id: Option<usize>| id.map_or("world".to_string(), |i| p.identities[i].name.clone());
        prop_assert_eq!(
            c.tables.identity_name(got.src_identity).to_string(),
            name(want.src),
            "src identity {:?}",
            q
        );
        prop_assert_eq!(
            c.tables.identity_name(got.dst_identity).to_string(),
            name(want.dst),
            "dst identity {:?}",
            q
        );
        prop_assert_eq!(
            compiled_decision(&c.tables, got.decision),
            want.decision,
            "decision {:?} seed {}",
            q,
            seed
        );
        prop_assert_eq!(got.mode, want.mode, "mode {:?}", q);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn compiled_matches_reference(seed in any::<u64>()) {
        check(seed)?;
    }
}

#[test]
fn fixed_seeds() {
    for seed in 1..200u64 {
        check(seed * 7919).unwrap();
    }
}
