//! The express lane changes nothing a user can see: random traffic (TCP with every flag mix,
//! UDP, ICMP, fragments, VLAN-tagged and optioned frames, mutations), time jumps across the
//! timeouts and policy swaps give the same verdicts, deciding rules, counters and flow table
//! with the lane on and off.

mod common;

use bulkhead_engine::{EngineConfig, FlowFilter, Worker};
use bulkhead_tables::TableSet;
use bulkhead_wire::builder::{tcp, Frame};
use common::*;
use proptest::prelude::*;
use std::net::IpAddr;

#[derive(Clone, Debug)]
enum Op {
    /// TCP from host index to host index, ports, flags, seq, payload length, shape.
    Tcp {
        from: usize,
        to: usize,
        sport: u16,
        dport: u16,
        flags: u8,
        seq: u32,
        len: usize,
        shape: u8,
    },
    Udp {
        from: usize,
        to: usize,
        sport: u16,
        dport: u16,
        len: usize,
    },
    Echo {
        from: usize,
        to: usize,
        id: u16,
    },
    /// A fragmented UDP datagram's pieces, in order or reversed.
    Frags {
        from: usize,
        to: usize,
        id: u32,
        reversed: bool,
    },
    /// Overwrite one byte of the previous frame and send it again.
    Mutate {
        at: usize,
        val: u8,
    },
    Advance(u64),
    Swap,
    /// End the current batch.
    Flush,
}

fn hosts() -> [IpAddr; 3] {
    [client(), server(), other()]
}

fn op() -> impl Strategy<Value = Op> {
    let flags = prop_oneof![
        Just(tcp::SYN),
        Just(tcp::SYN_ACK),
        Just(tcp::ACK),
        Just(tcp::ACK),
        Just(tcp::ACK | 0x08),
        Just(tcp::FIN | tcp::ACK),
        Just(tcp::RST),
        Just(tcp::RST | tcp::ACK),
        any::<u8>(),
    ];
    let port = prop_oneof![Just(80u16), Just(53), Just(40000), Just(40001), Just(8080)];
    prop_oneof![
        8 => (0usize..3, 0usize..3, port.clone(), port.clone(), flags, prop_oneof![Just(1000u32), Just(2000), Just(70_000), any::<u32>()], 0usize..40, 0u8..8)
            .prop_map(|(from, to, sport, dport, flags, seq, len, shape)| Op::Tcp { from, to, sport, dport, flags, seq, len, shape }),
        3 => (0usize..3, 0usize..3, port.clone(), port, 0usize..40).prop_map(|(from, to, sport, dport, len)| Op::Udp { from, to, sport, dport, len }),
        1 => (0usize..3, 0usize..3, 0u16..3).prop_map(|(from, to, id)| Op::Echo { from, to, id }),
        1 => (0usize..3, 0usize..3, 0u32..3, any::<bool>()).prop_map(|(from, to, id, reversed)| Op::Frags { from, to, id, reversed }),
        2 => (0usize..60, any::<u8>()).prop_map(|(at, val)| Op::Mutate { at, val }),
        1 => prop_oneof![Just(1_000_000u64), Just(40 * SEC), Just(200 * SEC), Just(10_000 * SEC)].prop_map(Op::Advance),
        1 => Just(Op::Swap),
        2 => Just(Op::Flush),
    ]
}

/// Two policies to swap between: the web policy, and one that also lets the server reach the
/// client on UDP and denies TCP 80.
fn policies() -> [TableSet; 2] {
    [
        web_policy(1),
        tables(
            2,
            &[
                deny(CLIENT, SERVER, Some(6), (80, 80)),
                allow(CLIENT, SERVER, None, (0, u16::MAX)),
                allow(SERVER, CLIENT, Some(17), (0, u16::MAX)),
            ],
        ),
    ]
}

fn frames_of(op: &Op, last: &mut Vec<u8>) -> Vec<Vec<u8>> {
    let h = hosts();
    match *op {
        Op::Tcp { from, to, sport, dport, flags, seq, len, shape } => {
            let mut f =
                Frame::tcp(h[from], h[to], sport, dport, flags).seq(seq).ack(seq ^ 0x55).payload_len(len);
            f = match shape {
                0 => f.vlan(3),
                1 => f.ipv4_options(&[1, 1, 1, 1]),
                2 => f.tcp_options(&[1, 1, 1, 1]),
                _ => f,
            };
            *last = f.pad_to(60).build();
            vec![last.clone()]
        }
        Op::Udp { from, to, sport, dport, len } => {
            *last = Frame::udp(h[from], h[to], sport, dport).payload_len(len).pad_to(60).build();
            vec![last.clone()]
        }
        Op::Echo { from, to, id } => {
            *last = Frame::echo_request(h[from], h[to], id, 1).pad_to(60).build();
            vec![last.clone()]
        }
        Op::Frags { from, to, id, reversed } => {
            let mut v = Frame::udp(h[from], h[to], 40000, 53).ip_id(id).payload(&[9; 100]).fragments(48);
            if reversed {
                v.reverse();
            }
            v
        }
        Op::Mutate { at, val } => {
            if let Some(b) = last.get_mut(at) {
                *b = val;
            }
            vec![last.clone()]
        }
        Op::Advance(_) | Op::Swap | Op::Flush => Vec::new(),
    }
}

fn worker(express_lane: bool) -> Worker {
    Worker::new(
        0,
        &EngineConfig { flow_capacity: 4096, max_batch: 16, express_lane, ..EngineConfig::default() },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn same_verdicts_decisions_counters_and_flows(ops in proptest::collection::vec(op(), 1..120)) {
        let pols = policies();
        let mut lanes = [worker(true), worker(false)];
        let (mut now, mut pol, mut last) = (SEC, 0usize, Vec::new());
        let mut batch: Vec<Vec<u8>> = Vec::new();
        let flush = |lanes: &mut [Worker; 2], batch: &mut Vec<Vec<u8>>, now: u64, pol: usize| -> Result<(), TestCaseError> {
            if batch.is_empty() {
                return Ok(());
            }
            let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
            let mut out = [vec![bulkhead_engine::Verdict::Pass; refs.len()], vec![bulkhead_engine::Verdict::Pass; refs.len()]];
            let mut decisions = [Vec::new(), Vec::new()];
            let mut released = [Vec::new(), Vec::new()];
            for (i, w) in lanes.iter_mut().enumerate() {
                w.process_batch(now, &pols[pol], &refs, &mut out[i]);
                decisions[i] = w.last_decisions().to_vec();
                w.drain_released(|f, v| released[i].push((f.to_vec(), v)));
            }
            prop_assert_eq!(&out[0], &out[1], "verdicts");
            prop_assert_eq!(&decisions[0], &decisions[1], "deciding rules");
            prop_assert_eq!(&released[0], &released[1], "released fragments");
            batch.clear();
            Ok(())
        };
        for op in &ops {
            match op {
                Op::Advance(ns) => { flush(&mut lanes, &mut batch, now, pol)?; now += ns; }
                Op::Swap => { flush(&mut lanes, &mut batch, now, pol)?; pol = 1 - pol; }
                Op::Flush => flush(&mut lanes, &mut batch, now, pol)?,
                _ => batch.extend(frames_of(op, &mut last)),
            }
        }
        flush(&mut lanes, &mut batch, now, pol)?;
        let [a, b] = &lanes;
        prop_assert_eq!(a.counters().snapshot(), b.counters().snapshot(), "counters");
        let fa: Vec<_> = a.flows(usize::MAX, FlowFilter::default()).collect();
        let fb: Vec<_> = b.flows(usize::MAX, FlowFilter::default()).collect();
        prop_assert_eq!(fa, fb, "flow tables");
    }
}
