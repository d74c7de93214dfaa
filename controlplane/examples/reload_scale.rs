//! How long a daemon reload takes on a large policy file, full build versus incremental.
//!
//! `cargo run --release -p bulkhead-control --example reload_scale [RULES] [IDENTITIES]`
//!
//! Writes a generated policy (identities with `app`/`tier` labels, identity rules between label
//! selectors) to a temporary file, builds a [`Controller`] around it as `bulkhead run` does, and
//! times `Controller::reload` (the SIGHUP / `bulkhead reload` path: read, validate, compile or
//! update, publish): the first reload (a full build that keeps the incremental updater), then
//! reloads that change one rule, add one, remove one, and finally one that changes an identity
//! (a full build again). Each line gives the wall time, how the tables were made, and the time to
//! read and validate the file alone, which no updater can shorten.

use bulkhead_control::daemon::controller::{policy_info, Controller};
use bulkhead_control::daemon::{RunInfo, State};
use bulkhead_control::load::load_paths;
use bulkhead_tables::TableHandle;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

fn policy_text(rules: usize, identities: usize, extra: &str, changed: usize) -> String {
    let apps = (identities / 4).max(1);
    let mut s = String::new();
    for i in 0..identities {
        let (a, b, c) = (i / 65536, (i / 256) % 256, i % 256);
        let _ = write!(
            s,
            "---\napiVersion: bulkhead.io/v1\nkind: Identity\nmetadata: {{name: id{i}}}\nspec:\n  labels: {{app: app{}, tier: t{}}}\n  addresses: [10.{}.{}.{}/32]\n",
            i / 4,
            i % 4,
            a,
            b,
            c
        );
    }
    s.push_str("---\napiVersion: bulkhead.io/v1\nkind: Policy\nmetadata: {name: p}\nspec:\n  rules:\n");
    for r in 0..rules {
        let port = if r == changed { 9999 } else { 1000 + (r % 5000) };
        let _ = writeln!(
            s,
            "    - {{name: r{r}, from: [{{matchLabels: {{app: app{}}}}}], to: [{{matchLabels: {{app: app{}, tier: t{}}}}}], ports: [{{protocol: tcp, port: {port}}}], action: {}}}",
            r % apps,
            (r * 7 + 1) % apps,
            r % 4,
            if r % 10 == 0 { "deny" } else { "allow" }
        );
    }
    s.push_str(extra);
    s
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let rules = args.first().copied().unwrap_or(20_000);
    let identities = args.get(1).copied().unwrap_or(8_000);
    let path = std::env::temp_dir().join(format!("bulkhead-reload-scale-{}.yaml", std::process::id()));
    let write = |text: &str| std::fs::write(&path, text).expect("write the policy");
    write(&policy_text(rules, identities, "", usize::MAX));
    let bytes = std::fs::metadata(&path).map_or(0, |m| m.len());

    let policy = match load_paths(std::slice::from_ref(&path)) {
        Ok(p) => p,
        Err(d) => panic!("generated policy invalid: {}", d.to_string().lines().next().unwrap_or("")),
    };
    let compiled = bulkhead_control::compile(&policy, 1).expect("compiles");
    let state = Arc::new(State::new(
        Arc::new(TableHandle::new(compiled.tables)),
        policy_info(&path, &policy, 1, "start"),
        RunInfo::default(),
        Vec::new(),
    ));
    let ctl = Controller::new(Arc::clone(&state), path.clone(), policy);
    println!("policy: {rules} rules, {identities} identities, {:.1} MB of YAML", bytes as f64 / 1e6);

    let extra_rule = "    - {name: extra, from: [{matchLabels: {app: app1}}], to: [{matchLabels: {app: app2}}], ports: [{protocol: udp, port: 53}], action: allow}\n";
    let steps: Vec<(&str, String)> = vec![
        ("first reload", policy_text(rules, identities, "", usize::MAX)),
        ("one rule changed", policy_text(rules, identities, "", 5)),
        ("one rule added", policy_text(rules, identities, extra_rule, 5)),
        ("one rule removed", policy_text(rules, identities, "", 5)),
        ("unchanged", policy_text(rules, identities, "", 5)),
        ("identity changed", policy_text(rules, identities, "", 5).replacen("tier: t0}", "tier: t1}", 1)),
    ];
    for (what, text) in steps {
        write(&text);
        let t0 = Instant::now();
        load_paths(std::slice::from_ref(&path)).expect("valid policy");
        let load_ms = t0.elapsed().as_secs_f64() * 1e3;
        let t1 = Instant::now();
        let out = ctl.reload(None).expect("reload");
        let ms = t1.elapsed().as_secs_f64() * 1e3;
        println!(
            "{what:<18} generation {:>2}: {ms:>8.1} ms (read + validate alone {load_ms:.1} ms) {}",
            out.generation, out.applied
        );
    }
    let _ = std::fs::remove_file(&path);
}
