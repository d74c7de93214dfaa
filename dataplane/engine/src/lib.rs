//! The Bulkhead packet engine: connection tracking, verdicts, counters and latency, with no I/O.
//!
//! CONTRACT (the AF_XDP loop, pcap replay, tests and benches all rely on this):
//! - A [`Worker`] owns all per-core state (flow table, fragment tracker, scratch space) and
//!   allocates all of it in [`Worker::new`]. It is driven by [`Worker::process_batch`] with the
//!   current time injected as `now_ns`, the table set loaded once for the batch, the frames, and a
//!   caller-owned output slice of [`Verdict`]s (one per frame). The batch path never allocates,
//!   never locks, never panics, whatever the bytes.
//! - The engine is clock-free: the I/O loop measures dequeue -> verdict time and records it in the
//!   worker's [`LatencyRecorder`]; counters ([`WorkerCounters`]) are published once per batch.
//! - A table set is applied whole: every packet of a batch is judged by the one `&TableSet` the
//!   caller passed. A flow remembers the generation that judged it and is revalidated against a
//!   newer generation on its next packet (still allowed: continues; now denied: revoked).
//!
//! See DESIGN.md ("Verdict semantics", "Connection tracking", "Parsing and bad input") for the
//! behaviour; the module docs of [`worker`], [`flow`] and [`frag`] state the choices made where
//! the brief is silent.

#![forbid(unsafe_code)]

pub mod counters;
pub mod events;
pub mod flow;
pub mod frag;
pub mod latency;
pub mod worker;

pub use bulkhead_wire::Malformed;
pub use counters::{CountersSnapshot, WorkerCounters};
pub use events::{FlowEvent, FlowEventKind, FlowFilter, FlowSummary, TcpStateName};
pub use latency::{LatencyRecorder, LatencySummary};
pub use worker::Worker;

/// The largest flow table a worker may ask for: 32M flows, about 4 GiB at the measured ~124
/// bytes per flow. A limit on everything: a typo in a capacity must fail at start with a clear
/// message, not abort on a 50 GB allocation.
pub const MAX_FLOW_CAPACITY: u32 = 1 << 25;

/// Sizing and behaviour knobs of one worker, fixed at start (policy-driven knobs such as timeouts
/// and strict TCP live in the table set's `DataplaneConfig` and may change with every swap).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    /// Hard capacity of the flow table (flows). Memory is allocated once for exactly this.
    pub flow_capacity: u32,
    /// Datagrams whose fragments can be tracked at once (first-fragment verdicts, overlap ranges).
    pub frag_slots: u32,
    /// Early (non-first) fragments that can be held, copied, until their first fragment arrives.
    pub frag_hold_slots: u32,
    /// Largest frame (bytes) a hold slot can copy; longer early fragments are dropped.
    pub frag_hold_frame_bytes: u32,
    /// How long a datagram's fragment state and held fragments live (ns).
    pub frag_timeout_ns: u64,
    /// Largest batch `process_batch` accepts; scratch space is sized for it. Longer batches are
    /// processed in chunks of this size.
    pub max_batch: usize,
    /// Flow slots checked for expiry per batch by the incremental sweep.
    pub sweep_per_batch: u32,
    /// A denied (not stored) tuple produces at most one `Denied` flow event per this interval.
    pub deny_log_interval_ns: u64,
    /// Entries of the direct-mapped "recently logged denials" cache (rounded up to a power of 2).
    pub deny_log_slots: u32,
    /// Also emit `Start` / `End` flow events (denied, would-deny and revoked are always emitted).
    pub log_start_end: bool,
    /// Candidates sampled when the flow table is full and a slot must be evicted.
    pub evict_samples: u32,
    /// Plain IPv4 TCP/UDP frames (no VLAN tag, no IP options, not fragments) on established
    /// flows skip the full parse ([`bulkhead_wire::fast`]); verdicts, state and counters are the
    /// same either way (a property test compares both). On by default; off only to compare.
    pub express_lane: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            flow_capacity: 1 << 20,
            frag_slots: 1024,
            frag_hold_slots: 32,
            frag_hold_frame_bytes: 2048,
            frag_timeout_ns: 5_000_000_000,
            max_batch: 256,
            sweep_per_batch: 8,
            deny_log_interval_ns: 10_000_000_000,
            deny_log_slots: 4096,
            log_start_end: false,
            evict_samples: 8,
            express_lane: true,
        }
    }
}

/// What happens to one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Forward.
    Pass,
    /// Forward, but policy would have denied it (monitor mode). Counted and logged.
    WouldDeny,
    /// Do not forward, for this reason.
    Drop(DropReason),
    /// Do not forward now: an early fragment whose bytes the engine copied into a hold slot. It
    /// comes back through [`Worker::drain_released`] once its first fragment decides (or is
    /// dropped and counted when it expires). The caller may recycle the frame's buffer.
    Held,
}

impl Verdict {
    /// True when the frame is to be transmitted (`Pass` or `WouldDeny`).
    #[inline]
    pub fn forwards(self) -> bool {
        matches!(self, Verdict::Pass | Verdict::WouldDeny)
    }

    /// A stable snake_case name (`pass`, `would_deny`, `held`, or the drop reason).
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::WouldDeny => "would_deny",
            Verdict::Held => "held",
            Verdict::Drop(r) => r.as_str(),
        }
    }
}

/// Why a frame was dropped. [`DropReason::index`] is dense (for counter arrays); the first
/// `Malformed::COUNT` indexes are the parser's reasons in their own order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The parser rejected the frame.
    Malformed(Malformed),
    /// No rule allowed the connection.
    DefaultDeny,
    /// A deny rule matched.
    RuleDeny,
    /// Source or destination is quarantined (no exception matched).
    Quarantined,
    /// Illegal TCP flag combination (SYN+FIN, SYN+RST, no flags, FIN without ACK, ...).
    InvalidTcpFlags,
    /// The packet does not fit the connection's state (strict mode mid-stream packet, RST or
    /// non-SYN with no flow, ...).
    InvalidState,
    /// The flow table was full and nothing could be evicted.
    TableFull,
    /// A non-IP ethertype that config does not allow.
    Ethertype,
    /// The flow was allowed by an older generation and the current one denies it.
    Revoked,
    /// A non-first fragment whose first fragment was not seen (hold buffer full, frame too big
    /// to hold, or expired while held).
    FragmentNoFirst,
    /// Fragments of a datagram overlap: the whole datagram is dropped.
    FragmentOverlap,
    /// The fragment tracker is full, or a datagram has too many discontiguous pieces.
    FragmentLimit,
    /// An ICMP error that quotes no live flow, or that does not go back to the quoted sender.
    IcmpErrorNoFlow,
}

impl DropReason {
    /// Number of dense indexes.
    pub const COUNT: usize = Malformed::COUNT + 12;

    const POLICY: [DropReason; 12] = [
        DropReason::DefaultDeny,
        DropReason::RuleDeny,
        DropReason::Quarantined,
        DropReason::InvalidTcpFlags,
        DropReason::InvalidState,
        DropReason::TableFull,
        DropReason::Ethertype,
        DropReason::Revoked,
        DropReason::FragmentNoFirst,
        DropReason::FragmentOverlap,
        DropReason::FragmentLimit,
        DropReason::IcmpErrorNoFlow,
    ];

    /// The dense index, `0..COUNT`.
    #[inline]
    pub fn index(self) -> usize {
        match self {
            DropReason::Malformed(m) => m as usize,
            DropReason::DefaultDeny => Malformed::COUNT,
            DropReason::RuleDeny => Malformed::COUNT + 1,
            DropReason::Quarantined => Malformed::COUNT + 2,
            DropReason::InvalidTcpFlags => Malformed::COUNT + 3,
            DropReason::InvalidState => Malformed::COUNT + 4,
            DropReason::TableFull => Malformed::COUNT + 5,
            DropReason::Ethertype => Malformed::COUNT + 6,
            DropReason::Revoked => Malformed::COUNT + 7,
            DropReason::FragmentNoFirst => Malformed::COUNT + 8,
            DropReason::FragmentOverlap => Malformed::COUNT + 9,
            DropReason::FragmentLimit => Malformed::COUNT + 10,
            DropReason::IcmpErrorNoFlow => Malformed::COUNT + 11,
        }
    }

    /// The reason at a dense index (inverse of [`DropReason::index`]).
    pub fn from_index(i: usize) -> Option<DropReason> {
        if i < Malformed::COUNT {
            Some(DropReason::Malformed(Malformed::ALL[i]))
        } else {
            DropReason::POLICY.get(i - Malformed::COUNT).copied()
        }
    }

    /// Every reason, in index order.
    pub fn all() -> impl Iterator<Item = DropReason> {
        (0..Self::COUNT).filter_map(Self::from_index)
    }

    /// True for the parser's reasons.
    pub fn is_malformed(self) -> bool {
        matches!(self, DropReason::Malformed(_))
    }

    /// A stable snake_case name, used in counters, metrics and flow logs. Parser reasons keep
    /// the parser's own names (`ipv4_bad_ihl`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed(m) => m.as_str(),
            DropReason::DefaultDeny => "default_deny",
            DropReason::RuleDeny => "rule_deny",
            DropReason::Quarantined => "quarantined",
            DropReason::InvalidTcpFlags => "invalid_tcp_flags",
            DropReason::InvalidState => "invalid_state",
            DropReason::TableFull => "table_full",
            DropReason::Ethertype => "ethertype",
            DropReason::Revoked => "revoked",
            DropReason::FragmentNoFirst => "fragment_no_first",
            DropReason::FragmentOverlap => "fragment_overlap",
            DropReason::FragmentLimit => "fragment_limit",
            DropReason::IcmpErrorNoFlow => "icmp_error_no_flow",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_reason_indexes_are_dense_and_round_trip() {
        let all: Vec<DropReason> = DropReason::all().collect();
        assert_eq!(all.len(), DropReason::COUNT);
        for (i, r) in all.iter().enumerate() {
            assert_eq!(r.index(), i);
            assert_eq!(DropReason::from_index(i), Some(*r));
        }
        assert_eq!(DropReason::from_index(DropReason::COUNT), None);
        let mut names: Vec<&str> = all.iter().map(|r| r.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT, "names must be unique");
    }

    #[test]
    fn only_pass_and_would_deny_forward() {
        assert!(Verdict::Pass.forwards());
        assert!(Verdict::WouldDeny.forwards());
        assert!(!Verdict::Held.forwards());
        assert!(!Verdict::Drop(DropReason::DefaultDeny).forwards());
    }
}
