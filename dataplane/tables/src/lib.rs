//! The compiled table set: the one contract between the control plane and the dataplane.
//!
//! The control plane validates and compiles policy-as-code into a [`TableSet`]; the dataplane only
//! ever reads one. A table set is immutable once built, carries a generation number, and is
//! published atomically through [`TableHandle`]. Workers load the current set once per batch, so no
//! packet is ever judged by a half-built table, and a flow remembers the generation that judged it
//! so it can be revalidated when a newer one appears.
//!
//! Nothing here knows about YAML, files or the CLI: `bulkhead-tables` depends on no crate of the
//! control plane. Tests and benchmarks build table sets directly with the builders below.
//!
//! # Verdict semantics (docs/policy.md "Verdicts, precedence and modes")
//! 1. Quarantine: a packet whose source or destination is quarantined is dropped unless it matches
//!    a quarantine exception *and* the rules below allow it. An exception exempts allowed traffic
//!    from the quarantine; it never grants access the policy does not (quarantine only removes).
//! 2. Each tier (the identity-rule tier and every ordered ACL tier) yields at most one decision:
//!    the identity tier is deny-overrides (any matching deny beats any matching allow), an ACL tier
//!    is first-match in line order.
//! 3. A deny from any tier beats an allow from any tier; no decision at all is the default deny.
//!    When several tiers deny, the most binding deny decides (a rule with explicit `enforce`, then
//!    one inheriting its mode, then explicit `monitor`; ties to the earlier tier), as within the
//!    identity tier.
//! 4. The mode (enforce / monitor) of a decision: the deciding rule's own mode if it has one, else
//!    the destination identity's segment mode, else the source identity's segment mode, else the
//!    global mode. In monitor mode a deny becomes `would_deny` and the packet passes.
//! 5. An explicit `monitor` deny only reports: it lets a packet through only when the policy
//!    without monitor denies would let it through (an allow matches, or that policy's verdict is
//!    in monitor mode). Otherwise that policy's decision stands: typically the enforced default
//!    deny, or an ACL line after the monitor one. Adding a deny rule never lets more through.

#![forbid(unsafe_code)]

pub mod classbench;
pub mod classifier;
pub mod lpm;

use std::net::IpAddr;
use std::sync::Arc;

pub use classifier::{Classifier, ClassifierBuilder, ClassifierKey, ClassifierRule, RuleId};
pub use lpm::{IdentityMap, IdentityMapBuilder};

/// A workload identity, as a dense index into [`TableSet::identity_names`].
pub type IdentityId = u32;

/// The reserved identity of every address that no identity covers.
pub const WORLD: IdentityId = 0;

/// The action of a rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Allow,
    Deny,
}

/// Enforce drops denied packets; monitor lets them pass and reports them as `would_deny`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    #[default]
    Enforce,
    Monitor,
}

/// Per-rule metadata kept beside the classifier, indexed by [`RuleId`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleMeta {
    /// The rule's name as the operator wrote it (for traces, flow logs and metrics). Shared: a
    /// rule that expands to many classifier entries stores its name once.
    pub name: Arc<str>,
    pub action: Action,
    /// `None`: inherit the segment / global mode.
    pub mode: Option<Mode>,
}

/// One tier of the classifier: the identity rules, or one ordered ACL.
#[derive(Clone, Debug)]
pub struct Tier {
    pub name: String,
    pub kind: TierKind,
    pub classifier: Classifier,
}

/// How a tier picks its one decision among the rules that match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TierKind {
    /// Identity rules: keys use identity ids in the address fields; a matching deny beats a
    /// matching allow. (Compiled so that every deny has a lower priority number than every allow,
    /// so "lowest priority number wins" gives deny-overrides.)
    Identity,
    /// A classic ordered 5-tuple ACL over IP addresses: first match in line order wins.
    Acl,
}

/// One quarantine exception: traffic between a quarantined workload and `peer` on these ports
/// still passes (e.g. to a forensics host).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuarantineException {
    /// The peer address range (network address, prefix length).
    pub peer: (IpAddr, u8),
    /// IP protocol number; `None` = any.
    pub proto: Option<u8>,
    /// Inclusive destination-port range on the peer side; (0, 65535) = any.
    pub ports: (u16, u16),
}

/// What is in quarantine in this generation.
#[derive(Clone, Debug, Default)]
pub struct Quarantine {
    /// Quarantined identities, sorted and deduplicated (binary search on the packet path).
    pub identities: Vec<IdentityId>,
    /// Quarantined address ranges (network address, prefix length).
    pub prefixes: Vec<(IpAddr, u8)>,
    pub exceptions: Vec<QuarantineException>,
}

impl Quarantine {
    /// True when nothing is quarantined: the packet path skips every quarantine check.
    pub fn is_empty(&self) -> bool {
        self.identities.is_empty() && self.prefixes.is_empty()
    }
}

/// Dataplane behaviour knobs that come from policy / config, not from the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataplaneConfig {
    /// Loose pickup of mid-stream TCP packets with no state (DESIGN.md): on by default.
    pub strict_tcp: bool,
    /// Non-IP ethertypes passed besides ARP (0x0806), which always passes.
    pub allowed_ethertypes: Vec<u16>,
    /// Timeouts in nanoseconds.
    pub tcp_established_timeout_ns: u64,
    pub tcp_transitory_timeout_ns: u64,
    pub udp_timeout_ns: u64,
    pub icmp_timeout_ns: u64,
    pub other_timeout_ns: u64,
}

impl Default for DataplaneConfig {
    fn default() -> Self {
        const S: u64 = 1_000_000_000;
        Self {
            strict_tcp: false,
            allowed_ethertypes: Vec::new(),
            tcp_established_timeout_ns: 4 * 3600 * S,
            tcp_transitory_timeout_ns: 30 * S,
            udp_timeout_ns: 60 * S,
            icmp_timeout_ns: 30 * S,
            other_timeout_ns: 60 * S,
        }
    }
}

/// An immutable, generation-numbered compiled policy.
///
/// `Clone` is a deep copy of the classifiers and rule metadata but shares the LPM
/// ([`IdentityMap`] clones are O(1)); the incremental compiler keeps two copies and updates the
/// one no worker holds (see `bulkhead_control::incremental`).
#[derive(Clone, Debug)]
pub struct TableSet {
    /// Strictly increasing across publications on one [`TableHandle`].
    pub generation: u64,
    /// Human-readable identity names; index = [`IdentityId`]; index 0 is `world`.
    pub identity_names: Vec<String>,
    /// Per identity: its segment (zone) index into `segment_names`, or `u16::MAX` for none.
    pub identity_segment: Vec<u16>,
    pub segment_names: Vec<String>,
    /// Per segment: its mode override.
    pub segment_mode: Vec<Option<Mode>>,
    pub global_mode: Mode,
    /// Address -> identity, longest prefix match, IPv4 and IPv6.
    pub identities: IdentityMap,
    /// Tiers in evaluation order (see the crate docs for how their decisions combine).
    pub tiers: Vec<Tier>,
    /// Rule metadata per tier: `rules[tier][rule_id]`.
    pub rules: Vec<Vec<RuleMeta>>,
    pub quarantine: Quarantine,
    pub config: DataplaneConfig,
}

/// Why a verdict was reached, for counters, traces and flow logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Allowed by rule `rule` of tier `tier`.
    Allow { tier: u16, rule: RuleId },
    /// Denied by rule `rule` of tier `tier`.
    Deny { tier: u16, rule: RuleId },
    /// No tier decided.
    DefaultDeny,
    /// Source or destination in quarantine, and no exception matched.
    Quarantined,
    /// Quarantined, but a quarantine exception let it through.
    QuarantineException,
}

impl Decision {
    pub fn allows(self) -> bool {
        matches!(self, Decision::Allow { .. } | Decision::QuarantineException)
    }
}

/// The connection-opening 5-tuple a policy judges, in the direction the connection was opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowQuery {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    /// For ICMP / ICMPv6: the type.
    pub sport: u16,
    /// For ICMP / ICMPv6: the code.
    pub dport: u16,
}

/// The full answer for one query: identities, the decision and the effective mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Judgement {
    pub src_identity: IdentityId,
    pub dst_identity: IdentityId,
    pub decision: Decision,
    pub mode: Mode,
}

impl TableSet {
    /// An empty policy (everything is default-denied, enforce mode) with the given generation.
    pub fn empty(generation: u64) -> Self {
        Self {
            generation,
            identity_names: vec!["world".to_string()],
            identity_segment: vec![u16::MAX],
            segment_names: Vec::new(),
            segment_mode: Vec::new(),
            global_mode: Mode::Enforce,
            identities: IdentityMapBuilder::new().build(),
            tiers: Vec::new(),
            rules: Vec::new(),
            quarantine: Quarantine::default(),
            config: DataplaneConfig::default(),
        }
    }

    /// Judges a new connection. This is the function the dataplane calls for every packet that
    /// has no flow state, and the one `bulkhead policy trace` explains.
    #[inline]
    pub fn judge(&self, q: &FlowQuery) -> Judgement {
        let src_identity = self.identities.lookup(q.src);
        let dst_identity = self.identities.lookup(q.dst);
        let decision = self.decide(q, src_identity, dst_identity);
        let mode = self.mode_for(decision, src_identity, dst_identity);
        Judgement { src_identity, dst_identity, decision, mode }
    }

    /// The decision for a query whose identities are already resolved.
    #[inline]
    pub fn decide(&self, q: &FlowQuery, src_id: IdentityId, dst_id: IdentityId) -> Decision {
        if !self.quarantine.is_empty() {
            let (sq, dq) = self.quarantined_sides(q.src, src_id, q.dst, dst_id);
            if sq || dq {
                // An exception only exempts traffic the policy allows: quarantine never grants access.
                let exempt = self.quarantine_exception(q, sq, dq)
                    && matches!(self.decide_rules(q, src_id, dst_id), Decision::Allow { .. });
                return if exempt { Decision::QuarantineException } else { Decision::Quarantined };
            }
        }
        self.decide_rules(q, src_id, dst_id)
    }

    /// The decision of the rule tiers alone (no quarantine).
    #[inline]
    fn decide_rules(&self, q: &FlowQuery, src_id: IdentityId, dst_id: IdentityId) -> Decision {
        match self.decide_tiers(q, src_id, dst_id, false) {
            // An explicit `monitor` deny only reports: it lets a packet through only when the
            // policy without monitor denies would let it through. Otherwise that policy decides
            // (enforced, the packet drops): adding a deny rule must never open traffic.
            d @ (2, _) => {
                let without = self.decide_tiers(q, src_id, dst_id, true).1;
                if !without.allows() && self.mode_for(without, src_id, dst_id) == Mode::Enforce {
                    without
                } else {
                    d.1
                }
            }
            (_, d) => d,
        }
    }

    /// The decision of the rule tiers, and how binding it is (0: a deny with explicit
    /// `enforce`, 1: a deny inheriting its mode, 2: a deny with explicit `monitor`, 3: not a deny).
    /// With `skip_monitor`, explicit `monitor` denies are treated as absent.
    #[inline]
    fn decide_tiers(
        &self,
        q: &FlowQuery,
        src_id: IdentityId,
        dst_id: IdentityId,
        skip_monitor: bool,
    ) -> (u8, Decision) {
        let mut allow: Option<Decision> = None;
        // The most binding deny across tiers (explicit enforce, then inherited mode, then
        // explicit monitor; ties to the earlier tier): a monitor-mode deny in one tier must not
        // soften an enforced deny in another.
        let mut deny: Option<(u8, Decision)> = None;
        for (t, tier) in self.tiers.iter().enumerate() {
            let key = match tier.kind {
                TierKind::Identity => {
                    ClassifierKey { src: src_id, dst: dst_id, proto: q.proto, sport: q.sport, dport: q.dport }
                }
                TierKind::Acl => match (q.src, q.dst) {
                    (IpAddr::V4(s), IpAddr::V4(d)) => ClassifierKey {
                        src: u32::from(s),
                        dst: u32::from(d),
                        proto: q.proto,
                        sport: q.sport,
                        dport: q.dport,
                    },
                    // ACL tiers are IPv4 5-tuple ACLs; IPv6 traffic is left to the other tiers.
                    _ => continue,
                },
            };
            let metas = &self.rules[t];
            let hit = if skip_monitor {
                tier.classifier.classify_where(&key, |r| {
                    let m = &metas[r as usize];
                    !(m.action == Action::Deny && m.mode == Some(Mode::Monitor))
                })
            } else {
                tier.classifier.classify(&key)
            };
            if let Some(rule) = hit {
                let meta = &metas[rule as usize];
                match meta.action {
                    Action::Deny => {
                        let binding = match meta.mode {
                            Some(Mode::Enforce) => 0,
                            None => 1,
                            Some(Mode::Monitor) => 2,
                        };
                        let d = Decision::Deny { tier: t as u16, rule };
                        if binding == 0 {
                            return (0, d);
                        }
                        if deny.is_none_or(|(b, _)| binding < b) {
                            deny = Some((binding, d));
                        }
                    }
                    Action::Allow => {
                        if allow.is_none() {
                            allow = Some(Decision::Allow { tier: t as u16, rule });
                        }
                    }
                }
            }
        }
        match deny {
            Some(d) => d,
            None => (3, allow.unwrap_or(Decision::DefaultDeny)),
        }
    }

    /// The effective mode of a decision (see the crate docs). Quarantine is always enforced.
    #[inline]
    pub fn mode_for(&self, d: Decision, src_id: IdentityId, dst_id: IdentityId) -> Mode {
        match d {
            Decision::Quarantined | Decision::QuarantineException => return Mode::Enforce,
            Decision::Allow { tier, rule } | Decision::Deny { tier, rule } => {
                if let Some(m) = self.rules[tier as usize][rule as usize].mode {
                    return m;
                }
            }
            Decision::DefaultDeny => {}
        }
        self.segment_mode_of(dst_id).or_else(|| self.segment_mode_of(src_id)).unwrap_or(self.global_mode)
    }

    fn segment_mode_of(&self, id: IdentityId) -> Option<Mode> {
        let seg = *self.identity_segment.get(id as usize)?;
        self.segment_mode.get(seg as usize).copied().flatten()
    }

    /// Whether each side is quarantined: (source, destination).
    fn quarantined_sides(
        &self,
        src: IpAddr,
        src_id: IdentityId,
        dst: IpAddr,
        dst_id: IdentityId,
    ) -> (bool, bool) {
        let q = &self.quarantine;
        let id_hit = |id: IdentityId| id != WORLD && q.identities.binary_search(&id).is_ok();
        let prefix_hit = |a: IpAddr| q.prefixes.iter().any(|&(net, len)| prefix_contains(net, len, a));
        (id_hit(src_id) || prefix_hit(src), id_hit(dst_id) || prefix_hit(dst))
    }

    /// Whether the quarantined side of `q` talks to an exception peer: a quarantined source needs
    /// the destination to be a peer (on the exception's protocol and destination ports), a
    /// quarantined destination needs the source to be a peer of an exception without ports; a
    /// quarantined host is nobody's peer, so two quarantined hosts never talk. An
    /// exception with ports (or a protocol) admits only connections *to* the peer's service; their
    /// replies pass through connection tracking, and revalidation judges a flow in its opening
    /// direction. (Matching the peer's *source* port instead would let the peer open any port on
    /// the quarantined host by choosing that source port.) The quarantined host itself being
    /// inside an exception's prefix exempts nothing.
    fn quarantine_exception(&self, q: &FlowQuery, src_quarantined: bool, dst_quarantined: bool) -> bool {
        let exc = &self.quarantine.exceptions;
        let to_peer = || {
            exc.iter().any(|e| {
                e.proto.is_none_or(|p| p == q.proto)
                    && prefix_contains(e.peer.0, e.peer.1, q.dst)
                    && q.dport >= e.ports.0
                    && q.dport <= e.ports.1
            })
        };
        let from_peer = || {
            exc.iter().any(|e| {
                e.proto.is_none() && e.ports == (0, u16::MAX) && prefix_contains(e.peer.0, e.peer.1, q.src)
            })
        };
        // A peer is a host outside the quarantine: two quarantined hosts never talk, whatever
        // prefix an exception names.
        match (src_quarantined, dst_quarantined) {
            (true, true) => false,
            (true, false) => to_peer(),
            (false, true) => from_peer(),
            (false, false) => true,
        }
    }

    /// Name of the rule behind a decision, if a rule decided.
    pub fn rule_name(&self, d: Decision) -> Option<&str> {
        match d {
            Decision::Allow { tier, rule } | Decision::Deny { tier, rule } => {
                self.rules.get(tier as usize)?.get(rule as usize).map(|m| &*m.name)
            }
            _ => None,
        }
    }

    pub fn identity_name(&self, id: IdentityId) -> &str {
        self.identity_names.get(id as usize).map_or("unknown", String::as_str)
    }
}

/// True when `addr` lies in `net/len` (address families must agree).
pub fn prefix_contains(net: IpAddr, len: u8, addr: IpAddr) -> bool {
    match (net, addr) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let len = u32::from(len.min(32));
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            (u32::from(n) & mask) == (u32::from(a) & mask)
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let len = u32::from(len.min(128));
            let mask = if len == 0 { 0 } else { u128::MAX << (128 - len) };
            (u128::from(n) & mask) == (u128::from(a) & mask)
        }
        _ => false,
    }
}

/// Publishes table sets to workers: one writer (the control plane), many readers (workers).
///
/// Readers call [`TableHandle::load`] once per batch and keep the `Arc` for the batch, so a swap
/// in the middle of a batch takes effect at the next batch boundary. The swap is a single atomic
/// pointer store (`arc-swap`); readers never block and never see a partially built set.
#[derive(Debug)]
pub struct TableHandle {
    current: arc_swap::ArcSwap<TableSet>,
}

impl TableHandle {
    pub fn new(initial: TableSet) -> Self {
        Self { current: arc_swap::ArcSwap::from_pointee(initial) }
    }

    /// The current table set. Cheap; call once per batch.
    #[inline]
    pub fn load(&self) -> Arc<TableSet> {
        self.current.load_full()
    }

    /// Publishes `next`. Its generation must be greater than the current one.
    ///
    /// # Errors
    /// Refuses a set whose generation does not increase (the running one stays).
    pub fn publish(&self, next: TableSet) -> Result<u64, PublishError> {
        let cur = self.current.load();
        if next.generation <= cur.generation {
            return Err(PublishError { current: cur.generation, offered: next.generation });
        }
        let g = next.generation;
        self.current.store(Arc::new(next));
        Ok(g)
    }

    /// Publishes a table set the caller keeps a reference to (the incremental compiler's
    /// left-right pair: it later updates this same allocation in place once no reader holds it).
    ///
    /// # Errors
    /// Refuses a set whose generation does not increase (the running one stays).
    pub fn publish_arc(&self, next: Arc<TableSet>) -> Result<u64, PublishError> {
        let cur = self.current.load();
        if next.generation <= cur.generation {
            return Err(PublishError { current: cur.generation, offered: next.generation });
        }
        let g = next.generation;
        self.current.store(next);
        Ok(g)
    }

    pub fn generation(&self) -> u64 {
        self.current.load().generation
    }
}

/// A table set whose generation does not move forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublishError {
    pub current: u64,
    pub offered: u64,
}

impl std::fmt::Display for PublishError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "table generation {} is not newer than the running generation {}",
            self.offered, self.current
        )
    }
}

impl std::error::Error for PublishError {}
