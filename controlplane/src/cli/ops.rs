//! Operator verbs over the control socket: `status`, `stats`, `reload`, `quarantine`, `flows`.
//!
//! Each sends one request ([`crate::daemon::protocol`]) and prints the reply: human-readable by
//! default, the reply's `data` as JSON with `--json`. Exit codes: 0 success; 1 the daemon
//! refused (e.g. a reload with a broken policy: its error is printed and the running policy
//! stays) or cannot be reached.

use crate::daemon::control::request;
use crate::daemon::flowlog::rfc3339;
use crate::daemon::protocol::*;
use clap::{Args, Subcommand};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Options shared by every verb.
#[derive(Debug, Args, Clone)]
pub struct ControlOpt {
    /// Control socket of the running firewall.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_CONTROL_PATH)]
    pub control: PathBuf,
    /// Print the reply's data as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub opt: ControlOpt,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    #[command(flatten)]
    pub opt: ControlOpt,
}

#[derive(Debug, Args)]
pub struct ReloadArgs {
    /// Policy file or directory (default: the one the daemon runs).
    pub path: Option<PathBuf>,
    #[command(flatten)]
    pub opt: ControlOpt,
}

#[derive(Debug, Subcommand)]
pub enum QuarantineCmd {
    /// Quarantine an address, CIDR or identity (new and established flows are cut at once).
    Add {
        /// Address, CIDR or identity name.
        target: String,
        /// Allowed traffic that still passes: CIDR[:[PROTO/]PORT[-PORT]] (e.g. a forensics host); an
        /// exception never opens what the policy does not allow.
        #[arg(long = "except", value_name = "CIDR[:PORTS]")]
        exceptions: Vec<String>,
        /// Wait this long (ms, at most 10000) for the first enforced drop to report the time to
        /// contain.
        #[arg(long, value_name = "MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(0..=crate::daemon::control::MAX_CONTAIN_WAIT.as_millis() as u64))]
        wait_ms: u64,
        #[command(flatten)]
        opt: ControlOpt,
    },
    /// Lift a runtime quarantine.
    Remove {
        target: String,
        #[command(flatten)]
        opt: ControlOpt,
    },
    /// List quarantined workloads, exceptions and time to contain.
    List {
        #[command(flatten)]
        opt: ControlOpt,
    },
}

#[derive(Debug, Args)]
pub struct FlowsArgs {
    /// Only flows opened by this address.
    #[arg(long, value_name = "ADDR")]
    pub from: Option<String>,
    /// Only flows opened towards this address.
    #[arg(long, value_name = "ADDR")]
    pub to: Option<String>,
    /// At most this many flows (1 to 100000).
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=crate::daemon::control::MAX_FLOWS_LIMIT as i64))]
    pub limit: u32,
    #[command(flatten)]
    pub opt: ControlOpt,
}

/// Sends `req` and hands the reply's data to `show` (or prints it as JSON).
fn call(
    opt: &ControlOpt,
    req: &Request,
    timeout: Duration,
    show: impl FnOnce(serde_json::Value) -> Result<String, String>,
) -> ExitCode {
    let reply = match request(&opt.control, req, timeout) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bulkhead: {e}");
            return ExitCode::from(1);
        }
    };
    if !reply.ok {
        eprintln!("bulkhead: {}", reply.error.unwrap_or_else(|| "the daemon refused the request".into()));
        return ExitCode::from(1);
    }
    let data = reply.data.unwrap_or(serde_json::Value::Null);
    if opt.json {
        println!("{}", serde_json::to_string_pretty(&data).unwrap_or_default());
        return ExitCode::SUCCESS;
    }
    match show(data) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bulkhead: unexpected reply: {e}");
            ExitCode::from(1)
        }
    }
}

fn decode<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T, String> {
    serde_json::from_value(v).map_err(|e| e.to_string())
}

const TIMEOUT: Duration = Duration::from_secs(10);

fn ns(v: u64) -> String {
    match v {
        0..=9_999 => format!("{v}ns"),
        10_000..=9_999_999 => format!("{:.1}us", v as f64 / 1e3),
        10_000_000..=9_999_999_999 => format!("{:.1}ms", v as f64 / 1e6),
        _ => format!("{:.1}s", v as f64 / 1e9),
    }
}

fn pct(p: &PercentilesData) -> String {
    if p.count == 0 {
        return "no samples".into();
    }
    format!(
        "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  ({} samples)",
        ns(p.p50),
        ns(p.p90),
        ns(p.p99),
        ns(p.p999),
        ns(p.max),
        p.count
    )
}

pub fn status(a: StatusArgs) -> ExitCode {
    call(&a.opt, &Request::Status, TIMEOUT, |v| {
        let s: StatusData = decode(v)?;
        let mut o = String::new();
        let _ = writeln!(
            o,
            "bulkhead {} (pid {}), up {:.0}s since {}",
            s.version, s.pid, s.uptime_s, s.started_at
        );
        let _ = writeln!(
            o,
            "interfaces: inside {} outside {} ({} mode, {} worker{})",
            s.run.inside,
            s.run.outside,
            s.run.xdp_mode,
            s.run.workers,
            if s.run.workers == 1 { "" } else { "s" }
        );
        let _ = writeln!(
            o,
            "policy: {} generation {} ({}; {:.0}s ago; {} identities, {} rules, {} ACL lines)",
            s.policy.path.display(),
            s.policy.generation,
            s.policy.cause,
            s.policy_age_s,
            s.policy.identities,
            s.policy.rules,
            s.policy.acl_rules
        );
        let _ = writeln!(o, "reloads: {} ok, {} rejected", s.reloads_ok, s.reloads_failed);
        if let Some(f) = &s.last_reload_failure {
            let _ = writeln!(
                o,
                "last rejected reload ({}, {}):\n{}",
                rfc3339(f.at_unix),
                f.path.display(),
                f.error
            );
        }
        let _ = writeln!(o, "quarantined: {}", s.quarantined);
        if let Some(m) = &s.run.metrics {
            let _ = writeln!(o, "metrics: {m}");
        }
        if let Some(f) = &s.run.flow_log {
            let _ = writeln!(o, "flow log: {f}");
        }
        Ok(o)
    })
}

fn counters_lines(o: &mut String, c: &CountersData, indent: &str) {
    let _ = writeln!(
        o,
        "{indent}packets {}  bytes {}  pass {}  would_deny {}  dropped {}",
        c.packets, c.bytes, c.pass, c.would_deny, c.dropped
    );
    if !c.drops.is_empty() {
        let d: Vec<String> = c.drops.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(o, "{indent}drops: {}", d.join(", "));
    }
    let _ = writeln!(
        o,
        "{indent}flows active {}/{}  created {}  revoked {}  evicted {}  expired {}  closed {}",
        c.flows_active,
        c.flow_capacity,
        c.flows_created,
        c.flows_revoked,
        c.flows_evicted,
        c.flows_expired,
        c.flows_closed
    );
}

pub fn stats(a: StatsArgs) -> ExitCode {
    call(&a.opt, &Request::Stats, TIMEOUT, |v| {
        let s: StatsData = decode(v)?;
        let mut o = String::new();
        let _ = writeln!(
            o,
            "generation {}  uptime {:.0}s  quarantined {}",
            s.generation, s.uptime_s, s.quarantined
        );
        let _ = writeln!(o, "total:");
        counters_lines(&mut o, &s.total, "  ");
        for w in &s.workers {
            let _ = writeln!(o, "worker {}:", w.id);
            counters_lines(&mut o, &w.counters, "  ");
            if let Some(io) = &w.io {
                let _ = writeln!(
                    o,
                    "  io: inside rx {} fwd {}  outside rx {} fwd {}  tx-ring-full {}",
                    io.from_inside.rx_packets,
                    io.from_inside.forwarded,
                    io.from_outside.rx_packets,
                    io.from_outside.forwarded,
                    io.from_inside.tx_ring_full + io.from_outside.tx_ring_full
                );
            }
        }
        let _ = writeln!(o, "latency: {}", pct(&s.latency_ns));
        let _ = writeln!(o, "time to contain: {}", pct(&s.time_to_contain_ns));
        let _ = writeln!(
            o,
            "flow log: {}  written {}  dropped {}  write errors {}",
            if s.flow_log.enabled { "on" } else { "off" },
            s.flow_log.written,
            s.flow_log.dropped,
            s.flow_log.write_errors
        );
        Ok(o)
    })
}

pub fn reload(a: ReloadArgs) -> ExitCode {
    let path = a.path.map(|p| absolute(&p));
    call(&a.opt, &Request::Reload { path }, Duration::from_secs(120), |v| {
        let r: ReloadData = decode(v)?;
        let mut o = format!(
            "reloaded {}: generation {} ({} identities, {} rules, {} ACL lines) in {:.1} ms{}\n",
            r.path.display(),
            r.generation,
            r.identities,
            r.rules,
            r.acl_rules,
            r.took_ms,
            if r.applied.is_empty() { String::new() } else { format!(", {}", r.applied) }
        );
        for w in r.warnings {
            let _ = writeln!(o, "warning: {w}");
        }
        Ok(o)
    })
}

/// The daemon resolves paths in its own working directory: send absolute ones.
fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().map_or_else(|_| p.to_path_buf(), |d| d.join(p))
    }
}

fn quarantine_line(e: &QuarantineData) -> String {
    let mut s = format!(
        "{}  ({}, generation {}",
        e.target,
        serde_json::to_value(e.source).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
        e.generation
    );
    if let Some(at) = &e.added_at {
        let _ = write!(s, ", since {at}");
    }
    match e.time_to_contain_ns {
        Some(t) => {
            let _ = write!(s, ", contained in {}", ns(t));
        }
        None if e.restored => s.push_str(", restored at start and enforced from its first generation"),
        None if e.added_at.is_some() => s.push_str(", no enforced drop yet"),
        None => {}
    }
    s.push(')');
    if !e.exceptions.is_empty() {
        let _ = write!(s, "  except {}", e.exceptions.join(", "));
    }
    s
}

pub fn quarantine(c: QuarantineCmd) -> ExitCode {
    match c {
        QuarantineCmd::Add { target, exceptions, wait_ms, opt } => {
            let req = Request::QuarantineAdd { target, exceptions, wait_ms: Some(wait_ms) };
            call(&opt, &req, TIMEOUT + Duration::from_millis(wait_ms), |v| {
                let r: QuarantineAddData = decode(v)?;
                Ok(match r.entry.time_to_contain_ns {
                    Some(t) => format!(
                        "quarantined {} (generation {}); contained in {}\n",
                        r.entry.target,
                        r.entry.generation,
                        ns(t)
                    ),
                    None => format!(
                        "quarantined {} (generation {}); {}: the time to contain is recorded at its first enforced drop\n",
                        r.entry.target, r.entry.generation, r.note
                    ),
                })
            })
        }
        QuarantineCmd::Remove { target, opt } => {
            call(&opt, &Request::QuarantineRemove { target }, TIMEOUT, |v| {
                let r: QuarantineRemoveData = decode(v)?;
                Ok(format!("lifted the quarantine of {} (generation {})\n", r.target, r.generation))
            })
        }
        QuarantineCmd::List { opt } => call(&opt, &Request::QuarantineList, TIMEOUT, |v| {
            let l: QuarantineListData = decode(v)?;
            let mut o = String::new();
            if l.entries.is_empty() {
                o.push_str("nothing is quarantined\n");
            }
            for e in &l.entries {
                let _ = writeln!(o, "{}", quarantine_line(e));
            }
            if !l.exceptions.is_empty() {
                let _ = writeln!(o, "exceptions in force: {}", l.exceptions.join(", "));
            }
            if l.time_to_contain_ns.count > 0 {
                let _ = writeln!(o, "time to contain: {}", pct(&l.time_to_contain_ns));
            }
            Ok(o)
        }),
    }
}

pub fn flows(a: FlowsArgs) -> ExitCode {
    let req = Request::Flows { from: a.from, to: a.to, limit: Some(a.limit as usize) };
    call(&a.opt, &req, TIMEOUT, |v| {
        let f: FlowsData = decode(v)?;
        let mut o = String::new();
        for x in &f.flows {
            let ep = |ip: &str, port: u16| {
                if matches!(x.transport.as_str(), "tcp" | "udp" | "sctp") {
                    if ip.contains(':') {
                        format!("[{ip}]:{port}")
                    } else {
                        format!("{ip}:{port}")
                    }
                } else {
                    ip.to_string()
                }
            };
            let _ = writeln!(
                o,
                "{:<5} {:>21} -> {:<21} {:<12} {}{} {} ({} -> {}) gen {} pkts {} bytes {} idle {:.1}s",
                x.transport,
                ep(&x.src, x.sport),
                ep(&x.dst, x.dport),
                x.state,
                x.reason,
                x.rule.as_deref().map(|r| format!(" {r}")).unwrap_or_default(),
                if x.would_deny { "WOULD_DENY" } else { "" },
                x.src_identity,
                x.dst_identity,
                x.generation,
                x.packets,
                x.bytes,
                x.idle_s
            );
        }
        let _ = writeln!(
            o,
            "{} flow{}{} ({} of {} workers answered)",
            f.flows.len(),
            if f.flows.len() == 1 { "" } else { "s" },
            if f.truncated { " (limit reached)" } else { "" },
            f.workers_answered,
            f.workers_total
        );
        Ok(o)
    })
}
