//! `bulkhead top`: live counters of a running firewall over the control socket (see [`crate::top`]).

use crate::top::{render, sample};
use clap::Args;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Live view of a running firewall, refreshed every second (Ctrl-C to quit).
#[derive(Debug, Args)]
pub struct TopArgs {
    /// Control socket of the running firewall.
    #[arg(long, value_name = "PATH", default_value = "/run/bulkhead/control.sock")]
    pub control: PathBuf,
    /// Print one snapshot (rates averaged since start) and exit.
    #[arg(long)]
    pub once: bool,
    /// Seconds between refreshes.
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0)]
    pub interval: f64,
}

/// Runs `top`; exit 1 when the firewall cannot be reached.
pub fn run(a: TopArgs) -> ExitCode {
    let t0 = Instant::now();
    let mut prev = None;
    let interval = Duration::from_secs_f64(a.interval.clamp(0.1, 3600.0));
    loop {
        let cur = match sample(&a.control, t0.elapsed().as_secs_f64()) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("bulkhead top: {e}");
                return ExitCode::from(1);
            }
        };
        let screen = render(prev.as_ref(), &cur);
        let mut out = std::io::stdout().lock();
        let written = if a.once {
            out.write_all(screen.as_bytes())
        } else {
            // Home, clear screen, draw.
            out.write_all(b"\x1b[H\x1b[2J").and_then(|()| out.write_all(screen.as_bytes()))
        };
        if written.and_then(|()| out.flush()).is_err() || a.once {
            return ExitCode::SUCCESS;
        }
        drop(out);
        prev = Some(cur);
        std::thread::sleep(interval);
    }
}
