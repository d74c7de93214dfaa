//! Engine throughput: 64-byte TCP frames of established flows, one worker, batches of 64.
//!
//! `cargo bench -p bulkhead-engine --bench engine` (criterion; throughput in packets). Flows are
//! created by loose pickup in a setup pass; the measured loop walks the frames in a random
//! order so that flow-table accesses are spread like real traffic. Memory per flow is printed.

mod common;

use bulkhead_engine::{EngineConfig, Verdict, Worker};
use common::{frame, policy, shuffled, BATCH, FRAME};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// `n` frames, one per flow, packed back to back, in a shuffled order.
fn frames(n: usize) -> Vec<u8> {
    let mut buf = Vec::with_capacity(n * FRAME);
    for i in shuffled(n) {
        buf.extend_from_slice(&frame(i, false));
    }
    buf
}

fn bench_flows(c: &mut Criterion, n: usize, label: &str) {
    let t = policy();
    let cap = (n + n / 4) as u32;
    let mut w =
        Worker::new(0, &EngineConfig { flow_capacity: cap, max_batch: BATCH, ..EngineConfig::default() });
    let buf = frames(n);
    let refs: Vec<&[u8]> = buf.chunks_exact(FRAME).collect();
    let mut v = [Verdict::Pass; BATCH];
    let now = 1_000_000_000u64;
    for chunk in refs.chunks(BATCH) {
        w.process_batch(now, &t, chunk, &mut v[..chunk.len()]);
    }
    let snap = w.counters().snapshot();
    assert_eq!(snap.flows_active as usize, n, "setup created every flow");
    assert_eq!(snap.pass as usize, n);
    eprintln!(
        "{label}: {} flows, table {} MiB for capacity {} = {:.1} bytes/flow",
        n,
        w.flow_table_bytes() / (1 << 20),
        cap,
        w.flow_table_bytes() as f64 / f64::from(cap)
    );
    let batches: Vec<&[&[u8]]> = refs.chunks_exact(BATCH).collect();
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(BATCH as u64));
    let mut i = 0usize;
    g.bench_function(label, |b| {
        b.iter(|| {
            let batch = batches[i];
            i += 1;
            if i == batches.len() {
                i = 0;
            }
            w.process_batch(now, &t, batch, &mut v);
            v[0]
        })
    });
    g.finish();
    // The machine may be shared: also report throughput per second of this thread's CPU time.
    // BULKHEAD_BENCH_ROUNDS: batches of this CPU-time loop (two runs under `perf stat` with
    // different counts give instructions and cycles per packet exactly).
    let rounds: usize =
        std::env::var("BULKHEAD_BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(100_000);
    let (wall0, cpu0) = (std::time::Instant::now(), thread_cpu_ns());
    for r in 0..rounds {
        w.process_batch(now, &t, batches[r % batches.len()], &mut v);
    }
    let (wall, cpu) = (wall0.elapsed().as_nanos() as f64, thread_cpu_ns().saturating_sub(cpu0) as f64);
    let pkts = (rounds * BATCH) as f64;
    eprintln!(
        "{label}: {:.2} Mpps per wall second, {:.2} Mpps per CPU second ({:.1} ns CPU per packet)",
        pkts / wall * 1e3,
        if cpu > 0.0 { pkts / cpu * 1e3 } else { f64::NAN },
        cpu / pkts
    );
    let snap = w.counters().snapshot();
    assert_eq!(snap.dropped(), 0, "every measured packet passed");
}

/// This thread's CPU time (user + system) from /proc, in ns (10 ms resolution; 0 if unknown).
fn thread_cpu_ns() -> u64 {
    let Ok(stat) = std::fs::read_to_string("/proc/thread-self/stat") else { return 0 };
    // Fields after the ")" that closes the command name: utime is the 12th, stime the 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts with the state (field 3), so utime (14) and stime (15) are at 11 and 12.
    let num = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    let ticks = num(11) + num(12);
    ticks * 10_000_000 // USER_HZ = 100
}

/// `BULKHEAD_BENCH_FLOWS=10k` (or `1m`) runs one case only, e.g. under `perf stat`.
fn engine(c: &mut Criterion) {
    let only = std::env::var("BULKHEAD_BENCH_FLOWS").unwrap_or_default();
    if only.is_empty() || only == "10k" {
        bench_flows(c, 10_000, "established_10k_flows_batch64");
    }
    if only.is_empty() || only == "1m" {
        bench_flows(c, 1_000_000, "established_1m_flows_batch64");
    }
}

criterion_group!(benches, engine);
criterion_main!(benches);
