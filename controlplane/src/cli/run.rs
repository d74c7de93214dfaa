//! `bulkhead run`: start the firewall between two interfaces (see [`crate::daemon::run`]).

use crate::daemon::flowlog::EventObserver;
use crate::daemon::protocol::DEFAULT_CONTROL_PATH;
use crate::daemon::run::{LogFormat, RunConfig};
use crate::daemon::State;
use bulkhead_xdp::XdpMode;
use clap::{Args, ValueEnum};
use std::any::Any;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// XDP attach mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// In the driver (fast path; veth supports it).
    Native,
    /// In the generic network stack (any device, slower).
    Generic,
}

/// Daemon log format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormatArg {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The protected-side interface.
    #[arg(long, value_name = "IFACE")]
    pub inside: String,
    /// The other-side interface.
    #[arg(long, value_name = "IFACE")]
    pub outside: String,
    /// Policy file or directory (YAML).
    #[arg(long, value_name = "PATH")]
    pub policy: PathBuf,
    /// Worker threads (one per queue pair).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub workers: u32,
    /// XDP attach mode.
    #[arg(long, value_enum, default_value_t = ModeArg::Native)]
    pub xdp_mode: ModeArg,
    /// Serve Prometheus metrics on ADDR (a bare port binds to 127.0.0.1).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
    /// Write flow logs (ECS JSON lines) to PATH, or `-` for stdout.
    #[arg(long, value_name = "PATH|-")]
    pub flow_log: Option<String>,
    /// Also log connection start and end records (with packet and byte counts).
    #[arg(long)]
    pub flow_log_start_end: bool,
    /// Control socket path.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_CONTROL_PATH)]
    pub control: PathBuf,
    /// Daemon log format (stderr; filter with BULKHEAD_LOG, e.g. `debug`).
    #[arg(long, value_enum, default_value_t = LogFormatArg::Text)]
    pub log_format: LogFormatArg,
    /// Flow-table capacity per worker (memory, about 128 bytes a flow, is allocated once for it;
    /// 1 to 33554432).
    #[arg(long, value_name = "N", default_value_t = 1 << 18,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(bulkhead_engine::MAX_FLOW_CAPACITY)))]
    pub flow_capacity: u32,
    /// Flow-event queue capacity per worker (records beyond it are dropped and counted).
    #[arg(long, value_name = "N", default_value_t = 1 << 16)]
    pub flow_queue: usize,
    /// File keeping runtime quarantines across restarts (read at start, rewritten on every
    /// `quarantine add/remove`). Default: beside the control socket,
    /// `<control stem>.quarantine.json`; `none` keeps nothing.
    #[arg(long, value_name = "PATH|none")]
    pub quarantine_state: Option<String>,
}

impl RunArgs {
    pub fn config(&self) -> RunConfig {
        RunConfig {
            inside: self.inside.clone(),
            outside: self.outside.clone(),
            policy: self.policy.clone(),
            workers: self.workers,
            xdp_mode: match self.xdp_mode {
                ModeArg::Native => XdpMode::Native,
                ModeArg::Generic => XdpMode::Generic,
            },
            // As it will be bound (`9464` -> `127.0.0.1:9464`), for `status`; an unparsable one
            // stays as written and fails at start with its error.
            metrics: self.metrics.as_deref().map(|m| {
                crate::metrics::parse_listen_addr(m).map_or_else(|_| m.to_string(), |a| a.to_string())
            }),
            flow_log: self.flow_log.clone(),
            flow_log_start_end: self.flow_log_start_end,
            control: self.control.clone(),
            log_format: match self.log_format {
                LogFormatArg::Text => LogFormat::Text,
                LogFormatArg::Json => LogFormat::Json,
            },
            flow_capacity: self.flow_capacity,
            flow_queue: self.flow_queue,
            quarantine_state: match self.quarantine_state.as_deref() {
                Some("none") => None,
                Some(p) => Some(PathBuf::from(p)),
                None => Some(crate::daemon::persist::default_path(&self.control)),
            },
        }
    }
}

/// Starts the Prometheus endpoint ([`crate::metrics`]) and hands its KPI counters to the
/// flow-event drain.
fn start_metrics(
    addr: &str,
    state: Arc<State>,
) -> Result<(Box<dyn Any + Send>, Option<EventObserver>), String> {
    let sa = crate::metrics::parse_listen_addr(addr)?;
    let kpis = Arc::new(crate::metrics::Kpis::new());
    let server = crate::metrics::serve(sa, state, Some(Arc::clone(&kpis))).map_err(|e| e.to_string())?;
    tracing::info!(addr = %server.local_addr(), "metrics endpoint listening");
    let observer: EventObserver = Box::new(move |ev, tables| kpis.observe(ev, tables));
    Ok((Box::new(server), Some(observer)))
}

pub fn run(a: RunArgs) -> ExitCode {
    crate::daemon::run::run(a.config(), Some(start_metrics))
}
