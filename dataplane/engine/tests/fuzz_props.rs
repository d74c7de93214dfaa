//! Property tests: random and mutated frames never panic the engine and always get a verdict,
//! and the counters account for every frame.

mod common;

use bulkhead_engine::{EngineConfig, Verdict, Worker};
use bulkhead_wire::builder::{icmp, tcp, Ext, Frame};
use common::*;
use proptest::prelude::*;

fn seeds() -> Vec<Vec<u8>> {
    let (c, s) = (client(), server());
    let q = Frame::tcp(c, s, 1, 80, tcp::SYN);
    let mut v = vec![
        Frame::tcp(c, s, 40000, 80, tcp::SYN).build(),
        Frame::tcp(s, c, 80, 40000, tcp::SYN_ACK).vlan(10).vlan(20).build(),
        Frame::tcp(c, s, 40000, 80, tcp::ACK).ipv4_options(&[1, 1, 1, 0]).payload(&[7; 40]).build(),
        Frame::udp(c, s, 5353, 53).payload(&[1; 30]).build(),
        Frame::udp(client6(), server6(), 5353, 53)
            .ext(Ext::HopByHop { len8: 0 })
            .ext(Ext::DestOpts { len8: 1 })
            .build(),
        Frame::sctp(c, s, 7000, 9000).build(),
        Frame::echo_request(c, s, 9, 1).build(),
        Frame::echo_request(client6(), server6(), 9, 1).build(),
        Frame::icmp_error(s, c, icmp::V4_DEST_UNREACH, 1, &q).build(),
        Frame::icmp(client6(), server6(), 135, 0).payload(&[0; 20]).build(),
        Frame::ethertype(0x88cc).payload(&[0; 46]).build(),
    ];
    v.extend(Frame::udp(c, s, 1, 53).ip_id(5).payload(&[3; 300]).fragments(64));
    v.extend(Frame::udp(client6(), server6(), 1, 53).ip_id(6).payload(&[3; 300]).fragments(64));
    v
}

#[derive(Clone, Debug)]
enum Mutation {
    Set(usize, u8),
    Truncate(usize),
    Insert(usize, u8),
}

fn mutated() -> impl Strategy<Value = Vec<u8>> {
    let n = seeds().len();
    (
        0..n,
        prop::collection::vec(
            prop_oneof![
                (0usize..200, any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
                (0usize..200).prop_map(Mutation::Truncate),
                (0usize..200, any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
            ],
            0..8,
        ),
    )
        .prop_map(|(i, muts)| {
            let mut f = seeds().swap_remove(i);
            for m in muts {
                match m {
                    Mutation::Set(i, b) => {
                        if !f.is_empty() {
                            let j = i % f.len();
                            f[j] = b;
                        }
                    }
                    Mutation::Truncate(n) => f.truncate(n),
                    Mutation::Insert(i, b) => {
                        let j = i.min(f.len());
                        f.insert(j, b);
                    }
                }
            }
            f
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_batch_of_frames_gets_a_verdict_each(
        frames in prop::collection::vec(
            prop_oneof![mutated(), prop::collection::vec(any::<u8>(), 0..200)],
            1..40,
        ),
        monitor in any::<bool>(),
        strict in any::<bool>(),
    ) {
        let mut t = web_policy(1);
        if monitor { t.global_mode = bulkhead_tables::Mode::Monitor; }
        t.config.strict_tcp = strict;
        let mut w = Worker::new(0, &EngineConfig { flow_capacity: 32, frag_slots: 4, frag_hold_slots: 2, max_batch: 16, ..EngineConfig::default() });
        let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        // A sentinel the engine must overwrite for every frame.
        let sentinel = Verdict::Drop(bulkhead_engine::DropReason::FragmentLimit);
        let mut v = vec![sentinel; refs.len()];
        for round in 0..3u64 {
            v.fill(sentinel);
            w.process_batch(SEC + round * 40 * SEC, &t, &refs, &mut v);
            let mut released = 0;
            w.drain_released(|_, _| released += 1);
            let s = w.counters().snapshot();
            prop_assert_eq!(s.packets, (round + 1) * refs.len() as u64);
            prop_assert_eq!(s.pass + s.would_deny + s.dropped() + s.frag_held, s.packets);
        }
        // The frames that cannot be fragment-limited are not left at the sentinel.
        for (f, v) in frames.iter().zip(v.iter()) {
            if f.len() < 14 {
                prop_assert!(matches!(v, Verdict::Drop(bulkhead_engine::DropReason::Malformed(_))));
            }
        }
    }
}
