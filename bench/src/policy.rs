//! Table sets for the benchmarks, built directly through the table-set contract (no policy files):
//! what is measured is the dataplane, not the compiler.
//!
//! Addresses: clients in 198.18.0.0/16, servers in 198.19.0.0/16 (the benchmarking range).

use bulkhead_tables::{
    Action, ClassifierBuilder, ClassifierRule, IdentityMapBuilder, RuleMeta, TableSet, Tier, TierKind,
};
use std::net::{IpAddr, Ipv4Addr};

/// Client side: 198.18.0.0/16.
pub const CLIENT_NET: u32 = u32::from_be_bytes([198, 18, 0, 0]);
/// Server side: 198.19.0.0/16.
pub const SERVER_NET: u32 = u32::from_be_bytes([198, 19, 0, 0]);
/// The allowed service port.
pub const ALLOWED_PORT: u16 = 80;
/// A port no rule allows (explicitly denied in the ACL policies).
pub const DENIED_PORT: u16 = 81;

/// Identity ids used by [`identity_policy`].
pub const CLIENTS: u32 = 1;
pub const SERVERS: u32 = 2;

fn identities() -> IdentityMapBuilder {
    let mut m = IdentityMapBuilder::new();
    m.insert(IpAddr::V4(Ipv4Addr::from(CLIENT_NET)), 16, CLIENTS);
    m.insert(IpAddr::V4(Ipv4Addr::from(SERVER_NET)), 16, SERVERS);
    m
}

fn base(generation: u64) -> TableSet {
    let mut t = TableSet::empty(generation);
    t.identity_names = vec!["world".into(), "clients".into(), "servers".into()];
    t.identity_segment = vec![u16::MAX; 3];
    t.identities = identities().build();
    t
}

/// The engine benchmark's policy: identity `clients` may open TCP to `servers` on port 80.
/// Everything else is default-denied.
pub fn identity_policy(generation: u64) -> TableSet {
    let mut t = base(generation);
    let mut b = ClassifierBuilder::new();
    b.push(ClassifierRule {
        src: (CLIENTS, CLIENTS),
        dst: (SERVERS, SERVERS),
        proto: (6, 0xff),
        sport: (0, u16::MAX),
        dport: (ALLOWED_PORT, ALLOWED_PORT),
        priority: 0,
    });
    t.tiers = vec![Tier { name: "identity".into(), kind: TierKind::Identity, classifier: b.build() }];
    t.rules =
        vec![vec![RuleMeta { name: "clients-to-servers-http".into(), action: Action::Allow, mode: None }]];
    t
}

/// A large ordered ACL policy: first an allow of clients -> servers TCP/80 and a deny of
/// clients -> servers TCP/81 (the benchmark's traffic), then `filler` (e.g. 100k ClassBench
/// rules) with alternating allow / deny actions, so the classifier has its full size and shape.
pub fn acl_policy(generation: u64, filler: &[ClassifierRule]) -> TableSet {
    let mut t = base(generation);
    let mut b = ClassifierBuilder::new();
    let mut meta = Vec::with_capacity(filler.len() + 2);
    let net = |n: u32| (n, n | 0xffff);
    for (i, (port, action)) in
        [(ALLOWED_PORT, Action::Allow), (DENIED_PORT, Action::Deny)].into_iter().enumerate()
    {
        b.push(ClassifierRule {
            src: net(CLIENT_NET),
            dst: net(SERVER_NET),
            proto: (6, 0xff),
            sport: (0, u16::MAX),
            dport: (port, port),
            priority: i as u32,
        });
        meta.push(RuleMeta { name: format!("bench-{port}").into(), action, mode: None });
    }
    for (i, r) in filler.iter().enumerate() {
        let mut r = *r;
        r.priority = (i + 2) as u32;
        b.push(r);
        let action = if i % 2 == 0 { Action::Allow } else { Action::Deny };
        meta.push(RuleMeta { name: format!("cb-{i}").into(), action, mode: None });
    }
    t.tiers = vec![Tier { name: "acl".into(), kind: TierKind::Acl, classifier: b.build() }];
    t.rules = vec![meta];
    t
}

/// `n` synthetic 5-tuple rules standing in for ClassBench when its files are missing: disjoint
/// /24 source and destination prefixes outside 198.18.0.0/15, a port range and a protocol each.
pub fn synthetic_rules(n: usize) -> Vec<ClassifierRule> {
    (0..n)
        .map(|i| {
            let i = i as u32;
            let src = (10u32 << 24) | ((i & 0xffff) << 8);
            let dst = (100u32 << 24) | (((i >> 4) & 0xffff) << 8);
            let lo = (i % 60_000) as u16;
            ClassifierRule {
                src: (src, src | 0xff),
                dst: (dst, dst | 0xff),
                proto: ([17, 6, 6][(i % 3) as usize], 0xff),
                sport: (0, u16::MAX),
                dport: (lo, lo.saturating_add(100)),
                priority: i,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulkhead_tables::{Decision, FlowQuery};

    fn q(dport: u16) -> FlowQuery {
        FlowQuery {
            src: IpAddr::V4(Ipv4Addr::new(198, 18, 1, 2)),
            dst: IpAddr::V4(Ipv4Addr::new(198, 19, 0, 1)),
            proto: 6,
            sport: 40000,
            dport,
        }
    }

    #[test]
    fn identity_policy_allows_http_only() {
        let t = identity_policy(1);
        assert!(t.judge(&q(ALLOWED_PORT)).decision.allows());
        assert_eq!(t.judge(&q(DENIED_PORT)).decision, Decision::DefaultDeny);
    }

    #[test]
    fn acl_policy_puts_bench_rules_first() {
        let t = acl_policy(2, &synthetic_rules(100));
        assert_eq!(t.tiers[0].classifier.len(), 102);
        assert!(t.judge(&q(ALLOWED_PORT)).decision.allows());
        assert!(matches!(t.judge(&q(DENIED_PORT)).decision, Decision::Deny { rule: 1, .. }));
    }
}
