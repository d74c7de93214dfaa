//! Scenario 4: the AF_XDP path on a netns testbed, side by side with dpdk-testpmd (net_af_xdp,
//! io forwarding) and with kernel forwarding plus an equivalent nftables rule set, on the same
//! veths in the same run. Root only; skipped with a note otherwise.
//!
//! Topology (names `bhb<pid>-{s,f,d}`, addresses from 198.18.0.0/15 only, every piece an RAII
//! guard from `bulkhead-testbed`, removed on any exit):
//!
//! ```text
//!   [s] eth0 198.18.0.2/16 ---veth--- inside [f] outside ---veth--- eth0 198.19.0.2/16 [d]
//! ```
//!
//! - Bump-in-the-wire forwarders (Bulkhead, testpmd) attach AF_XDP sockets to `inside` and
//!   `outside` and move frames unchanged; the sender's next hop 198.18.0.1 is pinned (static
//!   neighbour) to the sink's MAC, and the sink's 198.19.0.1 to the sender's, so the same routes
//!   work through an L2-transparent forwarder.
//! - Kernel + nftables: `f` routes (inside 198.18.0.1/16, outside 198.19.0.1/16, ip_forward=1),
//!   neighbours resolve by ARP, and an `inet` table filters the forward hook with the policy's
//!   equivalent: established/related accepted, UDP/9 and ICMP echo from 198.18.0.0/16 to
//!   198.19.0.0/16 accepted, the rest dropped (a routed firewall: there is no bridge conntrack).
//!   The same kernel path with no rule set is measured too, as the routing baseline.
//!
//! Rate: trafgen (netsniff-ng) sends UDP to 198.19.0.99:9 (an address the sink does not own, so
//! it drops the frames silently after counting them: no ICMP back-traffic) from 1024 source
//! ports, with 64-byte (60 + FCS) and 1500-byte-IP (1514 + FCS) frames, bounded in count and
//! time. The rate is the sink interface's received packets over a measured window after a warm-up.
//! Latency: ICMP echo round trips (each crossing the forwarder twice) at 1 kHz, idle.
//!
//! All of it shares two cores with the traffic generator and the kernel's veth work, so the
//! absolute figures are those of this machine; the ratios between forwarders are the result.

use crate::report::{Better, Comparison, Curve, Measurement, Percentiles, Report};
use crate::Settings;
use bulkhead_testbed::{ChildGuard, Netns, VethPair};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The forwarders compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forwarder {
    Bulkhead,
    Testpmd,
    Nftables,
    KernelNoRules,
}

impl Forwarder {
    pub fn name(self) -> &'static str {
        match self {
            Forwarder::Bulkhead => "bulkhead",
            Forwarder::Testpmd => "testpmd",
            Forwarder::Nftables => "nftables",
            Forwarder::KernelNoRules => "kernel (no rules)",
        }
    }
}

/// The nftables rule set equivalent to [`POLICY_YAML`].
pub const NFT_RULES: &str = "table inet bhbench {
  chain forward {
    type filter hook forward priority 0; policy drop;
    ct state established,related accept
    ip saddr 198.18.0.0/16 ip daddr 198.19.0.0/16 udp dport 9 accept
    ip saddr 198.18.0.0/16 ip daddr 198.19.0.0/16 icmp type echo-request accept
  }
}
";

/// The Bulkhead policy of the scenario (one file, three documents).
pub const POLICY_YAML: &str = "apiVersion: bulkhead.io/v1
kind: Identity
metadata:
  name: bench-senders
spec:
  labels: {zone: bench-in}
  addresses: [198.18.0.0/16]
---
apiVersion: bulkhead.io/v1
kind: Identity
metadata:
  name: bench-sinks
spec:
  labels: {zone: bench-out}
  addresses: [198.19.0.0/16]
---
apiVersion: bulkhead.io/v1
kind: Policy
metadata:
  name: bench
spec:
  rules:
    - name: discard-and-ping
      from: [{matchLabels: {zone: bench-in}}]
      to: [{matchLabels: {zone: bench-out}}]
      ports:
        - {protocol: udp, port: 9}
        - {protocol: icmp, type: 8}
      action: allow
";

/// The three namespaces and two veth pairs.
#[derive(Debug)]
pub struct Bed {
    // Field order is drop order: links before namespaces.
    _links: Vec<VethPair>,
    pub s: Netns,
    pub f: Netns,
    pub d: Netns,
    pub s_mac: String,
    pub d_mac: String,
    pub inside_mac: String,
}

fn sh(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ip_ns(ns: &Netns, args: &[&str]) -> Result<String, String> {
    sh(Command::new("ip").arg("-n").arg(ns.name()).args(args))
}

fn mac_of(ns: &Netns, dev: &str) -> Result<String, String> {
    let out = ip_ns(ns, &["-j", "link", "show", dev])?;
    let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| e.to_string())?;
    v[0]["address"].as_str().map(str::to_string).ok_or_else(|| format!("no MAC for {dev}"))
}

impl Bed {
    /// Builds the topology with names derived from `tag`.
    ///
    /// # Errors
    /// Any `ip` command failing (no privileges, name taken).
    pub fn create(tag: &str) -> Result<Bed, String> {
        let e = |x: std::io::Error| x.to_string();
        let s = Netns::create(&format!("{tag}-s")).map_err(e)?;
        let f = Netns::create(&format!("{tag}-f")).map_err(e)?;
        let d = Netns::create(&format!("{tag}-d")).map_err(e)?;
        let l1 = VethPair::create(&s, "eth0", &f, "inside").map_err(e)?;
        let l2 = VethPair::create(&d, "eth0", &f, "outside").map_err(e)?;
        ip_ns(&s, &["addr", "add", "198.18.0.2/16", "dev", "eth0"])?;
        ip_ns(&s, &["route", "add", "198.19.0.0/16", "via", "198.18.0.1"])?;
        ip_ns(&d, &["addr", "add", "198.19.0.2/16", "dev", "eth0"])?;
        ip_ns(&d, &["route", "add", "198.18.0.0/16", "via", "198.19.0.1"])?;
        let s_mac = mac_of(&s, "eth0")?;
        let d_mac = mac_of(&d, "eth0")?;
        let inside_mac = mac_of(&f, "inside")?;
        Ok(Bed { _links: vec![l1, l2], s, f, d, s_mac, d_mac, inside_mac })
    }

    /// Bump-in-the-wire addressing: `f` has no addresses; next hops pinned to the far host's MAC.
    pub fn bump(&self) -> Result<(), String> {
        let _ = ip_ns(&self.f, &["addr", "flush", "dev", "inside"]);
        let _ = ip_ns(&self.f, &["addr", "flush", "dev", "outside"]);
        let _ = sh(Command::new("ip").args([
            "netns",
            "exec",
            self.f.name(),
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=0",
        ]));
        ip_ns(
            &self.s,
            &["neigh", "replace", "198.18.0.1", "lladdr", &self.d_mac, "dev", "eth0", "nud", "permanent"],
        )?;
        ip_ns(
            &self.d,
            &["neigh", "replace", "198.19.0.1", "lladdr", &self.s_mac, "dev", "eth0", "nud", "permanent"],
        )?;
        Ok(())
    }

    /// Routed addressing for the kernel forwarders.
    pub fn routed(&self) -> Result<(), String> {
        let _ = ip_ns(&self.s, &["neigh", "del", "198.18.0.1", "dev", "eth0"]);
        let _ = ip_ns(&self.d, &["neigh", "del", "198.19.0.1", "dev", "eth0"]);
        ip_ns(&self.f, &["addr", "replace", "198.18.0.1/16", "dev", "inside"])?;
        ip_ns(&self.f, &["addr", "replace", "198.19.0.1/16", "dev", "outside"])?;
        sh(Command::new("ip").args([
            "netns",
            "exec",
            self.f.name(),
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]))?;
        ip_ns(
            &self.f,
            &["neigh", "replace", "198.19.0.99", "lladdr", &self.d_mac, "dev", "outside", "nud", "permanent"],
        )?;
        Ok(())
    }

    /// The destination MAC the sender's frames carry in the current mode.
    pub fn next_hop_mac(&self, routed: bool) -> &str {
        if routed {
            &self.inside_mac
        } else {
            &self.d_mac
        }
    }

    fn rx_packets(&self) -> Result<u64, String> {
        let out = ip_ns(&self.d, &["-s", "-j", "link", "show", "eth0"])?;
        let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| e.to_string())?;
        v[0]["stats64"]["rx"]["packets"].as_u64().ok_or_else(|| "no rx counter".into())
    }

    fn xdp_attached(&self) -> bool {
        ["inside", "outside"]
            .iter()
            .all(|dev| ip_ns(&self.f, &["link", "show", dev]).is_ok_and(|o| o.contains("prog/xdp")))
    }
}

/// A running forwarder (its guard stops it on drop).
#[derive(Debug)]
enum Running {
    Child(ChildGuard),
    Nft,
    Nothing,
}

fn start(bed: &Bed, fwd: Forwarder, s: &Settings, policy: &Path) -> Result<Running, String> {
    match fwd {
        Forwarder::Nftables | Forwarder::KernelNoRules => {
            bed.routed()?;
            if fwd == Forwarder::Nftables {
                let file = s.work_dir.join("bhbench.nft");
                std::fs::write(&file, NFT_RULES).map_err(|e| e.to_string())?;
                sh(Command::new("ip").args(["netns", "exec", bed.f.name(), "nft", "-f"]).arg(&file))?;
                Ok(Running::Nft)
            } else {
                Ok(Running::Nothing)
            }
        }
        Forwarder::Testpmd | Forwarder::Bulkhead => {
            bed.bump()?;
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", bed.f.name()]);
            if fwd == Forwarder::Testpmd {
                let prefix = format!("{}-tp", bed.f.name());
                cmd.args([
                    "dpdk-testpmd",
                    "--no-huge",
                    "--no-pci",
                    "--no-telemetry",
                    "-m",
                    "512",
                    &format!("--file-prefix={prefix}"),
                    "-l",
                    "0,1",
                    "--vdev",
                    "net_af_xdp0,iface=inside",
                    "--vdev",
                    "net_af_xdp1,iface=outside",
                    "--",
                    "--forward-mode=io",
                    "--auto-start",
                    "--nb-cores=1",
                    "--total-num-mbufs=16384",
                    "--stats-period=1",
                ]);
            } else {
                let bin = bulkhead_binary(s).ok_or("no bulkhead binary")?;
                cmd.arg(bin).args([
                    "run",
                    "--inside",
                    "inside",
                    "--outside",
                    "outside",
                    "--workers",
                    "1",
                    "--xdp-mode",
                    "native",
                ]);
                cmd.arg("--policy").arg(policy);
            }
            cmd.stderr(Stdio::null());
            let guard = ChildGuard::spawn(fwd.name(), cmd).map_err(|e| e.to_string())?;
            let deadline = Instant::now() + Duration::from_secs(60);
            while !bed.xdp_attached() {
                if Instant::now() > deadline {
                    return Err(format!("{}: XDP not attached after 60 s", fwd.name()));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            // Sockets are bound after the program is attached: give the forwarder a moment.
            std::thread::sleep(Duration::from_secs(2));
            Ok(Running::Child(guard))
        }
    }
}

fn stop(bed: &Bed, r: Running) {
    match r {
        Running::Child(mut g) => {
            // SIGTERM first: both forwarders detach their XDP programs on a clean stop.
            let _ = g.terminate(Duration::from_secs(10));
        }
        Running::Nft => {
            let _ = sh(Command::new("ip").args([
                "netns",
                "exec",
                bed.f.name(),
                "nft",
                "delete",
                "table",
                "inet",
                "bhbench",
            ]));
        }
        Running::Nothing => {}
    }
    // Wait for XDP programs to go (a forwarder detaches on exit).
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline
        && ["inside", "outside"]
            .iter()
            .any(|d| ip_ns(&bed.f, &["link", "show", d]).is_ok_and(|o| o.contains("prog/xdp")))
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    for d in ["inside", "outside"] {
        let _ = ip_ns(&bed.f, &["link", "set", d, "xdp", "off"]);
    }
}

/// Finds the `bulkhead` binary: the setting, else next to this executable, else on PATH.
pub fn bulkhead_binary(s: &Settings) -> Option<PathBuf> {
    if let Some(b) = &s.bulkhead_bin {
        return Some(b.clone());
    }
    let exe = std::env::current_exe().ok()?;
    let cand = exe.parent()?.join("bulkhead");
    if cand.is_file() {
        return Some(cand);
    }
    crate::util::on_path("bulkhead").then(|| PathBuf::from("bulkhead"))
}

/// True when the binary knows `run` (the AF_XDP runtime has landed).
fn bulkhead_runs(bin: &Path) -> bool {
    Command::new(bin)
        .args(["run", "--help"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Sends for `warmup + window` and returns packets per second received by the sink over the window.
fn rate(bed: &Bed, routed: bool, frame_len: usize, window: Duration, s: &Settings) -> Result<f64, String> {
    let fill = frame_len.saturating_sub(42).max(18);
    let cfg = format!(
        "{{ eth(da={}, sa={}), ipv4(saddr=198.18.0.2, daddr=198.19.0.99, ttl=64), udp(sport=dinc(1024, 2047), dport=9), fill(0x00, {fill}) }}\n",
        bed.next_hop_mac(routed),
        bed.s_mac
    );
    let file = s.work_dir.join(format!("trafgen-{frame_len}.cfg"));
    std::fs::write(&file, cfg).map_err(|e| e.to_string())?;
    let warmup = Duration::from_secs(1);
    let bound = (window + warmup).as_secs() + 5;
    let mut cmd = Command::new("ip");
    cmd.args([
        "netns",
        "exec",
        bed.s.name(),
        "timeout",
        &bound.to_string(),
        "trafgen",
        "--dev",
        "eth0",
        "--cpus",
        "1",
        "-n",
        "50000000",
        "--conf",
    ])
    .arg(&file)
    .stderr(Stdio::null());
    let mut guard = ChildGuard::spawn("trafgen", cmd).map_err(|e| e.to_string())?;
    std::thread::sleep(warmup);
    let c0 = bed.rx_packets()?;
    let t0 = Instant::now();
    std::thread::sleep(window);
    let c1 = bed.rx_packets()?;
    let dt = t0.elapsed().as_secs_f64();
    let _ = guard.terminate(Duration::from_secs(5));
    Ok(c1.saturating_sub(c0) as f64 / dt)
}

/// ICMP echo round trips at 1 kHz; returns a histogram of RTTs in ns.
fn latency(bed: &Bed, count: u32) -> Result<hdrhistogram::Histogram<u64>, String> {
    let out = sh(Command::new("ip").args([
        "netns",
        "exec",
        bed.s.name(),
        "ping",
        "-n",
        "-c",
        &count.to_string(),
        "-i",
        "0.001",
        "-W",
        "1",
        "198.19.0.2",
    ]))
    .or_else(|e| if e.contains("time=") { Ok(e) } else { Err(e) })?;
    let mut h = crate::util::histogram();
    for line in out.lines() {
        if let Some(t) = line.split("time=").nth(1) {
            if let Some(ms) = t.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()) {
                crate::util::record_n(&mut h, (ms * 1e6) as u64, 1);
            }
        }
    }
    Ok(h)
}

/// Runs the scenario.
pub fn run_scenario(s: &Settings) -> Report {
    let mut report = Report::new(s.quick);
    if s.quick {
        report.notes.push("xdp: skipped in --quick (needs root, a testbed and tens of seconds)".into());
        return report;
    }
    if !bulkhead_testbed::is_root() {
        report.notes.push("xdp: skipped: needs root (network namespaces, XDP)".into());
        return report;
    }
    let mut forwarders = Vec::new();
    match bulkhead_binary(s) {
        Some(b) if bulkhead_runs(&b) => forwarders.push(Forwarder::Bulkhead),
        Some(b) => {
            report.notes.push(format!("xdp: {} has no `run` command yet: Bulkhead row skipped", b.display()))
        }
        None => report.notes.push(
            "xdp: no `bulkhead` binary found (build it, or pass --bulkhead): Bulkhead row skipped".into(),
        ),
    }
    if s.peers {
        for (tool, fwd) in [("dpdk-testpmd", Forwarder::Testpmd), ("nft", Forwarder::Nftables)] {
            if crate::util::on_path(tool) {
                forwarders.push(fwd);
            } else {
                report.notes.push(format!("xdp: {tool} not installed: {} row skipped", fwd.name()));
            }
        }
        forwarders.push(Forwarder::KernelNoRules);
    }
    if !crate::util::on_path("trafgen") {
        report.notes.push("xdp: trafgen (netsniff-ng) not installed: skipped".into());
        return report;
    }
    let tag = format!("bhb{}", std::process::id() % 100_000);
    let bed = match Bed::create(&tag) {
        Ok(b) => b,
        Err(e) => {
            report.notes.push(format!("xdp: cannot build the testbed: {e}"));
            return report;
        }
    };
    let policy = s.work_dir.join("xdp-policy.yaml");
    if let Err(e) = std::fs::write(&policy, POLICY_YAML) {
        report.notes.push(format!("xdp: cannot write the policy: {e}"));
        return report;
    }
    let window = Duration::from_secs_f64(s.seconds.max(2.0));
    let mut rates: Vec<(Forwarder, usize, f64)> = Vec::new();
    for fwd in forwarders {
        eprintln!("xdp: {}", fwd.name());
        let routed = matches!(fwd, Forwarder::Nftables | Forwarder::KernelNoRules);
        let running = match start(&bed, fwd, s, &policy) {
            Ok(r) => r,
            Err(e) => {
                report.notes.push(format!("xdp: {} did not start: {e}", fwd.name()));
                continue;
            }
        };
        let lat = latency(&bed, 1000);
        for frame_len in [60usize, 1514] {
            let case = if frame_len == 60 { "64 B frames" } else { "1500 B frames" };
            match rate(&bed, routed, frame_len, window, s) {
                Ok(pps) => {
                    let mut m = Measurement::new("xdp", case, fwd.name()).with_rate(
                        (pps * window.as_secs_f64()) as u64,
                        window.as_secs_f64(),
                        1,
                    );
                    m = m.extra("Gbit/s", pps * (frame_len + 24) as f64 * 8.0 / 1e9);
                    if frame_len == 60 {
                        if let Ok(h) = &lat {
                            m.latency = Some(Percentiles::of(h));
                            m = m.note("latency: ICMP echo RTT through the forwarder, idle");
                            report.curves.push(Curve::of(format!("xdp RTT: {}", fwd.name()), h));
                        }
                    }
                    report.measurements.push(m);
                    rates.push((fwd, frame_len, pps));
                }
                Err(e) => report.notes.push(format!("xdp: {} {case}: {e}", fwd.name())),
            }
        }
        stop(&bed, running);
    }
    for frame_len in [60usize, 1514] {
        let case = if frame_len == 60 { "64 B frames" } else { "1500 B frames" };
        let get = |f: Forwarder| rates.iter().find(|r| r.0 == f && r.1 == frame_len).map(|r| r.2);
        if let Some(b) = get(Forwarder::Bulkhead) {
            if let Some(p) = get(Forwarder::Testpmd) {
                report.comparisons.push(Comparison::new(
                    "xdp",
                    case,
                    "pps vs testpmd",
                    b,
                    p,
                    Some(0.9),
                    Better::Higher,
                ));
            }
            if let Some(p) = get(Forwarder::Nftables) {
                report.comparisons.push(Comparison::new(
                    "xdp",
                    case,
                    "pps vs nftables",
                    b,
                    p,
                    Some(1.5),
                    Better::Higher,
                ));
            }
        }
    }
    report
}

/// Entry point used by the binary.
pub fn run(s: &Settings) -> Report {
    run_scenario(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nft_rules_are_inet_and_default_drop() {
        assert!(NFT_RULES.starts_with("table inet "));
        assert!(NFT_RULES.contains("policy drop"));
        assert!(NFT_RULES.contains("ct state established,related accept"));
    }

    #[test]
    fn policy_allows_the_same_traffic_as_the_nft_rules() {
        assert!(POLICY_YAML.contains("{protocol: udp, port: 9}"));
        assert!(POLICY_YAML.contains("{protocol: icmp, type: 8}"));
        assert!(POLICY_YAML.contains("198.18.0.0/16"));
        assert!(POLICY_YAML.contains("198.19.0.0/16"));
    }
}
