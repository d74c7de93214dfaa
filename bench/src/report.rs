//! Results of a benchmark run: what was measured, how it compares with the peer measured in the
//! same run, and the three renderings a performance engineer reads (Markdown, JSON, SVG).
//!
//! Every number a scenario produces is a [`Measurement`] of one system (Bulkhead or a peer) in one
//! case; every side-by-side claim is a [`Comparison`] that names both values, their ratio and the
//! target from the issue. Targets are reported, never asserted: the harness has no thresholds.

use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Latency percentiles in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Percentiles {
    /// Percentiles of an HdrHistogram (empty histogram: all zero).
    pub fn of(h: &hdrhistogram::Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// A latency distribution drawn in the SVG: (quantile, nanoseconds) points.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Curve {
    pub label: String,
    pub points: Vec<(f64, u64)>,
}

impl Curve {
    /// Samples a histogram at quantiles 0 .. 0.99999 (denser toward the tail), plus the max.
    pub fn of(label: impl Into<String>, h: &hdrhistogram::Histogram<u64>) -> Self {
        let mut points = Vec::new();
        if !h.is_empty() {
            // Evenly spaced in "nines": q = 1 - 10^(-x), x in [0, 5].
            for i in 0..=100 {
                let x = f64::from(i) * 0.05;
                let q = 1.0 - 10f64.powf(-x);
                points.push((q, h.value_at_quantile(q)));
            }
        }
        Self { label: label.into(), points }
    }
}

/// One measured figure set: one system in one case of one scenario.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Measurement {
    /// Scenario name (`engine`, `classify`, `swap`, `xdp`, `synflood`).
    pub scenario: String,
    /// The case within the scenario, e.g. `10k flows, 1 worker` or `fw1 10k`.
    pub case: String,
    /// `bulkhead`, or the peer's name (`rte_acl`, `testpmd`, `nftables`).
    pub system: String,
    /// Packets (or lookups) timed.
    pub packets: u64,
    /// Wall-clock seconds of the timed section.
    pub seconds: f64,
    /// Million packets (lookups) per second, over all workers.
    pub mpps: Option<f64>,
    /// Nanoseconds per packet per worker (workers x seconds / packets).
    pub ns_per_packet: Option<f64>,
    pub latency: Option<Percentiles>,
    /// Scenario-specific figures (build time, memory, bytes per flow, counters...).
    pub extra: BTreeMap<String, f64>,
    /// Free-text remarks (what was measured, caveats).
    pub note: Option<String>,
}

impl Measurement {
    pub fn new(scenario: &str, case: impl Into<String>, system: &str) -> Self {
        Self { scenario: scenario.into(), case: case.into(), system: system.into(), ..Self::default() }
    }

    /// Fills packets, seconds, Mpps and ns/packet from a timed run over `workers` threads.
    pub fn with_rate(mut self, packets: u64, seconds: f64, workers: usize) -> Self {
        self.packets = packets;
        self.seconds = seconds;
        if seconds > 0.0 && packets > 0 {
            self.mpps = Some(packets as f64 / seconds / 1e6);
            self.ns_per_packet = Some(seconds * 1e9 * workers.max(1) as f64 / packets as f64);
        }
        self
    }

    pub fn extra(mut self, key: &str, value: f64) -> Self {
        self.extra.insert(key.to_string(), value);
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }
}

/// Which way a metric is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Better {
    Higher,
    Lower,
}

/// A side-by-side figure: Bulkhead vs a peer (or vs a baseline) in the same run.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    pub scenario: String,
    pub case: String,
    /// What is compared, e.g. `lookups/s vs rte_acl`.
    pub metric: String,
    pub bulkhead: f64,
    pub peer: f64,
    /// bulkhead / peer.
    pub ratio: f64,
    /// The target ratio from the issue, if any (e.g. 0.5 for "at least half").
    pub target: Option<f64>,
    pub better: Better,
    /// Whether the target is met (None without a target or without a usable peer figure).
    pub met: Option<bool>,
}

impl Comparison {
    pub fn new(
        scenario: &str,
        case: &str,
        metric: &str,
        bulkhead: f64,
        peer: f64,
        target: Option<f64>,
        better: Better,
    ) -> Self {
        let ratio = if peer != 0.0 { bulkhead / peer } else { f64::NAN };
        let met = target.filter(|_| ratio.is_finite()).map(|t| match better {
            Better::Higher => ratio >= t,
            Better::Lower => ratio <= t,
        });
        Self {
            scenario: scenario.into(),
            case: case.into(),
            metric: metric.into(),
            bulkhead,
            peer,
            ratio,
            target,
            better,
            met,
        }
    }
}

/// A target on an absolute figure (e.g. Mpps per core, bytes per flow, lost packets).
#[derive(Clone, Debug, Serialize)]
pub struct Target {
    pub scenario: String,
    pub case: String,
    pub metric: String,
    pub value: f64,
    pub target: f64,
    pub better: Better,
    pub met: bool,
}

impl Target {
    pub fn new(scenario: &str, case: &str, metric: &str, value: f64, target: f64, better: Better) -> Self {
        let met = match better {
            Better::Higher => value >= target,
            Better::Lower => value <= target,
        };
        Self {
            scenario: scenario.into(),
            case: case.into(),
            metric: metric.into(),
            value,
            target,
            better,
            met,
        }
    }
}

/// Everything one run of `bulkhead-bench` produced.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub quick: bool,
    /// Machine facts (CPU model, cores, kernel) so numbers are read in context.
    pub host: BTreeMap<String, String>,
    pub measurements: Vec<Measurement>,
    pub comparisons: Vec<Comparison>,
    pub targets: Vec<Target>,
    /// Latency curves for the SVG plot.
    pub curves: Vec<Curve>,
    /// Remarks: skipped peers, missing privileges, what was approximated.
    pub notes: Vec<String>,
}

impl Report {
    pub fn new(quick: bool) -> Self {
        Self { quick, host: host_info(), ..Self::default() }
    }

    pub fn merge(&mut self, other: Report) {
        self.measurements.extend(other.measurements);
        self.comparisons.extend(other.comparisons);
        self.targets.extend(other.targets);
        self.curves.extend(other.curves);
        self.notes.extend(other.notes);
    }

    /// The Markdown rendering: one table of measurements per scenario, then the comparisons and
    /// targets, then the notes.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# Bulkhead benchmark results{}\n",
            if self.quick { " (quick smoke run)" } else { "" }
        );
        if !self.host.is_empty() {
            let host: Vec<String> = self.host.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            let _ = writeln!(s, "Host: {}\n", host.join("; "));
        }
        let mut scenarios: Vec<&str> = Vec::new();
        for m in &self.measurements {
            if !scenarios.contains(&m.scenario.as_str()) {
                scenarios.push(&m.scenario);
            }
        }
        for sc in scenarios {
            let rows: Vec<&Measurement> = self.measurements.iter().filter(|m| m.scenario == sc).collect();
            let mut extra_keys: Vec<&str> = Vec::new();
            for m in &rows {
                for k in m.extra.keys() {
                    if !extra_keys.contains(&k.as_str()) {
                        extra_keys.push(k);
                    }
                }
            }
            let _ = writeln!(s, "## {sc}\n");
            let mut header =
                "| case | system | Mpps | ns/pkt | p50 ns | p90 ns | p99 ns | p99.9 ns | max ns |"
                    .to_string();
            let mut rule = "|---|---|--:|--:|--:|--:|--:|--:|--:|".to_string();
            for k in &extra_keys {
                let _ = write!(header, " {k} |");
                rule.push_str("--:|");
            }
            let _ = writeln!(s, "{header}\n{rule}");
            for m in rows {
                let lat = m.latency.map_or_else(
                    || "| | | | | ".to_string(),
                    |l| format!("| {} | {} | {} | {} | {} ", l.p50, l.p90, l.p99, l.p999, l.max),
                );
                let _ = write!(
                    s,
                    "| {} | {} | {} | {} {}|",
                    m.case,
                    m.system,
                    fmt_opt(m.mpps, 3),
                    fmt_opt(m.ns_per_packet, 1),
                    lat
                );
                for k in &extra_keys {
                    let _ = write!(s, " {} |", m.extra.get(*k).map_or(String::new(), |v| fmt_num(*v)));
                }
                s.push('\n');
            }
            let notes: Vec<String> = self
                .measurements
                .iter()
                .filter(|m| m.scenario == sc)
                .filter_map(|m| m.note.as_ref().map(|n| format!("- {} / {}: {n}", m.case, m.system)))
                .collect();
            if !notes.is_empty() {
                let _ = writeln!(s, "\n{}", notes.join("\n"));
            }
            s.push('\n');
        }
        if !self.comparisons.is_empty() {
            let _ = writeln!(s, "## Side by side (same run)\n");
            let _ = writeln!(s, "| scenario | case | metric | bulkhead | peer | ratio | target | met |");
            let _ = writeln!(s, "|---|---|---|--:|--:|--:|--:|---|");
            for c in &self.comparisons {
                let target = c.target.map_or(String::new(), |t| {
                    format!("{} {}x", if c.better == Better::Higher { ">=" } else { "<=" }, fmt_num(t))
                });
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} | {} | {} |",
                    c.scenario,
                    c.case,
                    c.metric,
                    fmt_num(c.bulkhead),
                    fmt_num(c.peer),
                    if c.ratio.is_finite() { format!("{:.3}x", c.ratio) } else { "n/a".into() },
                    target,
                    met_str(c.met)
                );
            }
            s.push('\n');
        }
        if !self.targets.is_empty() {
            let _ = writeln!(s, "## Targets\n");
            let _ = writeln!(s, "| scenario | case | metric | value | target | met |");
            let _ = writeln!(s, "|---|---|---|--:|--:|---|");
            for t in &self.targets {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} {} | {} |",
                    t.scenario,
                    t.case,
                    t.metric,
                    fmt_num(t.value),
                    if t.better == Better::Higher { ">=" } else { "<=" },
                    fmt_num(t.target),
                    met_str(Some(t.met))
                );
            }
            s.push('\n');
        }
        if !self.notes.is_empty() {
            let _ = writeln!(s, "## Notes\n");
            for n in &self.notes {
                let _ = writeln!(s, "- {n}");
            }
        }
        s
    }

    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

fn met_str(m: Option<bool>) -> &'static str {
    match m {
        Some(true) => "yes",
        Some(false) => "**no**",
        None => "",
    }
}

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map_or(String::new(), |v| format!("{v:.digits$}"))
}

/// Compact number formatting: integers stay integers, others get 3 significant-ish digits.
pub fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return format!("{v:.0}");
    }
    let a = v.abs();
    if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 0.1 {
        format!("{v:.3}")
    } else {
        format!("{v:.5}")
    }
}

/// CPU model, logical cores and kernel release, read from /proc.
pub fn host_info() -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    if let Ok(cpu) = std::fs::read_to_string("/proc/cpuinfo") {
        if let Some(model) = cpu
            .lines()
            .find_map(|l| l.strip_prefix("model name").map(|r| r.trim_start_matches([' ', '\t', ':'])))
        {
            m.insert("cpu".into(), model.trim().to_string());
        }
    }
    m.insert("cores".into(), std::thread::available_parallelism().map_or(1, |n| n.get()).to_string());
    if let Ok(k) = std::fs::read_to_string("/proc/sys/kernel/osrelease") {
        m.insert("kernel".into(), k.trim().to_string());
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_fills_mpps_and_ns_per_packet_per_worker() {
        let m = Measurement::new("engine", "c", "bulkhead").with_rate(2_000_000, 0.5, 2);
        assert_eq!(m.mpps, Some(4.0));
        // 2 workers busy 0.5 s each for 2M packets = 500 ns of worker time per packet.
        assert_eq!(m.ns_per_packet, Some(500.0));
    }

    #[test]
    fn comparison_judges_target_in_the_right_direction() {
        let c = Comparison::new("classify", "fw1 1k", "lookups/s", 9.0, 10.0, Some(1.0), Better::Higher);
        assert_eq!(c.met, Some(false));
        let c = Comparison::new("classify", "fw1 1k", "build time", 1.0, 40.0, Some(0.05), Better::Lower);
        assert_eq!(c.met, Some(true));
        let c = Comparison::new("classify", "fw1 1k", "lookups/s", 9.0, 0.0, Some(1.0), Better::Higher);
        assert_eq!(c.met, None, "no peer figure, no verdict");
    }

    #[test]
    fn markdown_has_one_table_per_scenario_with_extra_columns() {
        let mut r = Report::new(true);
        r.measurements.push(
            Measurement::new("engine", "10k", "bulkhead").with_rate(10, 1.0, 1).extra("bytes/flow", 96.0),
        );
        r.measurements.push(Measurement::new("classify", "fw1", "rte_acl").with_rate(10, 1.0, 1));
        let md = r.markdown();
        assert!(md.contains("## engine"));
        assert!(md.contains("## classify"));
        assert!(md.contains("bytes/flow |"));
        assert!(md.contains("| 10k | bulkhead |"));
        let json = r.json();
        assert!(json.contains("\"bytes/flow\": 96.0"));
    }
}
