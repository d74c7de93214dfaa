//! `testbed`: bring the demo topology up, show it, tear it down.
//!
//! ```text
//! testbed up     [--tag TAG]          create the demo zones (default tag: demo) and keep them
//! testbed status [--tag TAG]          list the namespaces of that testbed; exit 1 if none
//! testbed down   [--tag TAG] [--kill] delete them (--kill: SIGTERM processes still inside first)
//! ```
//!
//! `up` prints one line for the firewall namespace and one per host, e.g.
//! `host corp1 side=inside zone=corp ns=bh-demo-corp1 ip=198.18.1.10 mac=...`; start the firewall
//! with `ip netns exec bh-<tag>-fw bulkhead run --inside inside --outside outside ...`.

use std::process::ExitCode;

use bulkhead_testbed::{is_root, list_netns, netns_pids, teardown_tag, Topology};

fn usage() -> ExitCode {
    eprintln!("usage: testbed up|status|down [--tag TAG] [--kill]");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first().cloned() else {
        return usage();
    };
    let mut tag = "demo".to_owned();
    let mut kill = false;
    let mut i = 1;
    while i < args.len() {
        match args[i].as_str() {
            "--tag" if i + 1 < args.len() => {
                tag = args[i + 1].clone();
                i += 1;
            }
            "--kill" => kill = true,
            _ => return usage(),
        }
        i += 1;
    }
    if !is_root() {
        eprintln!("testbed: must run as root (it creates network namespaces)");
        return ExitCode::from(1);
    }
    let prefix = format!("bh-{tag}-");
    match cmd.as_str() {
        "up" => match Topology::demo().tag(&tag).build() {
            Ok(topo) => {
                print!("{}", topo.describe());
                topo.persist();
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("testbed up: {e}");
                ExitCode::from(1)
            }
        },
        "status" => match list_netns() {
            Ok(names) => {
                let mine: Vec<_> = names.iter().filter(|n| n.starts_with(&prefix)).collect();
                for n in &mine {
                    let pids = netns_pids(n).unwrap_or_default();
                    println!("netns {n} pids={pids:?}");
                }
                if mine.is_empty() {
                    eprintln!("testbed {tag:?} is down");
                    ExitCode::from(1)
                } else {
                    ExitCode::SUCCESS
                }
            }
            Err(e) => {
                eprintln!("testbed status: {e}");
                ExitCode::from(1)
            }
        },
        "down" => {
            let names = list_netns().unwrap_or_default();
            for n in names.iter().filter(|n| n.starts_with(&prefix)) {
                let pids = netns_pids(n).unwrap_or_default();
                if pids.is_empty() {
                    continue;
                }
                if kill {
                    for p in &pids {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(*p),
                            nix::sys::signal::Signal::SIGTERM,
                        );
                    }
                    eprintln!("testbed down: sent SIGTERM to {pids:?} in {n}");
                } else {
                    eprintln!("testbed down: processes {pids:?} still run in {n} (stop them, or use --kill)");
                }
            }
            if kill {
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
            match teardown_tag(&tag) {
                Ok(deleted) => {
                    for n in deleted {
                        println!("deleted {n}");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("testbed down: {e}");
                    ExitCode::from(1)
                }
            }
        }
        _ => usage(),
    }
}
