//! Scenario 3: hot swap under load, in memory. A worker thread replays established frames of
//! allowed flows mixed with SYNs of denied connections while a control thread publishes 100 new
//! generations, alternating between two large ACL policies (100k ClassBench rules each: acl1 and
//! fw1 bodies, with the benchmark's allow and deny rules first, so both policies agree on the
//! traffic's verdicts).
//!
//! Counted, per frame, from the verdicts the worker returns:
//! - allowed packets lost: a frame of an allowed, established flow that was not passed
//!   (target 0: revalidation against the new generation must be hitless);
//! - denied packets passed: a denied SYN that was forwarded (target 0).
//!
//! Latency: the batch service time per packet (as in the engine scenario), in a steady phase with
//! no swaps and then during the swap phase; the target is p99.9 during swaps at most 2x steady.
//!
//! Each generation is a fresh `TableSet` cloned from one of two pre-built templates (the build
//! time of each template is reported separately), published through the `TableHandle` the
//! worker loads once per batch. The worker may hold the last reference to a retired generation
//! and then frees it on its own thread: that cost is part of what the p99.9 shows.

use crate::policy::{acl_policy, synthetic_rules, ALLOWED_PORT, DENIED_PORT};
use crate::report::{Better, Curve, Measurement, Percentiles, Report, Target};
use crate::scenarios::engine::{config_for, BATCH};
use crate::traffic::{Flow, FrameBuf, Rng};
use crate::util::short_count;
use crate::Settings;
use bulkhead_engine::{LatencyRecorder, Verdict, Worker};
use bulkhead_tables::{classbench, ClassifierRule, TableHandle, TableSet, Tier};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const STEADY: u8 = 0;
const SWAPPING: u8 = 1;
const STOP: u8 = 2;

/// A copy of `t` with a new generation (what a control plane publishes for an unchanged policy
/// it recompiled).
pub fn clone_set(t: &TableSet, generation: u64) -> TableSet {
    TableSet {
        generation,
        identity_names: t.identity_names.clone(),
        identity_segment: t.identity_segment.clone(),
        segment_names: t.segment_names.clone(),
        segment_mode: t.segment_mode.clone(),
        global_mode: t.global_mode,
        identities: t.identities.clone(),
        tiers: t
            .tiers
            .iter()
            .map(|x| Tier { name: x.name.clone(), kind: x.kind, classifier: x.classifier.clone() })
            .collect(),
        rules: t.rules.clone(),
        quarantine: t.quarantine.clone(),
        config: t.config.clone(),
    }
}

/// What the run counted.
#[derive(Debug, Default)]
pub struct SwapRun {
    pub swaps: u64,
    pub allowed_frames: u64,
    pub allowed_lost: u64,
    pub denied_frames: u64,
    pub denied_passed: u64,
    pub steady: Option<hdrhistogram::Histogram<u64>>,
    pub swapping: Option<hdrhistogram::Histogram<u64>>,
    pub steady_packets: u64,
    pub swap_packets: u64,
    pub swap_seconds: f64,
    pub revoked: u64,
    pub build_ms: [f64; 2],
    pub rules: [usize; 2],
}

/// Runs `swaps` swaps between policies built from `fill_a` and `fill_b`, with `flows` allowed
/// flows, after `steady_seconds` of steady state.
pub fn run_swaps(
    fill_a: &[ClassifierRule],
    fill_b: &[ClassifierRule],
    flows: usize,
    swaps: u64,
    steady_seconds: f64,
    interval: Duration,
) -> SwapRun {
    let mut out = SwapRun::default();
    let t0 = Instant::now();
    let a = acl_policy(0, fill_a);
    out.build_ms[0] = t0.elapsed().as_secs_f64() * 1e3;
    let t1 = Instant::now();
    let b = acl_policy(0, fill_b);
    out.build_ms[1] = t1.elapsed().as_secs_f64() * 1e3;
    out.rules = [a.tiers[0].classifier.len(), b.tiers[0].classifier.len()];
    let templates = [a, b];

    let handle = Arc::new(TableHandle::new(clone_set(&templates[0], 1)));
    let phase = Arc::new(AtomicU8::new(STEADY));
    let ready = Arc::new(Barrier::new(2));
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let worker_core = cores.last().map(|c| c.id);

    let worker = {
        let handle = Arc::clone(&handle);
        let phase = Arc::clone(&phase);
        let ready = Arc::clone(&ready);
        std::thread::spawn(move || worker_loop(&handle, &phase, &ready, flows, worker_core))
    };
    if let Some(c) = cores.first() {
        core_affinity::set_for_current(*c);
    }
    ready.wait(); // flows established
    std::thread::sleep(Duration::from_secs_f64(steady_seconds));
    phase.store(SWAPPING, Ordering::Release);
    let ts = Instant::now();
    for g in 0..swaps {
        let next = clone_set(&templates[((g + 1) % 2) as usize], g + 2);
        if handle.publish(next).is_ok() {
            out.swaps += 1;
        }
        std::thread::sleep(interval);
    }
    out.swap_seconds = ts.elapsed().as_secs_f64();
    phase.store(STOP, Ordering::Release);
    if let Ok(w) = worker.join() {
        out.allowed_frames = w.allowed_frames;
        out.allowed_lost = w.allowed_lost;
        out.denied_frames = w.denied_frames;
        out.denied_passed = w.denied_passed;
        out.steady_packets = w.steady.count();
        out.swap_packets = w.swapping.count();
        let mut h = LatencyRecorder::new_histogram();
        w.steady.merge_into(&mut h);
        out.steady = Some(h);
        let mut h = LatencyRecorder::new_histogram();
        w.swapping.merge_into(&mut h);
        out.swapping = Some(h);
        out.revoked = w.revoked;
    }
    out
}

struct WorkerOut {
    allowed_frames: u64,
    allowed_lost: u64,
    denied_frames: u64,
    denied_passed: u64,
    steady: LatencyRecorder,
    swapping: LatencyRecorder,
    revoked: u64,
}

fn worker_loop(
    handle: &TableHandle,
    phase: &AtomicU8,
    ready: &Barrier,
    n: usize,
    core: Option<usize>,
) -> WorkerOut {
    if let Some(c) = core {
        core_affinity::set_for_current(core_affinity::CoreId { id: c });
    }
    let cfg = config_for(n + 4096);
    let mut w = Worker::new(0, &cfg);
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
            let t = handle.load();
            w.process_batch(crate::util::now_ns(), &t, &fb.slices(), &mut verdicts);
        }
    }
    // Frames: every 16th is a SYN of a denied connection (port 81, 1024 distinct tuples), the
    // rest one established frame per allowed flow, alternating directions, shuffled.
    let mut order: Vec<usize> = (0..n).collect();
    Rng::new(42).shuffle(&mut order);
    let mut fb = FrameBuf::with_stride(64, n + n / 15 + 1);
    let mut denied = Vec::with_capacity(n + n / 15 + 1);
    let mut d = 0u64;
    for (k, &i) in order.iter().enumerate() {
        if k % 15 == 0 {
            fb.push(&Flow::nth(1_000_000 + (d % 1024), DENIED_PORT).syn());
            denied.push(true);
            d += 1;
        }
        fb.push(&if k % 2 == 0 { flows[i].ack() } else { flows[i].reply() });
        denied.push(false);
    }
    let slices = fb.slices();
    let steady = LatencyRecorder::new();
    let swapping = LatencyRecorder::new();
    let mut out = WorkerOut {
        allowed_frames: 0,
        allowed_lost: 0,
        denied_frames: 0,
        denied_passed: 0,
        steady: LatencyRecorder::new(),
        swapping: LatencyRecorder::new(),
        revoked: 0,
    };
    ready.wait();
    'run: loop {
        for (chunk, kinds) in slices.chunks(BATCH).zip(denied.chunks(BATCH)) {
            let p = phase.load(Ordering::Acquire);
            if p == STOP {
                break 'run;
            }
            let b0 = Instant::now();
            let t = handle.load();
            w.process_batch(crate::util::now_ns(), &t, chunk, &mut verdicts);
            drop(t);
            let dt = b0.elapsed().as_nanos() as u64;
            if p == STEADY {
                steady.record(dt, chunk.len() as u64);
            } else {
                swapping.record(dt, chunk.len() as u64);
            }
            for (v, &is_denied) in verdicts.iter().zip(kinds) {
                if is_denied {
                    out.denied_frames += 1;
                    out.denied_passed += u64::from(v.forwards());
                } else {
                    out.allowed_frames += 1;
                    out.allowed_lost += u64::from(*v != Verdict::Pass);
                }
            }
        }
    }
    out.steady = steady;
    out.swapping = swapping;
    out.revoked = w.counters().snapshot().flows_revoked;
    out
}

fn load_fill(s: &Settings, set: &str, n: usize, report: &mut Report) -> Vec<ClassifierRule> {
    let path = s.data_dir.join(format!("{set}_{n}"));
    match classbench::load_rules(&path) {
        Ok(r) => r,
        Err(e) => {
            report.notes.push(format!("swap: {e}; using {n} synthetic rules instead"));
            synthetic_rules(n)
        }
    }
}

/// Runs the scenario.
pub fn run(s: &Settings) -> Report {
    let mut report = Report::new(s.quick);
    let (fill_a, fill_b, flows, swaps, steady, interval) = if s.quick {
        (synthetic_rules(1000), synthetic_rules(1200), 1000, 20, 0.05, Duration::from_millis(1))
    } else {
        let a = load_fill(s, "acl1", 100_000, &mut report);
        let b = load_fill(s, "fw1", 100_000, &mut report);
        (a, b, 10_000, 100, s.seconds.max(1.0), Duration::from_millis(10))
    };
    let case = format!(
        "{} swaps, {}+{} rules, {} flows",
        swaps,
        short_count(fill_a.len()),
        short_count(fill_b.len()),
        short_count(flows)
    );
    eprintln!("swap {case}");
    let r = run_swaps(&fill_a, &fill_b, flows, swaps, steady, interval);
    let (Some(hs), Some(hw)) = (&r.steady, &r.swapping) else {
        report.notes.push("swap: the worker thread failed".into());
        return report;
    };
    let ps = Percentiles::of(hs);
    let pw = Percentiles::of(hw);
    let mut m = Measurement::new("swap", format!("{case}: steady"), "bulkhead");
    m.latency = Some(ps);
    m.packets = r.steady_packets;
    report.measurements.push(m);
    let mut m = Measurement::new("swap", format!("{case}: during swaps"), "bulkhead")
        .with_rate(r.swap_packets, r.swap_seconds, 1)
        .extra("swaps", r.swaps as f64)
        .extra("allowed frames", r.allowed_frames as f64)
        .extra("allowed lost", r.allowed_lost as f64)
        .extra("denied frames", r.denied_frames as f64)
        .extra("denied passed", r.denied_passed as f64)
        .extra("revoked flows", r.revoked as f64)
        .extra("policy A build ms", r.build_ms[0])
        .extra("policy B build ms", r.build_ms[1]);
    m.latency = Some(pw);
    report.measurements.push(m);
    report.curves.push(Curve::of("swap: steady", hs));
    report.curves.push(Curve::of("swap: during 100 swaps", hw));
    report.targets.push(Target::new(
        "swap",
        &case,
        "allowed packets lost",
        r.allowed_lost as f64,
        0.0,
        Better::Lower,
    ));
    report.targets.push(Target::new(
        "swap",
        &case,
        "denied packets passed",
        r.denied_passed as f64,
        0.0,
        Better::Lower,
    ));
    if ps.p999 > 0 {
        report.targets.push(Target::new(
            "swap",
            &case,
            "p99.9 during swaps / steady",
            pw.p999 as f64 / ps.p999 as f64,
            2.0,
            Better::Lower,
        ));
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone_keeps_the_policy_and_moves_the_generation() {
        let t = acl_policy(3, &synthetic_rules(10));
        let c = clone_set(&t, 9);
        assert_eq!(c.generation, 9);
        assert_eq!(c.tiers[0].classifier.len(), 12);
        assert_eq!(c.rules, t.rules);
    }

    #[test]
    fn tiny_swap_run_counts_both_kinds_of_frames() {
        let r = run_swaps(&synthetic_rules(50), &synthetic_rules(60), 100, 3, 0.01, Duration::from_millis(1));
        assert_eq!(r.swaps, 3);
        assert!(r.allowed_frames > 0);
        assert!(r.denied_frames > 0);
        assert_eq!(r.rules, [52, 62]);
    }
}
