//! The steady-state workload shared by the criterion bench (`benches/engine.rs`) and the
//! profiling driver (`examples/steady.rs`): one server allowed on TCP 80, and 64-byte ACK frames
//! of established flows from 198.18.0.0/16 clients, in a shuffled order.
#![allow(dead_code)] // each user takes a subset

use bulkhead_tables::{
    Action, ClassifierBuilder, ClassifierRule, IdentityMapBuilder, RuleMeta, TableSet, Tier, TierKind,
};
use bulkhead_wire::builder::{tcp, Frame};
use std::net::{IpAddr, Ipv4Addr};

pub const FRAME: usize = 64;
pub const BATCH: usize = 64;

pub fn server() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 19, 255, 1))
}

/// Identity 1 (`server`) accepts TCP 80 from anyone.
pub fn policy() -> TableSet {
    let mut ts = TableSet::empty(1);
    let mut idb = IdentityMapBuilder::new();
    idb.insert(server(), 32, 1);
    ts.identities = idb.build();
    ts.identity_names = vec!["world".into(), "server".into()];
    ts.identity_segment = vec![u16::MAX; 2];
    let mut cb = ClassifierBuilder::new();
    cb.push(ClassifierRule { dst: (1, 1), proto: (6, 0xff), dport: (80, 80), ..ClassifierRule::any(1) });
    ts.tiers = vec![Tier { name: "identity".into(), kind: TierKind::Identity, classifier: cb.build() }];
    ts.rules = vec![vec![RuleMeta { name: "web".into(), action: Action::Allow, mode: None }]];
    ts
}

/// The numbers `0..n` shuffled (xorshift; the same order every run).
pub fn shuffled(n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for i in (1..n).rev() {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        order.swap(i, (rng % (i as u64 + 1)) as usize);
    }
    order
}

/// Flow `i`'s established ACK, from the client (`reply == false`) or from the server.
pub fn frame(i: usize, reply: bool) -> Vec<u8> {
    let host = IpAddr::V4(Ipv4Addr::from(0xC612_0000u32 + (i as u32 % 0x1_0000))); // 198.18.0.0/16
    let sport = 1024 + (i / 0x1_0000) as u16;
    let f = if reply {
        Frame::tcp(server(), host, 80, sport, tcp::ACK).seq(2000).ack(1000)
    } else {
        Frame::tcp(host, server(), sport, 80, tcp::ACK).seq(1000).ack(2000)
    };
    let f = f.pad_to(FRAME).build();
    assert_eq!(f.len(), FRAME);
    f
}
