//! Hot swap (still allowed continues, now denied is revoked, no packet judged by a mixed table),
//! monitor mode (would_deny per flow), quarantine with exceptions and time to contain, flow events.

mod common;

use bulkhead_engine::{DropReason, EngineConfig, FlowEvent, FlowEventKind, FlowFilter, Verdict, Worker};
use bulkhead_tables::{Mode, QuarantineException, TableHandle};
use bulkhead_wire::builder::{tcp, Frame};
use common::*;
use crossbeam_queue::ArrayQueue;
use std::sync::Arc;

fn est(h: &mut Harness, t: &bulkhead_tables::TableSet, sp: u16, dp: u16) {
    let (c, s) = (client(), server());
    assert_eq!(h.send(t, &Frame::tcp(c, s, sp, dp, tcp::SYN).seq(1).build()), Verdict::Pass);
    assert_eq!(h.send(t, &Frame::tcp(s, c, dp, sp, tcp::SYN_ACK).seq(9).ack(2).build()), Verdict::Pass);
    assert_eq!(h.send(t, &Frame::tcp(c, s, sp, dp, tcp::ACK).seq(2).ack(10).build()), Verdict::Pass);
}

fn data(sp: u16, dp: u16, from_server: bool) -> Vec<u8> {
    if from_server {
        Frame::tcp(server(), client(), dp, sp, tcp::ACK).seq(10).ack(2).build()
    } else {
        Frame::tcp(client(), server(), sp, dp, tcp::ACK).seq(2).ack(10).build()
    }
}

fn sink(h: &mut Harness) -> Arc<ArrayQueue<FlowEvent>> {
    let q = Arc::new(ArrayQueue::new(64));
    h.w.set_event_sink(Some(Arc::clone(&q)));
    q
}

fn events(q: &ArrayQueue<FlowEvent>) -> Vec<FlowEvent> {
    std::iter::from_fn(|| q.pop()).collect()
}

#[test]
fn still_allowed_flows_continue_and_now_denied_flows_are_revoked() {
    let g1 = tables(1, &[allow(CLIENT, SERVER, Some(6), (80, 443))]);
    let mut h = Harness::new();
    let q = sink(&mut h);
    est(&mut h, &g1, 40000, 80);
    est(&mut h, &g1, 40001, 443);
    // Generation 2 allows only 80.
    let g2 = tables(2, &[allow(CLIENT, SERVER, Some(6), (80, 80))]);
    assert_eq!(h.send(&g2, &data(40000, 80, true)), Verdict::Pass, "no lost packet for a still-allowed flow");
    assert_eq!(h.send(&g2, &data(40001, 443, true)), drop_(DropReason::Revoked));
    // Cut: the tombstone drops both directions in this generation (the reply is not picked up
    // loosely as a new connection the other way), counted once.
    assert_eq!(h.send(&g2, &data(40001, 443, false)), drop_(DropReason::Revoked), "cut both ways");
    assert_eq!(h.send(&g2, &data(40001, 443, true)), drop_(DropReason::Revoked));
    let s = h.snap();
    assert_eq!((s.flows_revoked, s.generation), (1, 2));
    assert!(
        h.w.flows(10, FlowFilter { port: Some(40001), ..FlowFilter::default() }).next().is_none(),
        "a tombstone is not listed as a flow"
    );
    let f = h.w.flows(10, FlowFilter { port: Some(40000), ..FlowFilter::default() }).next();
    assert_eq!(f.map(|f| f.generation), Some(2), "revalidated flows carry the new generation");
    let ev = events(&q);
    let revoked: Vec<_> = ev.iter().filter(|e| e.kind == FlowEventKind::Revoked).collect();
    assert_eq!(revoked.len(), 1);
    assert_eq!((revoked[0].sport, revoked[0].dport, revoked[0].generation), (40001, 443, 2));
    assert_eq!(revoked[0].verdict, drop_(DropReason::Revoked));
}

/// A cut connection is not revived by its other direction in the generation that cut it, even
/// when that direction is allowed (loose pickup would judge the reply as a new connection the
/// other way); a later generation that allows it again resumes it; a SYN reopens the tuple.
#[test]
fn a_revoked_flow_stays_cut_until_a_later_generation_or_a_new_syn() {
    // g1 allows both directions (client -> server 80 and server:80 -> client, any port).
    let both = |g| {
        tables(g, &[allow(CLIENT, SERVER, Some(6), (80, 80)), allow(SERVER, CLIENT, Some(6), (0, u16::MAX))])
    };
    let g1 = both(1);
    let mut h = Harness::new();
    est(&mut h, &g1, 40000, 80);
    // g2 keeps only server -> client: the client's connection to 80 is revoked.
    let g2 = tables(2, &[allow(SERVER, CLIENT, Some(6), (0, u16::MAX))]);
    assert_eq!(h.send(&g2, &data(40000, 80, true)), drop_(DropReason::Revoked));
    assert_eq!(h.send(&g2, &data(40000, 80, false)), drop_(DropReason::Revoked), "no pickup the other way");
    assert_eq!(h.snap().flows_revoked, 1);
    // g3 allows it again: the connection resumes where it was.
    let g3 = both(3);
    assert_eq!(h.send(&g3, &data(40000, 80, true)), Verdict::Pass);
    assert_eq!(h.send(&g3, &data(40000, 80, false)), Verdict::Pass);
    // Cut again in g4, then a new SYN on the tuple is judged afresh (and denied in g4).
    let g4 = tables(4, &[]);
    assert_eq!(h.send(&g4, &data(40000, 80, true)), drop_(DropReason::Revoked));
    assert_eq!(
        h.send(&g4, &Frame::tcp(client(), server(), 40000, 80, tcp::SYN).build()),
        drop_(DropReason::DefaultDeny)
    );
    assert_eq!(h.snap().flows_revoked, 2);
}

#[test]
fn a_deny_rule_in_a_new_generation_revokes_and_names_the_rule() {
    let g1 = tables(1, &[allow(CLIENT, SERVER, Some(6), (80, 80))]);
    let mut h = Harness::new();
    est(&mut h, &g1, 40000, 80);
    let g2 =
        tables(2, &[allow(CLIENT, SERVER, Some(6), (80, 80)), deny(CLIENT, SERVER, None, (0, u16::MAX))]);
    assert_eq!(h.send(&g2, &data(40000, 80, false)), drop_(DropReason::Revoked));
    assert_eq!(
        h.send(&g2, &Frame::tcp(client(), server(), 40002, 80, tcp::SYN).build()),
        drop_(DropReason::RuleDeny)
    );
}

#[test]
fn every_packet_of_a_batch_is_judged_by_the_table_loaded_for_it() {
    // The worker only ever sees whole table sets: publish between batches through a handle and
    // check that each batch's verdicts are exactly those of the generation loaded for it.
    let handle = TableHandle::new(tables(1, &[allow(CLIENT, SERVER, Some(17), (0, u16::MAX))]));
    let mut w = Worker::new(0, &EngineConfig { flow_capacity: 1024, ..EngineConfig::default() });
    let frames: Vec<Vec<u8>> =
        (0..64).map(|i| Frame::udp(client(), server(), 1000 + i, 53).build()).collect();
    let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
    let mut v = vec![Verdict::Pass; 64];
    for gen in 1..=20u64 {
        let t = handle.load();
        w.process_batch(gen * SEC, &t, &refs, &mut v);
        let expect = if t.generation % 2 == 1 { Verdict::Pass } else { drop_(DropReason::Revoked) };
        // Odd generations allow, even ones deny; a flow revoked in an even one is re-created in
        // the next odd one. Either way, one verdict for the whole batch.
        assert!(v.iter().all(|x| *x == v[0]), "mixed verdicts in generation {gen}: {v:?}");
        if gen > 1 {
            assert_eq!(v[0], expect, "generation {gen}");
        }
        let next = if gen % 2 == 1 {
            tables(gen + 1, &[])
        } else {
            tables(gen + 1, &[allow(CLIENT, SERVER, Some(17), (0, u16::MAX))])
        };
        handle.publish(next).expect("generation increases");
    }
}

#[test]
fn monitor_mode_passes_would_deny_once_per_flow() {
    let mut t = tables(1, &[allow(CLIENT, SERVER, Some(6), (80, 80))]);
    t.global_mode = Mode::Monitor;
    let mut h = Harness::new();
    let q = sink(&mut h);
    // Not allowed, but monitor: passes as would_deny and creates state.
    est_would_deny(&mut h, &t);
    assert_eq!(h.send(&t, &data(40000, 22, true)), Verdict::WouldDeny);
    let s = h.snap();
    assert_eq!((s.would_deny, s.pass, s.flows_created), (4, 0, 1));
    let ev = events(&q);
    assert_eq!(ev.iter().filter(|e| e.kind == FlowEventKind::WouldDeny).count(), 1, "{ev:?}");
    assert!(h.w.flows(10, FlowFilter { would_deny_only: true, ..FlowFilter::default() }).next().is_some());
    // Allowed traffic passes normally.
    est(&mut h, &t, 40001, 80);
    // Switching to enforce revokes the would-deny flow.
    let mut t2 = tables(2, &[allow(CLIENT, SERVER, Some(6), (80, 80))]);
    t2.global_mode = Mode::Enforce;
    assert_eq!(h.send(&t2, &data(40000, 22, true)), drop_(DropReason::Revoked));
    assert_eq!(h.send(&t2, &data(40001, 80, true)), Verdict::Pass);
}

fn est_would_deny(h: &mut Harness, t: &bulkhead_tables::TableSet) {
    let (c, s) = (client(), server());
    assert_eq!(h.send(t, &Frame::tcp(c, s, 40000, 22, tcp::SYN).seq(1).build()), Verdict::WouldDeny);
    assert_eq!(
        h.send(t, &Frame::tcp(s, c, 22, 40000, tcp::SYN_ACK).seq(9).ack(2).build()),
        Verdict::WouldDeny
    );
    assert_eq!(h.send(t, &Frame::tcp(c, s, 40000, 22, tcp::ACK).seq(2).ack(10).build()), Verdict::WouldDeny);
}

#[test]
fn quarantine_cuts_established_flows_except_exceptions_and_records_time_to_contain() {
    let g1 = web_policy(1);
    let mut h = Harness::new();
    let q = sink(&mut h);
    est(&mut h, &g1, 40000, 80);
    let (c, s) = (client(), server());
    assert_eq!(h.send(&g1, &Frame::udp(c, s, 5000, 53).build()), Verdict::Pass);
    // Quarantine the client, with an exception for DNS to the server (a "forensics host").
    let mut g2 = web_policy(2);
    g2.quarantine.identities = vec![CLIENT];
    // A second exception names a port the policy never allowed: it must not open it.
    g2.quarantine.exceptions = vec![
        QuarantineException { peer: (s, 32), proto: Some(17), ports: (53, 53) },
        QuarantineException { peer: (s, 32), proto: Some(17), ports: (5353, 5353) },
    ];
    h.advance(5_000);
    let published_at = h.now;
    h.advance(1_000);
    assert_eq!(h.send(&g2, &data(40000, 80, true)), drop_(DropReason::Quarantined));
    assert_eq!(h.send(&g2, &Frame::udp(s, c, 53, 5000).build()), Verdict::Pass, "exception flow survives");
    assert_eq!(h.send(&g2, &Frame::tcp(c, s, 40005, 80, tcp::SYN).build()), drop_(DropReason::Quarantined));
    // The exception admits connections to the peer's port 53, not the peer's own connections
    // from source port 53 (which would open any port of the quarantined host).
    assert_eq!(
        h.send(&g2, &Frame::tcp(s, c, 53, 22, tcp::SYN).build()),
        drop_(DropReason::Quarantined),
        "peer picks source port 53 to reach ssh"
    );
    assert_eq!(
        h.send(&g2, &Frame::udp(c, s, 5000, 5353).build()),
        drop_(DropReason::Quarantined),
        "an exception exempts only what the policy allows"
    );
    let snap = h.snap();
    assert_eq!(snap.quarantine_first_drop_generation, 2);
    assert_eq!(snap.quarantine_first_drop_ns - published_at, 1_000, "time to contain");
    assert_eq!(snap.drop_count(DropReason::Quarantined), 4);
    let ev = events(&q);
    assert!(ev
        .iter()
        .any(|e| e.kind == FlowEventKind::Revoked && e.verdict == drop_(DropReason::Quarantined)));
    assert!(ev.iter().any(|e| e.kind == FlowEventKind::Denied && e.dport == 80 && e.sport == 40005));
}

#[test]
fn denied_events_are_emitted_once_per_tuple_per_interval_and_a_full_sink_counts_losses() {
    let t = web_policy(1);
    let mut h = Harness::new();
    let q = Arc::new(ArrayQueue::new(4));
    h.w.set_event_sink(Some(Arc::clone(&q)));
    let bad = Frame::tcp(server(), client(), 80, 1234, tcp::SYN).build();
    for _ in 0..100 {
        assert_eq!(h.send(&t, &bad), drop_(DropReason::DefaultDeny));
    }
    assert_eq!(q.len(), 1);
    let e = q.pop().expect("one event");
    assert_eq!(
        (e.kind, e.src, e.dst, e.sport, e.dport),
        (FlowEventKind::Denied, server(), client(), 80, 1234)
    );
    assert_eq!(e.decision, bulkhead_tables::Decision::DefaultDeny);
    h.advance(11 * SEC);
    h.send(&t, &bad);
    assert_eq!(q.len(), 1, "again after the interval");
    for p in 0..10 {
        h.send(&t, &Frame::tcp(server(), client(), 80, 2000 + p, tcp::SYN).build());
    }
    let s = h.snap();
    assert_eq!((s.events_emitted, s.events_dropped), (5, 7), "2 earlier + 3 fit, 7 lost");
}
