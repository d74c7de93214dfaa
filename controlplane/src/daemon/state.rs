//! [`State`]: the shared runtime state of a running firewall.
//!
//! One `Arc<State>` is built by `bulkhead run` before the workers start and handed to every
//! surface that reads or steers the running firewall: the control socket, the Prometheus
//! endpoint, `bulkhead top` (through the socket), the flow-log writer and the reload path. Replay
//! and tests build one around engine workers that no AF_XDP socket feeds.
//!
//! # Contract
//! - The packet path never touches `State`. Workers publish their counters and latency into the
//!   `Arc`s listed in [`WorkerHandle`] (engine contract: once per batch, lock-free), and load the
//!   table set from [`State::tables`] once per batch. Everything else here is read or written by
//!   control-plane threads, so plain mutexes are fine: none is held across I/O or a compile.
//! - Table sets are published only through [`State::publish`] / [`State::publish_arc`], which
//!   keep the last [`RECENT_TABLES`] generations (so a flow-log record or a flow listing produced
//!   under an older generation is still named with that generation's rule and identity names) and
//!   update [`PolicyInfo`]. An incremental update continues a *lineage*: its rule ids extend the
//!   previous generation's (ids are never reused, removed rules keep their names) and identities
//!   are unchanged, so the newest set of a lineage names every generation of it, and only that
//!   one is kept. Keeping the older ones would pin the incremental updater's spare copy (see
//!   [`crate::incremental`]) and force a deep copy on every update.
//! - Time: the engine's clock is `CLOCK_MONOTONIC` in nanoseconds ([`bulkhead_xdp::monotonic_ns`]).
//!   `State` records the wall clock and the monotonic clock at start, so monotonic stamps (flow
//!   events, quarantine commands) convert to wall time with [`State::wall_from_mono`].
//! - Quarantine "time to contain" is measured per quarantine entry: from the monotonic time the
//!   command was received to the `ts_ns` of the first flow event whose decision is `Quarantined`,
//!   whose generation is at least the one that introduced the entry, and whose source or
//!   destination is covered by the entry. Those events are produced by the workers and fed here by
//!   the flow-event drain thread ([`State::observe_quarantine_drop`]), which always runs, whether
//!   or not a flow log is written. Each measurement goes into an HdrHistogram (nanoseconds).

use bulkhead_engine::{
    CountersSnapshot, FlowEvent, FlowSummary, LatencyRecorder, LatencySummary, WorkerCounters,
};
use bulkhead_tables::{prefix_contains, Decision, PublishError, TableHandle, TableSet};
use crossbeam_queue::ArrayQueue;
use hdrhistogram::Histogram;
use std::collections::VecDeque;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::time::{Duration, SystemTime};

/// Table-set generations kept for naming records produced under an older generation.
pub const RECENT_TABLES: usize = 8;

/// Highest time to contain the histogram tracks (1 hour; larger values are clamped).
const TTC_HIGHEST_NS: u64 = 3_600_000_000_000;

/// Locks a mutex, recovering the data if a panicking thread poisoned it (the data here are plain
/// bookkeeping, always left consistent between statements).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What `bulkhead run` was started with (for `status`).
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct RunInfo {
    pub inside: String,
    pub outside: String,
    pub workers: u32,
    /// `native` or `generic`; empty when no AF_XDP dataplane runs (replay, tests).
    pub xdp_mode: String,
    pub flow_capacity: u32,
    pub control: Option<PathBuf>,
    pub metrics: Option<String>,
    pub flow_log: Option<String>,
    pub pid: u32,
}

/// The policy in force.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct PolicyInfo {
    /// The file or directory the policy was loaded from.
    pub path: PathBuf,
    pub generation: u64,
    /// Wall-clock time of the publication, seconds since the Unix epoch (fractional).
    pub loaded_at_unix: f64,
    /// Monotonic time of the publication (ns), to compute the age.
    pub loaded_mono_ns: u64,
    pub identities: usize,
    pub rules: usize,
    pub acl_rules: usize,
    /// Why the generation changed last (`start`, `reload`, `quarantine`).
    pub cause: String,
}

/// The last reload that failed (the running policy stayed in force).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct ReloadFailure {
    pub at_unix: f64,
    pub path: PathBuf,
    pub error: String,
}

/// Per-worker shared handles (the worker writes, readers read; all lock-free).
#[derive(Debug, Clone)]
pub struct WorkerHandle {
    pub id: u16,
    pub counters: Arc<WorkerCounters>,
    pub latency: Arc<LatencyRecorder>,
    /// AF_XDP I/O counters of the queue pair, when an AF_XDP dataplane feeds this worker.
    pub io: Option<Arc<bulkhead_xdp::WorkerStats>>,
    /// Live-flow listing requests, serviced by the worker between batches.
    pub flows: Arc<FlowRequests>,
}

/// One `bulkhead flows` request to one worker.
#[derive(Debug)]
pub struct FlowRequest {
    pub limit: usize,
    pub filter: bulkhead_engine::FlowFilter,
    /// Extra filter on the opening direction (the engine's filter matches either endpoint).
    pub from: Option<IpAddr>,
    pub to: Option<IpAddr>,
    pub reply: std::sync::mpsc::SyncSender<Vec<FlowSummary>>,
}

/// A worker's request mailbox: a flag the worker polls once per batch (one relaxed load) and a
/// bounded queue of requests. The worker answers between batches, so a listing never races the
/// flow table and the packet path never locks.
#[derive(Debug)]
pub struct FlowRequests {
    pending: AtomicBool,
    queue: ArrayQueue<FlowRequest>,
}

impl Default for FlowRequests {
    fn default() -> Self {
        Self { pending: AtomicBool::new(false), queue: ArrayQueue::new(4) }
    }
}

impl FlowRequests {
    /// Queues a request; gives it back when the mailbox is full.
    pub fn submit(&self, r: FlowRequest) -> Result<(), FlowRequest> {
        self.queue.push(r)?;
        self.pending.store(true, Ordering::Release);
        Ok(())
    }

    /// Worker side: true when a request may be waiting (cheap; call once per batch).
    #[inline]
    pub fn pending(&self) -> bool {
        self.pending.load(Ordering::Relaxed)
    }

    /// Worker side: takes the next request.
    pub fn take(&self) -> Option<FlowRequest> {
        self.pending.store(false, Ordering::Relaxed);
        let r = self.queue.pop();
        if !self.queue.is_empty() {
            self.pending.store(true, Ordering::Relaxed);
        }
        r
    }
}

/// What a quarantine entry covers.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum QuarantineTarget {
    /// An address or prefix (a bare address is a /32 or /128).
    Address { net: IpAddr, len: u8 },
    /// A workload identity by name.
    Identity(String),
}

impl fmt::Display for QuarantineTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QuarantineTarget::Address { net, len } => {
                let host = if net.is_ipv4() { 32 } else { 128 };
                if *len == host {
                    write!(f, "{net}")
                } else {
                    write!(f, "{net}/{len}")
                }
            }
            QuarantineTarget::Identity(n) => f.write_str(n),
        }
    }
}

/// Parses `ADDR`, `ADDR/LEN` (host bits must be clear) or an identity name.
impl FromStr for QuarantineTarget {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty quarantine target".into());
        }
        if let Some((net, len)) = parse_cidr(s)? {
            return Ok(QuarantineTarget::Address { net, len });
        }
        if s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
            Ok(QuarantineTarget::Identity(s.to_string()))
        } else {
            Err(format!("`{s}` is neither an address, a CIDR nor an identity name"))
        }
    }
}

/// `Some((net, len))` when `s` looks like an address or prefix; an error when it looks like one
/// but is malformed; `None` when it is not address-like at all.
fn parse_cidr(s: &str) -> Result<Option<(IpAddr, u8)>, String> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let Ok(ip) = addr.parse::<IpAddr>() else {
        if len.is_some() || addr.contains(':') || addr.chars().all(|c| c.is_ascii_digit() || c == '.') {
            return Err(format!("`{s}` is not a valid address or CIDR"));
        }
        return Ok(None);
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = match len {
        None => max,
        Some(l) => {
            l.parse::<u8>().ok().filter(|&l| l <= max).ok_or_else(|| format!("bad prefix length in `{s}`"))?
        }
    };
    if !prefix_contains(ip, len, ip) || mask(ip, len) != ip {
        return Err(format!("`{s}` has host bits set (did you mean {}/{len}?)", mask(ip, len)));
    }
    Ok(Some((ip, len)))
}

fn mask(ip: IpAddr, len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let m = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
            IpAddr::V4((u32::from(a) & m).into())
        }
        IpAddr::V6(a) => {
            let m = if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len)) };
            IpAddr::V6((u128::from(a) & m).into())
        }
    }
}

/// A quarantine exception given on the command line / control socket:
/// `CIDR[:PORTS]` where `PORTS` is `[PROTO/]PORT[-PORT]` (`PROTO` is tcp, udp, sctp or a number).
/// IPv6 prefixes with ports are bracketed: `[2001:db8::/64]:tcp/22`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct QuarantineExceptionArg {
    pub peer: (IpAddr, u8),
    /// `None` = any protocol.
    pub proto: Option<u8>,
    /// Inclusive port range on the peer side.
    pub ports: (u16, u16),
}

impl fmt::Display for QuarantineExceptionArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (net, len) = self.peer;
        let any_ports = self.ports == (0, u16::MAX);
        if net.is_ipv6() && (!any_ports || self.proto.is_some()) {
            write!(f, "[{net}/{len}]")?;
        } else {
            write!(f, "{net}/{len}")?;
        }
        if any_ports && self.proto.is_none() {
            return Ok(());
        }
        f.write_str(":")?;
        if let Some(p) = self.proto {
            match p {
                6 => f.write_str("tcp/")?,
                17 => f.write_str("udp/")?,
                132 => f.write_str("sctp/")?,
                n => write!(f, "{n}/")?,
            }
        }
        match self.ports {
            (0, u16::MAX) => f.write_str("any"),
            (a, b) if a == b => write!(f, "{a}"),
            (a, b) => write!(f, "{a}-{b}"),
        }
    }
}

impl FromStr for QuarantineExceptionArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (cidr, ports) = if let Some(rest) = s.strip_prefix('[') {
            let (c, tail) = rest.split_once(']').ok_or_else(|| format!("`{s}`: missing `]`"))?;
            match tail {
                "" => (c, None),
                t => (c, Some(t.strip_prefix(':').ok_or_else(|| format!("`{s}`: expected `:` after `]`"))?)),
            }
        } else if s.matches(':').count() == 1 {
            let (c, p) = s.split_once(':').unwrap_or((s, ""));
            (c, Some(p))
        } else {
            (s, None)
        };
        let peer = parse_cidr(cidr)?.ok_or_else(|| format!("`{cidr}` is not an address or CIDR"))?;
        let (proto, ports) = match ports {
            None => (None, (0, u16::MAX)),
            Some(p) => parse_ports(p).map_err(|e| format!("`{s}`: {e}"))?,
        };
        Ok(QuarantineExceptionArg { peer, proto, ports })
    }
}

fn parse_ports(p: &str) -> Result<(Option<u8>, (u16, u16)), String> {
    let (proto, range) = match p.split_once('/') {
        Some((pr, r)) => {
            let proto = match pr.to_ascii_lowercase().as_str() {
                "tcp" => 6,
                "udp" => 17,
                "sctp" => 132,
                n => n
                    .parse::<u8>()
                    .map_err(|_| format!("unknown protocol `{pr}` (tcp, udp, sctp or a number)"))?,
            };
            (Some(proto), r)
        }
        None => (None, p),
    };
    if range == "any" || range == "*" {
        return Ok((proto, (0, u16::MAX)));
    }
    let port = |x: &str| x.parse::<u16>().map_err(|_| format!("bad port `{x}`"));
    let r = match range.split_once('-') {
        Some((a, b)) => (port(a)?, port(b)?),
        None => {
            let a = port(range)?;
            (a, a)
        }
    };
    if r.0 > r.1 {
        return Err(format!("port range {}-{} is reversed", r.0, r.1));
    }
    Ok((proto, r))
}

/// Where a quarantine entry comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuarantineSource {
    /// A `Quarantine` object in the policy files (changes only with the files).
    Policy,
    /// `bulkhead quarantine add` (kept across reloads and, through the quarantine state file,
    /// restarts, until removed).
    Runtime,
}

/// One quarantined workload or address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuarantineEntry {
    pub target: QuarantineTarget,
    pub exceptions: Vec<QuarantineExceptionArg>,
    pub source: QuarantineSource,
    /// Wall time the command was received (Unix seconds), and its monotonic time (ns).
    pub added_at_unix: u64,
    pub added_mono_ns: u64,
    /// The first generation that enforces it (0 until published).
    pub generation: u64,
    /// Command -> first enforced drop, once observed.
    pub time_to_contain_ns: Option<u64>,
    /// Read back from the quarantine state file at start (see `daemon::persist`): enforced from
    /// the first generation, and its time to contain is not measured again from the restart.
    pub restored: bool,
}

impl QuarantineEntry {
    /// A runtime entry that is published and whose first enforced drop was not seen yet.
    /// (Entries from the policy files have no command time, so no time to contain.)
    pub fn awaits_containment(&self) -> bool {
        self.source == QuarantineSource::Runtime
            && self.generation != 0
            && self.time_to_contain_ns.is_none()
            && !self.restored
    }

    /// True when a packet between `src` and `dst` (identities by name) is this entry's traffic.
    pub fn covers(&self, src: IpAddr, src_name: &str, dst: IpAddr, dst_name: &str) -> bool {
        match &self.target {
            QuarantineTarget::Address { net, len } => {
                prefix_contains(*net, *len, src) || prefix_contains(*net, *len, dst)
            }
            QuarantineTarget::Identity(n) => n == src_name || n == dst_name,
        }
    }
}

/// The quarantine list plus the time-to-contain histogram.
#[derive(Debug)]
pub struct QuarantineBook {
    pub entries: Vec<QuarantineEntry>,
    /// Time to contain, nanoseconds.
    pub time_to_contain: Histogram<u64>,
}

impl Default for QuarantineBook {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            time_to_contain: Histogram::new_with_bounds(1, TTC_HIGHEST_NS, 3)
                .expect("constant histogram bounds are valid"),
        }
    }
}

/// Flow-log writer counters.
#[derive(Debug, Default)]
pub struct FlowLogStats {
    /// Records written.
    pub written: AtomicU64,
    /// Records lost: the engine's bounded queues were full (sum of the workers' `events_dropped`
    /// is the authoritative engine-side count; this counts writer-side losses: write errors).
    pub dropped: AtomicU64,
    /// Write errors (disk full, closed stdout, ...).
    pub write_errors: AtomicU64,
}

/// Reload outcome counters.
#[derive(Debug, Default)]
pub struct ReloadStats {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    pub last_failure: Mutex<Option<ReloadFailure>>,
}

/// Totals and per-worker copies of the engine counters, read at one moment.
#[derive(Clone, Debug)]
pub struct CountersView {
    pub total: CountersSnapshot,
    pub workers: Vec<(u16, CountersSnapshot)>,
}

/// The shared runtime state (see the module docs).
#[derive(Debug)]
pub struct State {
    tables: Arc<TableHandle>,
    /// (first generation it names, newest table set of that lineage).
    recent: Mutex<VecDeque<(u64, Arc<TableSet>)>>,
    publish_lock: Mutex<()>,
    policy: RwLock<PolicyInfo>,
    started_unix: f64,
    started_mono_ns: u64,
    run: RunInfo,
    workers: Vec<WorkerHandle>,
    quarantine: Mutex<QuarantineBook>,
    quarantine_changed: Condvar,
    /// Entries still waiting for their first enforced drop (skips the lock on the drain path).
    quarantine_pending: AtomicUsize,
    pub flow_log: FlowLogStats,
    pub reloads: ReloadStats,
    /// Held fragments the engine released that the AF_XDP loop could not transmit (shared with
    /// every `EngineProcessor`).
    pub frag_released_unsent: Arc<AtomicU64>,
    stop: AtomicBool,
}

/// Seconds since the Unix epoch, fractional.
pub fn unix_now() -> f64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

impl State {
    /// Builds the state around the handle workers load from. `policy.generation` should be the
    /// handle's current generation.
    pub fn new(
        tables: Arc<TableHandle>,
        policy: PolicyInfo,
        run: RunInfo,
        workers: Vec<WorkerHandle>,
    ) -> Self {
        let mut recent = VecDeque::with_capacity(RECENT_TABLES);
        let first = tables.load();
        recent.push_back((first.generation, first));
        State {
            tables,
            recent: Mutex::new(recent),
            publish_lock: Mutex::new(()),
            policy: RwLock::new(policy),
            started_unix: unix_now(),
            started_mono_ns: bulkhead_xdp::monotonic_ns(),
            run,
            workers,
            quarantine: Mutex::new(QuarantineBook::default()),
            quarantine_changed: Condvar::new(),
            quarantine_pending: AtomicUsize::new(0),
            flow_log: FlowLogStats::default(),
            reloads: ReloadStats::default(),
            frag_released_unsent: Arc::new(AtomicU64::new(0)),
            stop: AtomicBool::new(false),
        }
    }

    /// The handle workers load the table set from (once per batch).
    pub fn tables(&self) -> &Arc<TableHandle> {
        &self.tables
    }

    /// The table set in force.
    pub fn current(&self) -> Arc<TableSet> {
        self.tables.load()
    }

    /// The table set of `generation` if it is one of the last [`RECENT_TABLES`], else the current.
    pub fn tables_for(&self, generation: u64) -> Arc<TableSet> {
        let recent = lock(&self.recent);
        recent
            .iter()
            .rev()
            .find(|(first, t)| (*first..=t.generation).contains(&generation))
            .map(|(_, t)| Arc::clone(t))
            .unwrap_or_else(|| self.tables.load())
    }

    /// Serializes control-plane writers (reload, quarantine): hold it from reading the current
    /// generation to publishing the next one.
    pub fn writer_lock(&self) -> MutexGuard<'_, ()> {
        lock(&self.publish_lock)
    }

    /// Publishes `next` and records `info` (whose generation must equal `next.generation`).
    ///
    /// # Errors
    /// When the generation does not increase (the running set stays).
    pub fn publish(&self, next: TableSet, info: PolicyInfo) -> Result<u64, PublishError> {
        self.publish_arc(Arc::new(next), info, false)
    }

    /// Publishes a table set the caller keeps a reference to (the incremental updater's). With
    /// `continues_lineage`, `next` was made from the current set by an incremental update and
    /// replaces it in the recent list (see the module docs).
    ///
    /// # Errors
    /// When the generation does not increase (the running set stays).
    pub fn publish_arc(
        &self,
        next: Arc<TableSet>,
        info: PolicyInfo,
        continues_lineage: bool,
    ) -> Result<u64, PublishError> {
        let g = self.tables.publish_arc(Arc::clone(&next))?;
        {
            let mut recent = lock(&self.recent);
            match recent.back_mut() {
                Some(last) if continues_lineage => last.1 = next,
                _ => {
                    if recent.len() == RECENT_TABLES {
                        recent.pop_front();
                    }
                    recent.push_back((g, next));
                }
            }
        }
        *self.policy.write().unwrap_or_else(std::sync::PoisonError::into_inner) = info;
        Ok(g)
    }

    pub fn policy(&self) -> PolicyInfo {
        self.policy.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    pub fn run_info(&self) -> &RunInfo {
        &self.run
    }

    /// Wall-clock start time (Unix seconds) and monotonic start time (ns).
    pub fn started(&self) -> (f64, u64) {
        (self.started_unix, self.started_mono_ns)
    }

    /// Seconds since start.
    pub fn uptime(&self) -> Duration {
        Duration::from_nanos(bulkhead_xdp::monotonic_ns().saturating_sub(self.started_mono_ns))
    }

    /// Converts an engine timestamp (`CLOCK_MONOTONIC` ns) to Unix seconds.
    pub fn wall_from_mono(&self, mono_ns: u64) -> f64 {
        let delta = mono_ns as f64 - self.started_mono_ns as f64;
        self.started_unix + delta / 1e9
    }

    pub fn workers(&self) -> &[WorkerHandle] {
        &self.workers
    }

    /// Engine counters, per worker and in total.
    pub fn counters(&self) -> CountersView {
        let mut total = CountersSnapshot::default();
        let workers: Vec<(u16, CountersSnapshot)> = self
            .workers
            .iter()
            .map(|w| {
                let s = w.counters.snapshot();
                total += &s;
                (w.id, s)
            })
            .collect();
        CountersView { total, workers }
    }

    /// Per-packet latency merged over all workers (ns).
    pub fn latency_histogram(&self) -> Histogram<u64> {
        let mut h = LatencyRecorder::new_histogram();
        for w in &self.workers {
            w.latency.merge_into(&mut h);
        }
        h
    }

    pub fn latency(&self) -> LatencySummary {
        LatencySummary::from_histogram(&self.latency_histogram())
    }

    /// The quarantine book (list + time-to-contain histogram). Do not hold it long.
    pub fn quarantine(&self) -> MutexGuard<'_, QuarantineBook> {
        lock(&self.quarantine)
    }

    /// A copy of the quarantine list.
    pub fn quarantine_entries(&self) -> Vec<QuarantineEntry> {
        self.quarantine().entries.clone()
    }

    /// A copy of the time-to-contain histogram (ns).
    pub fn time_to_contain(&self) -> Histogram<u64> {
        self.quarantine().time_to_contain.clone()
    }

    /// Replaces the list (the control plane does this when it publishes a generation that
    /// changes the quarantine) and wakes waiters.
    pub fn set_quarantine_entries(&self, entries: Vec<QuarantineEntry>) {
        let mut q = self.quarantine();
        let pending = entries.iter().filter(|e| e.awaits_containment()).count();
        q.entries = entries;
        self.quarantine_pending.store(pending, Ordering::Relaxed);
        self.quarantine_changed.notify_all();
    }

    /// Called by the flow-event drain for every event: when it is an enforced quarantine drop,
    /// completes the time to contain of the entries it belongs to.
    pub fn observe_quarantine_drop(&self, ev: &FlowEvent) {
        if self.quarantine_pending.load(Ordering::Relaxed) == 0
            || ev.decision != Decision::Quarantined
            || ev.verdict.forwards()
        {
            return;
        }
        let tables = self.tables_for(ev.generation);
        let (sn, dn) = (tables.identity_name(ev.src_identity), tables.identity_name(ev.dst_identity));
        let mut q = self.quarantine();
        let mut done = Vec::new();
        for e in q.entries.iter_mut() {
            if e.awaits_containment()
                && ev.generation >= e.generation
                && ev.ts_ns >= e.added_mono_ns
                && e.covers(ev.src, sn, ev.dst, dn)
            {
                let ttc = ev.ts_ns - e.added_mono_ns;
                e.time_to_contain_ns = Some(ttc);
                done.push(ttc);
            }
        }
        if done.is_empty() {
            return;
        }
        for ttc in done {
            q.time_to_contain.saturating_record(ttc.max(1));
        }
        let pending = q.entries.iter().filter(|e| e.awaits_containment()).count();
        self.quarantine_pending.store(pending, Ordering::Relaxed);
        self.quarantine_changed.notify_all();
    }

    /// Waits up to `timeout` for the time to contain of the entry for `target`; `None` when no
    /// enforced drop of its traffic was seen in time ("no traffic yet").
    pub fn wait_time_to_contain(&self, target: &QuarantineTarget, timeout: Duration) -> Option<u64> {
        let deadline = std::time::Instant::now() + timeout;
        let mut q = self.quarantine();
        loop {
            let ttc = q.entries.iter().find(|e| &e.target == target).and_then(|e| e.time_to_contain_ns);
            if ttc.is_some() {
                return ttc;
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return None;
            }
            q = self
                .quarantine_changed
                .wait_timeout(q, deadline - now)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }

    /// Asks the daemon to stop (the control socket's `stop` is not exposed; tests and the signal
    /// path use this).
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulkhead_engine::{FlowEventKind, Verdict};
    use bulkhead_tables::Mode;

    fn info(g: u64) -> PolicyInfo {
        PolicyInfo {
            path: PathBuf::from("p.yaml"),
            generation: g,
            loaded_at_unix: 0.0,
            loaded_mono_ns: 0,
            identities: 0,
            rules: 0,
            acl_rules: 0,
            cause: "start".into(),
        }
    }

    fn state() -> State {
        let h = Arc::new(TableHandle::new(TableSet::empty(1)));
        let w = WorkerHandle {
            id: 0,
            counters: Arc::new(WorkerCounters::new(0)),
            latency: Arc::new(LatencyRecorder::new()),
            io: None,
            flows: Arc::new(FlowRequests::default()),
        };
        State::new(h, info(1), RunInfo::default(), vec![w])
    }

    #[test]
    fn targets_parse_and_print() {
        let a: QuarantineTarget = "198.18.1.10".parse().unwrap();
        assert_eq!(a, QuarantineTarget::Address { net: "198.18.1.10".parse().unwrap(), len: 32 });
        assert_eq!(a.to_string(), "198.18.1.10");
        let p: QuarantineTarget = "198.18.1.0/24".parse().unwrap();
        assert_eq!(p.to_string(), "198.18.1.0/24");
        let i: QuarantineTarget = "corp-laptop".parse().unwrap();
        assert_eq!(i, QuarantineTarget::Identity("corp-laptop".into()));
        assert!("198.18.1.1/24".parse::<QuarantineTarget>().unwrap_err().contains("host bits"));
        assert!("198.18.1.0/33".parse::<QuarantineTarget>().is_err());
        assert!("198.18.1".parse::<QuarantineTarget>().is_err());
        assert!("a b".parse::<QuarantineTarget>().is_err());
        assert!("".parse::<QuarantineTarget>().is_err());
    }

    #[test]
    fn exceptions_parse_and_print() {
        let e: QuarantineExceptionArg = "198.18.9.9/32:tcp/22".parse().unwrap();
        assert_eq!(e.peer, ("198.18.9.9".parse().unwrap(), 32));
        assert_eq!((e.proto, e.ports), (Some(6), (22, 22)));
        assert_eq!(e.to_string(), "198.18.9.9/32:tcp/22");
        let e: QuarantineExceptionArg = "198.18.9.0/24:8000-8080".parse().unwrap();
        assert_eq!((e.proto, e.ports), (None, (8000, 8080)));
        let e: QuarantineExceptionArg = "198.18.9.9".parse().unwrap();
        assert_eq!((e.proto, e.ports), (None, (0, u16::MAX)));
        assert_eq!(e.to_string(), "198.18.9.9/32");
        let e: QuarantineExceptionArg = "[2001:db8::/64]:udp/53".parse().unwrap();
        assert_eq!(e.to_string(), "[2001:db8::/64]:udp/53");
        let e: QuarantineExceptionArg = "2001:db8::/64".parse().unwrap();
        assert_eq!(e.peer.1, 64);
        assert!("198.18.9.9:tcp/0-x".parse::<QuarantineExceptionArg>().is_err());
        assert!("198.18.9.9:9-1".parse::<QuarantineExceptionArg>().is_err());
        assert!("198.18.9.9:gre/1".parse::<QuarantineExceptionArg>().is_err());
        assert!("[2001:db8::/64".parse::<QuarantineExceptionArg>().is_err());
        assert!("[2001:db8::/64]22".parse::<QuarantineExceptionArg>().is_err());
        assert!("web:22".parse::<QuarantineExceptionArg>().is_err());
    }

    fn drop_event(generation: u64, ts_ns: u64, src: &str) -> FlowEvent {
        FlowEvent {
            ts_ns,
            kind: FlowEventKind::Denied,
            worker: 0,
            src: src.parse().unwrap(),
            dst: "198.19.1.10".parse().unwrap(),
            proto: 6,
            sport: 40000,
            dport: 80,
            verdict: Verdict::Drop(bulkhead_engine::DropReason::Quarantined),
            decision: Decision::Quarantined,
            mode: Mode::Enforce,
            src_identity: 0,
            dst_identity: 0,
            generation,
            packets: 1,
            bytes: 60,
        }
    }

    #[test]
    fn time_to_contain_is_taken_from_the_first_matching_enforced_drop() {
        let s = state();
        let target: QuarantineTarget = "198.18.1.10".parse().unwrap();
        s.set_quarantine_entries(vec![QuarantineEntry {
            target: target.clone(),
            exceptions: vec![],
            source: QuarantineSource::Runtime,
            added_at_unix: 0,
            added_mono_ns: 1_000,
            generation: 2,
            time_to_contain_ns: None,
            restored: false,
        }]);
        // Older generation, other address: ignored.
        s.observe_quarantine_drop(&drop_event(1, 5_000, "198.18.1.10"));
        s.observe_quarantine_drop(&drop_event(2, 5_000, "198.18.1.11"));
        assert_eq!(s.wait_time_to_contain(&target, Duration::ZERO), None);
        s.observe_quarantine_drop(&drop_event(2, 8_000, "198.18.1.10"));
        s.observe_quarantine_drop(&drop_event(2, 9_000, "198.18.1.10"));
        assert_eq!(s.wait_time_to_contain(&target, Duration::ZERO), Some(7_000));
        assert_eq!(s.time_to_contain().len(), 1);
    }

    #[test]
    fn publish_keeps_recent_generations_and_refuses_going_back() {
        let s = state();
        for g in 2..=12 {
            s.publish(TableSet::empty(g), info(g)).unwrap();
        }
        assert_eq!(s.current().generation, 12);
        assert_eq!(s.policy().generation, 12);
        assert_eq!(s.tables_for(9).generation, 9);
        assert_eq!(s.tables_for(2).generation, 12, "evicted generations fall back to the current");
        assert!(s.publish(TableSet::empty(5), info(5)).is_err());
        assert_eq!(s.policy().generation, 12);
        // An incremental lineage: 13 starts it, 14 and 15 continue it; the newest names all three
        // and is the only one kept (an older copy would pin the updater's spare).
        s.publish(TableSet::empty(13), info(13)).unwrap();
        let mid = Arc::new(TableSet::empty(14));
        s.publish_arc(Arc::clone(&mid), info(14), true).unwrap();
        s.publish_arc(Arc::new(TableSet::empty(15)), info(15), true).unwrap();
        assert_eq!(Arc::strong_count(&mid), 1, "the recent list no longer holds generation 14");
        for g in 13..=15 {
            assert_eq!(s.tables_for(g).generation, 15);
        }
        assert_eq!(s.tables_for(12).generation, 12);
    }

    #[test]
    fn flow_request_mailbox_is_bounded() {
        let m = FlowRequests::default();
        assert!(!m.pending());
        let (tx, _rx) = std::sync::mpsc::sync_channel(1);
        let req = || FlowRequest {
            limit: 1,
            filter: bulkhead_engine::FlowFilter::default(),
            from: None,
            to: None,
            reply: tx.clone(),
        };
        for _ in 0..4 {
            m.submit(req()).unwrap();
        }
        assert!(m.submit(req()).is_err());
        assert!(m.pending());
        for _ in 0..4 {
            assert!(m.take().is_some());
        }
        assert!(m.take().is_none());
        assert!(!m.pending());
    }
}
