//! `bulkhead-bench`: runs named benchmark scenarios and prints a Markdown table (Mpps, ns/packet,
//! latency percentiles, side-by-side ratios against the peers), and optionally writes the JSON
//! results and an SVG latency plot.
//!
//! `--quick` is the CI smoke mode: tiny sizes, seconds in total, no thresholds anywhere.

use bulkhead_bench::report::Report;
use bulkhead_bench::{plot, scenarios, Settings};
use clap::{Parser, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// Engine in memory: 64-byte frames of established flows, 10k / 1M flows, 1 / 2 workers.
    Engine,
    /// ClassBench acl1/fw1/ipc1 at 1k/10k/100k rules vs dpdk-test-acl.
    Classify,
    /// 100 hot swaps between two 100k-rule policies under in-memory load.
    Swap,
    /// 1M spoofed SYNs with a legitimate handshake in the middle.
    Synflood,
    /// AF_XDP path on a netns testbed vs dpdk-testpmd (net_af_xdp) and kernel + nftables (root).
    Xdp,
    /// Every scenario above.
    All,
}

/// Bulkhead benchmark harness (issue 6). Targets are reported, never asserted.
#[derive(Debug, Parser)]
#[command(name = "bulkhead-bench", version)]
struct Cli {
    /// Scenarios to run (repeatable); default: all.
    #[arg(value_enum)]
    scenarios: Vec<Scenario>,
    /// CI smoke mode: tiny sizes, a fraction of a second per case, no thresholds.
    #[arg(long)]
    quick: bool,
    /// Minimum seconds of timed work per case.
    #[arg(long, default_value_t = 1.0)]
    seconds: f64,
    /// Do not run the peers (rte_acl, testpmd, nftables), only Bulkhead.
    #[arg(long)]
    no_peers: bool,
    /// Skip rte_acl's per-header answer check (saves one rte_acl build per case).
    #[arg(long)]
    no_verify: bool,
    /// ClassBench directory (default: ../shared/data/classbench or $BULKHEAD_CLASSBENCH).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Directory to write results.md, results.json and latency.svg into.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write the JSON results to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the SVG latency plot to this file.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// The `bulkhead` binary for the AF_XDP scenario (default: next to this binary).
    #[arg(long)]
    bulkhead: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut wanted = cli.scenarios.clone();
    if wanted.is_empty() || wanted.contains(&Scenario::All) {
        wanted =
            vec![Scenario::Engine, Scenario::Classify, Scenario::Swap, Scenario::Synflood, Scenario::Xdp];
    }
    let work_dir = std::env::temp_dir().join(format!("bulkhead-bench-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&work_dir) {
        eprintln!("bulkhead-bench: cannot create {}: {e}", work_dir.display());
        return ExitCode::FAILURE;
    }
    let settings = Settings {
        quick: cli.quick,
        peers: !cli.no_peers,
        verify_peer: !cli.no_verify,
        seconds: cli.seconds,
        data_dir: cli.data.clone().unwrap_or_else(bulkhead_bench::default_data_dir),
        work_dir: work_dir.clone(),
        bulkhead_bin: cli.bulkhead.clone(),
    };
    let mut report = Report::new(cli.quick);
    for sc in wanted {
        eprintln!("== scenario {sc:?}");
        let r = match sc {
            Scenario::Engine => scenarios::engine::run(&settings),
            Scenario::Classify => scenarios::classify::run(&settings),
            Scenario::Swap => scenarios::swap::run(&settings),
            Scenario::Synflood => scenarios::synflood::run(&settings),
            Scenario::Xdp => scenarios::xdp::run(&settings),
            Scenario::All => Report::default(),
        };
        report.merge(r);
    }
    let _ = std::fs::remove_dir_all(&work_dir);

    let md = report.markdown();
    println!("{md}");
    let title = if cli.quick { "Bulkhead latency (quick smoke run)" } else { "Bulkhead latency" };
    let svg = plot::latency_svg(title, &report.curves);
    let mut ok = true;
    let mut write = |path: PathBuf, text: &str| {
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("bulkhead-bench: cannot write {}: {e}", path.display());
            ok = false;
        } else {
            eprintln!("wrote {}", path.display());
        }
    };
    if let Some(dir) = &cli.out {
        if let Err(e) = std::fs::create_dir_all(dir) {
            eprintln!("bulkhead-bench: cannot create {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
        write(dir.join("results.md"), &md);
        write(dir.join("results.json"), &report.json());
        match &svg {
            Ok(s) => write(dir.join("latency.svg"), s),
            Err(e) => eprintln!("bulkhead-bench: latency plot: {e}"),
        }
    }
    if let Some(p) = cli.json {
        write(p, &report.json());
    }
    if let Some(p) = cli.svg {
        match &svg {
            Ok(s) => write(p, s),
            Err(e) => eprintln!("bulkhead-bench: latency plot: {e}"),
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
