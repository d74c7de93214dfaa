//! Classifier benchmarks on the ClassBench sets: lookups/s, build time, memory, insert/remove.
//!
//! `cargo bench -p bulkhead-tables --bench classifier` runs criterion (throughput in lookups).
//! `BULKHEAD_BENCH_SUMMARY=1 cargo bench -p bulkhead-tables --bench classifier` instead prints one
//! Markdown table (Mlookups/s single and batched, build ms, bytes/rule, tables, insert/remove us,
//! all in on-CPU time so a busy shared machine skews less) and exits; that is
//! where the figures in the classifier's module docs come from.
//! `BULKHEAD_CLASSBENCH_DIR` overrides the data location (default: ../shared/data/classbench
//! beside the repository, then /work/shared/data/classbench).

use bulkhead_tables::classbench::{load_rules, load_trace};
use bulkhead_tables::{Classifier, ClassifierBuilder, ClassifierKey, ClassifierRule};
use criterion::{criterion_group, BatchSize, Criterion, Throughput};
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

mod common;
use common::{cpu_best, cpu_now};

const SETS: [&str; 9] = [
    "acl1_1000",
    "fw1_1000",
    "ipc1_1000",
    "acl1_10000",
    "fw1_10000",
    "ipc1_10000",
    "acl1_100000",
    "fw1_100000",
    "ipc1_100000",
];

fn data_dir() -> PathBuf {
    bulkhead_tables::classbench::default_data_dir()
}

fn load(set: &str) -> (Vec<ClassifierRule>, Vec<ClassifierKey>) {
    let dir = data_dir();
    let rules = load_rules(&dir.join(set)).unwrap_or_else(|e| panic!("{e}"));
    let trace = load_trace(&dir.join(format!("{set}_trace"))).unwrap_or_else(|e| panic!("{e}"));
    (rules, trace.into_iter().map(|h| h.key).collect())
}

fn build(rules: &[ClassifierRule]) -> Classifier {
    let mut b = ClassifierBuilder::new();
    for r in rules {
        b.push(*r);
    }
    b.build()
}

fn run_batch(c: &Classifier, keys: &[ClassifierKey], out: &mut [Option<u32>]) -> u64 {
    let mut acc = 0u64;
    for (kc, oc) in keys.chunks(64).zip(out.chunks_mut(64)) {
        c.classify_batch(black_box(kc), oc);
        acc = acc.wrapping_add(u64::from(oc[0].unwrap_or(u32::MAX)));
    }
    acc
}

fn run_trace(c: &Classifier, keys: &[ClassifierKey]) -> u64 {
    let mut acc = 0u64;
    for k in keys {
        acc = acc.wrapping_add(u64::from(c.classify(black_box(k)).unwrap_or(u32::MAX)));
    }
    acc
}

/// A rule not in the set, for insert/remove timing: a /32 pair with an exact port, mid priority.
fn probe_rule(i: u32, n: usize) -> ClassifierRule {
    let a = 0xC612_0000 | (i & 0xFFFF);
    ClassifierRule {
        src: (a, a),
        dst: (a ^ 0xFF, a ^ 0xFF),
        proto: (6, 0xFF),
        sport: (0, u16::MAX),
        dport: (443, 443),
        priority: (n / 2) as u32,
    }
}

fn summary() {
    println!(
        "| set | rules | tables | Mlookups/s | ns/lookup | batch Mlookups/s | build ms | bytes/rule | insert us | remove us |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for set in SETS {
        let (rules, keys) = load(set);
        let mut c = build(&rules);
        let build_ms = cpu_best(|| c = build(black_box(&rules))) / 1e6;
        let ns = cpu_best(|| {
            black_box(run_trace(&c, &keys));
        }) / keys.len() as f64;
        let mut out = vec![None; keys.len()];
        let batch_ns = cpu_best(|| {
            black_box(run_batch(&c, &keys, &mut out));
        }) / keys.len() as f64;
        // Insert/remove of one rule: cycles of 1,000 distinct inserts then their removal, for
        // about a second, on-CPU time summed per phase.
        let (mut ins_ns, mut rem_ns, mut ops) = (0u64, 0u64, 0u64);
        let mut ids = Vec::with_capacity(1000);
        let start = Instant::now();
        while ops < 10_000 || start.elapsed() < Duration::from_secs(1) {
            let t = cpu_now();
            for i in 0..1000u32 {
                ids.push(c.insert(probe_rule(i, rules.len())));
            }
            let m = cpu_now();
            for id in ids.drain(..) {
                c.remove(id);
            }
            rem_ns += cpu_now() - m;
            ins_ns += m - t;
            ops += 1000;
        }
        let ins = ins_ns as f64 / 1e3 / ops as f64;
        let rem = rem_ns as f64 / 1e3 / ops as f64;
        let c = build(&rules);
        println!(
            "| {set} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} | {:.2} | {:.2} |",
            rules.len(),
            c.table_count(),
            1e3 / ns,
            ns,
            1e3 / batch_ns,
            build_ms,
            c.memory_bytes() as f64 / rules.len() as f64,
            ins,
            rem
        );
    }
}

fn bench_lookup(cr: &mut Criterion) {
    for set in SETS {
        let (rules, keys) = load(set);
        let c = build(&rules);
        let mut g = cr.benchmark_group("classify");
        g.throughput(Throughput::Elements(keys.len() as u64));
        g.sample_size(10).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_millis(500));
        g.bench_function(set, |b| b.iter(|| run_trace(&c, &keys)));
        g.finish();
        let mut out = vec![None; keys.len()];
        let mut g = cr.benchmark_group("classify_batch");
        g.throughput(Throughput::Elements(keys.len() as u64));
        g.sample_size(10).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_millis(500));
        g.bench_function(set, |b| b.iter(|| run_batch(&c, &keys, &mut out)));
        g.finish();
    }
}

fn bench_build(cr: &mut Criterion) {
    for set in SETS {
        let (rules, _) = load(set);
        let mut g = cr.benchmark_group("build");
        g.throughput(Throughput::Elements(rules.len() as u64));
        g.sample_size(10).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_millis(500));
        g.bench_function(set, |b| b.iter(|| build(black_box(&rules))));
        g.finish();
    }
}

fn bench_update(cr: &mut Criterion) {
    for set in ["acl1_100000", "fw1_100000", "ipc1_100000"] {
        let (rules, _) = load(set);
        let mut c = build(&rules);
        let mut i = 0u32;
        let mut g = cr.benchmark_group("insert_remove");
        g.sample_size(20).measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(300));
        g.bench_function(set, |b| {
            b.iter_batched(
                || {
                    i = i.wrapping_add(1);
                    probe_rule(i, rules.len())
                },
                |r| {
                    let id = c.insert(r);
                    c.remove(id)
                },
                BatchSize::SmallInput,
            )
        });
        g.finish();
    }
}

criterion_group!(benches, bench_lookup, bench_build, bench_update);

fn main() {
    if std::env::var_os("BULKHEAD_BENCH_SUMMARY").is_some() {
        summary();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
