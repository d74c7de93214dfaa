//! Classifier benchmarks on the ClassBench sets: lookups/s, build time, memory, insert/remove.
//!
//! `cargo bench -p bulkhead-tables --bench classifier` runs criterion (throughput in lookups).
//! `BULKHEAD_BENCH_SUMMARY=1 cargo bench -p bulkhead-tables --bench classifier` instead prints one
//! Markdown table (Mlookups/s, build ms, bytes/rule, tables, insert/remove us) and exits; that is
//! where the figures in the classifier's module docs come from.
//! `BULKHEAD_CLASSBENCH_DIR` overrides the data location (default: ../shared/data/classbench
//! beside the repository, then /work/shared/data/classbench).

use bulkhead_tables::classbench::{load_rules, load_trace};
use bulkhead_tables::{Classifier, ClassifierBuilder, ClassifierKey, ClassifierRule};
use criterion::{criterion_group, BatchSize, Criterion, Throughput};
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

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
    if let Ok(d) = std::env::var("BULKHEAD_CLASSBENCH_DIR") {
        return PathBuf::from(d);
    }
    let beside_repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/classbench");
    if beside_repo.is_dir() {
        return beside_repo;
    }
    PathBuf::from("/work/shared/data/classbench")
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
        "| set | rules | tables | Mlookups/s | ns/lookup | build ms | bytes/rule | insert us | remove us |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for set in SETS {
        let (rules, keys) = load(set);
        let mut builds = Vec::new();
        let mut c = build(&rules);
        for _ in 0..5 {
            let t = Instant::now();
            c = build(black_box(&rules));
            builds.push(t.elapsed());
        }
        builds.sort();
        let build_ms = builds[builds.len() / 2].as_secs_f64() * 1e3;
        // Lookups: repeat the trace until ~1 s has passed; take the best pass.
        let mut best = Duration::MAX;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(1) {
            let t = Instant::now();
            black_box(run_trace(&c, &keys));
            best = best.min(t.elapsed());
        }
        let ns = best.as_secs_f64() * 1e9 / keys.len() as f64;
        // Insert/remove of one rule, averaged over many distinct rules.
        let n = 2000u32;
        let mut ids = Vec::with_capacity(n as usize);
        let t = Instant::now();
        for i in 0..n {
            ids.push(c.insert(probe_rule(i, rules.len())));
        }
        let ins = t.elapsed().as_secs_f64() * 1e6 / f64::from(n);
        let t = Instant::now();
        for id in ids {
            c.remove(id);
        }
        let rem = t.elapsed().as_secs_f64() * 1e6 / f64::from(n);
        let c = build(&rules);
        println!(
            "| {set} | {} | {} | {:.1} | {:.1} | {:.1} | {:.0} | {:.2} | {:.2} |",
            rules.len(),
            c.table_count(),
            1e3 / ns,
            ns,
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
