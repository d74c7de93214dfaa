//! Flow events (for flow logs) and flow summaries (for `bulkhead flows`).
//!
//! Events go to an optional bounded sink (`Arc<ArrayQueue<FlowEvent>>`) set with
//! [`crate::Worker::set_event_sink`]; the worker never blocks on it: a full queue bumps
//! `events_dropped`. What is emitted:
//! - `Denied`: a packet the policy drops (default deny, rule deny, quarantine). Denied packets
//!   create no flow, so the worker remembers recently logged denied tuples in a small
//!   direct-mapped cache and emits at most one event per tuple per `deny_log_interval_ns`
//!   (a hash collision may let an extra event through, never suppress a new tuple for longer).
//! - `WouldDeny`: once per flow, when a monitor-mode flow that policy would deny is created.
//! - `Revoked`: once per flow, when a newer generation denies an established flow.
//! - `Start` / `End`: when `EngineConfig::log_start_end` is set (End on expiry, eviction, close).
//!
//! The tuple of every event is in the direction the connection was opened (for `Denied`, the
//! denied packet's direction).

use crate::Verdict;
use bulkhead_tables::{Decision, IdentityId, Mode};
use std::net::IpAddr;

/// Why an event was emitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FlowEventKind {
    Denied,
    WouldDeny,
    Revoked,
    Start,
    End,
}

impl FlowEventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FlowEventKind::Denied => "denied",
            FlowEventKind::WouldDeny => "would_deny",
            FlowEventKind::Revoked => "revoked",
            FlowEventKind::Start => "start",
            FlowEventKind::End => "end",
        }
    }
}

/// One flow-log record. `Copy`, no heap: the control plane turns it into JSON off the hot path
/// (rule names and identity names come from the table set of `generation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowEvent {
    /// `now_ns` of the batch that produced it.
    pub ts_ns: u64,
    pub kind: FlowEventKind,
    pub worker: u16,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    /// Ports; ICMP echo: the identifier in both; other ICMP: type and code.
    pub sport: u16,
    pub dport: u16,
    /// The verdict given to the packet that produced the event (End: the flow's last one).
    pub verdict: Verdict,
    /// The decision (tier and rule id, or default deny / quarantine) that judged the flow.
    pub decision: Decision,
    pub mode: Mode,
    pub src_identity: IdentityId,
    pub dst_identity: IdentityId,
    /// Generation of the table set that decided.
    pub generation: u64,
    /// Packets and bytes of the flow so far (Denied: 1 and the frame length).
    pub packets: u64,
    pub bytes: u64,
}

/// The TCP state of a flow, as shown to operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TcpStateName {
    /// Not TCP (UDP, ICMP, SCTP, other: a pseudo-connection).
    None,
    SynSent,
    SynReceived,
    Established,
    FinWait,
    TimeWait,
    Closed,
}

impl TcpStateName {
    pub fn as_str(self) -> &'static str {
        match self {
            TcpStateName::None => "none",
            TcpStateName::SynSent => "syn_sent",
            TcpStateName::SynReceived => "syn_received",
            TcpStateName::Established => "established",
            TcpStateName::FinWait => "fin_wait",
            TcpStateName::TimeWait => "time_wait",
            TcpStateName::Closed => "closed",
        }
    }
}

/// One live flow, as `bulkhead flows` lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowSummary {
    /// Opening direction.
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    pub tcp_state: TcpStateName,
    /// True when the reverse direction has been seen.
    pub replied: bool,
    /// Monitor mode: the policy would deny this flow; it passes.
    pub would_deny: bool,
    pub decision: Decision,
    pub mode: Mode,
    pub src_identity: IdentityId,
    pub dst_identity: IdentityId,
    pub generation: u64,
    pub packets: u64,
    pub bytes: u64,
    pub last_seen_ns: u64,
}

/// Which flows [`crate::Worker::flows`] returns; every set field must match.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowFilter {
    /// Either endpoint.
    pub addr: Option<IpAddr>,
    /// Either port.
    pub port: Option<u16>,
    pub proto: Option<u8>,
    /// Either identity.
    pub identity: Option<IdentityId>,
    pub would_deny_only: bool,
}

impl FlowFilter {
    pub fn matches(&self, f: &FlowSummary) -> bool {
        self.addr.is_none_or(|a| f.src == a || f.dst == a)
            && self.port.is_none_or(|p| f.sport == p || f.dport == p)
            && self.proto.is_none_or(|p| f.proto == p)
            && self.identity.is_none_or(|i| f.src_identity == i || f.dst_identity == i)
            && (!self.would_deny_only || f.would_deny)
    }
}
