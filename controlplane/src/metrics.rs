//! Prometheus text exposition (format 0.0.4) of a running firewall, and a tiny HTTP server for it.
//!
//! # Contract
//! - [`render`] is a pure function of what it reads: `render(&State, Option<&Kpis>)` takes one
//!   [`Snapshot`] of the shared [`State`] (lock-free counter reads, two short mutex sections) and
//!   [`render_snapshot`] turns a snapshot into text, so tests render fake snapshots byte for byte.
//! - Names follow the Prometheus conventions: `bulkhead_` prefix, counters end in `_total`, base
//!   units (`_seconds`, `_bytes`), and only low-cardinality labels: `worker` (one per core),
//!   `reason` (the fixed drop-reason list), `verdict`, `decision`, `zone_pair` (zones are few; past
//!   [`MAX_ZONE_PAIRS`] distinct pairs the rest is folded into `zone_pair="other"`). Every metric is
//!   documented in `docs/metrics.md`.
//! - Latency and time to contain are histograms with fixed `le` buckets (seconds), derived from
//!   the HdrHistograms the workers and the quarantine book keep (3 significant digits: a value
//!   sits in the bucket its HdrHistogram bucket lies in, an error below 0.1 %); `_sum` is the
//!   histogram's mean times its count.
//! - KPIs from the seed (blocked lateral movement, enforcement success) need flow events, which
//!   only the flow-event drain sees: it calls [`Kpis::observe`] for every event, and the families
//!   `bulkhead_denied_attempts_total` and `bulkhead_flow_decisions_total` come from that [`Kpis`].
//!   A denied attempt is one `Denied` event: the engine emits at most one per tuple per
//!   `deny_log_interval` (10 s), so a client retrying its SYN counts once per interval, not per
//!   retransmission.
//! - [`serve`] binds where it is told; [`parse_listen_addr`] turns a bare port into a loopback
//!   address, so nothing listens beyond the host unless the operator writes an address. The server
//!   is read-only: `GET /metrics` (and `HEAD`), `GET /` (a pointer), everything else 404/405.

use crate::daemon::State;
use bulkhead_engine::{CountersSnapshot, DropReason, FlowEvent, FlowEventKind};
use bulkhead_tables::{Decision, IdentityId, TableSet, WORLD};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read as _, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Distinct zone pairs tracked before folding the rest into `other`.
pub const MAX_ZONE_PAIRS: usize = 1024;

/// Upper bounds (seconds) of the per-packet latency buckets.
pub const LATENCY_BUCKETS: &[f64] = &[
    1e-6, 2e-6, 5e-6, 10e-6, 20e-6, 50e-6, 100e-6, 200e-6, 500e-6, 1e-3, 2e-3, 5e-3, 10e-3, 50e-3, 100e-3,
    1.0,
];

/// Upper bounds (seconds) of the time-to-contain buckets.
pub const CONTAIN_BUCKETS: &[f64] =
    &[1e-4, 1e-3, 1e-2, 5e-2, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

// ---------------------------------------------------------------------------------------------
// KPIs fed by the flow-event drain
// ---------------------------------------------------------------------------------------------

/// Policy decisions counted per new connection (see [`Kpis`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FlowDecision {
    /// Allowed by a rule (derived: flows created minus would-deny flows).
    ExplicitAllow,
    /// Passed in monitor mode although policy denies it.
    WouldDeny,
    DefaultDeny,
    RuleDeny,
    Quarantined,
}

impl FlowDecision {
    pub fn as_str(self) -> &'static str {
        match self {
            FlowDecision::ExplicitAllow => "explicit_allow",
            FlowDecision::WouldDeny => "would_deny",
            FlowDecision::DefaultDeny => "default_deny",
            FlowDecision::RuleDeny => "rule_deny",
            FlowDecision::Quarantined => "quarantined",
        }
    }
}

#[derive(Debug, Default)]
struct KpiInner {
    zone_pairs: BTreeMap<String, u64>,
    default_deny: u64,
    rule_deny: u64,
    quarantined: u64,
    would_deny_flows: u64,
}

/// KPI counters fed from flow events by the drain thread ([`Kpis::observe`]); read by [`render`].
#[derive(Debug, Default)]
pub struct Kpis {
    inner: Mutex<KpiInner>,
}

/// A copy of the KPI counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KpiSnapshot {
    /// Denied attempts per `src_zone->dst_zone` (zone `none` for identities without a zone,
    /// `world` for addresses no identity covers).
    pub denied_by_zone_pair: BTreeMap<String, u64>,
    pub default_deny: u64,
    pub rule_deny: u64,
    pub quarantined: u64,
    /// Flows created (or revalidated) as would-deny in monitor mode.
    pub would_deny_flows: u64,
}

/// The zone of an identity in a table set: its segment name, `world`, or `none`.
pub fn zone_of(tables: &TableSet, id: IdentityId) -> &str {
    if id == WORLD {
        return "world";
    }
    match tables.identity_segment.get(id as usize) {
        Some(&seg) if seg != u16::MAX => {
            tables.segment_names.get(seg as usize).map_or("none", String::as_str)
        }
        _ => "none",
    }
}

impl Kpis {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one flow event. `tables` must be the table set of `ev.generation` (for zone names);
    /// call off the packet path (the drain thread).
    pub fn observe(&self, ev: &FlowEvent, tables: &TableSet) {
        let mut k = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match ev.kind {
            FlowEventKind::Denied => {
                match ev.decision {
                    Decision::Quarantined => k.quarantined += 1,
                    Decision::Deny { .. } => k.rule_deny += 1,
                    _ => k.default_deny += 1,
                }
                let pair =
                    format!("{}->{}", zone_of(tables, ev.src_identity), zone_of(tables, ev.dst_identity));
                let n = k.zone_pairs.len();
                match k.zone_pairs.get_mut(&pair) {
                    Some(c) => *c += 1,
                    None if n < MAX_ZONE_PAIRS => {
                        k.zone_pairs.insert(pair, 1);
                    }
                    None => *k.zone_pairs.entry("other".to_string()).or_default() += 1,
                }
            }
            FlowEventKind::WouldDeny => k.would_deny_flows += 1,
            FlowEventKind::Revoked | FlowEventKind::Start | FlowEventKind::End => {}
        }
    }

    pub fn snapshot(&self) -> KpiSnapshot {
        let k = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        KpiSnapshot {
            denied_by_zone_pair: k.zone_pairs.clone(),
            default_deny: k.default_deny,
            rule_deny: k.rule_deny,
            quarantined: k.quarantined,
            would_deny_flows: k.would_deny_flows,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Snapshot and rendering
// ---------------------------------------------------------------------------------------------

/// Everything one scrape shows, copied out of the running state.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub workers: Vec<(u16, CountersSnapshot)>,
    /// Per-packet latency, nanoseconds, all workers merged.
    pub latency_ns: Histogram<u64>,
    /// Time to contain, nanoseconds.
    pub time_to_contain_ns: Histogram<u64>,
    pub generation: u64,
    pub policy_loaded_unix: f64,
    /// Seconds since the policy in force was published.
    pub policy_age_seconds: f64,
    pub policy_rules: usize,
    pub policy_identities: usize,
    pub started_unix: f64,
    pub quarantine_entries: usize,
    /// Runtime quarantine entries still waiting for their first enforced drop.
    pub quarantine_awaiting: usize,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    pub flow_log_written: u64,
    pub flow_log_dropped: u64,
    pub flow_log_write_errors: u64,
    pub kpis: Option<KpiSnapshot>,
}

impl Snapshot {
    /// An empty snapshot (no workers, empty histograms), for tests and as a base.
    pub fn empty() -> Self {
        Self {
            workers: Vec::new(),
            latency_ns: bulkhead_engine::LatencyRecorder::new_histogram(),
            time_to_contain_ns: Histogram::new_with_bounds(1, 3_600_000_000_000, 3)
                .expect("constant histogram bounds are valid"),
            generation: 0,
            policy_loaded_unix: 0.0,
            policy_age_seconds: 0.0,
            policy_rules: 0,
            policy_identities: 0,
            started_unix: 0.0,
            quarantine_entries: 0,
            quarantine_awaiting: 0,
            reloads_ok: 0,
            reloads_failed: 0,
            flow_log_written: 0,
            flow_log_dropped: 0,
            flow_log_write_errors: 0,
            kpis: None,
        }
    }

    /// Reads the running state.
    pub fn of(state: &State, kpis: Option<&Kpis>) -> Self {
        let c = state.counters();
        let policy = state.policy();
        let (started_unix, _) = state.started();
        let (entries, ttc) = {
            let q = state.quarantine();
            (
                (q.entries.len(), q.entries.iter().filter(|e| e.awaits_containment()).count()),
                q.time_to_contain.clone(),
            )
        };
        let age_ns = bulkhead_xdp::monotonic_ns().saturating_sub(policy.loaded_mono_ns);
        Self {
            workers: c.workers,
            latency_ns: state.latency_histogram(),
            time_to_contain_ns: ttc,
            generation: policy.generation,
            policy_loaded_unix: policy.loaded_at_unix,
            policy_age_seconds: age_ns as f64 / 1e9,
            policy_rules: policy.rules + policy.acl_rules,
            policy_identities: policy.identities,
            started_unix,
            quarantine_entries: entries.0,
            quarantine_awaiting: entries.1,
            reloads_ok: state.reloads.ok.load(Ordering::Relaxed),
            reloads_failed: state.reloads.failed.load(Ordering::Relaxed),
            flow_log_written: state.flow_log.written.load(Ordering::Relaxed),
            flow_log_dropped: state.flow_log.dropped.load(Ordering::Relaxed),
            flow_log_write_errors: state.flow_log.write_errors.load(Ordering::Relaxed),
            kpis: kpis.map(Kpis::snapshot),
        }
    }
}

/// Renders the running state (see the module docs).
pub fn render(state: &State, kpis: Option<&Kpis>) -> String {
    render_snapshot(&Snapshot::of(state, kpis))
}

/// Escapes a label value (backslash, double quote, newline).
pub fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// A float in the exposition format (`+Inf`, `NaN`, shortest round-trip otherwise).
fn num(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape_label(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    /// A histogram family from an HdrHistogram in nanoseconds, with `bounds` in seconds.
    fn histogram(&mut self, name: &str, help: &str, h: &Histogram<u64>, bounds: &[f64]) {
        self.family(name, "histogram", help);
        for &b in bounds {
            let ns = (b * 1e9).round() as u64;
            let c = if h.is_empty() { 0 } else { h.count_between(0, ns) };
            self.sample(&format!("{name}_bucket"), &[("le", &num(b))], c);
        }
        self.sample(&format!("{name}_bucket"), &[("le", "+Inf")], h.len());
        let sum = if h.is_empty() { 0.0 } else { h.mean() * h.len() as f64 / 1e9 };
        self.sample(&format!("{name}_sum"), &[], num(sum));
        self.sample(&format!("{name}_count"), &[], h.len());
    }

    /// One counter or gauge family with one sample per worker.
    fn per_worker(
        &mut self,
        workers: &[(u16, CountersSnapshot)],
        name: &str,
        kind: &str,
        help: &str,
        f: impl Fn(&CountersSnapshot) -> u64,
    ) {
        self.family(name, kind, help);
        for (id, c) in workers {
            self.sample(name, &[("worker", &id.to_string())], f(c));
        }
    }
}

/// Renders a snapshot in the Prometheus text format (see the module docs and docs/metrics.md).
pub fn render_snapshot(s: &Snapshot) -> String {
    let mut o = Out(String::with_capacity(16 << 10));
    let w = &s.workers;
    let mut total = CountersSnapshot::default();
    for (_, c) in w {
        total += c;
    }

    o.family("bulkhead_build_info", "gauge", "Build information; always 1.");
    o.sample("bulkhead_build_info", &[("version", env!("CARGO_PKG_VERSION"))], 1);
    o.family(
        "bulkhead_start_time_seconds",
        "gauge",
        "Start time of the firewall, seconds since the Unix epoch.",
    );
    o.sample("bulkhead_start_time_seconds", &[], num(s.started_unix));

    o.per_worker(w, "bulkhead_packets_total", "counter", "Frames judged by the engine.", |c| c.packets);
    o.per_worker(w, "bulkhead_bytes_total", "counter", "Bytes of the frames judged by the engine.", |c| {
        c.bytes
    });
    o.family(
        "bulkhead_verdicts_total",
        "counter",
        "Frames by verdict: pass, would_deny (monitor mode: passed although policy denies), drop.",
    );
    for (id, c) in w {
        let id = id.to_string();
        for (verdict, n) in [("pass", c.pass), ("would_deny", c.would_deny), ("drop", c.dropped())] {
            o.sample("bulkhead_verdicts_total", &[("worker", &id), ("verdict", verdict)], n);
        }
    }
    o.family("bulkhead_drops_total", "counter", "Dropped frames by reason (policy, state, parser).");
    for (id, c) in w {
        let id = id.to_string();
        for r in DropReason::all() {
            o.sample("bulkhead_drops_total", &[("worker", &id), ("reason", r.as_str())], c.drop_count(r));
        }
    }
    o.per_worker(w, "bulkhead_flows_active", "gauge", "Flows in the flow table.", |c| c.flows_active);
    o.per_worker(w, "bulkhead_flow_table_capacity", "gauge", "Flow table capacity (flows).", |c| {
        c.flow_capacity
    });
    o.per_worker(w, "bulkhead_flows_created_total", "counter", "Flows created.", |c| c.flows_created);
    o.per_worker(
        w,
        "bulkhead_flows_evicted_total",
        "counter",
        "Flows evicted to make room in a full table.",
        |c| c.flows_evicted,
    );
    o.per_worker(
        w,
        "bulkhead_flows_expired_total",
        "counter",
        "Flows removed after their idle timeout.",
        |c| c.flows_expired,
    );
    o.per_worker(
        w,
        "bulkhead_flows_revoked_total",
        "counter",
        "Established flows cut because a newer policy generation (or a quarantine) denies them.",
        |c| c.flows_revoked,
    );
    o.per_worker(
        w,
        "bulkhead_flows_closed_total",
        "counter",
        "Flows closed by RST or replaced after TIME_WAIT.",
        |c| c.flows_closed,
    );
    o.per_worker(
        w,
        "bulkhead_fragments_held",
        "gauge",
        "Early fragments held until their first fragment.",
        |c| c.frag_held,
    );
    o.per_worker(
        w,
        "bulkhead_fragments_released_total",
        "counter",
        "Held fragments released for transmission.",
        |c| c.frag_released,
    );
    o.per_worker(
        w,
        "bulkhead_flow_events_total",
        "counter",
        "Flow events queued for the flow log and KPIs.",
        |c| c.events_emitted,
    );
    o.per_worker(
        w,
        "bulkhead_flow_events_dropped_total",
        "counter",
        "Flow events lost because the queue was full (the dataplane never waits).",
        |c| c.events_dropped,
    );
    o.per_worker(w, "bulkhead_batches_total", "counter", "Batches processed.", |c| c.batches);

    o.histogram(
        "bulkhead_packet_latency_seconds",
        "Per-packet latency from dequeue to verdict, all workers.",
        &s.latency_ns,
        LATENCY_BUCKETS,
    );

    o.family("bulkhead_policy_generation", "gauge", "Generation of the table set in force.");
    o.sample("bulkhead_policy_generation", &[], s.generation);
    o.family(
        "bulkhead_policy_loaded_timestamp_seconds",
        "gauge",
        "When the table set in force was published, seconds since the Unix epoch.",
    );
    o.sample("bulkhead_policy_loaded_timestamp_seconds", &[], num(s.policy_loaded_unix));
    o.family("bulkhead_policy_age_seconds", "gauge", "Seconds since the table set in force was published.");
    o.sample("bulkhead_policy_age_seconds", &[], num(s.policy_age_seconds));
    o.family(
        "bulkhead_policy_rules",
        "gauge",
        "Rules (identity rules and ACL lines) in the policy in force.",
    );
    o.sample("bulkhead_policy_rules", &[], s.policy_rules);
    o.family("bulkhead_policy_identities", "gauge", "Identities in the policy in force.");
    o.sample("bulkhead_policy_identities", &[], s.policy_identities);
    o.family(
        "bulkhead_reloads_total",
        "counter",
        "Policy reloads by result (a failed one keeps the running policy).",
    );
    o.sample("bulkhead_reloads_total", &[("result", "ok")], s.reloads_ok);
    o.sample("bulkhead_reloads_total", &[("result", "failed")], s.reloads_failed);

    o.family("bulkhead_quarantine_entries", "gauge", "Quarantined workloads (addresses, CIDRs, identities).");
    o.sample("bulkhead_quarantine_entries", &[], s.quarantine_entries);
    o.family(
        "bulkhead_quarantine_awaiting_containment",
        "gauge",
        "Runtime quarantine entries whose traffic has not been dropped yet.",
    );
    o.sample("bulkhead_quarantine_awaiting_containment", &[], s.quarantine_awaiting);
    o.histogram(
        "bulkhead_time_to_contain_seconds",
        "Time from a quarantine command to the first enforced drop of the workload's traffic.",
        &s.time_to_contain_ns,
        CONTAIN_BUCKETS,
    );

    o.family("bulkhead_flow_log_records_total", "counter", "Flow-log records by result.");
    o.sample("bulkhead_flow_log_records_total", &[("result", "written")], s.flow_log_written);
    o.sample("bulkhead_flow_log_records_total", &[("result", "dropped")], s.flow_log_dropped);
    o.sample("bulkhead_flow_log_records_total", &[("result", "write_error")], s.flow_log_write_errors);

    if let Some(k) = &s.kpis {
        o.family(
            "bulkhead_denied_attempts_total",
            "counter",
            "Denied connection attempts (blocked lateral movement) by source and destination zone.",
        );
        for (pair, n) in &k.denied_by_zone_pair {
            o.sample("bulkhead_denied_attempts_total", &[("zone_pair", pair)], n);
        }
        o.family(
            "bulkhead_flow_decisions_total",
            "counter",
            "New connections by the policy decision that judged them (enforcement success).",
        );
        let allow = total.flows_created.saturating_sub(k.would_deny_flows);
        for (d, n) in [
            (FlowDecision::ExplicitAllow, allow),
            (FlowDecision::WouldDeny, k.would_deny_flows),
            (FlowDecision::DefaultDeny, k.default_deny),
            (FlowDecision::RuleDeny, k.rule_deny),
            (FlowDecision::Quarantined, k.quarantined),
        ] {
            o.sample("bulkhead_flow_decisions_total", &[("decision", d.as_str())], n);
        }
    }
    o.0
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

/// `PORT` or `:PORT` -> `127.0.0.1:PORT`; `HOST:PORT` / `[V6]:PORT` as written.
///
/// # Errors
/// Not a port or an address.
pub fn parse_listen_addr(s: &str) -> Result<SocketAddr, String> {
    let t = s.trim();
    let port_only = t.strip_prefix(':').unwrap_or(t);
    if let Ok(p) = port_only.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], p)));
    }
    t.to_socket_addrs()
        .map_err(|e| format!("`{s}`: expected PORT, HOST:PORT or [V6]:PORT ({e})"))?
        .next()
        .ok_or_else(|| format!("`{s}` resolves to no address"))
}

/// The running metrics endpoint. Dropping it stops the server thread.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serves `GET /metrics` on `addr` from a thread named `metrics`.
///
/// # Errors
/// The address cannot be bound.
pub fn serve(addr: SocketAddr, state: Arc<State>, kpis: Option<Arc<Kpis>>) -> std::io::Result<MetricsServer> {
    serve_fn(addr, move || render(&state, kpis.as_deref()))
}

/// Serves whatever `body` renders at each scrape (the server behind [`serve`]; tests use it
/// with fake snapshots).
///
/// # Errors
/// The address cannot be bound.
pub fn serve_fn(
    addr: SocketAddr,
    body: impl Fn() -> String + Send + 'static,
) -> std::io::Result<MetricsServer> {
    let listener = TcpListener::bind(addr)?;
    let addr = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = Arc::clone(&stop);
    let thread = std::thread::Builder::new().name("metrics".into()).spawn(move || {
        for conn in listener.incoming() {
            if stop2.load(Ordering::Relaxed) {
                break;
            }
            if let Ok(c) = conn {
                // One scrape at a time: Prometheus scrapes rarely and the reply is small. A slow
                // client is cut by the timeouts.
                let _ = handle(c, &body);
            }
        }
    })?;
    Ok(MetricsServer { addr, stop, thread: Some(thread) })
}

fn handle(mut c: TcpStream, body: &dyn Fn() -> String) -> std::io::Result<()> {
    c.set_read_timeout(Some(Duration::from_secs(5)))?;
    c.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut r = BufReader::new(c.try_clone()?.take(16 << 10));
    let mut line = String::new();
    r.read_line(&mut line)?;
    // Skip headers up to the blank line (bounded by `take`).
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, ctype, text) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => ("200 OK", CONTENT_TYPE, body()),
        ("GET" | "HEAD", "/") => {
            ("200 OK", "text/plain; charset=utf-8", "Bulkhead metrics: see /metrics\n".to_string())
        }
        ("GET" | "HEAD", _) => ("404 Not Found", "text/plain; charset=utf-8", "not found\n".to_string()),
        _ => ("405 Method Not Allowed", "text/plain; charset=utf-8", "read-only endpoint\n".to_string()),
    };
    let mut resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n",
        text.len()
    );
    if status.starts_with("405") {
        resp.push_str("Allow: GET, HEAD\r\n");
    }
    resp.push_str("\r\n");
    c.write_all(resp.as_bytes())?;
    if method != "HEAD" {
        c.write_all(text.as_bytes())?;
    }
    c.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label("x\ny"), "x\\ny");
    }

    #[test]
    fn listen_addresses_default_to_loopback() {
        assert_eq!(parse_listen_addr("9464").unwrap(), "127.0.0.1:9464".parse().unwrap());
        assert_eq!(parse_listen_addr(":9464").unwrap(), "127.0.0.1:9464".parse().unwrap());
        assert_eq!(parse_listen_addr("0.0.0.0:9464").unwrap(), "0.0.0.0:9464".parse().unwrap());
        assert_eq!(parse_listen_addr("[::1]:9464").unwrap(), "[::1]:9464".parse().unwrap());
        assert!(parse_listen_addr("nope").is_err());
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_with_the_count() {
        let mut s = Snapshot::empty();
        s.latency_ns.record_n(1_500, 90).unwrap(); // 1.5 us
        s.latency_ns.record_n(30_000, 9).unwrap(); // 30 us
        s.latency_ns.record(2_000_000).unwrap(); // 2 ms
        let t = render_snapshot(&s);
        let get = |le: &str| -> u64 {
            let key = format!("bulkhead_packet_latency_seconds_bucket{{le=\"{le}\"}} ");
            t.lines().find_map(|l| l.strip_prefix(&key)).unwrap().parse().unwrap()
        };
        assert_eq!(get("0.000001"), 0);
        assert_eq!(get("0.000002"), 90);
        assert_eq!(get("0.00002"), 90);
        assert_eq!(get("0.00005"), 99);
        assert_eq!(get("0.002"), 100);
        assert_eq!(get("+Inf"), 100);
        assert!(t.contains("bulkhead_packet_latency_seconds_count 100\n"));
    }
}
