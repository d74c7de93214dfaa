//! `bulkhead`: the Bulkhead command line. This file only parses and dispatches; every verb lives
//! in its own module under `bulkhead_control::cli`.

use bulkhead_control::cli;
use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(name = "bulkhead", version, about = "Bulkhead zero-trust segmentation firewall")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate, test, trace and diff policy-as-code.
    #[command(subcommand)]
    Policy(cli::policy::PolicyCmd),
    /// Work with classic ordered 5-tuple ACLs (ClassBench format).
    #[command(subcommand)]
    Acl(cli::acl::AclCmd),
    /// Replay a capture through the engine under a policy (with hot swaps and quarantines).
    Replay(cli::replay::ReplayArgs),
    /// Live counters of a running firewall (over the control socket).
    Top(cli::top::TopArgs),
    /// Run the firewall between two interfaces.
    Run(cli::run::RunArgs),
    /// State of the running firewall: interfaces, policy generation, reloads.
    Status(cli::ops::StatusArgs),
    /// Counters, latency and time to contain of the running firewall.
    Stats(cli::ops::StatsArgs),
    /// Reload the policy (same as SIGHUP; a broken policy is rejected and the running one stays).
    Reload(cli::ops::ReloadArgs),
    /// Quarantine workloads (incident response).
    #[command(subcommand)]
    Quarantine(cli::ops::QuarantineCmd),
    /// Live flows of the running firewall.
    Flows(cli::ops::FlowsArgs),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Policy(c) => cli::policy::run(c),
        Command::Acl(c) => cli::acl::run(c),
        Command::Replay(a) => cli::replay::run(a),
        Command::Top(a) => cli::top::run(a),
        Command::Run(a) => cli::run::run(a),
        Command::Status(a) => cli::ops::status(a),
        Command::Stats(a) => cli::ops::stats(a),
        Command::Reload(a) => cli::ops::reload(a),
        Command::Quarantine(c) => cli::ops::quarantine(c),
        Command::Flows(a) => cli::ops::flows(a),
    }
}
