//! Identity LPM benchmarks: build and lookups with 1M IPv4 prefixes (and an IPv6 mix), memory.
//!
//! `cargo bench -p bulkhead-tables --bench lpm` runs criterion (throughput in lookups);
//! `BULKHEAD_BENCH_SUMMARY=1 cargo bench -p bulkhead-tables --bench lpm` prints a Markdown table.
//!
//! The prefix sets are synthetic and deterministic, since no real table ships with the repository:
//! `random` is a BGP-like length mix spread uniformly over the address space (mostly /24, some
//! /16-/23, some /25-/32 and /8-/15; 64k identities), the worst case for a multibit trie's memory;
//! `dc` is a data-centre identity map (4,096 /20 subnets and 1M workload /32s inside them).

use bulkhead_tables::{IdentityMap, IdentityMapBuilder};
use criterion::{criterion_group, Criterion, Throughput};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

mod common;
use common::{cpu_best, cpu_now};

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn v4_len(r: u64) -> u8 {
    match r % 100 {
        0..=59 => 24,
        60..=79 => 16 + (r / 100 % 8) as u8,
        80..=94 => 25 + (r / 100 % 8) as u8,
        _ => 8 + (r / 100 % 8) as u8,
    }
}

fn v4_prefixes(n: usize, seed: u64) -> Vec<(u32, u8, u32)> {
    let mut rng = Rng(seed);
    (0..n)
        .map(|_| {
            let r = rng.next();
            ((r >> 32) as u32, v4_len(r), (rng.next() % 65_535) as u32 + 1)
        })
        .collect()
}

/// A data-centre identity map: 4,096 random /20 subnets (each an identity) and `n` workload /32s
/// inside them, each with its own identity.
fn v4_clustered(n: usize, seed: u64) -> Vec<(u32, u8, u32)> {
    let mut rng = Rng(seed);
    let subnets: Vec<u32> = (0..4096).map(|_| (rng.next() >> 32) as u32 & 0xFFFF_F000).collect();
    let mut out: Vec<(u32, u8, u32)> = subnets.iter().map(|&s| (s, 20, (s >> 12) % 65_535 + 1)).collect();
    for _ in 0..n {
        let r = rng.next();
        let s = subnets[(r % 4096) as usize];
        out.push((s | ((r >> 40) as u32 & 0xFFF), 32, (r >> 16) as u32 % 65_535 + 1));
    }
    out
}

fn v6_prefixes(n: usize, seed: u64) -> Vec<(u128, u8, u32)> {
    let mut rng = Rng(seed);
    let lens = [32u8, 48, 56, 64, 128];
    (0..n)
        .map(|_| {
            let a = (u128::from(0x2001_0db8u32) << 96) | (u128::from(rng.next()) << 32);
            (a, lens[(rng.next() % 5) as usize], (rng.next() % 65_535) as u32 + 1)
        })
        .collect()
}

fn build(v4: &[(u32, u8, u32)], v6: &[(u128, u8, u32)]) -> IdentityMap {
    let mut b = IdentityMapBuilder::new();
    for &(a, l, id) in v4 {
        b.insert(IpAddr::V4(Ipv4Addr::from(a)), l, id);
    }
    for &(a, l, id) in v6 {
        b.insert(IpAddr::V6(Ipv6Addr::from(a)), l, id);
    }
    b.build()
}

/// Lookup addresses: half inside inserted prefixes, half uniformly random.
fn v4_queries(prefixes: &[(u32, u8, u32)], n: usize) -> Vec<u32> {
    let mut rng = Rng(99);
    (0..n)
        .map(|i| {
            let r = rng.next();
            if i % 2 == 0 {
                let (a, l, _) = prefixes[(r as usize) % prefixes.len()];
                let host = if l >= 32 { 0 } else { (r >> 32) as u32 & (u32::MAX >> l) };
                a | host
            } else {
                (r >> 32) as u32
            }
        })
        .collect()
}

fn v6_queries(prefixes: &[(u128, u8, u32)], n: usize) -> Vec<u128> {
    let mut rng = Rng(77);
    (0..n)
        .map(|_| prefixes[(rng.next() as usize) % prefixes.len()].0 | u128::from(rng.next() & 0xFF))
        .collect()
}

fn run_v4(m: &IdentityMap, q: &[u32]) -> u64 {
    q.iter().map(|&a| u64::from(m.lookup_v4(black_box(a)))).sum()
}

fn run_v6(m: &IdentityMap, q: &[u128]) -> u64 {
    q.iter().map(|&a| u64::from(m.lookup_v6(black_box(a)))).sum()
}

fn summary() {
    println!(
        "| prefix set (v4 + v6) | build ms | memory MiB | bytes/prefix | v4 Mlookups/s | v6 Mlookups/s |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (kind, n4, n6) in [
        ("random", 10_000, 1_000),
        ("random", 100_000, 10_000),
        ("random", 1_000_000, 0),
        ("random", 1_000_000, 100_000),
        ("dc", 1_000_000, 0),
    ] {
        let p4 = if kind == "dc" { v4_clustered(n4, 3) } else { v4_prefixes(n4, 1) };
        let p6 = v6_prefixes(n6, 2);
        let t = cpu_now();
        let m = build(&p4, &p6);
        let build_ms = (cpu_now() - t) as f64 / 1e6;
        let q4 = v4_queries(&p4, 1 << 20);
        let v4 = 1e3 * q4.len() as f64
            / cpu_best(|| {
                black_box(run_v4(&m, &q4));
            });
        let v6 = if n6 > 0 {
            let q6 = v6_queries(&p6, 1 << 18);
            format!(
                "{:.1}",
                1e3 * q6.len() as f64
                    / cpu_best(|| {
                        black_box(run_v6(&m, &q6));
                    })
            )
        } else {
            "-".to_string()
        };
        let mem = m.memory_bytes();
        println!(
            "| {kind} {} + {} ({} distinct) | {:.0} | {:.1} | {:.0} | {:.1} | {} |",
            n4,
            n6,
            m.len(),
            build_ms,
            mem as f64 / (1 << 20) as f64,
            mem as f64 / m.len() as f64,
            v4,
            v6
        );
    }
}

fn bench(c: &mut Criterion) {
    let p4 = v4_prefixes(1_000_000, 1);
    let p6 = v6_prefixes(100_000, 2);
    let m = build(&p4, &p6);
    let q4 = v4_queries(&p4, 1 << 16);
    let q6 = v6_queries(&p6, 1 << 16);
    let mut g = c.benchmark_group("lpm_1m");
    g.sample_size(20).measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(q4.len() as u64));
    g.bench_function("lookup_v4", |b| b.iter(|| run_v4(&m, &q4)));
    g.throughput(Throughput::Elements(q6.len() as u64));
    g.bench_function("lookup_v6", |b| b.iter(|| run_v6(&m, &q6)));
    g.finish();
    let mut g = c.benchmark_group("lpm_build");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Elements((p4.len() + p6.len()) as u64));
    g.bench_function("1m_v4_100k_v6", |b| b.iter(|| build(&p4, &p6)));
    g.finish();
}

criterion_group!(benches, bench);

fn main() {
    if std::env::var_os("BULKHEAD_BENCH_SUMMARY").is_some() {
        summary();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
