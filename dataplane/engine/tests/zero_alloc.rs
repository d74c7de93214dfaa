//! The batch path allocates nothing: a counting global allocator watches thousands of batches of
//! mixed traffic (handshakes, data, UDP, ICMP echo and errors, fragments held and released,
//! malformed frames, SYN-flood eviction, table swaps with revocations, flow events).

mod common;

use bulkhead_engine::{EngineConfig, FlowEvent, FlowFilter, Verdict, Worker};
use bulkhead_wire::builder::{icmp, tcp, Frame};
use common::*;
use crossbeam_queue::ArrayQueue;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static WATCH: Cell<bool> = const { Cell::new(false) };
}

fn note() {
    if WATCH.with(Cell::get) {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY-free: a GlobalAlloc impl is an unsafe trait impl, which this crate's lints forbid, so
// the counter wraps `System` through the safe `#[global_allocator]` of a tiny allowed module.
#[allow(unsafe_code)]
mod alloc_impl {
    use super::*;
    // SAFETY: every method forwards to `System` with the caller's arguments unchanged; counting
    // touches only an atomic and a const-initialised thread-local (no allocation, no reentrancy).
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, l: Layout) -> *mut u8 {
            note();
            // SAFETY: forwarded as is.
            unsafe { System.alloc(l) }
        }
        unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
            note();
            // SAFETY: forwarded as is.
            unsafe { System.alloc_zeroed(l) }
        }
        unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
            note();
            // SAFETY: forwarded as is.
            unsafe { System.realloc(p, l, n) }
        }
        unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
            // SAFETY: forwarded as is.
            unsafe { System.dealloc(p, l) }
        }
    }
    #[global_allocator]
    static A: Counting = Counting;
}

#[test]
fn thousands_of_batches_allocate_nothing() {
    let (c, s) = (client(), server());
    let mut frames: Vec<Vec<u8>> = Vec::new();
    for i in 0..16u16 {
        let sp = 30000 + i;
        frames.push(Frame::tcp(c, s, sp, 80, tcp::SYN).seq(1).build());
        frames.push(Frame::tcp(s, c, 80, sp, tcp::SYN_ACK).seq(9).ack(2).build());
        frames.push(Frame::tcp(c, s, sp, 80, tcp::ACK).seq(2).ack(10).payload(&[0; 10]).build());
        frames.push(Frame::tcp(s, c, 80, sp, tcp::PSH_ACK).seq(10).ack(12).payload(&[0; 100]).build());
    }
    for i in 0..64u16 {
        frames.push(Frame::tcp(c, s, 1 + i, 80, tcp::SYN).build()); // flood: evictions
        frames.push(Frame::udp(c, s, 2000 + i, 53).build());
        frames.push(Frame::udp(s, c, 53, 2000 + i).build());
        frames.push(Frame::tcp(s, c, 80, 1 + i, tcp::SYN).build()); // denied, logged
    }
    frames.push(Frame::echo_request(c, s, 7, 1).build());
    frames.push(Frame::echo_reply(s, c, 7, 1).build());
    let q = Frame::udp(c, s, 2000, 53);
    frames.push(Frame::icmp_error(s, c, icmp::V4_DEST_UNREACH, 3, &q).build());
    frames.push(Frame::tcp(c, s, 5, 80, tcp::SYN | tcp::FIN).build());
    frames.push(vec![0u8; 9]);
    frames.push(Frame::udp(client6(), server6(), 9, 53).build());
    let mut frag = Frame::udp(c, s, 4000, 53).ip_id(77).payload(&[1; 600]).fragments(200);
    let first = frag.remove(0);
    frames.extend(frag); // held ...
    frames.push(first); // ... then released
    let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();

    let t1 = web_policy(1);
    let t2 = tables(2, &[allow(CLIENT, SERVER, Some(6), (80, 80))]);
    let sink = Arc::new(ArrayQueue::<FlowEvent>::new(256));
    let mut w =
        Worker::new(0, &EngineConfig { flow_capacity: 128, max_batch: 64, ..EngineConfig::default() });
    w.set_event_sink(Some(Arc::clone(&sink)));
    let lat = w.latency();
    let mut verdicts = vec![Verdict::Pass; refs.len()];
    let mut released = 0u64;
    let mut now = SEC;
    // Warm up once outside the watch (nothing should need it, but be fair to lazy statics).
    w.process_batch(now, &t1, &refs, &mut verdicts);

    WATCH.with(|w| w.set(true));
    for round in 0..3000u64 {
        now += 1_000_000;
        let t = if (round / 100) % 2 == 0 { &t1 } else { &t2 };
        for chunk_start in (0..refs.len()).step_by(64) {
            let end = (chunk_start + 64).min(refs.len());
            w.process_batch(now, t, &refs[chunk_start..end], &mut verdicts[chunk_start..end]);
            w.drain_released(|b, v| {
                assert!(v.forwards() && !b.is_empty());
                released += 1;
            });
        }
        lat.record(1_000 + round, 64);
        while sink.pop().is_some() {}
        let n = w.flows(5, FlowFilter::default()).count();
        assert!(n <= 5);
        if round % 500 == 0 {
            w.maintain(now, t, 64);
        }
    }
    WATCH.with(|w| w.set(false));
    let allocs = ALLOCS.load(Ordering::Relaxed);
    let snap = w.counters().snapshot();
    assert_eq!(allocs, 0, "allocations on the batch path");
    // The traffic really exercised the paths it claims to.
    assert!(snap.flows_evicted > 0 && snap.flows_revoked > 0 && snap.events_emitted > 0, "{snap:?}");
    assert!(released > 0 && snap.dropped() > 0 && snap.pass > 0);
}
