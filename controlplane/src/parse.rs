//! Decoding of policy documents (one YAML document = one object) into the model.
//!
//! Each decoder checks the shape and the values of its own object and records positioned errors
//! in a [`Ctx`]; cross-object checks (duplicate names, address conflicts, selectors that select
//! nothing) happen afterwards in [`crate::load`], once every file has been read.

use crate::diag::Loc;
use crate::model::*;
use crate::yaml::{truncate, Ctx, MapReader, Node, NodeKind};
use bulkhead_tables::{Action, Mode};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

pub const API_VERSION: &str = "bulkhead.io/v1";
pub const KINDS: &[&str] = &["Identity", "Policy", "Settings", "Quarantine", "AclTier"];

/// An object as read from one document, before cross-object validation.
#[derive(Debug)]
pub enum Object {
    Identity(Identity),
    Policy { name: String, loc: Loc, rules: Vec<Rule> },
    Settings(Settings),
    Quarantine { name: String, loc: Loc, spec: QuarantineSpec },
    AclTier(AclTier),
}

/// Decodes one document. `dir` is the directory of its file (for relative ClassBench paths).
pub fn decode_object(ctx: &mut Ctx, doc: &Node, dir: &Path) -> Option<Object> {
    let m = ctx.map(doc, "a policy object", &["apiVersion", "kind", "metadata", "spec"])?;
    let api = m.req(ctx, "apiVersion", "`bulkhead.io/v1`").and_then(|n| ctx.string(n, "`bulkhead.io/v1`"));
    if let (Some(a), Some(n)) = (&api, m.get("apiVersion")) {
        if a != API_VERSION {
            ctx.err(
                &n.loc,
                format!("unsupported apiVersion `{}`, expected `{API_VERSION}`", truncate(a, 60)),
            );
        }
    }
    let kind_node = m.req(ctx, "kind", "one of Identity, Policy, Settings, Quarantine, AclTier")?;
    let kind = ctx.string(kind_node, "an object kind")?;
    if !KINDS.contains(&kind.as_str()) {
        ctx.err(
            &kind_node.loc,
            format!("unknown kind `{}`, expected one of: {}", truncate(&kind, 60), KINDS.join(", ")),
        );
        return None;
    }
    let meta = m.req(ctx, "metadata", "a mapping with `name`")?;
    let meta = ctx.map(meta, "metadata", &["name", "annotations"])?;
    let name_node = meta.req(ctx, "name", "the object's name")?;
    let name = ctx.name(name_node);
    if let Some(a) = meta.get("annotations") {
        if let Some(am) = ctx.map(a, "annotations", &[]) {
            // Free-form: any key, string values. Undo the unknown-field errors `map` recorded.
            let n = am.entries().len();
            ctx.errors.truncate(ctx.errors.len() - n);
            for (_, v) in am.entries() {
                ctx.string(v, "an annotation string");
            }
        }
    }
    let spec = m.req(ctx, "spec", "the object's specification")?;
    let name = name?;
    let loc = name_node.loc.clone();
    match kind.as_str() {
        "Identity" => decode_identity(ctx, spec, name, loc).map(Object::Identity),
        "Policy" => decode_policy(ctx, spec, &name, loc),
        "Settings" => decode_settings(ctx, spec, loc).map(Object::Settings),
        "Quarantine" => decode_quarantine(ctx, spec, name, loc),
        _ => decode_acl_tier(ctx, spec, name, loc, dir).map(Object::AclTier),
    }
}

fn decode_identity(ctx: &mut Ctx, spec: &Node, name: String, loc: Loc) -> Option<Identity> {
    let m = ctx.map(spec, "an Identity spec", &["labels", "addresses"])?;
    if name == "world" {
        ctx.err(
            &loc,
            "`world` is the reserved identity of addresses no identity covers; choose another name",
        );
    }
    let mut labels = BTreeMap::new();
    if let Some(l) = m.get("labels") {
        labels = decode_labels(ctx, l)?;
    }
    let addrs_node = m.req(ctx, "addresses", "a list of IPv4/IPv6 CIDRs")?;
    let mut addresses = Vec::new();
    for a in ctx.seq(addrs_node, "CIDRs")? {
        if let Some(c) = decode_cidr(ctx, a) {
            addresses.push((c, a.loc.clone()));
        }
    }
    if addresses.is_empty() && !matches!(&addrs_node.kind, NodeKind::Seq(v) if !v.is_empty()) {
        ctx.err(&addrs_node.loc, "expected at least one address for the identity");
    }
    Some(Identity { name, loc, labels, addresses })
}

fn valid_label_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

fn decode_labels(ctx: &mut Ctx, node: &Node) -> Option<BTreeMap<String, String>> {
    let NodeKind::Map(entries) = &node.kind else {
        return ctx.expected(node, "a mapping of label keys to values");
    };
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (k, v) in entries {
        let key = k.as_str().unwrap_or("").to_string();
        if !valid_label_part(&key) {
            ctx.err(
                &k.loc,
                format!(
                    "invalid label key `{}`: expected letters, digits, `-`, `_`, `.` or `/`",
                    truncate(&key, 60)
                ),
            );
            ok = false;
            continue;
        }
        match ctx.string(v, "a label value (a string)") {
            Some(val) if valid_label_part(&val) => {
                out.insert(key, val);
            }
            Some(val) => {
                ctx.err(
                    &v.loc,
                    format!(
                        "invalid label value `{}`: expected letters, digits, `-`, `_`, `.` or `/`",
                        truncate(&val, 60)
                    ),
                );
                ok = false;
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// Parses `a.b.c.d/len`, `a::b/len`, or a bare address (= a host prefix).
pub fn parse_cidr(s: &str) -> Result<Cidr, String> {
    let s = s.trim();
    let (a, l) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let addr: IpAddr = a.parse().map_err(|_| {
        format!("expected an IPv4 or IPv6 address or CIDR like 198.18.0.0/15, found `{}`", truncate(s, 60))
    })?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = match l {
        None => max,
        Some(l) => match l.parse::<u8>() {
            Ok(n) if n <= max && !l.starts_with('+') => n,
            _ => {
                return Err(format!(
                    "invalid prefix length `{}` in `{}`: expected 0 to {max}",
                    truncate(l, 20),
                    truncate(s, 60)
                ))
            }
        },
    };
    match Cidr::new(addr, len) {
        Some(c) => Ok(c),
        None => {
            let fixed = Cidr { addr: mask_addr(addr, len), len };
            Err(format!("`{s}` has host bits set; did you mean {fixed}?"))
        }
    }
}

fn decode_cidr(ctx: &mut Ctx, node: &Node) -> Option<Cidr> {
    let s = ctx.string(node, "a CIDR like 198.18.0.0/15")?;
    match parse_cidr(&s) {
        Ok(c) => Some(c),
        Err(e) => {
            ctx.err(&node.loc, e);
            None
        }
    }
}

fn decode_action(ctx: &mut Ctx, node: &Node) -> Option<Action> {
    match node.as_str() {
        Some("allow") => Some(Action::Allow),
        Some("deny") => Some(Action::Deny),
        _ => ctx.expected(node, "`allow` or `deny`"),
    }
}

fn decode_mode(ctx: &mut Ctx, node: &Node) -> Option<Mode> {
    match node.as_str() {
        Some("enforce") => Some(Mode::Enforce),
        Some("monitor") => Some(Mode::Monitor),
        _ => ctx.expected(node, "`enforce` or `monitor`"),
    }
}

fn decode_policy(ctx: &mut Ctx, spec: &Node, name: &str, loc: Loc) -> Option<Object> {
    let m = ctx.map(spec, "a Policy spec", &["rules"])?;
    let rules_node = m.req(ctx, "rules", "a list of rules")?;
    let mut rules = Vec::new();
    for r in ctx.seq(rules_node, "rules")? {
        if let Some(rule) = decode_rule(ctx, r, name) {
            rules.push(rule);
        }
    }
    Some(Object::Policy { name: name.to_string(), loc, rules })
}

const RULE_FIELDS: &[&str] = &["name", "from", "to", "ports", "action", "mode"];

fn decode_rule(ctx: &mut Ctx, node: &Node, policy: &str) -> Option<Rule> {
    let m = ctx.map(node, "a rule", RULE_FIELDS)?;
    let name = m.req(ctx, "name", "the rule's name").and_then(|n| ctx.name(n));
    let from = m.req(ctx, "from", "a list of selectors").and_then(|n| decode_selectors(ctx, n));
    let to = m.req(ctx, "to", "a list of selectors").and_then(|n| decode_selectors(ctx, n));
    let ports = match m.get("ports") {
        Some(p) => decode_ports(ctx, p),
        None if m.has("ports") => {
            ctx.expected(node, "`ports` to be a list (omit the field for any protocol and port)")
        }
        None => Some(Vec::new()),
    };
    let action = m.req(ctx, "action", "`allow` or `deny`").and_then(|n| decode_action(ctx, n));
    let mode = match m.get("mode") {
        Some(n) => Some(decode_mode(ctx, n)?),
        None => None,
    };
    Some(Rule {
        name: format!("{policy}/{}", name?),
        loc: node.loc.clone(),
        from: from?,
        to: to?,
        ports: ports?,
        action: action?,
        mode,
    })
}

fn decode_selectors(ctx: &mut Ctx, node: &Node) -> Option<Vec<SelectorAt>> {
    let items = ctx.seq(node, "selectors")?;
    if items.is_empty() {
        ctx.err(&node.loc, "an empty selector list selects nothing: expected at least one selector (`{}` selects every identity)");
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    for it in items {
        match decode_selector(ctx, it) {
            Some(s) => out.push(SelectorAt { sel: s, loc: it.loc.clone() }),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

const SELECTOR_FIELDS: &[&str] = &["matchLabels", "matchExpressions", "identity", "cidr", "except", "world"];

fn decode_selector(ctx: &mut Ctx, node: &Node) -> Option<Selector> {
    let m = ctx.map(node, "a selector", SELECTOR_FIELDS)?;
    let labels = m.has("matchLabels") || m.has("matchExpressions");
    let groups = [labels, m.has("identity"), m.has("cidr"), m.has("world")];
    if groups.iter().filter(|&&g| g).count() > 1 {
        ctx.err(
            &node.loc,
            "a selector uses one of: matchLabels/matchExpressions, identity, cidr (with except), world; write several selectors in the list to combine them (they are OR-ed)",
        );
        return None;
    }
    if m.has("except") && !m.has("cidr") {
        ctx.err(&node.loc, "`except` is only valid together with `cidr`");
        return None;
    }
    if m.has("world") {
        let w = match m.get("world") {
            Some(n) => ctx.bool(n)?,
            None => return ctx.expected(node, "`world: true`"),
        };
        if !w {
            ctx.err(&node.loc, "`world: false` selects nothing; expected `world: true`");
            return None;
        }
        return Some(Selector::World);
    }
    if m.has("identity") {
        let n = m.req(ctx, "identity", "an identity name")?;
        return Some(Selector::Identity(ctx.name(n)?));
    }
    if m.has("cidr") {
        let n = m.req(ctx, "cidr", "a CIDR")?;
        let cidr = decode_cidr(ctx, n)?;
        let mut except = Vec::new();
        if let Some(e) = m.get("except") {
            for x in ctx.seq(e, "CIDRs")? {
                let c = decode_cidr(ctx, x)?;
                if c.addr.is_ipv4() != cidr.addr.is_ipv4() || !cidr.covers(&c) {
                    ctx.err(
                        &x.loc,
                        format!("`except` prefix {c} must lie inside the selector's cidr {cidr}"),
                    );
                    return None;
                }
                if c == cidr {
                    ctx.err(
                        &x.loc,
                        format!("`except` {c} removes the whole cidr: this selector can never match"),
                    );
                    return None;
                }
                except.push(c);
            }
        }
        except.sort();
        except.dedup();
        return Some(Selector::Cidr { cidr, except });
    }
    let mut want = BTreeMap::new();
    if let Some(l) = m.get("matchLabels") {
        want = decode_labels(ctx, l)?;
    }
    let mut exprs = Vec::new();
    if let Some(e) = m.get("matchExpressions") {
        for x in ctx.seq(e, "label expressions")? {
            exprs.push(decode_expr(ctx, x)?);
        }
    }
    // Contradictions that make the selector unsatisfiable whatever the inventory.
    for e in &exprs {
        let (clash, key) = match e {
            Expr::In(k, vs) => (want.get(k).is_some_and(|v| !vs.contains(v)), k),
            Expr::NotIn(k, vs) => (want.get(k).is_some_and(|v| vs.contains(v)), k),
            Expr::DoesNotExist(k) => (
                want.contains_key(k)
                    || exprs.iter().any(|o| matches!(o, Expr::Exists(x) | Expr::In(x, _) if x == k)),
                k,
            ),
            Expr::Exists(_) => (false, &String::new()),
        };
        if clash {
            ctx.err(
                &node.loc,
                format!("selector can never match: its conditions on label `{key}` contradict each other"),
            );
            return None;
        }
    }
    exprs.sort();
    exprs.dedup();
    Some(Selector::Labels { labels: want, exprs })
}

fn decode_expr(ctx: &mut Ctx, node: &Node) -> Option<Expr> {
    let m = ctx.map(node, "a label expression", &["key", "operator", "values"])?;
    let key_node = m.req(ctx, "key", "a label key")?;
    let key = ctx.string(key_node, "a label key")?;
    if !valid_label_part(&key) {
        ctx.err(&key_node.loc, format!("invalid label key `{}`", truncate(&key, 60)));
        return None;
    }
    let op_node = m.req(ctx, "operator", "In, NotIn, Exists or DoesNotExist")?;
    let op = ctx.string(op_node, "In, NotIn, Exists or DoesNotExist")?;
    let values = match m.get("values") {
        Some(v) => {
            let mut out = Vec::new();
            for x in ctx.seq(v, "label values")? {
                out.push(ctx.string(x, "a label value")?);
            }
            out.sort();
            out.dedup();
            Some((out, v))
        }
        None => None,
    };
    match op.as_str() {
        "In" | "NotIn" => {
            let Some((vals, vnode)) = values else {
                ctx.err(&node.loc, format!("operator {op} needs a non-empty `values` list"));
                return None;
            };
            if vals.is_empty() {
                ctx.err(&vnode.loc, format!("operator {op} needs a non-empty `values` list"));
                return None;
            }
            Some(if op == "In" { Expr::In(key, vals) } else { Expr::NotIn(key, vals) })
        }
        "Exists" | "DoesNotExist" => {
            if let Some((_, vnode)) = values {
                ctx.err(&vnode.loc, format!("operator {op} takes no `values`"));
                return None;
            }
            Some(if op == "Exists" { Expr::Exists(key) } else { Expr::DoesNotExist(key) })
        }
        _ => ctx.expected(op_node, "operator In, NotIn, Exists or DoesNotExist"),
    }
}

/// A port number or an inclusive range `lo-hi`.
pub fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let s = s.trim();
    let num = |x: &str| {
        let x = x.trim();
        if x.is_empty() || x.len() > 5 || !x.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        x.parse::<u32>().ok().filter(|&v| v <= 65535).map(|v| v as u16)
    };
    if s == "any" {
        return Ok(ANY_PORT);
    }
    if let Some((a, b)) = s.split_once('-') {
        let (Some(a), Some(b)) = (num(a), num(b)) else {
            return Err(format!(
                "expected a port range like 8000-8080 (ports 0 to 65535), found `{}`",
                truncate(s, 40)
            ));
        };
        if a > b {
            return Err(format!("inverted port range `{s}`: the first port must not exceed the last"));
        }
        Ok((a, b))
    } else {
        num(s).map(|p| (p, p)).ok_or_else(|| {
            format!("expected a port (0 to 65535) or a range like 8000-8080, found `{}`", truncate(s, 40))
        })
    }
}

fn decode_port_range(ctx: &mut Ctx, node: &Node) -> Option<(u16, u16)> {
    let s = ctx.string(node, "a port or a range like 8000-8080")?;
    match parse_port_range(&s) {
        Ok(r) => Some(r),
        Err(e) => {
            ctx.err(&node.loc, e);
            None
        }
    }
}

fn decode_ports(ctx: &mut Ctx, node: &Node) -> Option<Vec<PortMatch>> {
    let items = ctx.seq(node, "port entries")?;
    if items.is_empty() {
        ctx.err(
            &node.loc,
            "an empty `ports` list matches nothing: omit `ports` for any protocol and port, or list entries",
        );
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    for it in items {
        match decode_port_entry(ctx, it) {
            Some(p) => out.push(p),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// `{protocol, port}` or `{protocol: icmp, type, code}`. Protocol defaults to tcp.
fn decode_port_entry(ctx: &mut Ctx, node: &Node) -> Option<PortMatch> {
    let m = ctx.map(node, "a port entry", &["protocol", "port", "type", "code"])?;
    decode_proto_fields(ctx, &m, node, "port", Some(6))
}

/// Shared by rules, ACL lines and quarantine exceptions: protocol + port (or ICMP type/code).
fn decode_proto_fields(
    ctx: &mut Ctx,
    m: &MapReader<'_>,
    node: &Node,
    port_key: &str,
    default: Option<u8>,
) -> Option<PortMatch> {
    let proto = match m.get("protocol") {
        Some(p) => {
            let s = ctx.string(p, "a protocol")?;
            match parse_proto(&s) {
                Some(v) => v,
                None => {
                    return ctx
                        .expected(p, "a protocol: tcp, udp, sctp, icmp, icmpv6, any, or a number 0-255");
                }
            }
        }
        None => default,
    };
    let mut pm = PortMatch { proto, sport: ANY_PORT, dport: ANY_PORT };
    let is_icmp = matches!(proto, Some(1 | 58));
    // Every field is checked, so one entry reports all its mistakes at once.
    let mut ok = true;
    if let Some(pn) = m.get(port_key) {
        if !proto.is_some_and(has_ports) {
            ctx.err(
                &pn.loc,
                format!(
                    "`{port_key}` applies only to tcp, udp and sctp, not to protocol {}",
                    proto.map_or("any".to_string(), proto_name)
                ),
            );
            ok = false;
        } else if let Some(r) = decode_port_range(ctx, pn) {
            pm.dport = r;
        } else {
            ok = false;
        }
    }
    for (field, is_type) in [("type", true), ("code", false)] {
        if let Some(n) = m.get(field) {
            if !is_icmp {
                ctx.err(&n.loc, format!("`{field}` applies only to icmp and icmpv6"));
                ok = false;
                continue;
            }
            let Some(v) = ctx.uint(n, 255, &format!("an ICMP {field}")) else {
                ok = false;
                continue;
            };
            let v = v as u16;
            if is_type {
                pm.sport = (v, v);
            } else {
                pm.dport = (v, v);
            }
        }
    }
    if m.get("code").is_some() && m.get("type").is_none() {
        ctx.err(&node.loc, "an ICMP `code` needs a `type`");
        ok = false;
    }
    ok.then_some(pm)
}

/// A well-formed duration (digits and a known unit) whose value does not fit in u64 nanoseconds.
fn duration_too_large(s: &str) -> bool {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    !n.trim_start_matches('0').is_empty()
        && matches!(unit, "" | "s" | "ms" | "m" | "h" | "d")
        && parse_duration_ns(s).is_none()
}

fn parse_duration_ns(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    if n.is_empty() || n.len() > 12 {
        return None;
    }
    let n: u64 = n.parse().ok()?;
    let mult: u64 = match unit {
        "" | "s" => 1_000_000_000,
        "ms" => 1_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        "d" => 86_400_000_000_000,
        _ => return None,
    };
    n.checked_mul(mult).filter(|&v| v > 0)
}

/// Every branch records its errors and goes on, so one file reports all its Settings errors at
/// once (the policy is rejected if any was recorded).
fn decode_settings(ctx: &mut Ctx, spec: &Node, loc: Loc) -> Option<Settings> {
    let m = ctx.map(spec, "a Settings spec", &["mode", "segments", "dataplane"])?;
    let mut s = Settings { loc: Some(loc), ..Settings::default() };
    if let Some(mode) = m.get("mode").and_then(|n| decode_mode(ctx, n)) {
        s.mode = mode;
    }
    if let Some(segs) = m.get("segments") {
        match &segs.kind {
            NodeKind::Map(entries) => {
                for (k, v) in entries {
                    let zone = k.as_str().unwrap_or("").to_string();
                    if !valid_label_part(&zone) {
                        ctx.err(&k.loc, format!("invalid zone name `{}`", truncate(&zone, 60)));
                        continue;
                    }
                    let Some(sm) = ctx.map(v, "segment settings", &["mode"]) else { continue };
                    let mode = sm.get("mode").and_then(|n| decode_mode(ctx, n));
                    s.segments.insert(zone, SegmentSettings { mode, loc: k.loc.clone() });
                }
            }
            _ => {
                ctx.expected::<()>(segs, "a mapping of zone names to segment settings");
            }
        }
    }
    let Some(dm) = m
        .get("dataplane")
        .and_then(|dp| ctx.map(dp, "dataplane settings", &["strictTcp", "allowedEthertypes", "timeouts"]))
    else {
        return Some(s);
    };
    if let Some(b) = dm.get("strictTcp").and_then(|n| ctx.bool(n)) {
        s.dataplane.strict_tcp = b;
    }
    if let Some(list) = dm.get("allowedEthertypes").and_then(|n| ctx.seq(n, "ethertypes")) {
        let mut seen: Vec<(u16, &Loc)> = Vec::with_capacity(list.len());
        for e in list {
            let Some(v) = ctx.uint(e, 0xffff, "an ethertype such as 0x88cc") else { continue };
            if v < 0x0600 {
                ctx.err(
                    &e.loc,
                    "expected an ethertype from 0x0600 to 0xffff (smaller values are 802.3 lengths)",
                );
            } else if matches!(v, 0x0800 | 0x86dd | 0x0806) {
                ctx.err(&e.loc, "IPv4, IPv6 and ARP are always handled; list only other ethertypes");
            } else if let Some((_, first)) = seen.iter().find(|(x, _)| u64::from(*x) == v) {
                let first = format!("{}:{}", first.line, first.col);
                ctx.err(&e.loc, format!("duplicate ethertype {v:#06x} (first listed at {first})"));
            } else {
                seen.push((v as u16, &e.loc));
            }
        }
        s.dataplane.allowed_ethertypes = seen.iter().map(|&(v, _)| v).collect();
        s.dataplane.allowed_ethertypes.sort_unstable();
    }
    if let Some(tm) = dm
        .get("timeouts")
        .and_then(|t| ctx.map(t, "timeouts", &["tcpEstablished", "tcpTransitory", "udp", "icmp", "other"]))
    {
        let dpc = &mut s.dataplane;
        for (key, slot) in [
            ("tcpEstablished", &mut dpc.tcp_established_timeout_ns),
            ("tcpTransitory", &mut dpc.tcp_transitory_timeout_ns),
            ("udp", &mut dpc.udp_timeout_ns),
            ("icmp", &mut dpc.icmp_timeout_ns),
            ("other", &mut dpc.other_timeout_ns),
        ] {
            if let Some(n) = tm.get(key) {
                match n.as_str().and_then(parse_duration_ns) {
                    Some(v) => *slot = v,
                    None if n.as_str().is_some_and(duration_too_large) => {
                        let t = truncate(n.as_str().unwrap_or(""), 40);
                        ctx.err(&n.loc, format!("duration `{t}` is too large (at most about 584 years)"));
                    }
                    None => {
                        ctx.expected::<()>(
                            n,
                            "a positive duration such as 30s, 15m, 4h, 500ms, 1d or a number of seconds",
                        );
                    }
                }
            }
        }
    }
    Some(s)
}

fn decode_quarantine(ctx: &mut Ctx, spec: &Node, name: String, loc: Loc) -> Option<Object> {
    let m = ctx.map(spec, "a Quarantine spec", &["identities", "addresses", "exceptions"])?;
    let mut q = QuarantineSpec::default();
    if let Some(n) = m.get("identities") {
        for x in ctx.seq(n, "identity names")? {
            if let Some(s) = ctx.name(x) {
                q.identities.push((s, x.loc.clone()));
            }
        }
    }
    if let Some(n) = m.get("addresses") {
        for x in ctx.seq(n, "CIDRs")? {
            if let Some(c) = decode_cidr(ctx, x) {
                q.addresses.push((c, x.loc.clone()));
            }
        }
    }
    if let Some(n) = m.get("exceptions") {
        for x in ctx.seq(n, "quarantine exceptions")? {
            let Some(em) = ctx.map(x, "a quarantine exception", &["name", "peer", "ports"]) else { continue };
            let ename = em.req(ctx, "name", "the exception's name").and_then(|n| ctx.name(n));
            let peer = em
                .req(ctx, "peer", "the CIDR of the peer (e.g. a forensics host)")
                .and_then(|n| decode_cidr(ctx, n));
            let ports = match em.get("ports") {
                Some(p) => decode_ports(ctx, p),
                None => Some(Vec::new()),
            };
            if let Some(ps) = &ports {
                if ps.iter().any(|p| p.sport != ANY_PORT) {
                    ctx.err(&x.loc, "quarantine exceptions match a protocol and a port range; ICMP type/code is not supported here");
                    continue;
                }
            }
            if let (Some(en), Some(peer), Some(ports)) = (ename, peer, ports) {
                q.exceptions.push(QuarantineExceptionSpec {
                    name: format!("{name}/{en}"),
                    loc: x.loc.clone(),
                    peer,
                    ports,
                });
            }
        }
    }
    Some(Object::Quarantine { name, loc, spec: q })
}

const ACL_FIELDS: &[&str] =
    &["name", "src", "dst", "protocol", "sport", "dport", "type", "code", "action", "mode"];

fn decode_acl_tier(ctx: &mut Ctx, spec: &Node, name: String, loc: Loc, dir: &Path) -> Option<AclTier> {
    let m = ctx.map(spec, "an AclTier spec", &["rules", "classbench", "action"])?;
    match (m.get("rules"), m.get("classbench")) {
        (Some(_), Some(_)) | (None, None) => {
            ctx.err(
                &spec.loc,
                "an AclTier has exactly one of `rules` (a list) or `classbench` (a file path)",
            );
            None
        }
        (Some(rules), None) => {
            if let Some(a) = m.get("action") {
                ctx.err(
                    &a.loc,
                    "`action` at tier level applies only to `classbench` tiers; give each rule its action",
                );
                return None;
            }
            let mut out = Vec::new();
            let items = ctx.seq(rules, "ACL rules")?;
            for (i, r) in items.iter().enumerate() {
                if let Some(rule) = decode_acl_rule(ctx, r, &name, i) {
                    out.push(rule);
                }
            }
            Some(AclTier { name, loc, rules: out, source: None })
        }
        (None, Some(path_node)) => {
            let action = m
                .req(ctx, "action", "`allow` or `deny` for every line of the file")
                .and_then(|n| decode_action(ctx, n))?;
            let rel = ctx.string(path_node, "a path to a ClassBench rule file")?;
            let path = dir.join(&rel);
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) => {
                    ctx.err(&path_node.loc, format!("cannot read ClassBench file {}: {e}", path.display()));
                    return None;
                }
            };
            let file: Arc<str> = Arc::from(path.display().to_string());
            match crate::classbench::parse_rules(&file, &text) {
                Ok(rules) => {
                    let rules = rules
                        .into_iter()
                        .map(|(r, line)| AclRule {
                            name: format!("{name}/line-{line}"),
                            loc: Loc::new(&file, line, 1),
                            src: r.src,
                            dst: r.dst,
                            proto: r.proto,
                            sport: r.sport,
                            dport: r.dport,
                            action,
                            mode: None,
                        })
                        .collect();
                    Some(AclTier { name, loc, rules, source: Some(path) })
                }
                Err(d) => {
                    ctx.errors.extend(d.0);
                    None
                }
            }
        }
    }
}

fn decode_acl_rule(ctx: &mut Ctx, node: &Node, tier: &str, index: usize) -> Option<AclRule> {
    let m = ctx.map(node, "an ACL rule", ACL_FIELDS)?;
    let name = match m.get("name") {
        Some(n) => ctx.name(n)?,
        None => format!("rule-{index}"),
    };
    let mut v4 = |key: &str| -> Option<(u32, u32)> {
        let Some(n) = m.get(key) else { return Some((0, u32::MAX)) };
        let c = decode_cidr(ctx, n)?;
        match c.v4_range() {
            Some(r) => Some(r),
            None => {
                ctx.err(&n.loc, "ACL tiers match IPv4 5-tuples only; use identity rules for IPv6");
                None
            }
        }
    };
    let src = v4("src");
    let dst = v4("dst");
    let pm = decode_proto_fields(ctx, &m, node, "dport", None);
    // The protocol as written (even when its entry has other errors), so `sport` is checked too.
    let written_proto = m.get("protocol").map_or(Some(None), |p| p.as_str().and_then(parse_proto));
    let sport = match m.get("sport") {
        Some(n) => {
            if written_proto.is_some_and(|p| !p.is_some_and(has_ports)) {
                ctx.err(&n.loc, "`sport` applies only to tcp, udp and sctp");
                None
            } else {
                decode_port_range(ctx, n)
            }
        }
        None => Some(pm.map_or(ANY_PORT, |p| p.sport)),
    };
    let action = m.req(ctx, "action", "`allow` or `deny`").and_then(|n| decode_action(ctx, n));
    let mode = match m.get("mode") {
        Some(n) => Some(decode_mode(ctx, n)?),
        None => None,
    };
    let pm = pm?;
    Some(AclRule {
        name: format!("{tier}/{name}"),
        loc: node.loc.clone(),
        src: src?,
        dst: dst?,
        proto: pm.proto.map_or((0, 0), |p| (p, 0xff)),
        sport: sport?,
        dport: pm.dport,
        action: action?,
        mode,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parsing() {
        assert_eq!(parse_cidr("198.18.0.0/15").unwrap().len, 15);
        assert_eq!(parse_cidr("198.18.0.1").unwrap().len, 32);
        assert_eq!(parse_cidr("2001:db8::/32").unwrap().len, 32);
        assert!(parse_cidr("198.18.0.1/15").unwrap_err().contains("did you mean 198.18.0.0/15"));
        assert!(parse_cidr("198.18.0.0/33").unwrap_err().contains("prefix length"));
        assert!(parse_cidr("198.18.0.0/+8").is_err());
        assert!(parse_cidr("300.1.1.1/32").unwrap_err().contains("expected an IPv4"));
        assert!(parse_cidr("").is_err());
    }

    #[test]
    fn port_ranges() {
        assert_eq!(parse_port_range("443"), Ok((443, 443)));
        assert_eq!(parse_port_range("8000-8080"), Ok((8000, 8080)));
        assert!(parse_port_range("8080-8000").unwrap_err().contains("inverted"));
        assert!(parse_port_range("65536").is_err());
        assert!(parse_port_range("-5").is_err());
        assert!(parse_port_range("1-").is_err());
        assert!(parse_port_range("").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ns("30s"), Some(30_000_000_000));
        assert_eq!(parse_duration_ns("4h"), Some(4 * 3_600_000_000_000));
        assert_eq!(parse_duration_ns("15"), Some(15_000_000_000));
        assert_eq!(parse_duration_ns("0s"), None);
        assert_eq!(parse_duration_ns("5y"), None);
        assert_eq!(parse_duration_ns("999999999999d"), None);
        assert!(duration_too_large("999999999999d") && duration_too_large("99999999999999999999"));
        assert!(!duration_too_large("0s") && !duration_too_large("5y") && !duration_too_large("30s"));
    }

    /// A port entry and an ACL line report every mistake of theirs at once.
    #[test]
    fn port_and_acl_errors_are_all_reported() {
        let text = "apiVersion: bulkhead.io/v1\nkind: AclTier\nmetadata: {name: t}\nspec:\n  rules:\n    \
                    - {src: 198.18.0.1/8, dst: '2001:db8::/32', protocol: icmp, sport: 1, dport: 2, type: 300, code: 999, action: deny}\n";
        let e = crate::load::load_str("a.yaml", text).unwrap_err().to_string();
        for want in [
            "a.yaml:6:13:",
            "a.yaml:6:32:",
            "a.yaml:6:72: error: `sport`",
            "a.yaml:6:82: error: `dport`",
            "6:91: error: expected an ICMP type",
            "6:102: error: expected an ICMP code",
        ] {
            assert!(e.contains(want), "missing {want:?} in:\n{e}");
        }
    }

    /// One Settings document with four mistakes reports all four, each at its place.
    #[test]
    fn settings_errors_are_all_reported() {
        let text = "apiVersion: bulkhead.io/v1\nkind: Settings\nmetadata: {name: s}\nspec:\n  dataplane:\n    strictTcp: yes\n    \
                    allowedEthertypes: [0x88cc, 0x0800, 0x88cc, 0x10]\n    timeouts: {udp: 5y}\n";
        let e = crate::load::load_str("s.yaml", text).unwrap_err().to_string();
        for want in [
            "s.yaml:6:16: error: expected `true` or `false`",
            "s.yaml:7:33: error: IPv4, IPv6 and ARP",
            "s.yaml:7:41: error: duplicate ethertype 0x88cc (first listed at 7:25)",
            "s.yaml:7:49: error: expected an ethertype from 0x0600",
            "s.yaml:8:21: error: expected a positive duration",
        ] {
            assert!(e.contains(want), "missing {want:?} in:\n{e}");
        }
        assert_eq!(e.matches("error:").count(), 5, "{e}");
    }
}
