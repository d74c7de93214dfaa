//! `bulkhead policy diff OLD NEW`: which identity pairs and ports change verdict.
//!
//! Endpoints are the identities of either policy (matched by name) plus `world`; each is
//! represented by one of its own addresses in each policy (so an identity that moved address is
//! still compared as itself). Ports are split into the elementary intervals bounded by every port
//! range either policy mentions, per protocol (tcp, udp, sctp; ICMP types; every other protocol
//! number mentioned; and one protocol no rule names), so every distinct behaviour is probed once.
//! Rows whose verdict (allow / deny / would_deny) differs are printed, adjacent port intervals
//! with the same change merged. Source ports are not varied (rules match destination ports).
//! Cidr selectors are endpoints of their own as well: every distinct `cidr` selector of either
//! policy (with its `except` list) is a row label such as `cidr 198.18.9.0/24`, probed at one
//! address inside the prefix and outside every exception (the same address in both policies), so
//! a rule whose `from` or `to` is a cidr shows up under that cidr, whichever identity or `world`
//! the address also belongs to. Quarantined prefixes, quarantine exception peers and the
//! address ranges of ACL lines (up to [`MAX_ACL_ENDPOINTS`]) are endpoints the same way, so a
//! quarantine or an ACL change inside an identity's addresses shows up too.

use crate::cases::representative;
use crate::compile::CompiledPolicy;
use crate::model::{proto_name, Cidr, Policy, PortMatch, Selector, ANY_PORT};
use crate::reference::verdict_word;
use bulkhead_tables::{FlowQuery, WORLD};
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Bound on evaluated (pair, port class) combinations, to keep the command interactive.
pub const MAX_PROBES: usize = 20_000_000;

/// One changed row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub from: String,
    pub to: String,
    pub proto: u8,
    /// Destination port range (ICMP: type range).
    pub ports: (u16, u16),
    pub old: String,
    pub new: String,
    /// The probe stood for every protocol no rule names (`proto` is just one of them).
    pub other_protocols: bool,
}

/// A probe: protocol and the ports of one elementary class.
#[derive(Clone, Copy, Debug)]
struct Class {
    proto: u8,
    lo: u16,
    hi: u16,
    /// Stands for every protocol no rule names.
    other: bool,
}

fn port_matches(p: &Policy) -> Vec<PortMatch> {
    let mut v: Vec<PortMatch> = p.rules.iter().flat_map(|r| r.ports.iter().copied()).collect();
    for t in &p.acl_tiers {
        for r in &t.rules {
            v.push(PortMatch {
                proto: (r.proto.1 == 0xff).then_some(r.proto.0),
                sport: ANY_PORT,
                dport: r.dport,
            });
        }
    }
    v
}

fn classes(old: &Policy, new: &Policy) -> Vec<Class> {
    let all: Vec<PortMatch> = port_matches(old).into_iter().chain(port_matches(new)).collect();
    let mut out = Vec::new();
    for proto in [6u8, 17, 132] {
        let mut cuts: BTreeSet<u32> = [0u32, 65536].into_iter().collect();
        for pm in all.iter().filter(|pm| pm.proto.is_none_or(|p| p == proto)) {
            cuts.insert(u32::from(pm.dport.0));
            cuts.insert(u32::from(pm.dport.1) + 1);
        }
        let cuts: Vec<u32> = cuts.into_iter().collect();
        for w in cuts.windows(2) {
            out.push(Class { proto, lo: w[0] as u16, hi: (w[1] - 1) as u16, other: false });
        }
    }
    for proto in [1u8, 58] {
        let mut cuts: BTreeSet<u32> = [0u32, 256].into_iter().collect();
        for pm in all.iter().filter(|pm| pm.proto == Some(proto)) {
            cuts.insert(u32::from(pm.sport.0).min(256));
            cuts.insert((u32::from(pm.sport.1) + 1).min(256));
        }
        let cuts: Vec<u32> = cuts.into_iter().collect();
        for w in cuts.windows(2) {
            out.push(Class { proto, lo: w[0] as u16, hi: (w[1] - 1) as u16, other: false });
        }
    }
    let others: BTreeSet<u8> =
        all.iter().filter_map(|pm| pm.proto).filter(|p| !matches!(p, 1 | 6 | 17 | 58 | 132)).collect();
    let rest = (0..=255u8).find(|p| !matches!(p, 1 | 6 | 17 | 58 | 132) && !others.contains(p));
    for &proto in &others {
        out.push(Class { proto, lo: 0, hi: 0, other: false });
    }
    if let Some(proto) = rest {
        out.push(Class { proto, lo: 0, hi: 0, other: true });
    }
    out
}

/// An address of `world` in a policy, for one family.
fn world_addr(c: &CompiledPolicy, v4: bool) -> Option<IpAddr> {
    let cands: Vec<IpAddr> = if v4 {
        [
            [203, 0, 113, 7],
            [192, 0, 2, 7],
            [198, 51, 100, 7],
            [100, 64, 0, 7],
            [1, 1, 1, 1],
            [255, 255, 255, 254],
        ]
        .into_iter()
        .map(|o| IpAddr::V4(Ipv4Addr::from(o)))
        .collect()
    } else {
        ["3fff::7", "2001:db8:ffff::7", "fd00::7", "ffff::7"]
            .into_iter()
            .filter_map(|s| s.parse::<Ipv6Addr>().ok())
            .map(IpAddr::V6)
            .collect()
    };
    cands.into_iter().find(|a| c.tables.identities.lookup(*a) == WORLD)
}

/// Representative addresses of an endpoint name in one policy: (v4, v6).
fn reps(p: &Policy, c: &CompiledPolicy, name: &str) -> (Option<IpAddr>, Option<IpAddr>) {
    if name == "world" {
        return (world_addr(c, true), world_addr(c, false));
    }
    let Some(idx) = p.identities.iter().position(|i| i.name == name) else { return (None, None) };
    let mut v4 = None;
    let mut v6 = None;
    if let Some(a) = representative(c, p, idx) {
        if a.is_ipv4() {
            v4 = Some(a);
        } else {
            v6 = Some(a);
        }
    }
    if v6.is_none() {
        // Look for an IPv6 address too (representative prefers IPv4).
        for (cidr, _) in &p.identities[idx].addresses {
            if cidr.addr.is_ipv6()
                && c.atom_identity.get(c.tables.identities.lookup(cidr.addr) as usize).copied().flatten()
                    == Some(idx as u32)
            {
                v6 = Some(cidr.addr);
                break;
            }
        }
    }
    (v4, v6)
}

/// An address inside `cidr` and outside every `except` prefix, if one of a few candidates is.
fn cidr_rep(cidr: &Cidr, except: &[Cidr]) -> Option<IpAddr> {
    let mut cands = vec![cidr.addr, cidr.last()];
    match cidr.addr {
        IpAddr::V4(_) => {
            let (lo, hi) = cidr.v4_range().unwrap_or((0, 0));
            cands.push(IpAddr::V4(Ipv4Addr::from(lo.wrapping_add(1))));
            cands.push(IpAddr::V4(Ipv4Addr::from(lo + (hi - lo) / 2)));
            cands.push(IpAddr::V4(Ipv4Addr::from((lo + (hi - lo) / 2).wrapping_add(1))));
        }
        IpAddr::V6(a) => cands.push(IpAddr::V6(Ipv6Addr::from(u128::from(a).wrapping_add(1)))),
    }
    cands.into_iter().find(|a| cidr.contains(*a) && !except.iter().any(|e| e.contains(*a)))
}

/// ACL address ranges taken as endpoints, at most (a ClassBench-sized tier has thousands; the
/// pairs grow with the square). Past it the diff says the table is incomplete.
pub const MAX_ACL_ENDPOINTS: usize = 256;

/// The label and an address of an IPv4 range: `cidr A/L` when it is a prefix, else `range A-B`.
fn range_endpoint(lo: u32, hi: u32) -> Option<(String, IpAddr)> {
    if lo > hi || (lo, hi) == (0, u32::MAX) {
        return None; // empty, or everything (every endpoint already probes it)
    }
    let len = (lo ^ hi).leading_zeros();
    let is_prefix = len == 32 || (lo & (u32::MAX >> len) == 0 && hi & (u32::MAX >> len) == u32::MAX >> len);
    let a = Ipv4Addr::from(lo);
    let label =
        if is_prefix { format!("cidr {a}/{len}") } else { format!("range {a}-{}", Ipv4Addr::from(hi)) };
    Some((label, IpAddr::V4(a)))
}

/// Address endpoints beyond the identities, from either policy: every distinct cidr selector
/// (with its `except` list), quarantined prefixes, quarantine exception peers, and the source
/// and destination ranges of ACL lines (at most [`MAX_ACL_ENDPOINTS`]). Returns (label,
/// representative address) pairs and whether the ACL ranges were cut.
fn cidr_endpoints(old: &Policy, new: &Policy) -> (Vec<(String, IpAddr)>, bool) {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let mut push = |label: String, a: Option<IpAddr>, out: &mut Vec<(String, IpAddr)>| {
        if let Some(a) = a {
            if seen.insert(label.clone()) {
                out.push((label, a));
            }
        }
    };
    // A prefix that is exactly one identity's whole address set (in both policies) is that
    // identity's row already.
    let is_identity = |c: &Cidr| {
        [old, new]
            .iter()
            .all(|p| p.identities.iter().any(|i| i.addresses.len() == 1 && i.addresses[0].0 == *c))
    };
    for r in old.rules.iter().chain(&new.rules) {
        for s in r.from.iter().chain(&r.to) {
            if let Selector::Cidr { cidr, except } = &s.sel {
                if !(except.is_empty() && is_identity(cidr)) {
                    push(s.sel.to_string(), cidr_rep(cidr, except), &mut out);
                }
            }
        }
    }
    for p in [old, new] {
        for c in p
            .quarantine
            .addresses
            .iter()
            .map(|(c, _)| c)
            .chain(p.quarantine.exceptions.iter().map(|e| &e.peer))
        {
            if !is_identity(c) {
                push(format!("cidr {c}"), cidr_rep(c, &[]), &mut out);
            }
        }
    }
    let before_acl = out.len();
    let mut capped = false;
    'acl: for p in [old, new] {
        for l in p.acl_tiers.iter().flat_map(|t| &t.rules) {
            for (lo, hi) in [l.src, l.dst] {
                if let Some((label, a)) = range_endpoint(lo, hi) {
                    if out.len() - before_acl >= MAX_ACL_ENDPOINTS && !seen_has(&out, &label) {
                        capped = true;
                        break 'acl;
                    }
                    push(label, Some(a), &mut out);
                }
            }
        }
    }
    (out, capped)
}

fn seen_has(out: &[(String, IpAddr)], label: &str) -> bool {
    out.iter().any(|(l, _)| l == label)
}

/// Computes the changed rows. Endpoints missing from one policy are compared as `world` there
/// (that is what their addresses become). Returns the rows and whether the probe limit cut it.
pub fn diff(old: &Policy, oc: &CompiledPolicy, new: &Policy, nc: &CompiledPolicy) -> (Vec<Change>, bool) {
    let mut names: Vec<String> = vec!["world".into()];
    let mut seen = BTreeSet::new();
    for i in old.identities.iter().chain(&new.identities) {
        if seen.insert(i.name.clone()) {
            names.push(i.name.clone());
        }
    }
    let classes = classes(old, new);
    let mut rep: Vec<[(Option<IpAddr>, Option<IpAddr>); 2]> = names
        .iter()
        .map(|n| {
            let o = if old.identity(n).is_some() || n == "world" { reps(old, oc, n) } else { (None, None) };
            let nn = if new.identity(n).is_some() || n == "world" { reps(new, nc, n) } else { (None, None) };
            // Missing from one side: use the other side's address (it is world there).
            [(o.0.or(nn.0), o.1.or(nn.1)), (nn.0.or(o.0), nn.1.or(o.1))]
        })
        .collect();
    let (extra, capped) = cidr_endpoints(old, new);
    for (label, a) in extra {
        let r = if a.is_ipv4() { (Some(a), None) } else { (None, Some(a)) };
        names.push(label);
        rep.push([r, r]);
    }
    let mut out = Vec::new();
    let mut probes = 0usize;
    let mut truncated = capped;
    'outer: for (si, sname) in names.iter().enumerate() {
        for (di, dname) in names.iter().enumerate() {
            for fam in 0..2 {
                let pick = |r: &(Option<IpAddr>, Option<IpAddr>)| if fam == 0 { r.0 } else { r.1 };
                let (Some(os), Some(od), Some(ns), Some(nd)) =
                    (pick(&rep[si][0]), pick(&rep[di][0]), pick(&rep[si][1]), pick(&rep[di][1]))
                else {
                    continue;
                };
                let mut pending: Option<Change> = None;
                for cl in &classes {
                    if (fam == 0 && cl.proto == 58) || (fam == 1 && cl.proto == 1) {
                        continue;
                    }
                    probes += 1;
                    if probes > MAX_PROBES {
                        truncated = true;
                        break 'outer;
                    }
                    let (sport, dport) = if matches!(cl.proto, 1 | 58) { (cl.lo, 0) } else { (49152, cl.lo) };
                    let verdict = |c: &CompiledPolicy, s, d| {
                        let j = c.tables.judge(&FlowQuery { src: s, dst: d, proto: cl.proto, sport, dport });
                        verdict_word(j.decision.allows(), j.mode).to_string()
                    };
                    let (ov, nv) = (verdict(oc, os, od), verdict(nc, ns, nd));
                    if ov == nv {
                        out.extend(pending.take());
                        continue;
                    }
                    match &mut pending {
                        Some(pc)
                            if pc.proto == cl.proto
                                && pc.ports.1.wrapping_add(1) == cl.lo
                                && pc.old == ov
                                && pc.new == nv =>
                        {
                            pc.ports.1 = cl.hi;
                        }
                        _ => {
                            out.extend(pending.take());
                            pending = Some(Change {
                                from: sname.clone(),
                                to: dname.clone(),
                                proto: cl.proto,
                                ports: (cl.lo, cl.hi),
                                old: ov,
                                new: nv,
                                other_protocols: cl.other,
                            });
                        }
                    }
                }
                out.extend(pending.take());
            }
        }
    }
    out.dedup();
    (out, truncated)
}

/// Renders rows as an aligned table.
pub fn render(rows: &[Change]) -> String {
    let ports = |c: &Change| {
        let r = if c.ports.0 == c.ports.1 {
            c.ports.0.to_string()
        } else {
            format!("{}-{}", c.ports.0, c.ports.1)
        };
        match c.proto {
            1 | 58 => format!("{} type {r}", proto_name(c.proto)),
            6 | 17 | 132 if c.ports == (0, 65535) => format!("{}/any", proto_name(c.proto)),
            6 | 17 | 132 => format!("{}/{r}", proto_name(c.proto)),
            _ if c.other_protocols => "other protocols".to_string(),
            p => format!("proto {}", proto_name(p)),
        }
    };
    let header = ["FROM", "TO", "TRAFFIC", "OLD", "NEW"];
    let cells: Vec<[String; 5]> =
        rows.iter().map(|c| [c.from.clone(), c.to.clone(), ports(c), c.old.clone(), c.new.clone()]).collect();
    let mut w = header.map(str::len);
    for r in &cells {
        for (i, s) in r.iter().enumerate() {
            w[i] = w[i].max(s.len());
        }
    }
    let mut out = String::new();
    let line = |cols: [&str; 5]| {
        let mut s = String::new();
        for (i, c) in cols.iter().enumerate() {
            if i + 1 == cols.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<width$}  ", width = w[i]));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    out.push_str(&line(header));
    for r in &cells {
        out.push_str(&line([&r[0], &r[1], &r[2], &r[3], &r[4]]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{compile, load_str};

    const IDS: &str = "apiVersion: bulkhead.io/v1
kind: Identity
metadata: {name: web}
spec:
  labels: {tier: web}
  addresses: [198.18.1.0/24]
---
apiVersion: bulkhead.io/v1
kind: Identity
metadata: {name: db}
spec:
  labels: {tier: db}
  addresses: [198.18.2.0/24]
";

    fn policy(rules: &str) -> (Policy, CompiledPolicy) {
        let text = format!("{IDS}---\napiVersion: bulkhead.io/v1\nkind: Policy\nmetadata: {{name: p}}\nspec:\n  rules:\n{rules}");
        let p = load_str("t.yaml", &text).unwrap_or_else(|e| panic!("{e}"));
        let c = compile(&p, 1).unwrap();
        (p, c)
    }

    #[test]
    fn cidr_rules_show_up_under_their_cidr() {
        let web_db = "    - {name: web-db, from: [{matchLabels: {tier: web}}], to: [{matchLabels: {tier: db}}], ports: [{port: 5432}], action: allow}\n";
        let (op, oc) = policy(web_db);
        let backup = "    - {name: backup, from: [{cidr: 203.0.113.0/24, except: [203.0.113.0/25]}], to: [{matchLabels: {tier: db}}], ports: [{port: 5432}], action: allow}\n";
        let (np, nc) = policy(&format!("{web_db}{backup}"));
        let (rows, cut) = diff(&op, &oc, &np, &nc);
        assert!(!cut);
        let row = rows
            .iter()
            .find(|r| r.from == "cidr 203.0.113.0/24 except 203.0.113.0/25")
            .unwrap_or_else(|| panic!("no cidr row in {rows:?}"));
        assert_eq!((row.to.as_str(), row.proto, row.ports), ("db", 6, (5432, 5432)));
        assert_eq!((row.old.as_str(), row.new.as_str()), ("deny", "allow"));
        // The excepted half is not the cidr's representative; web -> db does not change.
        assert!(rows.iter().all(|r| r.from != "web"), "{rows:?}");
        let (rows, _) = diff(&np, &nc, &op, &oc);
        assert!(
            rows.iter().any(|r| r.from.starts_with("cidr 203.0.113.0/24") && r.new == "deny"),
            "{rows:?}"
        );
    }

    #[test]
    fn a_cidr_fully_excepted_is_skipped_not_misreported() {
        let c = Cidr::new("198.18.0.0".parse().unwrap(), 31).unwrap();
        assert_eq!(cidr_rep(&c, &[c]), None);
        let host = Cidr::new("198.18.0.0".parse().unwrap(), 32).unwrap();
        assert_eq!(cidr_rep(&c, &[host]), Some("198.18.0.1".parse().unwrap()));
    }
}
