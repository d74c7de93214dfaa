//! Runs the `bulkhead` binary as a user would: every shipped example passes its cases, bad
//! policies fail with positioned errors, trace/diff print what they promise, and `acl match`
//! agrees with a linear first-match scan on ClassBench data.

use bulkhead_tables::classifier::reference_classify;
use bulkhead_tables::ClassifierRule;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bulkhead"))
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn run(args: &[&str]) -> Output {
    bin().args(args).current_dir(root()).output().expect("runs bulkhead")
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

fn tmp(name: &str, content: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bulkhead-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p
}

/// Every `config/<example>/` with a `policy/` and a `cases.yaml` passes `policy test`.
/// `Identity` documents, each followed by `---`: (name, labels as a YAML flow-map body, address).
fn identities(list: &[(&str, &str, &str)]) -> String {
    list.iter()
        .map(|(n, l, a)| {
            format!("apiVersion: bulkhead.io/v1\nkind: Identity\nmetadata: {{name: {n}}}\nspec: {{labels: {{{l}}}, addresses: [{a}]}}\n---\n")
        })
        .collect()
}

/// Two identities, `web` (tier web, 198.18.1.0/24) and `corp` (zone corp, 198.18.3.0/24).
static WEB_AND_CORP: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    identities(&[("web", "tier: web", "198.18.1.0/24"), ("corp", "zone: corp", "198.18.3.0/24")])
});

#[test]
fn every_example_passes_its_cases() {
    let mut n = 0;
    let mut dirs: Vec<PathBuf> =
        std::fs::read_dir(root().join("config")).unwrap().map(|e| e.unwrap().path()).collect();
    dirs.sort();
    for d in dirs {
        let (policy, cases) = (d.join("policy"), d.join("cases.yaml"));
        if !policy.is_dir() || !cases.is_file() {
            continue;
        }
        let o = run(&["policy", "check", policy.to_str().unwrap()]);
        assert!(o.status.success(), "check {}: {:?}", d.display(), text(&o));
        let o = run(&["policy", "test", policy.to_str().unwrap(), "--cases", cases.to_str().unwrap()]);
        let (out, err) = text(&o);
        assert!(o.status.success(), "test {}:\n{out}\n{err}", d.display());
        assert!(out.contains(" passed, 0 failed"), "{out}");
        n += 1;
    }
    assert!(n >= 6, "expected at least 6 examples with cases, found {n}");
}

#[test]
fn check_reports_positioned_errors_and_fails() {
    let p = tmp(
        "bad.yaml",
        "apiVersion: bulkhead.io/v1\nkind: Identity\nmetadata: {name: web}\nspec:\n  addresses: [198.18.1.1/24]\n  lables: {}\n",
    );
    let o = run(&["policy", "check", p.to_str().unwrap()]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(err.contains("bad.yaml:5:15: error: `198.18.1.1/24` has host bits set"), "{err}");
    assert!(err.contains("bad.yaml:6:3: error: unknown field `lables`"), "{err}");
}

#[test]
fn check_clean_policy_exits_zero_with_stats() {
    let o = run(&["policy", "check", "config/zones/policy", "--stats"]);
    let (out, _) = text(&o);
    assert!(o.status.success());
    assert!(out.starts_with("ok: 3 files: 4 identities (4 prefixes)"), "{out}");
    assert!(out.contains("compile total:"), "{out}");
}

#[test]
fn test_reports_failures_and_exits_nonzero() {
    let cases = tmp(
        "cases.yaml",
        "cases:\n  - {name: wrong on purpose, from: dev-hosts, to: prod-web, port: 443, expect: allow}\n  - {from: corp-clients, to: prod-web, port: 443, expect: allow}\n",
    );
    let o = run(&["policy", "test", "config/zones/policy", "--cases", cases.to_str().unwrap()]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(err.contains("cases.yaml:2:5: FAIL wrong on purpose"), "{err}");
    assert!(err.contains("expected allow, got deny (decided by zones/dev-never-prod)"), "{err}");
    assert!(out.contains("1 passed, 1 failed"), "{out}");
}

#[test]
fn trace_explains_deny_and_default_deny() {
    let o = run(&[
        "policy",
        "trace",
        "--policy",
        "config/zones/policy",
        "--from",
        "198.18.20.5",
        "--to",
        "198.18.30.10",
        "--proto",
        "tcp",
        "--dport",
        "443",
    ]);
    let (out, _) = text(&o);
    assert!(o.status.success());
    assert!(out.contains("identity dev-hosts"), "{out}");
    assert!(out.contains("identity prod-web"), "{out}");
    assert!(out.contains("deny rule zones/dev-never-prod"), "{out}");
    assert!(out.contains("verdict      deny"), "{out}");

    let o = run(&[
        "policy",
        "trace",
        "--policy",
        "config/zones/policy",
        "--from",
        "198.18.10.5",
        "--to",
        "198.18.30.70",
        "--dport",
        "5432",
    ]);
    let (out, _) = text(&o);
    assert!(out.contains("default deny"), "{out}");

    let o = run(&[
        "policy",
        "trace",
        "--policy",
        "config/demo/policy",
        "--from",
        "198.18.2.10",
        "--to",
        "198.19.3.10",
        "--dport",
        "80",
    ]);
    let (out, _) = text(&o);
    assert!(out.contains("mode         monitor (from the source's segment dev)"), "{out}");
    assert!(out.contains("verdict      would_deny"), "{out}");
}

/// Quarantining one address inside an identity's prefix changes verdicts, and the diff shows it
/// (the address is an endpoint of its own).
#[test]
fn diff_shows_a_quarantined_address() {
    let dir = std::env::temp_dir().join(format!("bulkhead-cli-diffq-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["identities.yaml", "rules.yaml", "settings.yaml"] {
        std::fs::copy(root().join("config/zones/policy").join(f), dir.join(f)).unwrap();
    }
    std::fs::write(
        dir.join("quarantine.yaml"),
        "apiVersion: bulkhead.io/v1\nkind: Quarantine\nmetadata: {name: q}\nspec:\n  addresses: [198.18.10.77/32]\n",
    )
    .unwrap();
    let o = run(&["policy", "diff", "config/zones/policy", dir.to_str().unwrap()]);
    let (out, err) = text(&o);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(o.status.success(), "{err}");
    let rows: Vec<&str> = out.lines().filter(|l| l.contains("cidr 198.18.10.77/32")).collect();
    assert!(!rows.is_empty(), "{out}");
    assert!(rows.iter().all(|l| l.trim_end().ends_with("deny")), "{out}");
}

/// A path named twice is read once; a non-UTF-8 file is reported at its line and column.
#[test]
fn check_reads_a_repeated_path_once_and_positions_bad_utf8() {
    let o = run(&["policy", "check", "config/zones/policy", "config/zones/policy"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    let bad = tmp("latin1.yaml", "");
    std::fs::write(&bad, b"apiVersion: bulkhead.io/v1\nkind: Identity # caf\xe9\n").unwrap();
    let o = run(&["policy", "check", bad.to_str().unwrap()]);
    let (out, err) = text(&o);
    assert!(!o.status.success());
    let all = format!("{out}{err}");
    assert!(all.contains("latin1.yaml:2:21"), "{all}");
    assert!(all.contains("0xe9"), "{all}");
    // A byte-order mark is skipped.
    let bom = tmp("bom.yaml", "");
    let body = std::fs::read_to_string(root().join("config/zones/policy/identities.yaml")).unwrap();
    std::fs::write(&bom, format!("\u{feff}{body}")).unwrap();
    let o = run(&["policy", "check", bom.to_str().unwrap()]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
}

/// A `mode: monitor` identity deny does not soften an ACL tier's enforced deny of the same flow
/// (the most binding deny decides across tiers, docs/policy.md).
#[test]
fn enforced_acl_deny_outranks_a_monitor_identity_deny() {
    let policy = tmp(
        "cross-tier.yaml",
        &(WEB_AND_CORP.to_string()
            + r#"apiVersion: bulkhead.io/v1
kind: Policy
metadata: {name: p}
spec:
  rules:
    - name: trial-no-telnet
      from: [{matchLabels: {zone: corp}}]
      to: [{matchLabels: {tier: web}}]
      ports: [{protocol: tcp, port: 23}]
      action: deny
      mode: monitor
---
apiVersion: bulkhead.io/v1
kind: AclTier
metadata: {name: a1}
spec:
  rules:
    - {name: deny-web-23, dst: 198.18.1.0/24, protocol: tcp, dport: 23, action: deny}
"#),
    );
    let args = ["--from", "198.18.3.1", "--to", "198.18.1.1", "--proto", "tcp", "--dport", "23"];
    let mut cmd = vec!["policy", "trace", "--policy", policy.to_str().unwrap()];
    cmd.extend(args);
    let o = run(&cmd);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("verdict      deny"), "{out}");
    assert!(out.contains("a1/deny-web-23"), "{out}");
}

/// A `mode: monitor` deny reports what it would deny; it never lets through a flow that nothing
/// allows (adding a deny rule must not open traffic the enforced default deny drops).
#[test]
fn a_monitor_deny_never_opens_what_default_deny_closes() {
    let policy = tmp(
        "monitor-deny.yaml",
        &(WEB_AND_CORP.to_string()
            + r#"apiVersion: bulkhead.io/v1
kind: Policy
metadata: {name: p}
spec:
  rules:
    - name: corp-web
      from: [{matchLabels: {zone: corp}}]
      to: [{matchLabels: {tier: web}}]
      ports: [{protocol: tcp, port: 80}]
      action: allow
    - name: trial-deny
      from: [{matchLabels: {zone: corp}}]
      to: [{matchLabels: {tier: web}}]
      ports: [{protocol: tcp, port: 1-1024}]
      action: deny
      mode: monitor
---
apiVersion: bulkhead.io/v1
kind: AclTier
metadata: {name: a1}
spec:
  rules:
    - {name: trial-https, dst: 198.18.1.0/24, protocol: tcp, dport: 443, action: deny, mode: monitor}
    - {name: https, dst: 198.18.1.0/24, protocol: tcp, dport: 443, action: allow}
    - {name: trial-smtp, dst: 198.18.1.0/24, protocol: tcp, dport: 25, action: deny, mode: monitor}
    - {name: smtp, dst: 198.18.1.0/24, protocol: tcp, dport: 25, action: deny, mode: enforce}
"#),
    );
    let trace = |port: &str| {
        let o = run(&[
            "policy",
            "trace",
            "--policy",
            policy.to_str().unwrap(),
            "--from",
            "198.18.3.1",
            "--to",
            "198.18.1.1",
            "--proto",
            "tcp",
            "--dport",
            port,
        ]);
        let (out, err) = text(&o);
        assert!(o.status.success(), "{err}");
        assert!(!out.contains("WARNING"), "{out}");
        out
    };
    // Allowed by corp-web, denied by the trial: the trial reports, the packet passes.
    let out = trace("80");
    assert!(out.contains("verdict      would_deny"), "{out}");
    assert!(out.contains("deny rule p/trial-deny"), "{out}");
    // Nothing allows port 22: the enforced default deny drops it, monitor deny or not.
    let out = trace("22");
    assert!(out.contains("verdict      deny"), "{out}");
    assert!(out.contains("decided by   default deny"), "{out}");
    assert!(out.contains("only reports"), "{out}");
    // ACL tiers too: a monitor line before an allow line reports, the traffic passes ...
    let out = trace("443");
    assert!(out.contains("verdict      would_deny"), "{out}");
    assert!(out.contains("a1/trial-https"), "{out}");
    // ... and before an enforced deny line, that line decides.
    let out = trace("25");
    assert!(out.contains("verdict      deny"), "{out}");
    assert!(out.contains("deny rule a1/smtp"), "{out}");
}

/// An empty policy is valid (it denies everything) but is usually a mistake: check passes and warns.
#[test]
fn check_warns_about_a_policy_without_rules() {
    let empty = tmp("empty.yaml", "# nothing yet\n");
    let o = run(&["policy", "check", empty.to_str().unwrap()]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(err.contains("warning: no rules: this policy default-denies every flow"), "{err}");
    let o = run(&["policy", "check", root().join("config/zones/policy").to_str().unwrap()]);
    let (_, err) = text(&o);
    assert!(!err.contains("warning"), "{err}");
}

/// `trace` takes identity names like cases do, requires a port where one matters and refuses
/// one where it would be ignored.
#[test]
fn trace_takes_identity_names_and_checks_its_flags() {
    let base = ["policy", "trace", "--policy", "config/zones/policy"];
    let go = |extra: &[&str]| {
        let mut v: Vec<&str> = base.to_vec();
        v.extend_from_slice(extra);
        run(&v)
    };
    let o = go(&["--from", "dev-hosts", "--to", "prod-web", "--dport", "443"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("deny rule zones/dev-never-prod"), "{out}");
    for (args, want) in [
        (&["--from", "dev-hosts", "--to", "prod-web"][..], "--dport is required"),
        (&["--from", "dev-hosts", "--to", "prod-web", "--proto", "icmp", "--dport", "80"][..], "use --type"),
        (
            &["--from", "dev-hosts", "--to", "prod-web", "--proto", "47", "--dport", "5"][..],
            "apply only to tcp",
        ),
        (&["--from", "198.18.1.300", "--to", "prod-web", "--dport", "1"][..], "not a valid IP address"),
    ] {
        let o = go(args);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    let o = go(&["--from", "no-such-identity", "--to", "prod-web", "--dport", "1"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(err.contains("unknown identity `no-such-identity`"), "{err}");
}

/// A quarantine exception is about the quarantined host's *peer*: the quarantined host being
/// inside an exception's prefix, or a non-peer connecting to it on an excepted port, exempts
/// nothing (found by differential testing against the documented rules).
#[test]
fn quarantine_exceptions_only_cover_the_other_side() {
    let policy = tmp(
        "q-sides.yaml",
        &(identities(&[
            ("a", "app: a", "198.18.1.10/32"),
            ("c", "app: c", "198.18.1.20/32"),
            ("b", "app: b", "198.19.1.10/32"),
            ("d", "app: d", "198.18.2.10/32"),
        ]) + r#"
apiVersion: bulkhead.io/v1
kind: Policy
metadata: {name: r}
spec:
  rules:
    - {name: all-tcp, from: [{}], to: [{}], ports: [{protocol: tcp, port: 1-65535}], action: allow}
---
apiVersion: bulkhead.io/v1
kind: Quarantine
metadata: {name: q}
spec:
  addresses: [198.18.1.10/32, 198.19.1.10/32]
  exceptions:
    - {name: own-subnet, peer: 198.18.1.0/24, ports: [{protocol: tcp, port: 80-81}]}
    - {name: b-host, peer: 198.19.1.10/32}
"#),
    );
    let cases = tmp(
        "q-sides-cases.yaml",
        r#"
cases:
  # a is quarantined; its own /24 is an exception peer: that does not exempt a's traffic to d.
  - {name: own subnet exempts nothing, from: a, to: d, port: 80, expect: deny, rule: quarantine}
  # a non-peer (d) opening a connection to quarantined a on an excepted port: still quarantined.
  - {name: non-peer to quarantined, from: d, to: a, port: 80, expect: deny, rule: quarantine}
  # a to its peer c (in the /24) on the excepted port: exempt.
  - {name: to the peer's service, from: a, to: c, port: 80, expect: allow, rule: quarantine-exception}
  # both ends quarantined: b is a peer, but a is no peer of b's, so a -> b stays cut.
  - {name: both quarantined, from: a, to: b, port: 22, expect: deny, rule: quarantine}
  # b -> a: a lies in the own-subnet exception on port 80, but a quarantined host is nobody's peer.
  - {name: quarantined hosts never talk, from: b, to: a, port: 80, expect: deny, rule: quarantine}
"#,
    );
    let o = run(&["policy", "test", policy.to_str().unwrap(), "--cases", cases.to_str().unwrap()]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("5 passed, 0 failed"), "{out}");

    // The trace of an excepted flow the rules do not allow says what the rules give.
    let q1 = tmp("q1.yaml", &std::fs::read_to_string(&policy).unwrap().replace(
        "    - {name: all-tcp, from: [{}], to: [{}], ports: [{protocol: tcp, port: 1-65535}], action: allow}",
        "    - {name: all-tcp, from: [{}], to: [{}], ports: [{protocol: tcp, port: 1-65535}], action: allow}\n    - {name: mon, from: [{identity: a}], to: [{identity: c}], ports: [{protocol: tcp, port: 81}], action: deny, mode: monitor}",
    ));
    let o = run(&[
        "policy",
        "trace",
        "--policy",
        q1.to_str().unwrap(),
        "--from",
        "a",
        "--to",
        "c",
        "--dport",
        "81",
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("the rules give would_deny (rule r/mon, monitor mode)"), "{out}");
    assert!(!out.contains("note "), "{out}");
}

#[test]
fn diff_shows_changed_pairs() {
    let old = root().join("config/zones/policy");
    let newdir = std::env::temp_dir().join(format!("bulkhead-diff-{}", std::process::id()));
    std::fs::create_dir_all(&newdir).unwrap();
    for f in ["identities.yaml", "settings.yaml"] {
        std::fs::copy(old.join(f), newdir.join(f)).unwrap();
    }
    let rules =
        std::fs::read_to_string(old.join("rules.yaml")).unwrap().replace("port: 5432", "port: 5432-5433");
    std::fs::write(newdir.join("rules.yaml"), rules).unwrap();
    let o = run(&["policy", "diff", old.to_str().unwrap(), newdir.to_str().unwrap()]);
    let (out, _) = text(&o);
    assert!(o.status.success());
    assert!(out.contains("FROM"), "{out}");
    let row =
        out.lines().find(|l| l.contains("tcp/5433")).unwrap_or_else(|| panic!("no tcp/5433 row:\n{out}"));
    assert!(
        row.starts_with("prod-web")
            && row.contains("prod-db")
            && row.contains("deny")
            && row.contains("allow"),
        "{row}"
    );
    assert!(out.contains("1 change\n"), "{out}");
    assert!(!out.contains("proto 0"), "{out}");
    let o = run(&["policy", "diff", old.to_str().unwrap(), old.to_str().unwrap()]);
    assert!(text(&o).0.contains("no verdict changes"));
    // --exit-code: 1 on changes, 0 without, as a CI gate.
    let o = run(&["policy", "diff", "--exit-code", old.to_str().unwrap(), newdir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let o = run(&["policy", "diff", "--exit-code", old.to_str().unwrap(), old.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0));
    // A protocol no rule names is shown as "other protocols", not as one arbitrary number.
    let o = run(&[
        "policy",
        "diff",
        root().join("config/rollout/policy").to_str().unwrap(),
        old.to_str().unwrap(),
    ]);
    let (out, _) = text(&o);
    assert!(out.contains("other protocols"), "{out}");
}

fn linear(rules_path: &Path, trace_path: &Path, limit: usize) -> Vec<i64> {
    let rules: Vec<ClassifierRule> =
        bulkhead_tables::classbench::parse_rules(&std::fs::read_to_string(rules_path).unwrap()).unwrap();
    let keys =
        bulkhead_tables::classbench::parse_trace_keys(&std::fs::read_to_string(trace_path).unwrap()).unwrap();
    keys.iter().take(limit).map(|k| reference_classify(&rules, k).map_or(-1, i64::from)).collect()
}

fn acl_check(set: &str, limit: usize) {
    let data = root().parent().unwrap().join("shared/data/classbench");
    let data = if data.is_dir() { data } else { PathBuf::from("/work/shared/data/classbench") };
    let rules = data.join(set);
    let trace_full = data.join(format!("{set}_trace"));
    // A cut trace keeps the debug-build test fast; the first `limit` lines.
    let cut: String =
        std::fs::read_to_string(&trace_full).unwrap().lines().take(limit).map(|l| format!("{l}\n")).collect();
    let trace = tmp(&format!("{set}_trace_cut"), &cut);
    let o = run(&["acl", "match", "--rules", rules.to_str().unwrap(), "--trace", trace.to_str().unwrap()]);
    assert!(o.status.success(), "{:?}", text(&o));
    let got: Vec<i64> = text(&o).0.lines().map(|l| l.parse().unwrap()).collect();
    let want = linear(&rules, &trace, limit);
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "{set} trace line {}", i + 1);
    }
}

#[test]
fn acl_match_agrees_with_linear_scan_on_classbench_1k() {
    for set in ["acl1_1000", "fw1_1000", "ipc1_1000"] {
        acl_check(set, usize::MAX);
    }
}

#[test]
fn acl_match_agrees_with_linear_scan_on_classbench_10k() {
    acl_check("acl1_10000", 5000);
}

#[test]
fn acl_match_reports_bad_rule_file() {
    let r = tmp("bad_rules", "@1.2.3.4/32\t1.2.3.4/32\t0 : 1\t9 : 1\t0x06/0xFF\t0x0000/0x0000\n");
    let t = tmp("t", "1 2 3 4 6\n");
    let o = run(&["acl", "match", "--rules", r.to_str().unwrap(), "--trace", t.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("bad_rules:1:"), "{:?}", text(&o));
}
