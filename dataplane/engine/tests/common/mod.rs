//! Shared helpers for the engine's integration tests: small table sets built directly, and a
//! harness that feeds frames one batch at a time with injected time.
#![allow(dead_code)] // each test binary uses a different subset

use bulkhead_engine::{CountersSnapshot, DropReason, EngineConfig, Verdict, Worker};
use bulkhead_tables::{
    Action, ClassifierBuilder, ClassifierRule, IdentityId, IdentityMapBuilder, Mode, RuleMeta, TableSet,
    Tier, TierKind,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const SEC: u64 = 1_000_000_000;

/// The client (identity 1) and server (identity 2) of most scenarios, plus a third host (3).
pub fn client() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1))
}
pub fn server() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 19, 0, 1))
}
pub fn other() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 18, 9, 9))
}
pub fn client6() -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0x2001, 0x2, 0, 0, 0, 0, 0, 1))
}
pub fn server6() -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0x2001, 0x2, 0, 1, 0, 0, 0, 1))
}
pub const CLIENT: IdentityId = 1;
pub const SERVER: IdentityId = 2;
pub const OTHER: IdentityId = 3;

/// One identity rule: `src -> dst` on `proto` (None = any) and destination ports.
#[derive(Clone, Copy, Debug)]
pub struct R {
    pub src: IdentityId,
    pub dst: IdentityId,
    pub proto: Option<u8>,
    pub dports: (u16, u16),
    pub action: Action,
    pub mode: Option<Mode>,
}

pub fn allow(src: IdentityId, dst: IdentityId, proto: Option<u8>, dports: (u16, u16)) -> R {
    R { src, dst, proto, dports, action: Action::Allow, mode: None }
}

pub fn deny(src: IdentityId, dst: IdentityId, proto: Option<u8>, dports: (u16, u16)) -> R {
    R { src, dst, proto, dports, action: Action::Deny, mode: None }
}

/// A table set with the identities client / server / other (IPv4 and IPv6) and `rules` as one
/// identity tier (deny-overrides: denies get lower priority numbers).
pub fn tables(generation: u64, rules: &[R]) -> TableSet {
    let mut ts = TableSet::empty(generation);
    let mut idb = IdentityMapBuilder::new();
    idb.insert(client(), 32, CLIENT);
    idb.insert(server(), 32, SERVER);
    idb.insert(other(), 32, OTHER);
    idb.insert(client6(), 128, CLIENT);
    idb.insert(server6(), 128, SERVER);
    ts.identities = idb.build();
    ts.identity_names = vec!["world".into(), "client".into(), "server".into(), "other".into()];
    ts.identity_segment = vec![u16::MAX; 4];
    let mut cb = ClassifierBuilder::new();
    let mut metas = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        let any = |id: IdentityId| if id == u32::MAX { (0, u32::MAX) } else { (id, id) };
        let base = if r.action == Action::Deny { 0 } else { 1_000_000 };
        cb.push(ClassifierRule {
            src: any(r.src),
            dst: any(r.dst),
            proto: r.proto.map_or((0, 0), |p| (p, 0xff)),
            sport: (0, u16::MAX),
            dport: r.dports,
            priority: base + i as u32,
        });
        metas.push(RuleMeta { name: format!("rule{i}").into(), action: r.action, mode: r.mode });
    }
    ts.tiers = vec![Tier { name: "identity".into(), kind: TierKind::Identity, classifier: cb.build() }];
    ts.rules = vec![metas];
    ts
}

/// Client may open TCP 80 and UDP 53 and ping the server; nothing else.
pub fn web_policy(generation: u64) -> TableSet {
    tables(
        generation,
        &[
            allow(CLIENT, SERVER, Some(6), (80, 80)),
            allow(CLIENT, SERVER, Some(17), (53, 53)),
            allow(CLIENT, SERVER, Some(132), (9000, 9000)),
            allow(CLIENT, SERVER, Some(1), (0, u16::MAX)),
            allow(CLIENT, SERVER, Some(58), (0, u16::MAX)),
        ],
    )
}

pub struct Harness {
    pub w: Worker,
    pub now: u64,
}

impl Harness {
    pub fn new() -> Self {
        Self::with(EngineConfig { flow_capacity: 4096, ..EngineConfig::default() })
    }

    pub fn with(cfg: EngineConfig) -> Self {
        Self { w: Worker::new(0, &cfg), now: SEC }
    }

    /// One frame, one batch.
    pub fn send(&mut self, t: &TableSet, frame: &[u8]) -> Verdict {
        let mut v = [Verdict::Pass];
        self.w.process_batch(self.now, t, &[frame], &mut v);
        v[0]
    }

    /// Frames as one batch.
    pub fn batch(&mut self, t: &TableSet, frames: &[Vec<u8>]) -> Vec<Verdict> {
        let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        let mut v = vec![Verdict::Pass; frames.len()];
        self.w.process_batch(self.now, t, &refs, &mut v);
        v
    }

    pub fn advance(&mut self, ns: u64) {
        self.now += ns;
    }

    pub fn snap(&self) -> CountersSnapshot {
        self.w.counters().snapshot()
    }
}

pub fn drop_(r: DropReason) -> Verdict {
    Verdict::Drop(r)
}
