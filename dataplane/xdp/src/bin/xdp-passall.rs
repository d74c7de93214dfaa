//! `xdp-passall`: the AF_XDP bump in the wire with a processor that forwards every frame.
//!
//! Exercises the I/O path without the engine (end-to-end tests, forwarding baselines):
//!
//! ```text
//! xdp-passall --inside IF --outside IF [--mode native|generic] [--workers N] [--spin N]
//!             [--rss symmetric|asymmetric] [--steer-key ports|addresses]
//! ```
//!
//! `--rss symmetric` asserts that the NICs hash both directions of a flow to the same queue index
//! and turns software steering off; the default (`asymmetric`) steers in software whenever there
//! is more than one worker (see the crate docs).
//!
//! Prints `ready inside_prog=ID outside_prog=ID` once both programs are attached and the sockets
//! bound, stops cleanly on SIGINT/SIGTERM (detaching both programs), then prints one `stats` line
//! per worker. Exit status: 0 after a clean stop, 1 on a start-up error (message on stderr),
//! 2 on a usage error.

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::Ordering;

use bulkhead_xdp::{Dataplane, DataplaneConfig, PassAll, SteerKey, Steering, XdpMode};

fn usage(msg: &str) -> ExitCode {
    eprintln!("xdp-passall: {msg}");
    eprintln!(
        "usage: xdp-passall --inside IF --outside IF [--mode native|generic] [--workers N] [--spin N] \
         [--rss symmetric|asymmetric] [--steer-key ports|addresses]"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut inside = None;
    let mut outside = None;
    let mut mode = XdpMode::Native;
    let mut workers = 1u32;
    let mut spin = None;
    let mut steering = Steering::Software;
    let mut steer_key = SteerKey::Ports;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        let r: Result<(), String> = (|| {
            match a.as_str() {
                "--inside" => inside = Some(val("--inside")?),
                "--outside" => outside = Some(val("--outside")?),
                "--mode" => mode = val("--mode")?.parse().map_err(|e| format!("{e}"))?,
                "--workers" => {
                    workers = val("--workers")?.parse().map_err(|_| "--workers needs a number".to_string())?
                }
                "--rss" => {
                    steering = match val("--rss")?.as_str() {
                        "symmetric" => Steering::Rss,
                        "asymmetric" => Steering::Software,
                        other => return Err(format!("--rss {other:?}: expected symmetric or asymmetric")),
                    }
                }
                "--steer-key" => steer_key = val("--steer-key")?.parse().map_err(|e| format!("{e}"))?,
                "--spin" => {
                    spin = Some(val("--spin")?.parse().map_err(|_| "--spin needs a number".to_string())?)
                }
                other => return Err(format!("unknown argument {other:?}")),
            }
            Ok(())
        })();
        if let Err(e) = r {
            return usage(&e);
        }
    }
    let (Some(inside), Some(outside)) = (inside, outside) else {
        return usage("--inside and --outside are required");
    };

    let stop = bulkhead_xdp::signals::stop_flag();

    let mut cfg = DataplaneConfig::new(inside, outside);
    cfg.mode = mode;
    cfg.workers = workers;
    cfg.steering = steering;
    cfg.steer_key = steer_key;
    if let Some(spin) = spin {
        cfg.io.spin_iterations = spin;
    }
    let mut dp = match Dataplane::open(cfg) {
        Ok(dp) => dp,
        Err(e) => {
            eprintln!("xdp-passall: {e}");
            return ExitCode::from(1);
        }
    };
    let stats = dp.stats();
    let (pi, po) = dp.prog_ids();
    println!("ready inside_prog={pi} outside_prog={po}");
    let _ = std::io::stdout().flush();

    if let Err(e) = dp.run(stop, |_| PassAll) {
        eprintln!("xdp-passall: {e}");
        return ExitCode::from(1);
    }
    let kernel = dp.kernel_stats().unwrap_or_default();
    let detach = dp.shutdown();
    for (i, s) in stats.iter().enumerate() {
        let d = |d: &bulkhead_xdp::DirectionStats| {
            format!(
                "rx={} fwd={} drop={} txfull={}",
                d.rx_packets.load(Ordering::Relaxed),
                d.forwarded.load(Ordering::Relaxed),
                d.dropped.load(Ordering::Relaxed),
                d.tx_ring_full.load(Ordering::Relaxed)
            )
        };
        println!(
            "stats worker={i} inside[{}] outside[{}] kicks={} sleeps={} handed_off={} handoff_full={} \
             judged_for_others={}",
            d(&s.from_inside),
            d(&s.from_outside),
            s.tx_kicks.load(Ordering::Relaxed),
            s.idle_sleeps.load(Ordering::Relaxed),
            s.handed_off.load(Ordering::Relaxed),
            s.handoff_full.load(Ordering::Relaxed),
            s.handoffs_judged.load(Ordering::Relaxed)
        );
        if let Some([ki, ko]) = kernel.get(i) {
            println!("kernel worker={i} inside={ki:?} outside={ko:?}");
        }
    }
    match detach {
        Ok(()) => {
            println!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xdp-passall: {e}");
            ExitCode::from(1)
        }
    }
}
