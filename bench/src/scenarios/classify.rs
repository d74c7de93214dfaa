//! Scenario 2: new-flow classification on ClassBench (acl1, fw1, ipc1 at 1k, 10k, 100k rules),
//! Bulkhead's classifier vs DPDK's rte_acl (`dpdk-test-acl`) on the same rules and headers in the
//! same run.
//!
//! Per case we report, for both: lookups/s (one core), build time and memory. Bulkhead's build
//! time is `ClassifierBuilder::push` x N + `build` from parsed rules; its memory is what the
//! built classifier holds on the heap (`Classifier::memory_bytes`, capacities included), next to
//! the growth of the process's resident set over the build as a cross-check. rte_acl's figures
//! come from its own output (see [`crate::peers::rte_acl`]): its runtime footprint, the analogue
//! of ours, and separately the temporary memory its build used.
//!
//! Correctness rides along: Bulkhead's answer for a sample of headers is checked against a linear
//! first-match scan (the ClassBench README's rule: never trust the trace's last column), and, when
//! the peer runs with answers, against rte_acl's answer for every header. Mismatches are reported
//! as figures, not asserted: this is a benchmark.

use crate::peers::rte_acl;
use crate::report::{Better, Comparison, Measurement, Report, Target};
use crate::util::{rss_bytes, short_count};
use crate::Settings;
use bulkhead_tables::classbench;
use bulkhead_tables::classifier::reference_classify;
use bulkhead_tables::{Classifier, ClassifierBuilder, ClassifierKey, ClassifierRule};
use std::hint::black_box;
use std::time::Instant;

/// The ClassBench seeds and sizes of issue 6.
pub const SETS: [&str; 3] = ["acl1", "fw1", "ipc1"];
pub const SIZES: [usize; 3] = [1_000, 10_000, 100_000];

/// Target lookup-rate ratio vs rte_acl: fw1 and ipc1 at or above it, acl1 at least half.
pub fn rate_target(set: &str) -> f64 {
    if set == "acl1" {
        0.5
    } else {
        1.0
    }
}

/// Bulkhead's figures for one case.
#[derive(Clone, Debug)]
pub struct OwnRun {
    pub rules: usize,
    pub headers: usize,
    pub build_ns: u64,
    pub memory_bytes: u64,
    /// Growth of the resident set over the build (includes the build's temporaries).
    pub rss_growth_bytes: u64,
    pub lookups: u64,
    pub seconds: f64,
    /// Headers checked against the linear scan, and how many disagreed.
    pub checked: usize,
    pub mismatches: usize,
}

/// Builds the classifier and times lookups over `keys` for at least `min_seconds` (one pass at
/// least).
pub fn measure(
    rules: &[ClassifierRule],
    keys: &[ClassifierKey],
    min_seconds: f64,
    check_budget: u64,
) -> (OwnRun, Classifier) {
    let rss0 = rss_bytes();
    let t0 = Instant::now();
    let mut b = ClassifierBuilder::new();
    for r in rules {
        b.push(*r);
    }
    let c = b.build();
    let build_ns = t0.elapsed().as_nanos() as u64;
    let rss_growth_bytes = rss_bytes().saturating_sub(rss0);
    let memory_bytes = c.memory_bytes() as u64;

    // Warm up one pass (page faults, caches), then time whole passes.
    let mut acc = 0u64;
    for k in keys {
        acc = acc.wrapping_add(u64::from(c.classify(black_box(k)).map_or(0, |r| r + 1)));
    }
    let mut lookups = 0u64;
    let t1 = Instant::now();
    loop {
        for k in keys {
            acc = acc.wrapping_add(u64::from(c.classify(black_box(k)).map_or(0, |r| r + 1)));
        }
        lookups += keys.len() as u64;
        if keys.is_empty() || t1.elapsed().as_secs_f64() >= min_seconds {
            break;
        }
    }
    let seconds = t1.elapsed().as_secs_f64();
    black_box(acc);

    // The linear scan costs rules x headers: check as many headers as the budget allows, spread
    // evenly over the trace.
    let n_check =
        ((check_budget / rules.len().max(1) as u64) as usize).clamp(1, keys.len().max(1)).min(keys.len());
    let stride = (keys.len() / n_check.max(1)).max(1);
    let mut checked = 0;
    let mut mismatches = 0;
    for k in keys.iter().step_by(stride).take(n_check) {
        checked += 1;
        if c.classify(k) != reference_classify(rules, k) {
            mismatches += 1;
        }
    }
    let run = OwnRun {
        rules: rules.len(),
        headers: keys.len(),
        build_ns,
        memory_bytes,
        rss_growth_bytes,
        lookups,
        seconds,
        checked,
        mismatches,
    };
    (run, c)
}

/// Runs the scenario over the configured sets and sizes.
pub fn run(s: &Settings) -> Report {
    let mut report = Report::new(s.quick);
    let sizes: Vec<usize> = if s.quick { vec![1_000] } else { SIZES.to_vec() };
    let peer = s.peers && rte_acl::available();
    if s.peers && !peer {
        report
            .notes
            .push("classify: dpdk-test-acl not installed (package dpdk-dev): no rte_acl figures".into());
    }
    let min_seconds = if s.quick { 0.01 } else { s.seconds };
    for set in SETS {
        for &size in &sizes {
            let case = format!("{set} {}", short_count(size));
            let rules_path = s.data_dir.join(format!("{set}_{size}"));
            let trace_path = s.data_dir.join(format!("{set}_{size}_trace"));
            let rules = match classbench::load_rules(&rules_path) {
                Ok(r) => r,
                Err(e) => {
                    report.notes.push(format!("classify {case}: skipped: {e}"));
                    continue;
                }
            };
            let mut keys: Vec<ClassifierKey> = match classbench::load_trace(&trace_path) {
                Ok(t) => t.into_iter().map(|h| h.key).collect(),
                Err(e) => {
                    report.notes.push(format!("classify {case}: skipped: {e}"));
                    continue;
                }
            };
            if s.quick {
                keys.truncate(1000);
            }
            eprintln!("classify {case}: {} rules, {} headers", rules.len(), keys.len());
            let budget = if s.quick { 2_000_000 } else { 500_000_000 };
            let (own, classifier) = measure(&rules, &keys, min_seconds, budget);
            let mut m = Measurement::new("classify", &case, "bulkhead")
                .with_rate(own.lookups, own.seconds, 1)
                .extra("rules", own.rules as f64)
                .extra("build ms", own.build_ns as f64 / 1e6)
                .extra("memory KiB", own.memory_bytes as f64 / 1024.0)
                .extra("RSS growth KiB", own.rss_growth_bytes as f64 / 1024.0)
                .extra("checked", own.checked as f64)
                .extra("mismatches", own.mismatches as f64);
            if own.mismatches > 0 {
                m = m.note(format!(
                    "{} of {} sampled headers disagree with the linear scan",
                    own.mismatches, own.checked
                ));
            }
            report.measurements.push(m);

            if !peer {
                continue;
            }
            let trace_hex = s.work_dir.join(format!("{set}_{size}.acltrace"));
            if let Err(e) = rte_acl::write_trace(&keys, &trace_hex) {
                report.notes.push(format!("classify {case}: cannot write the rte_acl trace: {e}"));
                continue;
            }
            // Aim the peer at about `min_seconds` x 4M lookups, whatever its speed turns out to be.
            let target_lookups = (min_seconds * 4e6).max(keys.len() as f64);
            let iters = ((target_lookups / keys.len().max(1) as f64).ceil() as u32).clamp(1, 10_000);
            let opts = rte_acl::AclOptions {
                iters,
                answers: s.verify_peer,
                mem_mb: if size >= 100_000 { 4096 } else { 1024 },
                lcore: 0,
            };
            let acl = match rte_acl::run(&rules_path, &trace_hex, keys.len(), &opts) {
                Ok(a) => a,
                Err(e) => {
                    report.notes.push(format!("classify {case}: rte_acl failed: {e}"));
                    continue;
                }
            };
            let _ = std::fs::remove_file(&trace_hex);
            let mut pm = Measurement::new("classify", &case, "rte_acl")
                .with_rate(acl.lookups, acl.seconds, 1)
                .extra("rules", f64::from(acl.rules.unwrap_or(0)));
            if let Some(b) = acl.build_ns {
                pm = pm.extra("build ms", b as f64 / 1e6);
            }
            if let Some(b) = acl.runtime_bytes {
                pm = pm.extra("memory KiB", b as f64 / 1024.0);
            }
            if let Some(b) = acl.build_bytes {
                pm = pm.extra("build memory KiB", b as f64 / 1024.0);
            }
            let mut agree_note = format!("alg {} , {} tries", acl.alg.unwrap_or(0), acl.tries.unwrap_or(0));
            if !acl.answers.is_empty() {
                let disagree =
                    keys.iter().zip(&acl.answers).filter(|(k, a)| classifier.classify(k) != **a).count();
                pm = pm.extra("checked", acl.answers.len() as f64).extra("mismatches", disagree as f64);
                agree_note
                    .push_str(&format!("; answers vs Bulkhead: {disagree} of {} differ", acl.answers.len()));
            }
            report.measurements.push(pm.note(agree_note));

            let own_rate = own.lookups as f64 / own.seconds.max(1e-12);
            report.comparisons.push(Comparison::new(
                "classify",
                &case,
                "lookups/s vs rte_acl",
                own_rate,
                acl.lookups_per_sec,
                Some(rate_target(set)),
                Better::Higher,
            ));
            if let Some(b) = acl.build_ns {
                report.comparisons.push(Comparison::new(
                    "classify",
                    &case,
                    "build ms vs rte_acl",
                    own.build_ns as f64 / 1e6,
                    b as f64 / 1e6,
                    Some(0.05),
                    Better::Lower,
                ));
            }
            if let Some(b) = acl.runtime_bytes {
                report.comparisons.push(Comparison::new(
                    "classify",
                    &case,
                    "memory KiB vs rte_acl",
                    own.memory_bytes as f64 / 1024.0,
                    b as f64 / 1024.0,
                    Some(0.1),
                    Better::Lower,
                ));
            }
        }
    }
    let mismatches: f64 = report
        .measurements
        .iter()
        .filter(|m| m.system == "bulkhead")
        .filter_map(|m| m.extra.get("mismatches"))
        .sum();
    report.targets.push(Target::new(
        "classify",
        "all",
        "answers differing from linear scan",
        mismatches,
        0.0,
        Better::Lower,
    ));
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measure_checks_answers_against_the_linear_scan() {
        let mut rules = vec![ClassifierRule::any(5)];
        rules.insert(
            0,
            ClassifierRule {
                src: (10, 20),
                dst: (0, u32::MAX),
                proto: (6, 0xff),
                sport: (0, 65535),
                dport: (80, 80),
                priority: 0,
            },
        );
        rules[1].priority = 1;
        let keys: Vec<ClassifierKey> = (0..100)
            .map(|i| ClassifierKey {
                src: i,
                dst: 1,
                proto: 6,
                sport: 1000,
                dport: if i % 2 == 0 { 80 } else { 443 },
            })
            .collect();
        let (own, c) = measure(&rules, &keys, 0.0, 1_000_000);
        assert_eq!(own.checked, 100);
        assert_eq!(own.mismatches, 0);
        assert!(own.lookups >= 100);
        assert_eq!(c.classify(&keys[10]), Some(0));
        assert_eq!(c.classify(&keys[11]), Some(1));
    }

    #[test]
    fn targets_follow_the_issue() {
        assert_eq!(rate_target("acl1"), 0.5);
        assert_eq!(rate_target("fw1"), 1.0);
        assert_eq!(rate_target("ipc1"), 1.0);
    }
}
