//! `bulkhead replay`: run a capture through the real engine under a policy (see [`crate::replay`]).

use crate::cli::stdout_failed;
use crate::replay::{self, ReplayError, ReplayPlan, RunOptions, DEFAULT_FLOW_CAPACITY};
use bulkhead_engine::EngineConfig;
use clap::Args;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Replay a pcap / pcapng capture through the engine: one line per packet and a summary.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Policy file or directory (generation 1).
    #[arg(long, value_name = "PATH")]
    pub policy: PathBuf,
    /// The capture (pcap or pcapng, Ethernet).
    #[arg(value_name = "CAPTURE")]
    pub capture: PathBuf,
    /// One JSON object per line (packets, changes, then the summary).
    #[arg(long)]
    pub json: bool,
    /// Hot-swap to the policy at PATH before packet N (repeatable).
    #[arg(long = "swap", value_name = "N=PATH")]
    pub swap: Vec<String>,
    /// Quarantine an address, CIDR or identity before packet N (repeatable).
    #[arg(long = "quarantine", value_name = "N=ADDR")]
    pub quarantine: Vec<String>,
    /// Write forwarded frames (pass and would-deny) to this pcap.
    #[arg(long, value_name = "FILE")]
    pub pass_out: Option<PathBuf>,
    /// Write dropped frames to this pcap.
    #[arg(long, value_name = "FILE")]
    pub drop_out: Option<PathBuf>,
    /// Flow-table capacity of the replay worker (about 128 bytes a flow; 1 to 33554432).
    #[arg(long, value_name = "FLOWS", default_value_t = DEFAULT_FLOW_CAPACITY,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(bulkhead_engine::MAX_FLOW_CAPACITY)))]
    pub flow_capacity: u32,
}

/// Runs the replay; exit 0 when the whole capture was replayed, 1 otherwise.
pub fn run(a: ReplayArgs) -> ExitCode {
    let plan = match ReplayPlan::from_args(&a.policy, &a.swap, &a.quarantine) {
        Ok(p) => p,
        Err(e) => return fail(&e),
    };
    let opts = RunOptions {
        capture: a.capture,
        json: a.json,
        pass_out: a.pass_out,
        drop_out: a.drop_out,
        engine: EngineConfig { flow_capacity: a.flow_capacity.max(1), ..EngineConfig::default() },
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let r = replay::run(plan, &opts, &mut out);
    let flushed = out.flush();
    match (r, flushed) {
        (Ok(_), Ok(())) => ExitCode::SUCCESS,
        (Err(ReplayError::StdoutClosed), _) => ExitCode::from(crate::cli::EXIT_STDOUT_CLOSED),
        (Err(e), _) => fail(&e),
        (_, Err(e)) => stdout_failed("replay", &e),
    }
}

/// Exit 2 for a malformed argument (as clap's own usage errors), 1 for everything else.
fn fail(e: &ReplayError) -> ExitCode {
    eprintln!("bulkhead replay: {e}");
    ExitCode::from(if matches!(e, ReplayError::Arg(_)) { 2 } else { 1 })
}
