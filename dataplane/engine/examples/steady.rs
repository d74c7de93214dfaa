//! Steady-state driver for profiling the engine without a benchmark framework:
//! `cargo run --release -p bulkhead-engine --example steady -- FLOWS ROUNDS`.
//!
//! Establishes FLOWS TCP flows by loose pickup, then judges ROUNDS batches of 64 established
//! 64-byte frames (every flow's client ACK, then every server ACK, in a shuffled flow order)
//! and prints ns per packet. Under `valgrind --tool=callgrind` (or cachegrind with
//! `--branch-sim=yes`), two runs with different ROUNDS give instructions (or branch
//! mispredictions) per packet by difference: the setup cancels out. The criterion bench (`benches/engine.rs`) is the
//! reported figure; this is the microscope.

#[path = "../benches/common/mod.rs"]
mod common;

use bulkhead_engine::{EngineConfig, Verdict, Worker};
use common::{frame, policy, shuffled, BATCH, FRAME};

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let n = args.first().copied().unwrap_or(10_000);
    let rounds = args.get(1).copied().unwrap_or(200_000);
    let ts = policy();
    let order = shuffled(n);
    let mut buf = Vec::with_capacity(2 * n * FRAME);
    for reply in [false, true] {
        for &i in &order {
            buf.extend_from_slice(&frame(i, reply));
        }
    }
    let refs: Vec<&[u8]> = buf.chunks_exact(FRAME).collect();
    let cap = (n + n / 4) as u32;
    let mut w =
        Worker::new(0, &EngineConfig { flow_capacity: cap, max_batch: BATCH, ..EngineConfig::default() });
    let mut v = [Verdict::Pass; BATCH];
    let now = 1_000_000_000u64;
    for chunk in refs[..n].chunks(BATCH) {
        w.process_batch(now, &ts, chunk, &mut v[..chunk.len()]);
    }
    assert_eq!(w.flow_count(), n, "setup created every flow");
    let batches: Vec<&[&[u8]]> = refs.chunks_exact(BATCH).collect();
    let t0 = std::time::Instant::now();
    for r in 0..rounds {
        w.process_batch(now + r as u64, &ts, batches[r % batches.len()], &mut v);
    }
    let ns = t0.elapsed().as_nanos() as f64 / (rounds * BATCH) as f64;
    let snap = w.counters().snapshot();
    assert_eq!(snap.dropped(), 0, "every packet passed");
    println!("{n} flows: {ns:.1} ns/packet ({:.2} Mpps)", 1e3 / ns);
}
