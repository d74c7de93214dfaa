//! `bulkhead top`: the screen is a pure function of two samples; the binary reads them from a
//! control socket (here a fake daemon thread answering canned replies in the daemon's format).

use bulkhead_control::top::{age, dur_ns, render, si, Counters, Percentiles, Sample, Stats, WorkerStats};
use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;

fn counters(packets: u64, bytes: u64, pass: u64, denied: u64, would_deny: u64) -> Counters {
    Counters {
        packets,
        bytes,
        pass,
        would_deny,
        dropped: denied,
        drops: [
            ("default_deny".to_string(), denied * 3 / 4),
            ("quarantined".to_string(), denied - denied * 3 / 4),
        ]
        .into(),
        flows_active: 500,
        flow_capacity: 1000,
        flows_created: packets / 10,
        ..Counters::default()
    }
}

fn sample(at: f64, uptime: f64, k: u64) -> Sample {
    let w0 = counters(1000 * k, 1_000_000 * k, 900 * k, 80 * k, 20 * k);
    let w1 = counters(1000 * k, 500_000 * k, 1000 * k, 0, 0);
    let mut total = w0.clone();
    total.packets += w1.packets;
    total.bytes += w1.bytes;
    total.pass += w1.pass;
    total.flows_active += w1.flows_active;
    total.flow_capacity += w1.flow_capacity;
    total.flows_created += w1.flows_created;
    total.flows_revoked = k;
    Sample {
        at_s: at,
        stats: Stats {
            uptime_s: uptime,
            generation: 3,
            total,
            workers: vec![WorkerStats { id: 0, counters: w0 }, WorkerStats { id: 1, counters: w1 }],
            latency_ns: Percentiles {
                count: 5000,
                p50: 1_200,
                p90: 2_000,
                p99: 8_000,
                p999: 20_500,
                max: 1_100_000,
            },
            quarantined: 1,
        },
        policy_age_s: Some(723.0),
        quarantine: vec!["198.18.1.10".into()],
    }
}

fn row<'a>(screen: &'a str, name: &str) -> Vec<&'a str> {
    screen
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no row {name} in\n{screen}"))
        .split_whitespace()
        .collect()
}

#[test]
fn rates_are_deltas_over_the_sample_interval() {
    let prev = sample(10.0, 100.0, 1);
    let cur = sample(12.0, 102.0, 3); // 2 s later, every counter tripled
    let s = render(Some(&prev), &cur);
    assert!(s.starts_with("bulkhead top - generation 3 (policy age 12m03s) - up 1m42s - 2 workers - rates over the last 2.0 s"), "{s}");
    // total: packets (6000-2000)/2 = 2000/s; bits (4.5M-1.5M)*8/2 = 12M; allowed (5700-1900)/2 = 1900;
    // denied 80/s; would_deny 20/s; revoked 1/s.
    assert_eq!(row(&s, "total"), ["total", "2.00k", "12.0M", "1.90k", "80", "20", "1"]);
    assert_eq!(row(&s, "worker 0"), ["worker", "0", "1.00k", "8.00M", "900", "80", "20", "0"]);
    assert_eq!(row(&s, "worker 1"), ["worker", "1", "1.00k", "4.00M", "1.00k", "0", "0", "0"]);
    // Denied by reason, busiest first: default_deny 60/s (total 180), quarantined 20/s (total 60).
    assert_eq!(row(&s, "  default_deny"), ["default_deny", "60", "180"]);
    assert_eq!(row(&s, "  quarantined"), ["quarantined", "20", "60"]);
    assert!(s.contains("flows: active 1000 / 2000 (50.0 % full)   created/s 200"), "{s}");
    assert!(s.contains("latency: p50 1.2µs   p99 8.0µs   p99.9 20.5µs   max 1.10ms   (5000 packets)"), "{s}");
    assert!(s.contains("quarantined (1): 198.18.1.10"), "{s}");
}

#[test]
fn first_sample_and_daemon_restart_show_averages_since_start() {
    let cur = sample(0.0, 10.0, 1);
    let s = render(None, &cur);
    assert!(s.contains("rates: averages since start"), "{s}");
    assert_eq!(row(&s, "total")[1], "200"); // 2000 packets over 10 s
                                            // The daemon restarted between samples (uptime went down): no negative or huge rates.
    let before = sample(5.0, 500.0, 9);
    let s = render(Some(&before), &cur);
    assert!(s.contains("rates: averages since start"), "{s}");
    assert_eq!(row(&s, "total")[1], "200");
}

#[test]
fn empty_firewall_renders_without_samples() {
    let s = render(None, &Sample::default());
    assert!(s.contains("latency: no samples"), "{s}");
    assert!(s.contains("denied by reason: none"), "{s}");
    assert!(s.contains("quarantined: none"), "{s}");
    assert!(s.contains("flows: active 0 / 0 (0.0 % full)"), "{s}");
}

#[test]
fn number_formats() {
    assert_eq!(si(0.0), "0");
    assert_eq!(si(999.0), "999");
    assert_eq!(si(2.5), "2.50");
    assert_eq!(si(1234.0), "1.23k");
    assert_eq!(si(12_345_678.0), "12.3M");
    assert_eq!(si(9.87e9), "9.87G");
    assert_eq!(dur_ns(850), "850ns");
    assert_eq!(dur_ns(12_300), "12.3µs");
    assert_eq!(dur_ns(2_000_000_000), "2.00s");
    assert_eq!(age(45.0), "45s");
    assert_eq!(age(3.0 * 3600.0 + 7.0 * 60.0), "3h07m");
    assert_eq!(age(2.0 * 86_400.0 + 4.0 * 3600.0), "2d04h");
}

/// A fake daemon: answers `stats`, `status` and `quarantine_list` like `bulkhead run` does.
fn fake_daemon(path: PathBuf, requests: usize) -> std::thread::JoinHandle<Vec<String>> {
    let l = UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        for _ in 0..requests {
            let (s, _) = l.accept().unwrap();
            let mut line = String::new();
            BufReader::new(&s).read_line(&mut line).unwrap();
            let req: serde_json::Value = serde_json::from_str(&line).unwrap();
            let verb = req["verb"].as_str().unwrap().to_string();
            let data = match verb.as_str() {
                "stats" => json!({
                    "uptime_s": 20.0, "generation": 4,
                    "total": {"packets": 4000, "bytes": 2_000_000, "pass": 3000, "would_deny": 0, "dropped": 1000,
                              "drops": {"default_deny": 1000}, "flows_active": 10, "flow_capacity": 100,
                              "flows_created": 40, "events_emitted": 5, "batches": 9, "generation": 4},
                    "workers": [{"id": 0, "counters": {"packets": 4000, "bytes": 2_000_000, "pass": 3000, "dropped": 1000}}],
                    "latency_ns": {"count": 4000, "p50": 900, "p90": 1000, "p99": 3000, "p999": 5000, "max": 9000},
                    "time_to_contain_ns": {"count": 0, "p50": 0, "p90": 0, "p99": 0, "p999": 0, "max": 0},
                    "quarantined": 1, "flow_log": {"enabled": false, "written": 0, "dropped": 0, "write_errors": 0},
                    "frag_released_unsent": 0
                }),
                "status" => json!({"policy_age_s": 65.0, "policy": {"generation": 4}}),
                _ => json!({"generation": 4, "entries": [{"target": "identity lab", "source": "runtime"}]}),
            };
            let mut s = s;
            writeln!(s, "{}", json!({"ok": true, "data": data})).unwrap();
            seen.push(verb);
        }
        seen
    })
}

#[test]
fn once_reads_the_control_socket_and_prints_one_snapshot() {
    let dir = std::env::temp_dir().join(format!("bulkhead-top-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("control.sock");
    let daemon = fake_daemon(sock.clone(), 3);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bulkhead"))
        .args(["top", "--once", "--control"])
        .arg(&sock)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(daemon.join().unwrap(), ["stats", "status", "quarantine_list"]);
    assert!(
        text.starts_with("bulkhead top - generation 4 (policy age 1m05s) - up 20s - 1 workers"),
        "{text}"
    );
    assert_eq!(row(&text, "total"), ["total", "200", "800k", "150", "50", "0", "0"]);
    assert!(text.contains("quarantined (1): identity lab"), "{text}");
    assert!(!text.contains('\x1b'), "--once prints plain text");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bulkhead"))
        .args(["top", "--once", "--control"])
        .arg(dir.join("absent.sock"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is `bulkhead run` running?"));
    std::fs::remove_dir_all(&dir).unwrap();
}
