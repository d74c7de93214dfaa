//! Scenario 5: SYN flood. 1M SYNs from spoofed client addresses and ports (all to an allowed
//! service, so every one of them is a policy-allowed new connection that wants a half-open flow)
//! hit a worker whose flow table holds 64k flows, at an injected 1 Mpps (1 us apart). In the
//! middle of the flood a legitimate client does a full handshake, with 100 flood SYNs (100 us)
//! between each of its steps, then exchanges data; after the flood it sends once more.
//!
//! Reported: whether every frame of the legitimate connection passed (during and after the
//! flood), the flow-table memory and the process's resident set before and after (must be
//! flat: the table is pre-sized and never grows), the evictions and `table_full` drops the
//! engine counted, and the rate at which the worker absorbed the flood (on-CPU time of
//! `process_batch` only; building the spoofed frames is not timed).

use crate::policy::{ALLOWED_PORT, CLIENT_NET, SERVER_NET};
use crate::report::{Better, Measurement, Report, Target};
use crate::scenarios::engine::BATCH;
use crate::traffic::{Flow, FrameBuf, Rng};
use crate::util::{rss_bytes, short_count};
use crate::Settings;
use bulkhead_engine::{DropReason, EngineConfig, Verdict, Worker};
use bulkhead_tables::TableSet;
use bulkhead_wire::builder::{tcp, Frame};
use std::net::Ipv4Addr;
use std::time::Instant;

/// What the flood run observed.
#[derive(Debug, Default, Clone)]
pub struct FloodRun {
    pub syns: u64,
    pub capacity: u32,
    pub process_ns: u64,
    pub legit_frames: u64,
    pub legit_passed: u64,
    /// The legitimate flow's frame after the flood ended.
    pub legit_after_flood: bool,
    pub table_bytes_before: usize,
    pub table_bytes_after: usize,
    pub rss_before: u64,
    pub rss_after: u64,
    pub flows_active: usize,
    pub evicted: u64,
    pub table_full: u64,
    pub flood_passed: u64,
}

/// Floods a worker of `capacity` flows with `syns` spoofed SYNs.
pub fn flood(syns: u64, capacity: u32, tables: &TableSet) -> FloodRun {
    let cfg = EngineConfig { flow_capacity: capacity, max_batch: BATCH, ..EngineConfig::default() };
    let mut w = Worker::new(0, &cfg);
    let mut verdicts = vec![Verdict::Pass; BATCH];
    let mut out = FloodRun {
        syns,
        capacity,
        table_bytes_before: w.flow_table_bytes(),
        rss_before: rss_bytes(),
        ..FloodRun::default()
    };
    let mut rng = Rng::new(0x5eed);
    let server = Ipv4Addr::from(SERVER_NET | 1);
    // The legitimate client lives outside the spoofed range's low addresses only by chance; its
    // tuple (port 55555 from .255.254) is what makes it distinct.
    let legit = Flow {
        client: Ipv4Addr::from(CLIENT_NET | 0xfffe),
        server,
        sport: 55_555,
        dport: ALLOWED_PORT,
        client_isn: 1000,
        server_isn: 5000,
    };
    let legit_steps: Vec<Vec<u8>> =
        vec![legit.syn(), legit.syn_ack(), legit.ack(), legit.ack(), legit.reply()];
    let middle = syns / 2;
    let mut next_legit = 0usize;
    let mut sent = 0u64;
    let mut now = 1_000_000_000u64;
    let mut legit_slot: Vec<Option<usize>> = Vec::with_capacity(BATCH);
    while sent < syns || next_legit < legit_steps.len() {
        let mut fb = FrameBuf::with_stride(64, BATCH);
        legit_slot.clear();
        while fb.len() < BATCH && (sent < syns || next_legit < legit_steps.len()) {
            // One legitimate step every 100 flood SYNs from the middle on.
            if next_legit < legit_steps.len() && (sent >= middle + 100 * next_legit as u64 || sent >= syns) {
                legit_slot.push(Some(fb.len()));
                fb.push(&legit_steps[next_legit]);
                next_legit += 1;
                continue;
            }
            if sent >= syns {
                break;
            }
            let host = rng.below(0xfffe) as u32;
            let sport = 1024 + rng.below(64_000) as u16;
            let f = Frame::tcp(Ipv4Addr::from(CLIENT_NET | host), server, sport, ALLOWED_PORT, tcp::SYN)
                .seq(rng.next_u64() as u32)
                .ack(0)
                .pad_to(60)
                .build();
            fb.push(&f);
            sent += 1;
        }
        let slices = fb.slices();
        let t0 = Instant::now();
        w.process_batch(now, tables, &slices, &mut verdicts);
        out.process_ns += t0.elapsed().as_nanos() as u64;
        now += 1000 * slices.len() as u64;
        for i in legit_slot.iter().flatten() {
            out.legit_frames += 1;
            out.legit_passed += u64::from(verdicts[*i] == Verdict::Pass);
        }
        let legit_n = legit_slot.len();
        out.flood_passed += (verdicts[..slices.len()].iter().filter(|v| **v == Verdict::Pass).count()
            - legit_n.min(slices.len())) as u64;
    }
    // After the flood: the established legitimate connection must still be known.
    let after = legit.ack();
    let slices = [&after[..]];
    w.process_batch(now + 1000, tables, &slices, &mut verdicts);
    out.legit_after_flood = verdicts[0] == Verdict::Pass;
    let c = w.counters().snapshot();
    out.table_bytes_after = w.flow_table_bytes();
    out.rss_after = rss_bytes();
    out.flows_active = w.flow_count();
    out.evicted = c.flows_evicted;
    out.table_full = c.drop_count(DropReason::TableFull);
    out
}

/// Runs the scenario.
pub fn run(s: &Settings) -> Report {
    let mut report = Report::new(s.quick);
    let (syns, capacity) = if s.quick { (20_000u64, 4096u32) } else { (1_000_000, 65_536) };
    let case = format!("{} SYNs, {} flow slots", short_count(syns as usize), short_count(capacity as usize));
    eprintln!("synflood {case}");
    let tables = crate::policy::identity_policy(1);
    let r = flood(syns, capacity, &tables);
    let handshake_ok = r.legit_frames == 5 && r.legit_passed == 5;
    let m = Measurement::new("synflood", &case, "bulkhead")
        .with_rate(r.syns, r.process_ns as f64 / 1e9, 1)
        .extra("legit frames passed", r.legit_passed as f64)
        .extra("legit after flood", f64::from(u8::from(r.legit_after_flood)))
        .extra("evicted", r.evicted as f64)
        .extra("table_full drops", r.table_full as f64)
        .extra("active flows", r.flows_active as f64)
        .extra("table KiB before", r.table_bytes_before as f64 / 1024.0)
        .extra("table KiB after", r.table_bytes_after as f64 / 1024.0)
        .extra("RSS KiB growth", r.rss_after.saturating_sub(r.rss_before) as f64 / 1024.0)
        .note(format!(
            "legitimate handshake + data: {} of {} frames passed; after the flood: {}",
            r.legit_passed,
            r.legit_frames,
            if r.legit_after_flood { "passed" } else { "DROPPED" }
        ));
    report.measurements.push(m);
    report.targets.push(Target::new(
        "synflood",
        &case,
        "legitimate handshake passes (1 = yes)",
        f64::from(u8::from(handshake_ok)),
        1.0,
        Better::Higher,
    ));
    report.targets.push(Target::new(
        "synflood",
        &case,
        "flow table growth (bytes)",
        r.table_bytes_after.saturating_sub(r.table_bytes_before) as f64,
        0.0,
        Better::Lower,
    ));
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_flood_counts_legit_frames_and_keeps_table_size() {
        let t = crate::policy::identity_policy(1);
        let r = flood(3000, 1024, &t);
        assert_eq!(r.legit_frames, 5);
        assert_eq!(r.table_bytes_before, r.table_bytes_after);
        assert!(r.flows_active <= 1024);
    }
}
