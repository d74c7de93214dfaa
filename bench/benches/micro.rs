//! criterion micro-benchmarks of the packet path's pieces, each with throughput in elements
//! (frames, lookups or packets), so criterion prints elements/s next to the time:
//!
//! - `parse`: one 64-byte TCP frame through `bulkhead_wire::parse`;
//! - `identity_lpm`: address -> identity over 10k prefixes;
//! - `flow_lookup/hit`: a batch of established-flow frames (flow found, no classification);
//! - `flow_lookup/miss`: a batch of SYNs to a denied port (flow not found, policy judged, nothing
//!   stored);
//! - `classify`: ClassBench fw1 10k headers through the classifier (synthetic rules when the data
//!   directory is missing);
//! - `batch`: whole 64-frame batches of established flows over 10k flows.
//!
//! Run: `cargo bench -p bulkhead-bench --bench micro` (add `-- --quick` for a short run).

use bulkhead_bench::policy::{identity_policy, synthetic_rules, ALLOWED_PORT, DENIED_PORT};
use bulkhead_bench::scenarios::engine::{config_for, BATCH};
use bulkhead_bench::traffic::{Flow, FrameBuf, Rng};
use bulkhead_engine::{Verdict, Worker};
use bulkhead_tables::{classbench, ClassifierBuilder, ClassifierKey, IdentityMapBuilder};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

fn parse(c: &mut Criterion) {
    let frame = Flow::nth(1, ALLOWED_PORT).ack();
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(1));
    g.bench_function("tcp_64B", |b| b.iter(|| bulkhead_wire::parse(black_box(&frame))));
    g.finish();
}

fn identity_lpm(c: &mut Criterion) {
    let mut m = IdentityMapBuilder::new();
    for i in 0..10_000u32 {
        // /24s across 10.0.0.0/8 and 198.18.0.0/15, plus some /32 hosts.
        let net =
            if i % 2 == 0 { (10 << 24) | (i << 8) } else { u32::from_be_bytes([198, 18, 0, 0]) | (i << 4) };
        let len = if i % 7 == 0 { 32 } else { 24 };
        m.insert(IpAddr::V4(Ipv4Addr::from(net)), len, i + 1);
    }
    let map = m.build();
    let mut rng = Rng::new(9);
    let addrs: Vec<IpAddr> = (0..1024)
        .map(|_| IpAddr::V4(Ipv4Addr::from((10 << 24) | (rng.next_u64() as u32 & 0x00ff_ffff))))
        .collect();
    let mut g = c.benchmark_group("identity_lpm");
    g.throughput(Throughput::Elements(addrs.len() as u64));
    g.bench_function("10k_prefixes", |b| {
        b.iter(|| {
            let mut acc = 0u32;
            for a in &addrs {
                acc = acc.wrapping_add(map.lookup(black_box(*a)));
            }
            acc
        });
    });
    g.finish();
}

/// A worker with `n` established flows, and a buffer of their established frames (shuffled).
fn established(n: usize) -> (Worker, FrameBuf) {
    let tables = identity_policy(1);
    let mut w = Worker::new(0, &config_for(n));
    let mut verdicts = vec![Verdict::Pass; BATCH];
    let flows: Vec<Flow> = (0..n as u64).map(|i| Flow::nth(i, ALLOWED_PORT)).collect();
    for chunk in flows.chunks(BATCH) {
        for step in 0..3 {
            let mut fb = FrameBuf::with_stride(64, chunk.len());
            for f in chunk {
                fb.push(&match step {
                    0 => f.syn(),
                    1 => f.syn_ack(),
                    _ => f.ack(),
                });
            }
            w.process_batch(1, &tables, &fb.slices(), &mut verdicts);
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    Rng::new(3).shuffle(&mut order);
    let mut fb = FrameBuf::with_stride(64, n);
    for (k, &i) in order.iter().enumerate() {
        fb.push(&if k % 2 == 0 { flows[i].ack() } else { flows[i].reply() });
    }
    (w, fb)
}

fn flow_lookup(c: &mut Criterion) {
    let tables = identity_policy(1);
    let (mut w, fb) = established(10_000);
    let slices = fb.slices();
    let mut verdicts = vec![Verdict::Pass; BATCH];
    let mut g = c.benchmark_group("flow_lookup");
    g.throughput(Throughput::Elements(BATCH as u64));
    let mut i = 0usize;
    g.bench_function("hit", |b| {
        b.iter(|| {
            let start = (i * BATCH) % (slices.len() - BATCH);
            i += 1;
            w.process_batch(2, &tables, &slices[start..start + BATCH], &mut verdicts);
        });
    });
    let mut miss = FrameBuf::with_stride(64, 4096);
    for k in 0..4096u64 {
        miss.push(&Flow::nth(2_000_000 + k, DENIED_PORT).syn());
    }
    let miss_slices = miss.slices();
    let mut j = 0usize;
    g.bench_function("miss", |b| {
        b.iter(|| {
            let start = (j * BATCH) % (miss_slices.len() - BATCH);
            j += 1;
            w.process_batch(2, &tables, &miss_slices[start..start + BATCH], &mut verdicts);
        });
    });
    g.finish();
}

fn classify(c: &mut Criterion) {
    let dir = bulkhead_bench::default_data_dir();
    let (rules, keys, label) = match (
        classbench::load_rules(&dir.join("fw1_10000")),
        classbench::load_trace(&dir.join("fw1_10000_trace")),
    ) {
        (Ok(r), Ok(t)) => (r, t.into_iter().map(|h| h.key).collect::<Vec<_>>(), "fw1_10k"),
        _ => {
            let r = synthetic_rules(10_000);
            let mut rng = Rng::new(5);
            let k: Vec<ClassifierKey> = (0..10_000)
                .map(|_| ClassifierKey {
                    src: (10 << 24) | (rng.next_u64() as u32 & 0x00ff_ffff),
                    dst: (100 << 24) | (rng.next_u64() as u32 & 0x00ff_ffff),
                    proto: 6,
                    sport: 1000,
                    dport: rng.below(60_000) as u16,
                })
                .collect();
            (r, k, "synthetic_10k")
        }
    };
    let mut b = ClassifierBuilder::new();
    for r in &rules {
        b.push(*r);
    }
    let cl = b.build();
    let mut g = c.benchmark_group("classify");
    g.throughput(Throughput::Elements(keys.len() as u64));
    g.bench_function(label, |bch| {
        bch.iter(|| {
            let mut acc = 0u32;
            for k in &keys {
                acc = acc.wrapping_add(cl.classify(black_box(k)).unwrap_or(0));
            }
            acc
        });
    });
    g.finish();
}

fn batch(c: &mut Criterion) {
    let tables = identity_policy(1);
    let mut g = c.benchmark_group("batch");
    g.throughput(Throughput::Elements(BATCH as u64));
    for n in [10_000usize, 100_000] {
        let (mut w, fb) = established(n);
        let slices = fb.slices();
        let mut verdicts = vec![Verdict::Pass; BATCH];
        let mut i = 0usize;
        g.bench_with_input(BenchmarkId::new("established_64B", n), &n, |b, _| {
            b.iter(|| {
                let start = (i * BATCH) % (slices.len() - BATCH);
                i += 1;
                w.process_batch(3, &tables, &slices[start..start + BATCH], &mut verdicts);
            });
        });
    }
    g.finish();
}

criterion_group!(benches, parse, identity_lpm, flow_lookup, classify, batch);
criterion_main!(benches);
