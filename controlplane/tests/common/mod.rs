//! Shared generators for the policy property tests: random policies (labels, identity, cidr and
//! world selectors, nested and IPv6 prefixes, ports, modes, quarantine, ACL tiers), the addresses
//! worth probing, and the compiled decision in the reference evaluator's terms.
#![allow(dead_code)]

use bulkhead_control::model::*;
use bulkhead_control::reference::RefDecision;
use bulkhead_control::Loc;
use bulkhead_tables::{Action, Decision, Mode, TableSet};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
    pub fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len() as u64) as usize]
    }
}

pub fn loc() -> Loc {
    Loc::file("gen")
}

pub const KEYS: &[&str] = &["zone", "app", "tier"];
pub const VALUES: &[&str] = &["a", "b", "c"];

pub fn rand_prefix(r: &mut Rng) -> Cidr {
    if r.chance(15) {
        let base = 0x2001_0db8u128 << 96;
        let len = *r.pick(&[48u8, 56, 64, 120, 128]);
        let a = base | (u128::from(r.below(4)) << 72) | u128::from(r.below(4));
        Cidr { addr: mask_addr(IpAddr::V6(Ipv6Addr::from(a)), len), len }
    } else {
        // Inside 198.18.0.0/15, with few distinct values so prefixes nest and collide.
        let len = *r.pick(&[15u8, 16, 20, 24, 24, 28, 32, 32]);
        let a = 0xC612_0000u32
            | ((r.below(2) as u32) << 16)
            | ((r.below(4) as u32) << 8)
            | (r.below(4) as u32 * 5);
        Cidr { addr: mask_addr(IpAddr::V4(Ipv4Addr::from(a)), len), len }
    }
}

pub fn rand_selector(r: &mut Rng, names: &[String]) -> Selector {
    match r.below(10) {
        0 => Selector::World,
        1 | 2 => {
            let cidr = rand_prefix(r);
            let mut except = Vec::new();
            if r.chance(40) && cidr.len < cidr.max_len() {
                let e = rand_prefix(r);
                if e.addr.is_ipv4() == cidr.addr.is_ipv4() && cidr.covers(&e) && e != cidr {
                    except.push(e);
                }
            }
            Selector::Cidr { cidr, except }
        }
        3 if !names.is_empty() => Selector::Identity(r.pick(names).clone()),
        _ => {
            let mut labels = BTreeMap::new();
            let mut exprs = Vec::new();
            for _ in 0..r.below(3) {
                labels.insert(r.pick(KEYS).to_string(), r.pick(VALUES).to_string());
            }
            if r.chance(40) {
                let k = r.pick(KEYS).to_string();
                let vals = vec![r.pick(VALUES).to_string()];
                exprs.push(match r.below(4) {
                    0 => Expr::In(k, vals),
                    1 => Expr::NotIn(k, vals),
                    2 => Expr::Exists(k),
                    _ => Expr::DoesNotExist(k),
                });
            }
            Selector::Labels { labels, exprs }
        }
    }
}

pub fn rand_ports(r: &mut Rng) -> Vec<PortMatch> {
    let mut out = Vec::new();
    for _ in 0..r.below(3) {
        let proto = *r.pick(&[Some(6u8), Some(6), Some(17), Some(1), Some(58), None, Some(132)]);
        let mut pm = PortMatch { proto, sport: ANY_PORT, dport: ANY_PORT };
        match proto {
            Some(6 | 17 | 132) if r.chance(80) => {
                let lo = *r.pick(&[22u16, 53, 80, 443, 8000]);
                pm.dport = if r.chance(30) { (lo, lo + 80) } else { (lo, lo) };
            }
            Some(1 | 58) if r.chance(60) => {
                let t = *r.pick(&[0u16, 3, 8]);
                pm.sport = (t, t);
                if r.chance(50) {
                    pm.dport = (0, 0);
                }
            }
            _ => {}
        }
        out.push(pm);
    }
    out
}

pub fn rand_mode(r: &mut Rng) -> Option<Mode> {
    match r.below(5) {
        0 => Some(Mode::Monitor),
        1 => Some(Mode::Enforce),
        _ => None,
    }
}

pub fn rand_policy(seed: u64) -> Policy {
    let mut r = Rng(seed | 1);
    let mut p = Policy::default();
    let mut used = std::collections::HashSet::new();
    let n_ids = 1 + r.below(8);
    for i in 0..n_ids {
        let mut labels = BTreeMap::new();
        for k in KEYS {
            if r.chance(70) {
                labels.insert((*k).to_string(), r.pick(VALUES).to_string());
            }
        }
        let mut addresses = Vec::new();
        for _ in 0..1 + r.below(3) {
            let c = rand_prefix(&mut r);
            if used.insert(c) {
                addresses.push((c, loc()));
            }
        }
        if addresses.is_empty() {
            continue;
        }
        p.identities.push(Identity { name: format!("id{i}"), loc: loc(), labels, addresses });
    }
    let names: Vec<String> = p.identities.iter().map(|i| i.name.clone()).collect();
    for i in 0..r.below(10) {
        let from = (0..1 + r.below(2))
            .map(|_| SelectorAt { sel: rand_selector(&mut r, &names), loc: loc() })
            .collect();
        let to = (0..1 + r.below(2))
            .map(|_| SelectorAt { sel: rand_selector(&mut r, &names), loc: loc() })
            .collect();
        p.rules.push(Rule {
            name: format!("p/r{i}"),
            loc: loc(),
            from,
            to,
            ports: rand_ports(&mut r),
            action: if r.chance(35) { Action::Deny } else { Action::Allow },
            mode: rand_mode(&mut r),
        });
    }
    p.settings.mode = if r.chance(30) { Mode::Monitor } else { Mode::Enforce };
    for z in VALUES {
        if r.chance(30) {
            p.settings
                .segments
                .insert((*z).to_string(), SegmentSettings { mode: rand_mode(&mut r), loc: loc() });
        }
    }
    if r.chance(30) && !names.is_empty() {
        p.quarantine.identities.push((r.pick(&names).clone(), loc()));
    }
    if r.chance(20) {
        p.quarantine.addresses.push((rand_prefix(&mut r), loc()));
    }
    if r.chance(30) {
        let ports = rand_ports(&mut r).into_iter().filter(|p| p.sport == ANY_PORT).collect();
        p.quarantine.exceptions.push(QuarantineExceptionSpec {
            name: "q/x".into(),
            loc: loc(),
            peer: rand_prefix(&mut r),
            ports,
        });
    }
    for t in 0..r.below(3) {
        let mut rules = Vec::new();
        for l in 0..r.below(6) {
            let v4 = |c: Cidr| c.v4_range().unwrap_or((0, u32::MAX));
            let pm = rand_ports(&mut r).first().copied().unwrap_or(PortMatch::ANY);
            rules.push(AclRule {
                name: format!("acl{t}/l{l}"),
                loc: loc(),
                src: if r.chance(50) { v4(rand_prefix(&mut r)) } else { (0, u32::MAX) },
                dst: if r.chance(50) { v4(rand_prefix(&mut r)) } else { (0, u32::MAX) },
                proto: pm.proto.map_or((0, 0), |x| (x, 0xff)),
                sport: pm.sport,
                dport: pm.dport,
                action: if r.chance(40) { Action::Deny } else { Action::Allow },
                mode: rand_mode(&mut r),
            });
        }
        p.acl_tiers.push(AclTier { name: format!("acl{t}"), loc: loc(), rules, source: None });
    }
    p
}

/// Addresses worth probing: each prefix's first and last address and neighbours, plus outsiders.
pub fn probe_addresses(p: &Policy) -> Vec<IpAddr> {
    let mut cidrs: Vec<Cidr> = p.identities.iter().flat_map(|i| i.addresses.iter().map(|a| a.0)).collect();
    for r in &p.rules {
        for s in r.from.iter().chain(&r.to) {
            if let Selector::Cidr { cidr, except } = &s.sel {
                cidrs.push(*cidr);
                cidrs.extend(except);
            }
        }
    }
    let mut out = vec![
        IpAddr::V4(Ipv4Addr::new(198, 18, 0, 0)),
        IpAddr::V4(Ipv4Addr::new(198, 19, 255, 255)),
        IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9)),
        IpAddr::V6("2001:db8::1".parse().unwrap()),
        IpAddr::V6("2001:db9::1".parse().unwrap()),
    ];
    for c in cidrs {
        out.push(c.addr);
        out.push(c.last());
        match c.addr {
            IpAddr::V4(a) => {
                out.push(IpAddr::V4(Ipv4Addr::from(u32::from(a).wrapping_sub(1))));
                out.push(IpAddr::V4(Ipv4Addr::from(u32::from(a).wrapping_add(5))));
            }
            IpAddr::V6(a) => out.push(IpAddr::V6(Ipv6Addr::from(u128::from(a).wrapping_add(1)))),
        }
    }
    out.sort();
    out.dedup();
    out
}

pub fn compiled_decision(t: &TableSet, d: Decision) -> RefDecision {
    match d {
        Decision::Allow { .. } => RefDecision::Allow(t.rule_name(d).unwrap().to_string()),
        Decision::Deny { .. } => RefDecision::Deny(t.rule_name(d).unwrap().to_string()),
        Decision::DefaultDeny => RefDecision::DefaultDeny,
        Decision::Quarantined => RefDecision::Quarantined,
        Decision::QuarantineException => RefDecision::QuarantineException,
    }
}
