//! Policy test cases (`bulkhead policy test PATH --cases CASES.yaml`).
//!
//! A cases file lists flows and the verdict each must get, so a policy repository can prove in CI
//! that "dev never reaches prod" still holds after every change:
//!
//! ```yaml
//! cases:
//!   - name: dev cannot reach the prod database   # optional
//!     from: 198.18.2.10          # an address, or an identity name (an address of it: IPv4 when
//!                                #   both ends have one, else IPv6)
//!     to: prod-db
//!     protocol: tcp              # tcp (default), udp, sctp, icmp, icmpv6, any number 0-255
//!     port: 5432                 # destination port; required for tcp, udp and sctp
//!     sport: 40000               # optional source port (default 49152)
//!     expect: deny               # allow | deny | would_deny
//!     rule: zones/dev-never-prod # optional: the rule that must decide (or `default-deny`, `quarantine`)
//!                                #   (format and spellings: docs/policy.md "Test cases")
//! ```
//! ICMP cases use `type` and `code` instead of ports; without `type` a case is an echo request
//! (type 8 for icmp, 128 for icmpv6: what "can A ping B" means), code 0.

use crate::compile::CompiledPolicy;
use crate::diag::{Diagnostics, Loc};
use crate::model::{has_ports, parse_proto, proto_name, Policy};
use crate::reference::verdict_word;
use crate::yaml::{load_documents, Ctx, Node};
use bulkhead_tables::{Decision, FlowQuery, IdentityId};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// The ICMP type of an echo request in `proto` (icmp 8, icmpv6 128): the default type of a
/// case or a trace that names none.
pub fn echo_request(proto: u8) -> u16 {
    if proto == 58 {
        128
    } else {
        8
    }
}

/// Where a case's endpoint is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Addr(IpAddr),
    Identity(String),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Addr(a) => write!(f, "{a}"),
            Endpoint::Identity(n) => write!(f, "{n}"),
        }
    }
}

/// One expected verdict.
#[derive(Clone, Debug)]
pub struct Case {
    pub name: Option<String>,
    pub loc: Loc,
    pub from: Endpoint,
    pub to: Endpoint,
    /// Where `from` and `to` are written (an unknown identity is reported there).
    pub from_loc: Loc,
    pub to_loc: Loc,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    pub expect: &'static str,
    pub rule: Option<String>,
}

/// Default source port of a case: the start of the dynamic range.
pub const DEFAULT_SPORT: u16 = 49152;

/// The address an endpoint written as `s` (a case's `from` / `to`, `policy trace --from / --to`)
/// names; `Ok(None)` when `s` is not address-shaped, i.e. an identity name to be checked as one.
///
/// # Errors
/// An address-shaped `s` that is no address: a prefix (a flow has one address) or a malformed one.
pub fn endpoint_address(s: &str) -> Result<Option<IpAddr>, String> {
    if let Ok(a) = s.parse::<IpAddr>() {
        return Ok(Some(a));
    }
    if s.contains('/') {
        return Err(format!("`{s}` is a prefix: a flow has one address, give one in it or an identity name"));
    }
    if s.contains(':') || s.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(format!("`{s}` is not a valid IP address"));
    }
    Ok(None)
}

fn endpoint(ctx: &mut Ctx, n: &Node) -> Option<Endpoint> {
    let s = ctx.string(n, "an address or an identity name")?;
    match endpoint_address(&s) {
        Ok(Some(a)) => Some(Endpoint::Addr(a)),
        Ok(None) => ctx.name(n).map(Endpoint::Identity),
        Err(e) => {
            ctx.err(&n.loc, e);
            None
        }
    }
}

/// Parses a cases file.
///
/// # Errors
/// Every malformed case, positioned.
pub fn parse_cases(file: &str, text: &str) -> Result<Vec<Case>, Diagnostics> {
    let f: Arc<str> = Arc::from(file);
    let docs = load_documents(&f, text)?;
    let mut ctx = Ctx::default();
    let mut out = Vec::new();
    if docs.is_empty() {
        ctx.err(&Loc::file(file), "expected a mapping with a `cases` list, found an empty file");
    }
    for d in &docs {
        let Some(m) = ctx.map(d, "a cases file", &["cases"]) else { continue };
        let Some(list) = m.req(&mut ctx, "cases", "a list of cases") else { continue };
        let Some(items) = ctx.seq(list, "cases") else { continue };
        if items.is_empty() {
            // A cases file that tests nothing would keep a CI guard green whatever the policy.
            ctx.err(&list.loc, "expected at least one case, found an empty `cases` list");
        }
        for it in items {
            if let Some(c) = parse_case(&mut ctx, it) {
                out.push(c);
            }
        }
    }
    if ctx.errors.is_empty() {
        Ok(out)
    } else {
        Err(Diagnostics::sorted(ctx.errors))
    }
}

fn parse_case(ctx: &mut Ctx, it: &Node) -> Option<Case> {
    let m = ctx.map(
        it,
        "a case",
        &["name", "from", "to", "protocol", "port", "sport", "type", "code", "expect", "rule"],
    )?;
    let name = m.get("name").and_then(|n| ctx.string(n, "a case name"));
    let from_node = m.req(ctx, "from", "an address or identity name");
    let to_node = m.req(ctx, "to", "an address or identity name");
    let from = from_node.and_then(|n| endpoint(ctx, n));
    let to = to_node.and_then(|n| endpoint(ctx, n));
    let (from_loc, to_loc) = (
        from_node.map_or_else(|| it.loc.clone(), |n| n.loc.clone()),
        to_node.map_or_else(|| it.loc.clone(), |n| n.loc.clone()),
    );
    let proto = match m.get("protocol") {
        Some(n) => match n.as_str().and_then(parse_proto) {
            Some(Some(p)) => Some(p),
            _ => ctx.expected(n, "a protocol: tcp, udp, sctp, icmp, icmpv6 or a number 0-255"),
        },
        None => Some(6),
    }?;
    let (mut sport, mut dport) = (DEFAULT_SPORT, 0u16);
    if has_ports(proto) {
        let n = m.req(ctx, "port", "the destination port")?;
        dport = ctx.uint(n, 65535, "a port")? as u16;
        if let Some(n) = m.get("sport") {
            sport = ctx.uint(n, 65535, "a port")? as u16;
        }
    } else {
        for k in ["port", "sport"] {
            if let Some(n) = m.get(k) {
                ctx.err(&n.loc, format!("`{k}` applies only to tcp, udp and sctp"));
                return None;
            }
        }
        sport = 0;
        if matches!(proto, 1 | 58) {
            sport = echo_request(proto);
            if let Some(n) = m.get("type") {
                sport = ctx.uint(n, 255, "an ICMP type")? as u16;
            }
            if let Some(n) = m.get("code") {
                dport = ctx.uint(n, 255, "an ICMP code")? as u16;
            }
        }
    }
    if !matches!(proto, 1 | 58) {
        for k in ["type", "code"] {
            if let Some(n) = m.get(k) {
                ctx.err(&n.loc, format!("`{k}` applies only to icmp and icmpv6"));
                return None;
            }
        }
    }
    let expect = m.req(ctx, "expect", "allow, deny or would_deny")?;
    let expect = match expect.as_str() {
        Some("allow") => "allow",
        Some("deny") => "deny",
        Some("would_deny") => "would_deny",
        _ => return ctx.expected(expect, "`allow`, `deny` or `would_deny`"),
    };
    let rule = m.get("rule").and_then(|n| ctx.string(n, "a rule name"));
    Some(Case {
        name,
        loc: it.loc.clone(),
        from: from?,
        to: to?,
        from_loc,
        to_loc,
        proto,
        sport,
        dport,
        expect,
        rule,
    })
}

/// An address that the compiled policy maps to identity `idx` (a policy index), IPv4 preferred.
pub fn representative(c: &CompiledPolicy, p: &Policy, idx: usize) -> Option<IpAddr> {
    let (v4, v6) = representatives(c, p, idx);
    v4.or(v6)
}

/// An IPv4 and an IPv6 address that the compiled policy maps to identity `idx`, where it has them.
pub fn representatives(c: &CompiledPolicy, p: &Policy, idx: usize) -> (Option<IpAddr>, Option<IpAddr>) {
    let (mut v4, mut v6) = (None, None);
    let Some(id) = p.identities.get(idx) else { return (None, None) };
    for (cidr, _) in &id.addresses {
        let mut cands = vec![cidr.addr, cidr.last()];
        match cidr.addr {
            IpAddr::V4(a) => cands.push(IpAddr::V4(Ipv4Addr::from(u32::from(a).wrapping_add(1)))),
            IpAddr::V6(a) => cands.push(IpAddr::V6(Ipv6Addr::from(u128::from(a).wrapping_add(1)))),
        }
        for a in cands {
            let atom: IdentityId = c.tables.identities.lookup(a);
            if c.atom_identity.get(atom as usize).copied().flatten() == Some(idx as u32) {
                let slot = if a.is_ipv4() { &mut v4 } else { &mut v6 };
                slot.get_or_insert(a);
            }
        }
        if v4.is_some() && v6.is_some() {
            break;
        }
    }
    (v4, v6)
}

/// Resolves an endpoint to its addresses: (IPv4, IPv6), either possibly absent.
///
/// # Errors
/// Unknown identity names, and identities with no address of their own.
fn resolve_both(
    c: &CompiledPolicy,
    p: &Policy,
    e: &Endpoint,
) -> Result<(Option<IpAddr>, Option<IpAddr>), String> {
    match e {
        Endpoint::Addr(a) if a.is_ipv4() => Ok((Some(*a), None)),
        Endpoint::Addr(a) => Ok((None, Some(*a))),
        Endpoint::Identity(n) => {
            let idx = p
                .identities
                .iter()
                .position(|i| &i.name == n)
                .ok_or_else(|| format!("unknown identity `{n}`"))?;
            match representatives(c, p, idx) {
                (None, None) => Err(format!(
                    "identity `{n}` has no address of its own (all are covered by more specific prefixes)"
                )),
                both => Ok(both),
            }
        }
    }
}

/// Resolves a case's two endpoints to addresses of one family: IPv4 when both have one, else
/// IPv6 (so an identity with only IPv6 addresses can be tested against a dual-stack one).
///
/// # Errors
/// Unknown identities, identities without addresses of their own, or no common family.
pub fn resolve_pair(
    c: &CompiledPolicy,
    p: &Policy,
    from: &Endpoint,
    to: &Endpoint,
) -> Result<(IpAddr, IpAddr), String> {
    common_family(resolve_both(c, p, from)?, resolve_both(c, p, to)?)
}

/// A (source, destination) pair of one family from resolved endpoints: IPv4 when both have one,
/// else IPv6.
fn common_family(
    (f4, f6): (Option<IpAddr>, Option<IpAddr>),
    (t4, t6): (Option<IpAddr>, Option<IpAddr>),
) -> Result<(IpAddr, IpAddr), String> {
    match (f4.zip(t4), f6.zip(t6)) {
        (Some(pair), _) | (None, Some(pair)) => Ok(pair),
        (None, None) => {
            let fam = |v4: Option<IpAddr>| if v4.is_some() { "IPv4" } else { "IPv6" };
            Err(format!(
                "`from` and `to` share no address family (`from` is {} only, `to` is {} only)",
                fam(f4),
                fam(t4)
            ))
        }
    }
}

/// The outcome of one case.
#[derive(Clone, Debug)]
pub struct CaseResult {
    pub query: FlowQuery,
    pub got: &'static str,
    /// Deciding rule name, `default-deny` or `quarantine` / `quarantine-exception`.
    pub decided_by: String,
    pub pass: bool,
    /// Set when the case could not be evaluated (e.g. unknown identity).
    pub error: Option<String>,
    /// Where the error is (the endpoint's field), when it is not the case as a whole.
    pub error_loc: Option<Loc>,
}

/// Name of what decided, as `rule:` in a case expects it.
pub fn decided_by(c: &CompiledPolicy, d: Decision) -> String {
    match d {
        Decision::Allow { .. } | Decision::Deny { .. } => c.tables.rule_name(d).unwrap_or("?").to_string(),
        Decision::DefaultDeny => "default-deny".into(),
        Decision::Quarantined => "quarantine".into(),
        Decision::QuarantineException => "quarantine-exception".into(),
    }
}

/// Runs one case against a compiled policy.
pub fn run_case(c: &CompiledPolicy, p: &Policy, case: &Case) -> CaseResult {
    let blank = FlowQuery {
        src: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        dst: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        proto: case.proto,
        sport: case.sport,
        dport: case.dport,
    };
    let failed = |error: String, error_loc: Option<Loc>| CaseResult {
        query: blank,
        got: "",
        decided_by: String::new(),
        pass: false,
        error: Some(error),
        error_loc,
    };
    if let Some(r) = case.rule.as_deref() {
        let special =
            ["default-deny", "default_deny", "quarantine", "quarantine-exception", "quarantine_exception"];
        let known = special.contains(&r)
            || p.rules.iter().any(|x| x.name == r)
            || p.acl_tiers.iter().any(|t| t.rules.iter().any(|x| x.name == r));
        if !known {
            return failed(
                format!(
                    "unknown rule `{r}`: expected a rule's full name (POLICY/RULE or TIER/LINE), default-deny, quarantine or quarantine-exception"
                ),
                None,
            );
        }
    }
    // An endpoint that does not resolve is reported at its field.
    let from = match resolve_both(c, p, &case.from) {
        Ok(x) => x,
        Err(e) => return failed(e, Some(case.from_loc.clone())),
    };
    let to = match resolve_both(c, p, &case.to) {
        Ok(x) => x,
        Err(e) => return failed(e, Some(case.to_loc.clone())),
    };
    let (src, dst) = match common_family(from, to) {
        Ok(pair) => pair,
        Err(e) => return failed(e, None),
    };
    let query = FlowQuery { src, dst, ..blank };
    let j = c.tables.judge(&query);
    let got = verdict_word(j.decision.allows(), j.mode);
    let by = decided_by(c, j.decision);
    // `default_deny` / `quarantine_exception` (the flow log's and replay's reason spelling) name
    // the same deciders as `default-deny` / `quarantine-exception`.
    let pass = got == case.expect
        && case.rule.as_deref().is_none_or(|r| {
            let r = match r {
                "default_deny" => "default-deny",
                "quarantine_exception" => "quarantine-exception",
                other => other,
            };
            r == by
        });
    CaseResult { query, got, decided_by: by, pass, error: None, error_loc: None }
}

/// `tcp/443`, `icmp 8/0`, ...
pub fn describe_query(q: &FlowQuery) -> String {
    match q.proto {
        1 | 58 => format!("{} -> {} {} type {} code {}", q.src, q.dst, proto_name(q.proto), q.sport, q.dport),
        p if has_ports(p) => format!("{}:{} -> {}:{} {}", q.src, q.sport, q.dst, q.dport, proto_name(p)),
        p => format!("{} -> {} proto {}", q.src, q.dst, proto_name(p)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An identity with only IPv6 addresses is tested over IPv6 against a dual-stack one; a pair
    /// with no family in common is a clear error.
    #[test]
    fn identity_endpoints_pick_a_common_family() {
        let policy = r#"
apiVersion: bulkhead.io/v1
kind: Identity
metadata: {name: v6only}
spec: {labels: {app: a}, addresses: ['2001:db8:1::/48']}
---
apiVersion: bulkhead.io/v1
kind: Identity
metadata: {name: dual}
spec: {labels: {app: b}, addresses: [198.18.1.0/24, '2001:db8:2::/48']}
---
apiVersion: bulkhead.io/v1
kind: Policy
metadata: {name: p}
spec:
  rules:
    - {name: r, from: [{matchLabels: {app: a}}], to: [{matchLabels: {app: b}}], ports: [{protocol: tcp, port: 443}], action: allow}
"#;
        let p = crate::load::load_str("p.yaml", policy).unwrap();
        let c = crate::compile::compile(&p, 1).unwrap();
        let cases = parse_cases(
            "c.yaml",
            "cases:\n  - {from: v6only, to: dual, port: 443, expect: allow}\n\
             \x20 - {from: 198.18.9.9, to: v6only, port: 443, expect: deny}\n",
        )
        .unwrap();
        let r = run_case(&c, &p, &cases[0]);
        assert!(r.pass && r.query.dst.is_ipv6(), "{r:?}");
        let r = run_case(&c, &p, &cases[1]);
        assert!(r.error.as_deref().is_some_and(|e| e.contains("share no address family")), "{r:?}");
    }

    #[test]
    fn parses_a_case() {
        let c = parse_cases(
            "c.yaml",
            "cases:\n  - from: 198.18.1.1\n    to: web\n    port: 443\n    expect: deny\n",
        )
        .unwrap();
        assert_eq!(c[0].from, Endpoint::Addr("198.18.1.1".parse().unwrap()));
        assert_eq!(c[0].to, Endpoint::Identity("web".into()));
        assert_eq!((c[0].proto, c[0].dport, c[0].sport), (6, 443, DEFAULT_SPORT));
    }

    #[test]
    fn rejects_missing_port_for_tcp() {
        let e = parse_cases("c.yaml", "cases:\n  - from: a\n    to: b\n    expect: deny\n").unwrap_err();
        assert!(e.0[0].message.contains("`port`"), "{e}");
        assert_eq!(e.0[0].loc.line, 2);
    }

    #[test]
    fn rejects_bad_expect_and_unknown_field() {
        let e = parse_cases(
            "c.yaml",
            "cases:\n  - from: a\n    to: b\n    port: 1\n    expect: maybe\n    colour: red\n",
        )
        .unwrap_err();
        assert_eq!(e.len(), 2);
        assert!(e.0[0].message.contains("`allow`, `deny` or `would_deny`"));
        assert!(e.0[1].message.contains("unknown field `colour`"));
    }

    #[test]
    fn rejects_icmp_with_port_and_tcp_with_type() {
        assert!(parse_cases("c", "cases:\n  - {from: a, to: b, protocol: icmp, port: 1, expect: deny}\n")
            .is_err());
        assert!(parse_cases(
            "c",
            "cases:\n  - {from: a, to: b, protocol: tcp, port: 1, type: 8, expect: deny}\n"
        )
        .is_err());
        let ok = parse_cases(
            "c",
            "cases:\n  - {from: a, to: b, protocol: icmp, type: 8, code: 0, expect: allow}\n",
        )
        .unwrap();
        assert_eq!((ok[0].proto, ok[0].sport, ok[0].dport), (1, 8, 0));
    }

    #[test]
    fn icmp_without_type_is_an_echo_request() {
        let ok = parse_cases(
            "c",
            "cases:\n  - {from: a, to: b, protocol: icmp, expect: allow}\n  - {from: a, to: b, protocol: icmpv6, expect: allow}\n",
        )
        .unwrap();
        assert_eq!((ok[0].proto, ok[0].sport, ok[0].dport), (1, 8, 0));
        assert_eq!((ok[1].proto, ok[1].sport, ok[1].dport), (58, 128, 0));
    }

    #[test]
    fn rejects_empty_file() {
        assert!(parse_cases("c", "").is_err());
    }

    #[test]
    fn rejects_a_malformed_address_and_a_prefix_at_the_field() {
        let e = parse_cases("c", "cases:\n  - {from: 198.18.1.300, to: web, port: 1, expect: deny}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("c:2:12") && e.contains("not a valid IP address"), "{e}");
        let e = parse_cases("c", "cases:\n  - {from: web, to: 198.18.1.0/24, port: 1, expect: deny}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("c:2:21") && e.contains("is a prefix"), "{e}");
    }

    /// A case naming a rule that does not exist is an error, not a plain FAIL.
    #[test]
    fn a_case_naming_an_unknown_rule_is_an_error() {
        let p = crate::load::load_str(
            "p.yaml",
            "apiVersion: bulkhead.io/v1\nkind: Identity\nmetadata: {name: w}\nspec: {labels: {app: w}, addresses: [198.18.1.1]}\n",
        )
        .unwrap();
        let c = crate::compile::compile(&p, 1).unwrap();
        let cases = parse_cases(
            "c.yaml",
            "cases:\n  - {from: w, to: 198.18.9.9, port: 1, expect: deny, rule: r/nosuch}\n  - {from: w, to: 198.18.9.9, port: 1, expect: deny, rule: default_deny}\n",
        )
        .unwrap();
        let r = run_case(&c, &p, &cases[0]);
        assert!(r.error.as_deref().is_some_and(|e| e.contains("unknown rule `r/nosuch`")), "{r:?}");
        assert!(run_case(&c, &p, &cases[1]).pass);
        // An unknown identity is reported at the field that names it.
        let cases =
            parse_cases("c.yaml", "cases:\n  - {from: w, to: nosuch, port: 1, expect: deny}\n").unwrap();
        let r = run_case(&c, &p, &cases[0]);
        assert!(r.error.as_deref().is_some_and(|e| e.contains("unknown identity `nosuch`")), "{r:?}");
        assert_eq!(r.error_loc.map(|l| (l.line, l.col)), Some((2, 19)));
    }

    #[test]
    fn rejects_empty_case_list() {
        let e = parse_cases("c", "cases: []\n").unwrap_err().to_string();
        assert!(e.contains("c:1:8") && e.contains("at least one case"), "{e}");
    }
}
