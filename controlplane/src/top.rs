//! `bulkhead top`: the NOC's live view of a running firewall.
//!
//! # Contract
//! - Data comes from the control socket only (`stats`, `status`, `quarantine_list`; see
//!   docs/control-protocol.md), one request per connection, so `top` needs no privilege beyond
//!   the socket's and never touches the dataplane.
//! - [`render`] is a pure function of two [`Sample`]s (the previous one, if any, and the current
//!   one) and returns the whole screen as text: rates are deltas over the samples' client-side
//!   time difference; with no previous sample (`--once`) rates are averages since the firewall
//!   started, and say so. Tests render fixed samples without a daemon.
//! - The reply structs here read only the fields `top` shows and default everything else, so a
//!   newer daemon with more fields (or an older one with fewer) still renders.
//! - The live mode redraws with plain ANSI (home + clear) once per second: no terminal library,
//!   and the output of `--once` is plain text for scripts.

use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read as _, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Engine counters as the `stats` reply carries them (totals or one worker).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Counters {
    pub packets: u64,
    pub bytes: u64,
    pub pass: u64,
    pub would_deny: u64,
    pub dropped: u64,
    pub drops: BTreeMap<String, u64>,
    pub flows_active: u64,
    pub flow_capacity: u64,
    pub flows_created: u64,
    pub flows_evicted: u64,
    pub flows_expired: u64,
    pub flows_revoked: u64,
    pub flows_closed: u64,
}

/// One worker of the `stats` reply.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct WorkerStats {
    pub id: u16,
    pub counters: Counters,
}

/// Percentiles in nanoseconds.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Percentiles {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

/// The `stats` reply data (the fields `top` shows).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Stats {
    pub uptime_s: f64,
    pub generation: u64,
    pub total: Counters,
    pub workers: Vec<WorkerStats>,
    pub latency_ns: Percentiles,
    pub quarantined: usize,
}

/// Everything one refresh shows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    /// Client-side monotonic time of the sample (seconds; only differences matter).
    pub at_s: f64,
    pub stats: Stats,
    /// From `status`; `None` when the daemon did not say.
    pub policy_age_s: Option<f64>,
    /// Quarantined workloads (from `quarantine_list`).
    pub quarantine: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// Formatting helpers
// ---------------------------------------------------------------------------------------------

/// 1234 -> `1.23k`, 1234567 -> `1.23M` (SI, three significant digits).
pub fn si(v: f64) -> String {
    let a = v.abs();
    let (d, suffix) = if a >= 1e12 {
        (1e12, "T")
    } else if a >= 1e9 {
        (1e9, "G")
    } else if a >= 1e6 {
        (1e6, "M")
    } else if a >= 1e3 {
        (1e3, "k")
    } else {
        (1.0, "")
    };
    let x = v / d;
    if suffix.is_empty() && (x.fract() == 0.0 || a >= 100.0) {
        format!("{x:.0}")
    } else if x.abs() >= 100.0 {
        format!("{x:.0}{suffix}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}{suffix}")
    } else {
        format!("{x:.2}{suffix}")
    }
}

/// Nanoseconds as `850ns`, `12.3µs`, `1.20ms`, `2.00s`.
pub fn dur_ns(ns: u64) -> String {
    let v = ns as f64;
    if ns < 1_000 {
        format!("{ns}ns")
    } else if ns < 1_000_000 {
        format!("{:.1}µs", v / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.2}ms", v / 1e6)
    } else {
        format!("{:.2}s", v / 1e9)
    }
}

/// Seconds as `45s`, `12m03s`, `3h07m`, `2d04h`.
pub fn age(s: f64) -> String {
    let s = s.max(0.0) as u64;
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else if s < 86_400 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600)
    }
}

/// Rates of one counter set between two samples.
struct Rates<'a> {
    cur: &'a Counters,
    prev: Option<&'a Counters>,
    dt: f64,
}

impl Rates<'_> {
    fn of(&self, f: impl Fn(&Counters) -> u64) -> f64 {
        let now = f(self.cur);
        let before = self.prev.map_or(0, &f);
        if self.dt <= 0.0 {
            0.0
        } else {
            now.saturating_sub(before) as f64 / self.dt
        }
    }

    fn drop_reason(&self, r: &str) -> f64 {
        self.of(|c| c.drops.get(r).copied().unwrap_or(0))
    }
}

/// The whole screen for `cur`, with rates against `prev` (see the module docs).
pub fn render(prev: Option<&Sample>, cur: &Sample) -> String {
    let st = &cur.stats;
    let (dt, window) = match prev {
        Some(p) if cur.at_s > p.at_s && cur.stats.uptime_s >= p.stats.uptime_s => {
            (cur.at_s - p.at_s, format!("rates over the last {:.1} s", cur.at_s - p.at_s))
        }
        _ => (st.uptime_s, "rates: averages since start".to_string()),
    };
    // A restarted daemon (uptime went down) is shown like a first sample.
    let prev = prev.filter(|p| cur.stats.uptime_s >= p.stats.uptime_s);
    let mut o = String::new();
    let policy_age = cur.policy_age_s.map_or_else(|| "?".to_string(), age);
    let _ = writeln!(
        o,
        "bulkhead top - generation {} (policy age {}) - up {} - {} workers - {}",
        st.generation,
        policy_age,
        age(st.uptime_s),
        st.workers.len(),
        window
    );
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "{:<10} {:>9} {:>10} {:>9} {:>9} {:>11} {:>9}",
        "", "packets/s", "bits/s", "allowed/s", "denied/s", "would_deny/s", "revoked/s"
    );
    let line = |o: &mut String, name: &str, c: &Counters, p: Option<&Counters>| {
        let r = Rates { cur: c, prev: p, dt };
        let _ = writeln!(
            o,
            "{:<10} {:>9} {:>10} {:>9} {:>9} {:>11} {:>9}",
            name,
            si(r.of(|c| c.packets)),
            si(r.of(|c| c.bytes) * 8.0),
            si(r.of(|c| c.pass)),
            si(r.of(|c| c.dropped)),
            si(r.of(|c| c.would_deny)),
            si(r.of(|c| c.flows_revoked)),
        );
    };
    line(&mut o, "total", &st.total, prev.map(|p| &p.stats.total));
    for w in &st.workers {
        let pw = prev.and_then(|p| p.stats.workers.iter().find(|x| x.id == w.id)).map(|x| &x.counters);
        line(&mut o, &format!("worker {}", w.id), &w.counters, pw);
    }
    let _ = writeln!(o);

    let r = Rates { cur: &st.total, prev: prev.map(|p| &p.stats.total), dt };
    let mut reasons: Vec<(&String, f64, u64)> =
        st.total.drops.iter().map(|(k, n)| (k, r.drop_reason(k), *n)).filter(|(_, _, n)| *n > 0).collect();
    reasons.sort_by(|a, b| b.1.total_cmp(&a.1).then(b.2.cmp(&a.2)).then(a.0.cmp(b.0)));
    if reasons.is_empty() {
        let _ = writeln!(o, "denied by reason: none");
    } else {
        let _ = writeln!(o, "denied by reason (/s, total):");
        for (k, rate, n) in reasons.iter().take(10) {
            let _ = writeln!(o, "  {:<24} {:>9} {:>12}", k, si(*rate), n);
        }
        if reasons.len() > 10 {
            let _ = writeln!(o, "  ... {} more reasons", reasons.len() - 10);
        }
    }
    let _ = writeln!(o);

    let t = &st.total;
    let fill =
        if t.flow_capacity == 0 { 0.0 } else { 100.0 * t.flows_active as f64 / t.flow_capacity as f64 };
    let _ = writeln!(
        o,
        "flows: active {} / {} ({:.1} % full)   created/s {}   evicted/s {}   expired/s {}   revoked/s {}",
        t.flows_active,
        t.flow_capacity,
        fill,
        si(r.of(|c| c.flows_created)),
        si(r.of(|c| c.flows_evicted)),
        si(r.of(|c| c.flows_expired)),
        si(r.of(|c| c.flows_revoked)),
    );
    let l = &st.latency_ns;
    if l.count == 0 {
        let _ = writeln!(o, "latency: no samples");
    } else {
        let _ = writeln!(
            o,
            "latency: p50 {}   p99 {}   p99.9 {}   max {}   ({} packets)",
            dur_ns(l.p50),
            dur_ns(l.p99),
            dur_ns(l.p999),
            dur_ns(l.max),
            l.count
        );
    }
    let _ = writeln!(o);
    if cur.quarantine.is_empty() && st.quarantined == 0 {
        let _ = writeln!(o, "quarantined: none");
    } else {
        let n = st.quarantined.max(cur.quarantine.len());
        let _ = writeln!(o, "quarantined ({n}): {}", cur.quarantine.join(", "));
    }
    o
}

// ---------------------------------------------------------------------------------------------
// The control-socket client
// ---------------------------------------------------------------------------------------------

/// Sends one request line and returns the reply's `data`.
///
/// # Errors
/// The socket cannot be reached, the reply is not JSON, or the daemon answered an error.
pub fn request(control: &Path, req: &Value) -> Result<Value, String> {
    let mut s = UnixStream::connect(control)
        .map_err(|e| format!("{}: {e} (is `bulkhead run` running?)", control.display()))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    writeln!(s, "{req}").map_err(|e| format!("{}: {e}", control.display()))?;
    let mut line = String::new();
    BufReader::new(&s)
        .take(16 << 20)
        .read_line(&mut line)
        .map_err(|e| format!("{}: {e}", control.display()))?;
    let v: Value =
        serde_json::from_str(&line).map_err(|e| format!("bad reply from {}: {e}", control.display()))?;
    if v["ok"] == Value::Bool(true) {
        Ok(v["data"].clone())
    } else {
        Err(v["error"].as_str().unwrap_or("the daemon refused the request").to_string())
    }
}

/// Takes one sample: `stats` (required), `status` and `quarantine_list` (optional).
///
/// # Errors
/// `stats` failed or did not decode.
pub fn sample(control: &Path, at_s: f64) -> Result<Sample, String> {
    let stats: Stats = serde_json::from_value(request(control, &serde_json::json!({"verb": "stats"}))?)
        .map_err(|e| format!("unexpected stats reply: {e}"))?;
    let policy_age_s = request(control, &serde_json::json!({"verb": "status"}))
        .ok()
        .and_then(|v| v["policy_age_s"].as_f64());
    let quarantine = request(control, &serde_json::json!({"verb": "quarantine_list"}))
        .ok()
        .and_then(|v| v["entries"].as_array().cloned())
        .map(|a| a.iter().filter_map(|e| e["target"].as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    Ok(Sample { at_s, stats, policy_age_s, quarantine })
}
