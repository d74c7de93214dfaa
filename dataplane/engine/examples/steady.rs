//! Steady-state driver for profiling the engine without a benchmark framework:
//! `cargo run --release -p bulkhead-engine --example steady -- FLOWS ROUNDS`.
//!
//! Establishes FLOWS TCP flows by loose pickup, then judges ROUNDS batches of 64 established
//! 64-byte frames (shuffled, alternating directions) and prints ns per packet. Under
//! `valgrind --tool=callgrind`, two runs with different ROUNDS give instructions per packet by
//! difference (the setup cancels out). The criterion bench (`benches/engine.rs`) is the
//! reported figure; this is the microscope.

use bulkhead_engine::{EngineConfig, Verdict, Worker};
use bulkhead_tables::{
    Action, ClassifierBuilder, ClassifierRule, IdentityMapBuilder, RuleMeta, TableSet, Tier, TierKind,
};
use bulkhead_wire::builder::{tcp, Frame};
use std::net::{IpAddr, Ipv4Addr};

const FRAME: usize = 64;
const BATCH: usize = 64;

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let n = args.first().copied().unwrap_or(10_000);
    let rounds = args.get(1).copied().unwrap_or(200_000);
    let server = IpAddr::V4(Ipv4Addr::new(198, 19, 255, 1));
    let mut ts = TableSet::empty(1);
    let mut idb = IdentityMapBuilder::new();
    idb.insert(server, 32, 1);
    ts.identities = idb.build();
    ts.identity_names = vec!["world".into(), "server".into()];
    ts.identity_segment = vec![u16::MAX; 2];
    let mut cb = ClassifierBuilder::new();
    cb.push(ClassifierRule { dst: (1, 1), proto: (6, 0xff), dport: (80, 80), ..ClassifierRule::any(1) });
    ts.tiers = vec![Tier { name: "identity".into(), kind: TierKind::Identity, classifier: cb.build() }];
    ts.rules = vec![vec![RuleMeta { name: "web".into(), action: Action::Allow, mode: None }]];

    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for i in (1..n).rev() {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        order.swap(i, (rng % (i as u64 + 1)) as usize);
    }
    let mut buf = Vec::with_capacity(2 * n * FRAME);
    for dir in 0..2 {
        for &i in &order {
            let host = IpAddr::V4(Ipv4Addr::from(0xC612_0000u32 + (i as u32 % 0x1_0000)));
            let sport = 1024 + (i / 0x1_0000) as u16;
            let f = if dir == 0 {
                Frame::tcp(host, server, sport, 80, tcp::ACK).seq(1000).ack(2000)
            } else {
                Frame::tcp(server, host, 80, sport, tcp::ACK).seq(2000).ack(1000)
            };
            buf.extend_from_slice(&f.pad_to(FRAME).build());
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
    let ring = std::env::var_os("STEADY_RING").is_some();
    // STEADY_RING: copy each batch into one 64-frame buffer first (as a NIC DMAs into a small,
    // cache-warm UMEM) instead of reading 64 MiB of distinct frames; the copy is timed too.
    let mut umem = vec![0u8; BATCH * FRAME];
    let t0 = std::time::Instant::now();
    for r in 0..rounds {
        let b = batches[r % batches.len()];
        if ring {
            for (dst, src) in umem.chunks_exact_mut(FRAME).zip(b.iter()) {
                dst.copy_from_slice(src);
            }
            let slots: [&[u8]; BATCH] = std::array::from_fn(|i| &umem[i * FRAME..(i + 1) * FRAME]);
            w.process_batch(now + r as u64, &ts, &slots, &mut v);
        } else {
            w.process_batch(now + r as u64, &ts, b, &mut v);
        }
    }
    let ns = t0.elapsed().as_nanos() as f64 / (rounds * BATCH) as f64;
    let snap = w.counters().snapshot();
    assert_eq!(snap.dropped(), 0, "every packet passed");
    println!("{n} flows: {ns:.1} ns/packet ({:.2} Mpps)", 1e3 / ns);
}
