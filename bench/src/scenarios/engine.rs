//! Scenario 1: the engine in memory. 64-byte frames (60 bytes + FCS) of established TCP flows,
//! 10k and 1M flows, 1 and 2 workers (threads pinned to cores), both directions of each flow.
//!
//! Each worker owns a disjoint share of the flows (as symmetric steering gives it on the wire),
//! establishes them with real handshakes (untimed), then replays one established frame per flow
//! in a shuffled order, in batches of [`BATCH`], for the configured time. The batch path is the
//! one the AF_XDP loop drives: load the table set once per batch, `process_batch` with the time
//! injected, record the batch's service time for each of its packets in the worker's
//! `LatencyRecorder` (so a packet's latency here is the time its batch took, the in-memory part of
//! its dequeue -> verdict time).
//!
//! Reported: Mpps (all workers) and per core, ns/packet, latency percentiles, bytes of flow table
//! per flow slot (the pre-sized table divided by its capacity), and the share of frames that
//! passed (every frame of an established allowed flow must).

use crate::policy::{identity_policy, ALLOWED_PORT};
use crate::report::{Better, Comparison, Curve, Measurement, Percentiles, Report, Target};
use crate::traffic::{Flow, FrameBuf, Rng, MIN_FRAME};
use crate::util::short_count;
use crate::Settings;
use bulkhead_engine::{CountersSnapshot, EngineConfig, LatencyRecorder, Verdict, Worker};
use bulkhead_tables::TableHandle;
use std::sync::{Arc, Barrier};
use std::time::Instant;

/// Frames per batch (a typical AF_XDP rx batch).
pub const BATCH: usize = 64;

/// What one worker measured.
#[derive(Debug)]
pub struct WorkerRun {
    pub packets: u64,
    pub passed: u64,
    pub seconds: f64,
    /// Seconds the worker thread was actually on a CPU during the timed section (None where the
    /// kernel does not report it).
    pub cpu_seconds: Option<f64>,
    /// Handshake frames that passed during setup (3 per flow expected).
    pub setup_passed: u64,
    pub setup_frames: u64,
    pub counters: CountersSnapshot,
    pub flow_table_bytes: usize,
    pub flow_capacity: u32,
    pub flows_active: usize,
    pub latency: Arc<LatencyRecorder>,
}

/// Engine configuration sized for `flows` flows (25% headroom).
pub fn config_for(flows: usize) -> EngineConfig {
    let capacity = (flows + flows / 4).max(1024) as u32;
    EngineConfig { flow_capacity: capacity, max_batch: BATCH, ..EngineConfig::default() }
}

/// Establishes `flows` (ids `first..first + n`) on a fresh worker and replays their established
/// frames for `seconds` after `start` releases.
pub fn run_worker(
    id: u16,
    first: u64,
    n: usize,
    seconds: f64,
    tables: &TableHandle,
    core: Option<usize>,
    start: &Barrier,
) -> WorkerRun {
    if let Some(c) = core {
        core_affinity::set_for_current(core_affinity::CoreId { id: c });
    }
    let cfg = config_for(n);
    let mut w = Worker::new(id, &cfg);
    let mut verdicts = vec![Verdict::Pass; BATCH];
    let flows: Vec<Flow> = (first..first + n as u64).map(|i| Flow::nth(i, ALLOWED_PORT)).collect();

    // Setup: handshakes in batches (SYNs, then SYN-ACKs, then ACKs of BATCH flows at a time).
    let mut setup_passed = 0u64;
    let mut setup_frames = 0u64;
    for chunk in flows.chunks(BATCH) {
        for step in 0..3 {
            let mut fb = FrameBuf::with_stride(64, chunk.len());
            for f in chunk {
                let frame = match step {
                    0 => f.syn(),
                    1 => f.syn_ack(),
                    _ => f.ack(),
                };
                fb.push(&frame);
            }
            let slices = fb.slices();
            let t = tables.load();
            w.process_batch(crate::util::now_ns(), &t, &slices, &mut verdicts);
            setup_frames += slices.len() as u64;
            setup_passed += verdicts[..slices.len()].iter().filter(|v| **v == Verdict::Pass).count() as u64;
        }
    }

    // Steady state: one established frame per flow, alternating directions, shuffled.
    let mut order: Vec<usize> = (0..n).collect();
    Rng::new(u64::from(id) + 1).shuffle(&mut order);
    let mut fb = FrameBuf::with_stride(64, n);
    for (k, &i) in order.iter().enumerate() {
        let frame = if k % 2 == 0 { flows[i].ack() } else { flows[i].reply() };
        debug_assert_eq!(frame.len(), MIN_FRAME);
        fb.push(&frame);
    }
    drop(flows);
    let slices = fb.slices();
    // The setup batches must not count in the steady-state latency: record into a fresh recorder
    // of the same layout as the worker's own.
    let steady = Arc::new(LatencyRecorder::new());

    start.wait();
    let cpu0 = crate::util::thread_cpu_ns();
    let mut packets = 0u64;
    let mut passed = 0u64;
    let t0 = Instant::now();
    let mut batches = 0u32;
    'run: loop {
        for chunk in slices.chunks(BATCH) {
            let t = tables.load();
            let b0 = Instant::now();
            w.process_batch(crate::util::now_ns(), &t, chunk, &mut verdicts);
            let dt = b0.elapsed().as_nanos() as u64;
            steady.record(dt, chunk.len() as u64);
            packets += chunk.len() as u64;
            passed += verdicts[..chunk.len()].iter().filter(|v| **v == Verdict::Pass).count() as u64;
            batches += 1;
            if batches & 255 == 0 && t0.elapsed().as_secs_f64() >= seconds {
                break 'run;
            }
        }
        if slices.is_empty() || t0.elapsed().as_secs_f64() >= seconds {
            break;
        }
    }
    let seconds = t0.elapsed().as_secs_f64();
    let cpu_seconds = match (cpu0, crate::util::thread_cpu_ns()) {
        (Some(a), Some(b)) if b > a => Some((b - a) as f64 / 1e9),
        _ => None,
    };
    WorkerRun {
        packets,
        passed,
        seconds,
        cpu_seconds,
        setup_passed,
        setup_frames,
        counters: w.counters().snapshot(),
        flow_table_bytes: w.flow_table_bytes(),
        flow_capacity: cfg.flow_capacity,
        flows_active: w.flow_count(),
        latency: steady,
    }
}

/// One case: `flows` in total over `workers` threads.
pub fn run_case(flows: usize, workers: usize, seconds: f64) -> Vec<WorkerRun> {
    let tables = Arc::new(TableHandle::new(identity_policy(1)));
    let barrier = Arc::new(Barrier::new(workers));
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let per = flows / workers.max(1);
    let handles: Vec<_> = (0..workers)
        .map(|w| {
            let tables = Arc::clone(&tables);
            let barrier = Arc::clone(&barrier);
            let core = cores.get(w % cores.len().max(1)).map(|c| c.id);
            let first = (w * per) as u64;
            std::thread::spawn(move || run_worker(w as u16, first, per, seconds, &tables, core, &barrier))
        })
        .collect();
    handles.into_iter().filter_map(|h| h.join().ok()).collect()
}

/// Runs the scenario.
pub fn run(s: &Settings) -> Report {
    let mut report = Report::new(s.quick);
    let (flow_counts, seconds) =
        if s.quick { (vec![1_000, 10_000], 0.05) } else { (vec![10_000, 1_000_000], s.seconds.max(1.0)) };
    for &flows in &flow_counts {
        let mut one_worker_mpps = None;
        for workers in [1usize, 2] {
            let case = format!(
                "{} flows, {workers} worker{}",
                short_count(flows),
                if workers > 1 { "s" } else { "" }
            );
            eprintln!("engine {case}");
            let runs = run_case(flows, workers, seconds);
            if runs.len() != workers {
                report.notes.push(format!("engine {case}: a worker thread failed"));
                continue;
            }
            let packets: u64 = runs.iter().map(|r| r.packets).sum();
            let passed: u64 = runs.iter().map(|r| r.passed).sum();
            let wall = runs.iter().map(|r| r.seconds).fold(0.0, f64::max);
            let setup_passed: u64 = runs.iter().map(|r| r.setup_passed).sum();
            let setup_frames: u64 = runs.iter().map(|r| r.setup_frames).sum();
            let mut h = LatencyRecorder::new_histogram();
            for r in &runs {
                r.latency.merge_into(&mut h);
            }
            let table_bytes: usize = runs.iter().map(|r| r.flow_table_bytes).sum();
            let capacity: u64 = runs.iter().map(|r| u64::from(r.flow_capacity)).sum();
            let active: usize = runs.iter().map(|r| r.flows_active).sum();
            let bytes_per_flow = if capacity > 0 { table_bytes as f64 / capacity as f64 } else { 0.0 };
            let mut m = Measurement::new("engine", &case, "bulkhead")
                .with_rate(packets, wall, workers)
                .extra("flows", flows as f64)
                .extra("active flows", active as f64)
                .extra("bytes/flow", bytes_per_flow)
                .extra("pass %", pct(passed, packets))
                .extra("handshake pass %", pct(setup_passed, setup_frames));
            m.latency = Some(Percentiles::of(&h));
            let wall_mpps = m.mpps.unwrap_or(0.0);
            // Per core: packets per second of on-CPU time, summed over workers, so that time a
            // worker spent preempted by other processes on a shared host is not charged to it.
            let cpu: Option<f64> = runs.iter().map(|r| r.cpu_seconds).sum();
            let mpps_core = match cpu {
                Some(c) if c > 0.0 => {
                    m.ns_per_packet = Some(c * 1e9 / packets.max(1) as f64);
                    m = m.extra("on-CPU %", 100.0 * c / (wall * workers as f64));
                    packets as f64 / c / 1e6
                }
                _ => wall_mpps / workers as f64,
            };
            m = m.extra("Mpps/core", mpps_core);
            // Scaling and totals: what `workers` dedicated cores would do.
            let mpps = mpps_core * workers as f64;
            if passed != packets {
                m = m.note(format!("{} of {packets} established frames were not passed", packets - passed));
            }
            report.measurements.push(m);
            if workers == 1 {
                report.curves.push(Curve::of(format!("engine {case}"), &h));
                one_worker_mpps = Some(mpps);
                let target = if flows >= 1_000_000 { 15.0 } else { 25.0 };
                if !s.quick || flows == 10_000 {
                    report.targets.push(Target::new(
                        "engine",
                        &case,
                        "Mpps/core",
                        mpps,
                        target,
                        Better::Higher,
                    ));
                }
                report.targets.push(Target::new(
                    "engine",
                    &case,
                    "bytes/flow",
                    bytes_per_flow,
                    128.0,
                    Better::Lower,
                ));
            } else if let Some(base) = one_worker_mpps {
                report.comparisons.push(Comparison::new(
                    "engine",
                    &case,
                    "Mpps, 2 workers vs 1",
                    mpps,
                    base,
                    Some(1.9),
                    Better::Higher,
                ));
            }
        }
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores <= 2 {
        report.notes.push(format!(
            "engine: this host has {cores} cores; the 2-worker cases share them with the OS, the harness's \
             own threads and anything else running, so their scaling is a lower bound"
        ));
    }
    report
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tiny_case_runs_and_counts_every_frame() {
        let runs = run_case(200, 1, 0.0);
        assert_eq!(runs.len(), 1);
        assert!(runs[0].packets >= 200, "at least one pass over the flows");
        assert_eq!(runs[0].setup_frames, 600);
    }

    #[test]
    fn config_has_headroom() {
        assert_eq!(config_for(10_000).flow_capacity, 12_500);
        assert_eq!(config_for(10).flow_capacity, 1024);
    }
}
