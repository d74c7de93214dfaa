//! `bulkhead policy trace`: the verdict for one flow and why.
//!
//! The verdict comes from the compiled table set (the exact function the dataplane runs); the
//! explanation — which identities the addresses resolved to and through which prefix, every rule
//! that matched, why the deciding one won, where the mode came from — from the reference
//! evaluator over the policy model. If the two ever disagreed the trace says so loudly: that is
//! a compiler bug.

use crate::cases::{decided_by, describe_query};
use crate::compile::CompiledPolicy;
use crate::model::{action_name, mode_name, Policy};
use crate::reference::{self, verdict_word, RefDecision};
use bulkhead_tables::{Action, Decision, FlowQuery, Mode};
use std::fmt::Write;
use std::net::IpAddr;

fn endpoint(p: &Policy, c: &CompiledPolicy, role: &str, a: IpAddr) -> String {
    let atom = c.tables.identities.lookup(a);
    let name = c.tables.identity_name(atom);
    match reference::identity_of(p, a) {
        None => format!("{role:<12} {a} -> identity world (no identity covers this address)"),
        Some(i) => {
            let id = &p.identities[i];
            let prefix =
                id.addresses.iter().filter(|(cidr, _)| cidr.contains(a)).max_by_key(|(cidr, _)| cidr.len);
            let labels: Vec<String> = id.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let seg = id.zone().map_or_else(
                || "no segment".to_string(),
                |z| {
                    let m = p.settings.segments.get(z).and_then(|s| s.mode);
                    format!(
                        "segment {z}{}",
                        m.map_or(String::new(), |m| format!(", segment mode {}", mode_name(m)))
                    )
                },
            );
            let via = prefix.map_or(String::new(), |(cidr, loc)| format!(" via {cidr} ({loc})"));
            let mut s = format!(
                "{role:<12} {a} -> identity {name}{via}\n{:<12} labels {{{}}}, {seg}",
                "",
                labels.join(", ")
            );
            if name != id.name {
                let _ = write!(s, "\n{:<12} WARNING: compiled tables resolve this address to `{name}`", "");
            }
            s
        }
    }
}

/// Renders the full explanation for one query.
pub fn explain(p: &Policy, c: &CompiledPolicy, q: &FlowQuery) -> String {
    let mut out = String::new();
    let j = c.tables.judge(q);
    let r = reference::judge(p, q);
    let _ = writeln!(out, "flow         {}", describe_query(q));
    let _ = writeln!(out, "{}", endpoint(p, c, "source", q.src));
    let _ = writeln!(out, "{}", endpoint(p, c, "destination", q.dst));

    if matches!(j.decision, Decision::Quarantined | Decision::QuarantineException) {
        let _ = writeln!(out, "quarantine   source or destination is quarantined (checked before any rule)");
    }
    let hits = reference::matching_rules(p, q);
    let acl_hits = reference::acl_matches(p, q);
    // What matched: any identity rule, and each ACL tier's first line (`acl_matches` gives none
    // for IPv6). An explicit `monitor` deny that matched only reports; when the flow is dropped
    // anyway, the note below says why it did not decide.
    let matched = |pred: &dyn Fn(Action, Option<Mode>) -> bool| {
        hits.iter().any(|&i| pred(p.rules[i].action, p.rules[i].mode))
            || p.acl_tiers
                .iter()
                .zip(&acl_hits)
                .any(|(t, h)| h.is_some_and(|i| pred(t.rules[i].action, t.rules[i].mode)))
    };
    let allow_matched = matched(&|a, _| a == Action::Allow);
    let monitor_deny_matched = matched(&|a, m| a == Action::Deny && m == Some(Mode::Monitor));
    if hits.is_empty() {
        let _ = writeln!(out, "rules        no identity rule matches");
    } else {
        let _ = writeln!(out, "rules        identity rules that match:");
        for i in hits {
            let rule = &p.rules[i];
            let mode = rule.mode.map_or(String::new(), |m| format!(" (mode {})", mode_name(m)));
            let _ = writeln!(
                out,
                "               {:<5} {}{mode}  [{}]",
                action_name(rule.action),
                rule.name,
                rule.loc
            );
        }
    }
    for (t, hit) in p.acl_tiers.iter().zip(acl_hits) {
        match hit {
            _ if !(q.src.is_ipv4() && q.dst.is_ipv4()) => {
                let _ = writeln!(out, "acl tier     {}: IPv4 only, not consulted for IPv6", t.name);
            }
            Some(i) => {
                let r = &t.rules[i];
                let _ = writeln!(
                    out,
                    "acl tier     {}: first match is line {i} (counting from 0), {} ({})  [{}]",
                    t.name,
                    r.name,
                    action_name(r.action),
                    r.loc
                );
            }
            None => {
                let _ = writeln!(out, "acl tier     {}: no line matches", t.name);
            }
        }
    }
    let why = match j.decision {
        Decision::Deny { .. } if allow_matched => {
            format!("deny rule {} (a deny beats the matching allow)", decided_by(c, j.decision))
        }
        Decision::Deny { .. } => format!("deny rule {}", decided_by(c, j.decision)),
        Decision::Allow { .. } => format!("allow rule {} (no deny matches)", decided_by(c, j.decision)),
        Decision::DefaultDeny => "default deny (no rule allows this flow)".to_string(),
        Decision::Quarantined if reference::exception(p, q) => {
            let r = reference::judge_rules(p, q);
            let rules_say = match (&r.decision, r.mode) {
                (RefDecision::Deny(n), Mode::Monitor) => format!("give would_deny (rule {n}, monitor mode)"),
                (RefDecision::Deny(n), Mode::Enforce) => format!("deny it (rule {n})"),
                (RefDecision::DefaultDeny, Mode::Monitor) => {
                    "give would_deny (default deny, monitor mode)".into()
                }
                _ => "default-deny it".into(),
            };
            format!(
                "quarantine (a quarantine exception matches, but the rules {rules_say}: an exception \
                 only exempts traffic the rules allow)"
            )
        }
        Decision::Quarantined => "quarantine (no quarantine exception matches)".to_string(),
        Decision::QuarantineException => {
            "quarantine exception (quarantined, but the peer is an exception and a rule allows the flow)"
                .to_string()
        }
    };
    let _ = writeln!(out, "decided by   {why}");
    let quarantine = matches!(j.decision, Decision::Quarantined | Decision::QuarantineException);
    if monitor_deny_matched && !quarantine && !j.decision.allows() && j.mode == Mode::Enforce {
        let _ = writeln!(
            out,
            "note         a `mode: monitor` deny matches, but it only reports: it never lets through \
             what the rest of the policy drops, so the flow is judged as if it were not there"
        );
    }
    let mode_src = match j.decision {
        Decision::Quarantined | Decision::QuarantineException => "quarantine is always enforced".to_string(),
        _ => {
            let rule_mode = match j.decision {
                Decision::Allow { tier, rule } | Decision::Deny { tier, rule } => {
                    c.tables.rules[tier as usize][rule as usize].mode
                }
                _ => None,
            };
            let seg = |id: u32| {
                let s = *c.tables.identity_segment.get(id as usize)?;
                let m = (*c.tables.segment_mode.get(s as usize)?)?;
                Some((c.tables.segment_names[s as usize].clone(), m))
            };
            if rule_mode.is_some() {
                "set on the deciding rule".to_string()
            } else if let Some((z, _)) = seg(j.dst_identity) {
                format!("from the destination's segment {z}")
            } else if let Some((z, _)) = seg(j.src_identity) {
                format!("from the source's segment {z}")
            } else {
                "the global mode".to_string()
            }
        }
    };
    let _ = writeln!(out, "mode         {} ({mode_src})", mode_name(j.mode));
    let verdict = verdict_word(j.decision.allows(), j.mode);
    let note = match (verdict, j.mode) {
        ("would_deny", Mode::Monitor) => " (monitor mode: the packet passes and is logged as would_deny)",
        _ => "",
    };
    let _ = writeln!(out, "verdict      {verdict}{note}");
    let agrees = match (&r.decision, j.decision) {
        (RefDecision::Allow(n), Decision::Allow { .. }) | (RefDecision::Deny(n), Decision::Deny { .. }) => {
            *n == decided_by(c, j.decision)
        }
        (RefDecision::DefaultDeny, Decision::DefaultDeny)
        | (RefDecision::Quarantined, Decision::Quarantined)
        | (RefDecision::QuarantineException, Decision::QuarantineException) => true,
        _ => false,
    } && r.mode == j.mode;
    if !agrees {
        let _ = writeln!(
            out,
            "WARNING      the reference evaluator disagrees ({:?}, {}): please report this compiler bug",
            r.decision,
            mode_name(r.mode)
        );
    }
    out
}
