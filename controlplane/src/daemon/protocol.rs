//! The control socket protocol: newline-delimited JSON, one request and one reply per line.
//!
//! Shared by the server ([`super::control`]) and the CLI verbs (`cli::ops`). Documented for
//! SOAR playbooks and other clients in `docs/control-protocol.md`; keep the two in step.
//!
//! A request is an object with a `verb` and the verb's fields; a reply is
//! `{"ok":true,"data":{...}}` or `{"ok":false,"error":"..."}`. Unknown fields are ignored so that
//! newer clients can talk to older daemons.

use super::state::{PolicyInfo, ReloadFailure, RunInfo};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Protocol version reported by `status`.
pub const PROTOCOL_VERSION: u32 = 1;

/// Longest request line the server reads (bytes).
pub const MAX_REQUEST_BYTES: usize = 64 << 10;

/// Default socket path.
pub const DEFAULT_CONTROL_PATH: &str = "/run/bulkhead/control.sock";

/// One request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verb", rename_all = "snake_case")]
pub enum Request {
    Status,
    Stats,
    /// Same semantics as SIGHUP; `path` replaces the policy path for this and later reloads.
    Reload {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<PathBuf>,
    },
    QuarantineAdd {
        /// An address, a CIDR or an identity name.
        target: String,
        /// `CIDR[:[PROTO/]PORT[-PORT]]` exceptions (e.g. a forensics host).
        #[serde(default, rename = "except", skip_serializing_if = "Vec::is_empty")]
        exceptions: Vec<String>,
        /// How long to wait for the first enforced drop before replying (ms; default 2000, max 10000).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        wait_ms: Option<u64>,
    },
    QuarantineRemove {
        target: String,
    },
    QuarantineList,
    Flows {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<usize>,
    },
}

/// One reply line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Reply {
    pub fn ok(data: impl Serialize) -> Self {
        match serde_json::to_value(data) {
            Ok(v) => Reply { ok: true, data: Some(v), error: None },
            Err(e) => Reply::err(format!("cannot encode the reply: {e}")),
        }
    }

    pub fn err(e: impl Into<String>) -> Self {
        Reply { ok: false, data: None, error: Some(e.into()) }
    }
}

/// `status` data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusData {
    pub protocol: u32,
    pub version: String,
    pub pid: u32,
    pub started_at: String,
    pub uptime_s: f64,
    pub run: RunInfo,
    pub policy: PolicyInfo,
    pub policy_age_s: f64,
    pub quarantined: usize,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reload_failure: Option<ReloadFailure>,
}

/// Engine counters, as `stats` reports them (totals or one worker).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountersData {
    pub packets: u64,
    pub bytes: u64,
    pub pass: u64,
    pub would_deny: u64,
    pub dropped: u64,
    /// Drops per reason (stable snake_case names); zero counts are left out.
    pub drops: BTreeMap<String, u64>,
    pub flows_active: u64,
    pub flow_capacity: u64,
    pub flows_created: u64,
    pub flows_evicted: u64,
    pub flows_expired: u64,
    pub flows_revoked: u64,
    pub flows_closed: u64,
    pub frag_held: u64,
    pub frag_released: u64,
    pub events_emitted: u64,
    pub events_dropped: u64,
    pub batches: u64,
    pub generation: u64,
}

impl From<&bulkhead_engine::CountersSnapshot> for CountersData {
    fn from(s: &bulkhead_engine::CountersSnapshot) -> Self {
        CountersData {
            packets: s.packets,
            bytes: s.bytes,
            pass: s.pass,
            would_deny: s.would_deny,
            dropped: s.dropped(),
            drops: s
                .drops_by_reason()
                .filter(|(_, n)| *n != 0)
                .map(|(r, n)| (r.as_str().to_string(), n))
                .collect(),
            flows_active: s.flows_active,
            flow_capacity: s.flow_capacity,
            flows_created: s.flows_created,
            flows_evicted: s.flows_evicted,
            flows_expired: s.flows_expired,
            flows_revoked: s.flows_revoked,
            flows_closed: s.flows_closed,
            frag_held: s.frag_held,
            frag_released: s.frag_released,
            events_emitted: s.events_emitted,
            events_dropped: s.events_dropped,
            batches: s.batches,
            generation: s.generation,
        }
    }
}

/// AF_XDP I/O counters of one direction of one worker.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectionData {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub forwarded: u64,
    pub dropped: u64,
    pub tx_ring_full: u64,
}

/// AF_XDP I/O counters of one worker.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoData {
    pub from_inside: DirectionData,
    pub from_outside: DirectionData,
    pub tx_kicks: u64,
    pub idle_sleeps: u64,
    pub fill_starved: u64,
}

impl From<&bulkhead_xdp::WorkerStats> for IoData {
    fn from(s: &bulkhead_xdp::WorkerStats) -> Self {
        use std::sync::atomic::Ordering::Relaxed;
        let d = |d: &bulkhead_xdp::DirectionStats| DirectionData {
            rx_packets: d.rx_packets.load(Relaxed),
            rx_bytes: d.rx_bytes.load(Relaxed),
            forwarded: d.forwarded.load(Relaxed),
            dropped: d.dropped.load(Relaxed),
            tx_ring_full: d.tx_ring_full.load(Relaxed),
        };
        IoData {
            from_inside: d(&s.from_inside),
            from_outside: d(&s.from_outside),
            tx_kicks: s.tx_kicks.load(Relaxed),
            idle_sleeps: s.idle_sleeps.load(Relaxed),
            fill_starved: s.fill_starved.load(Relaxed),
        }
    }
}

/// One worker in `stats`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkerData {
    pub id: u16,
    pub counters: CountersData,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io: Option<IoData>,
}

/// Percentiles in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PercentilesData {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl PercentilesData {
    pub fn of(h: &hdrhistogram::Histogram<u64>) -> Self {
        let s = bulkhead_engine::LatencySummary::from_histogram(h);
        PercentilesData { count: s.count, p50: s.p50, p90: s.p90, p99: s.p99, p999: s.p999, max: s.max }
    }
}

/// Flow-log counters in `stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowLogData {
    pub enabled: bool,
    pub written: u64,
    /// Records lost: the workers' queues were full (engine `events_dropped`) or a write failed.
    pub dropped: u64,
    pub write_errors: u64,
}

/// `stats` data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatsData {
    pub uptime_s: f64,
    pub generation: u64,
    pub total: CountersData,
    pub workers: Vec<WorkerData>,
    /// Per-packet dequeue -> verdict latency, all workers merged.
    pub latency_ns: PercentilesData,
    pub time_to_contain_ns: PercentilesData,
    pub quarantined: usize,
    pub flow_log: FlowLogData,
    /// Held fragments released by the engine that the AF_XDP loop could not transmit.
    pub frag_released_unsent: u64,
}

/// `reload` data: see [`super::controller::ReloadOutcome`].
pub type ReloadData = super::controller::ReloadOutcome;

/// One quarantine entry, as listed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineData {
    pub target: String,
    pub source: super::state::QuarantineSource,
    #[serde(rename = "except")]
    pub exceptions: Vec<String>,
    /// RFC 3339, runtime entries only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added_at: Option<String>,
    pub generation: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_contain_ns: Option<u64>,
    /// Read back from the quarantine state file at start: enforced from the first generation,
    /// its time to contain (if any) measured before the restart.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restored: bool,
}

/// `quarantine_add` data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineAddData {
    pub entry: QuarantineData,
    /// True when an enforced drop of the target's traffic was seen before the reply.
    pub contained: bool,
    /// `contained`, or `no traffic yet` (the time to contain is recorded when the first drop
    /// happens and shows in `quarantine list`).
    pub note: String,
}

/// `quarantine_remove` data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineRemoveData {
    pub target: String,
    pub generation: u64,
}

/// `quarantine_list` data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuarantineListData {
    pub generation: u64,
    pub entries: Vec<QuarantineData>,
    /// Every exception in force (they apply to all quarantined workloads).
    pub exceptions: Vec<String>,
    pub time_to_contain_ns: PercentilesData,
}

/// One live flow in `flows`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlowData {
    pub worker: u16,
    pub src: String,
    pub dst: String,
    pub transport: String,
    pub sport: u16,
    pub dport: u16,
    /// TCP state (`established`, ...), `none` for other protocols.
    pub state: String,
    pub replied: bool,
    pub would_deny: bool,
    /// `allow`, `rule_deny`, `default_deny`, `quarantined`, `quarantine_exception`.
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    pub src_identity: String,
    pub dst_identity: String,
    pub generation: u64,
    pub packets: u64,
    pub bytes: u64,
    /// Seconds since the flow's last packet.
    pub idle_s: f64,
    pub community_id: String,
}

/// `flows` data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlowsData {
    pub flows: Vec<FlowData>,
    /// Workers that answered in time, out of all workers.
    pub workers_answered: usize,
    pub workers_total: usize,
    /// True when `limit` cut the listing.
    pub truncated: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_in_the_documented_shape() {
        let r: Request = serde_json::from_str(r#"{"verb":"status"}"#).unwrap();
        assert_eq!(r, Request::Status);
        let r: Request = serde_json::from_str(
            r#"{"verb":"quarantine_add","target":"web","except":["198.18.9.9/32:tcp/22"],"future_field":1}"#,
        )
        .unwrap();
        assert_eq!(
            r,
            Request::QuarantineAdd {
                target: "web".into(),
                exceptions: vec!["198.18.9.9/32:tcp/22".into()],
                wait_ms: None
            }
        );
        assert_eq!(serde_json::to_string(&Request::Reload { path: None }).unwrap(), r#"{"verb":"reload"}"#);
        assert_eq!(
            serde_json::to_string(&Request::Flows {
                from: Some("198.18.1.10".into()),
                to: None,
                limit: Some(5)
            })
            .unwrap(),
            r#"{"verb":"flows","from":"198.18.1.10","limit":5}"#
        );
        assert!(serde_json::from_str::<Request>(r#"{"verb":"shutdown"}"#).is_err());
        assert!(
            serde_json::from_str::<Request>(r#"{"verb":"quarantine_add"}"#).is_err(),
            "target is required"
        );
    }

    #[test]
    fn replies_carry_data_or_an_error() {
        assert_eq!(serde_json::to_string(&Reply::err("nope")).unwrap(), r#"{"ok":false,"error":"nope"}"#);
        let ok = Reply::ok(QuarantineRemoveData { target: "x".into(), generation: 3 });
        let v: serde_json::Value = serde_json::from_str(&serde_json::to_string(&ok).unwrap()).unwrap();
        assert_eq!(v, serde_json::json!({"ok": true, "data": {"target": "x", "generation": 3}}));
    }
}
