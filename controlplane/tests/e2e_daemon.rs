//! End-to-end tests of `bulkhead run` on the netns testbed: the kernel's real ARP, ICMP, TCP and
//! UDP stacks on both sides, Bulkhead (the real binary, as a child process in the firewall
//! namespace) in between, and the operator verbs over its control socket.
//!
//! Needs root (namespaces, XDP); skips with a message otherwise. Every loop is bounded in count
//! and time; every namespace, process and file is removed by a guard, also on failure.

use bulkhead_control::daemon::flowlog::community_id_v1;
use bulkhead_testbed::{is_root, ChildGuard, Netns, Topology, INSIDE_IF, OUTSIDE_IF};
use nix::sys::signal::Signal;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_bulkhead");
const READY: Duration = Duration::from_secs(30);
const IO: Duration = Duration::from_secs(3);

/// The tests run one at a time: each drives timing-sensitive live streams through its own
/// testbed, and the machine may have only two cores.
static SERIAL: Mutex<()> = Mutex::new(());

macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("skipping: end-to-end daemon tests need root (network namespaces, XDP)");
            return;
        }
        let _serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    };
}

/// Demo addresses (see the testbed crate docs).
const CORP1: &str = "198.18.1.10";
const DEV1: &str = "198.18.2.10";
const WEB1: &str = "198.19.1.10";
const DB1: &str = "198.19.2.10";
const REPO1: &str = "198.19.3.10";

fn identities() -> String {
    let id = |name: &str, labels: &str, addr: &str| {
        format!(
            "apiVersion: bulkhead.io/v1\nkind: Identity\nmetadata: {{name: {name}}}\nspec:\n  labels: {{{labels}}}\n  addresses: [{addr}/32]\n---\n"
        )
    };
    [
        id("corp1", "zone: corp", CORP1),
        id("corp2", "zone: corp", "198.18.1.11"),
        id("dev1", "zone: dev", DEV1),
        id("ci1", "zone: ci", "198.18.3.10"),
        id("web1", "zone: prod, tier: web", WEB1),
        id("db1", "zone: prod, tier: db", DB1),
        id("repo1", "zone: artifacts", REPO1),
    ]
    .concat()
}

/// corp may reach web on tcp/80, tcp/8080 (unless `without_8080`), udp/5001 and ping; corp and dev
/// may reach repo on tcp/22; the dev segment runs in monitor mode.
fn policy(without_8080: bool) -> String {
    let web_ports = if without_8080 {
        "[{protocol: tcp, port: 80}, {protocol: udp, port: 5001}, {protocol: icmp, type: 8}]"
    } else {
        "[{protocol: tcp, port: 80}, {protocol: tcp, port: 8080}, {protocol: udp, port: 5001}, {protocol: icmp, type: 8}]"
    };
    format!(
        "{}apiVersion: bulkhead.io/v1
kind: Policy
metadata: {{name: e2e}}
spec:
  rules:
    - name: corp-to-web
      from: [{{matchLabels: {{zone: corp}}}}]
      to: [{{matchLabels: {{tier: web}}}}]
      ports: {web_ports}
      action: allow
    - name: ssh-to-repo
      from: [{{matchLabels: {{zone: corp}}}}, {{matchLabels: {{zone: dev}}}}]
      to: [{{matchLabels: {{zone: artifacts}}}}]
      ports: [{{protocol: tcp, port: 22}}]
      action: allow
---
apiVersion: bulkhead.io/v1
kind: Settings
metadata: {{name: e2e}}
spec:
  mode: enforce
  segments:
    dev: {{mode: monitor}}
",
        identities()
    )
}

/// A scratch directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("bulkhead-e2e-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A testbed plus a running firewall; fields drop in order: firewall first, then the topology.
struct Bed {
    fw: Option<ChildGuard>,
    topo: Topology,
    dir: TempDir,
}

impl Bed {
    fn new(name: &str, extra: &[&str]) -> Bed {
        let topo = Topology::demo().build().expect("building the testbed");
        let dir = TempDir::new(&format!("{name}-{}", topo.tag()));
        std::fs::write(dir.path("policy.yaml"), policy(false)).unwrap();
        let mut bed = Bed { fw: None, topo, dir };
        bed.start(extra);
        bed
    }

    fn control(&self) -> PathBuf {
        self.dir.path("control.sock")
    }

    fn flow_log(&self) -> PathBuf {
        self.dir.path("flows.jsonl")
    }

    fn start(&mut self, extra: &[&str]) {
        let mut cmd = self.topo.fw().command(BIN);
        cmd.args(["run", "--inside", INSIDE_IF, "--outside", OUTSIDE_IF, "--xdp-mode", "native"])
            .arg("--policy")
            .arg(self.dir.path("policy.yaml"))
            .arg("--control")
            .arg(self.control())
            .arg("--flow-log")
            .arg(self.flow_log())
            .args(["--flow-capacity", "4096"])
            .args(extra);
        let mut fw = ChildGuard::spawn("bulkhead run", cmd).expect("spawn bulkhead run");
        assert!(
            fw.wait_for_line("ready", READY).is_some(),
            "bulkhead run did not become ready: {:?}",
            fw.lines()
        );
        self.fw = Some(fw);
    }

    fn host(&self, name: &str) -> &Netns {
        self.topo.host(name).netns()
    }

    /// Runs a `bulkhead` verb against this firewall.
    fn ctl(&self, args: &[&str]) -> Output {
        Command::new(BIN).args(args).arg("--control").arg(self.control()).output().expect("run bulkhead")
    }

    fn ctl_json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        let out = self.ctl(&a);
        assert!(out.status.success(), "bulkhead {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("JSON reply")
    }

    fn stats(&self) -> Value {
        self.ctl_json(&["stats"])
    }

    fn stop(&mut self) {
        let fw = self.fw.as_mut().expect("running");
        let st = fw.terminate(Duration::from_secs(15)).expect("bulkhead stops within 15 s of SIGTERM");
        assert!(st.success(), "clean exit after SIGTERM: {st:?}");
        assert!(fw.lines().iter().any(|l| l == "stopped"), "{:?}", fw.lines());
        assert_eq!(xdp_on_fw(&self.topo), "", "no XDP program left after SIGTERM");
        assert!(!self.control().exists(), "control socket removed");
    }
}

fn xdp_on_fw(topo: &Topology) -> String {
    let out = topo.fw().ip(&["link", "show"]).expect("ip link show");
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains("xdp")).collect::<Vec<_>>().join("\n")
}

fn ping(ns: &Netns, dst: &str, count: u32) -> bool {
    ns.command("ping")
        .args(["-c", &count.to_string(), "-i", "0.2", "-W", "1", dst])
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A TCP echo server on `addr` in `ns`: serves every connection (each echoed until EOF or error)
/// until `stop` is set or `life` has passed.
fn echo_server(
    ns: &Netns,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    life: Duration,
) -> std::thread::JoinHandle<()> {
    let listener = ns.run(move || TcpListener::bind(addr)).expect("setns").expect("bind");
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let end = Instant::now() + life;
        let mut conns = Vec::new();
        while !stop.load(Ordering::Relaxed) && Instant::now() < end {
            match listener.accept() {
                Ok((mut s, _)) => {
                    let stop = Arc::clone(&stop);
                    conns.push(std::thread::spawn(move || {
                        let _ = s.set_nonblocking(false);
                        let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
                        let mut buf = [0u8; 16 * 1024];
                        while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                            match s.read(&mut buf) {
                                Ok(0) => return,
                                Ok(n) => {
                                    if s.write_all(&buf[..n]).is_err() {
                                        return;
                                    }
                                }
                                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                                Err(_) => return,
                            }
                        }
                    }));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        for c in conns {
            let _ = c.join();
        }
    })
}

/// Sends `len` bytes and reads them back (the server echoes).
fn tcp_roundtrip(client: &Netns, server: SocketAddr, len: usize) -> std::io::Result<Vec<u8>> {
    let mut s = client.run(move || TcpStream::connect_timeout(&server, IO)).expect("setns")?;
    s.set_read_timeout(Some(IO))?;
    s.set_write_timeout(Some(IO))?;
    let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    let mut w = s.try_clone()?;
    let payload = data.clone();
    let writer = std::thread::spawn(move || w.write_all(&payload));
    let mut back = vec![0u8; len];
    s.read_exact(&mut back)?;
    writer.join().expect("writer")?;
    Ok(back)
}

/// A live request/response TCP stream: 64-byte pings echoed back every 20 ms, each with a
/// 400 ms read timeout. Records successful round trips and the first error.
struct Stream {
    ok: Arc<AtomicU64>,
    err: Arc<Mutex<Option<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Stream {
    fn open(client: &Netns, server: SocketAddr, life: Duration) -> Stream {
        let mut s = client
            .run(move || TcpStream::connect_timeout(&server, IO))
            .expect("setns")
            .expect("stream connects");
        s.set_read_timeout(Some(Duration::from_millis(400))).unwrap();
        s.set_write_timeout(Some(Duration::from_millis(400))).unwrap();
        let ok = Arc::new(AtomicU64::new(0));
        let err = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let (ok2, err2, stop2) = (Arc::clone(&ok), Arc::clone(&err), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let end = Instant::now() + life;
            let msg = [0x5au8; 64];
            let mut back = [0u8; 64];
            while !stop2.load(Ordering::Relaxed) && Instant::now() < end {
                let r = s.write_all(&msg).and_then(|()| s.read_exact(&mut back));
                match r {
                    Ok(()) if back == msg => {
                        ok2.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(()) => {
                        *err2.lock().unwrap() = Some("corrupted echo".into());
                        return;
                    }
                    Err(e) => {
                        *err2.lock().unwrap() = Some(format!("{:?}: {e}", e.kind()));
                        return;
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Stream { ok, err, stop, thread: Some(thread) }
    }

    fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    fn error(&self) -> Option<String> {
        self.err.lock().unwrap().clone()
    }

    /// Waits (bounded) until `n` more round trips succeed; false if it fails or stalls.
    fn progresses(&self, n: u64, within: Duration) -> bool {
        let target = self.ok() + n;
        let end = Instant::now() + within;
        while Instant::now() < end {
            if self.error().is_some() {
                return false;
            }
            if self.ok() >= target {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// Waits (bounded) for the stream to fail.
    fn fails_within(&self, within: Duration) -> bool {
        let end = Instant::now() + within;
        while Instant::now() < end {
            if self.error().is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn drop_count(stats: &Value, reason: &str) -> u64 {
    stats["total"]["drops"][reason].as_u64().unwrap_or(0)
}

fn read_flow_log(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("flow log line {l:?}: {e}")))
        .collect()
}

/// Waits (bounded) until the flow log holds a record matching `pred`.
fn wait_flow_record(path: &Path, pred: impl Fn(&Value) -> bool) -> Option<Value> {
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        if let Some(r) = read_flow_log(path).into_iter().find(|r| pred(r)) {
            return Some(r);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[test]
fn traffic_verdicts_counters_and_flow_log_on_the_testbed() {
    require_root!();
    let mut bed = Bed::new("traffic", &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let web: SocketAddr = format!("{WEB1}:80").parse().unwrap();
    let _srv = echo_server(bed.host("web1"), web, Arc::clone(&stop), Duration::from_secs(60));
    let db: SocketAddr = format!("{DB1}:5432").parse().unwrap();
    let _dbsrv = echo_server(bed.host("db1"), db, Arc::clone(&stop), Duration::from_secs(60));

    // ICMP echo per policy, and ARP through the bump on the way.
    assert!(ping(bed.host("corp1"), WEB1, 2), "corp -> web ping is allowed");
    let neigh = bed.host("corp1").ip(&["neigh", "show", WEB1]).unwrap();
    let neigh = String::from_utf8_lossy(&neigh.stdout).to_lowercase();
    assert!(
        neigh.contains(&bed.topo.host("web1").mac.to_lowercase()),
        "ARP resolved through the bump: {neigh}"
    );
    assert!(!ping(bed.host("corp1"), DB1, 1), "corp -> db ping is denied");

    // Allowed TCP carries data both ways.
    let len = 256 * 1024;
    let back = tcp_roundtrip(bed.host("corp1"), web, len).expect("allowed TCP through the firewall");
    assert!(back.iter().enumerate().all(|(i, b)| *b == (i * 7 % 251) as u8), "echoed bytes unchanged");

    // Denied TCP fails and is counted.
    let before = drop_count(&bed.stats(), "default_deny");
    let denied = bed
        .host("corp1")
        .run(move || TcpStream::connect_timeout(&db, Duration::from_millis(1500)))
        .expect("setns");
    assert!(denied.is_err(), "corp -> db:5432 must not connect");
    let after = drop_count(&bed.stats(), "default_deny");
    assert!(after > before, "denied SYNs counted: {before} -> {after}");

    // UDP request / response.
    let usrv_addr: SocketAddr = format!("{WEB1}:5001").parse().unwrap();
    let usrv = bed.host("web1").run(move || UdpSocket::bind(usrv_addr)).unwrap().unwrap();
    usrv.set_read_timeout(Some(IO)).unwrap();
    let responder = std::thread::spawn(move || -> std::io::Result<()> {
        let mut buf = [0u8; 1500];
        let (n, from) = usrv.recv_from(&mut buf)?;
        let mut reply = b"re:".to_vec();
        reply.extend_from_slice(&buf[..n]);
        usrv.send_to(&reply, from).map(|_| ())
    });
    let cli = bed.host("corp1").run(|| UdpSocket::bind(format!("{CORP1}:0"))).unwrap().unwrap();
    cli.set_read_timeout(Some(IO)).unwrap();
    cli.send_to(b"query", usrv_addr).unwrap();
    let mut buf = [0u8; 1500];
    let (n, from) = cli.recv_from(&mut buf).expect("UDP reply through the firewall");
    assert_eq!((&buf[..n], from), (&b"re:query"[..], usrv_addr));
    responder.join().unwrap().unwrap();

    // Monitor mode: dev -> web is not allowed by any rule, but the dev segment is monitored.
    let wd_before = bed.stats()["total"]["would_deny"].as_u64().unwrap();
    let back = tcp_roundtrip(bed.host("dev1"), web, 4096).expect("a monitored denied flow passes");
    assert_eq!(back.len(), 4096);
    let wd_after = bed.stats()["total"]["would_deny"].as_u64().unwrap();
    assert!(wd_after > wd_before, "counted as would_deny: {wd_before} -> {wd_after}");

    // status and flows over the control socket.
    let st = bed.ctl_json(&["status"]);
    assert_eq!(st["policy"]["generation"], 1);
    assert_eq!(st["run"]["inside"], INSIDE_IF);
    let flows = bed.ctl_json(&["flows", "--from", CORP1]);
    assert_eq!(flows["workers_answered"], 1);
    assert!(flows["flows"].as_array().unwrap().iter().all(|f| f["src"] == CORP1), "{flows}");
    assert!(
        flows["flows"].as_array().unwrap().iter().any(|f| f["dst"] == WEB1 && f["transport"] == "tcp"),
        "the corp -> web TCP flow is listed: {flows}"
    );

    // The flow log, field by field: the denied TCP attempt ...
    let rec = wait_flow_record(&bed.flow_log(), |r| {
        r["destination"]["ip"] == DB1 && r["network"]["transport"] == "tcp"
    })
    .expect("a flow-log record for the denied TCP attempt");
    assert_eq!(rec["event"]["kind"], "event");
    assert_eq!(rec["event"]["category"], serde_json::json!(["network"]));
    assert_eq!(rec["event"]["type"], serde_json::json!(["connection", "denied"]));
    assert_eq!(rec["event"]["action"], "flow-denied");
    assert_eq!(rec["source"]["ip"], CORP1);
    assert_eq!(rec["destination"]["port"], 5432);
    let sport = rec["source"]["port"].as_u64().expect("source port") as u16;
    let want = community_id_v1(0, CORP1.parse().unwrap(), DB1.parse().unwrap(), 6, sport, 5432, false);
    assert_eq!(rec["network"]["community_id"], want.as_str());
    assert_eq!(rec["bulkhead"]["verdict"], "denied");
    assert_eq!(rec["bulkhead"]["reason"], "default_deny");
    assert_eq!(rec["bulkhead"]["identity"]["source"], "corp1");
    assert_eq!(rec["bulkhead"]["identity"]["destination"], "db1");
    assert_eq!(rec["bulkhead"]["policy"]["generation"], 1);
    assert!(rec.get("rule").is_none(), "default deny names no rule");
    let ts = rec["@timestamp"].as_str().unwrap();
    assert!(ts.len() == 24 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "{ts}");
    // ... and the monitored flow.
    let wd = wait_flow_record(&bed.flow_log(), |r| r["bulkhead"]["verdict"] == "would_deny")
        .expect("a would_deny record");
    assert_eq!(wd["source"]["ip"], DEV1);
    assert_eq!(wd["destination"]["ip"], WEB1);
    assert_eq!(wd["bulkhead"]["identity"]["source"], "dev1");
    assert_eq!(wd["event"]["action"], "flow-would-deny");

    stop.store(true, Ordering::Relaxed);
    bed.stop();
    assert!(!ping(bed.host("corp1"), WEB1, 1), "no path once the firewall is gone");
}

#[test]
fn reload_keeps_allowed_streams_cuts_removed_ones_and_rejects_a_broken_policy() {
    require_root!();
    let mut bed = Bed::new("reload", &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let a: SocketAddr = format!("{WEB1}:80").parse().unwrap();
    let b: SocketAddr = format!("{WEB1}:8080").parse().unwrap();
    let _sa = echo_server(bed.host("web1"), a, Arc::clone(&stop), Duration::from_secs(60));
    let _sb = echo_server(bed.host("web1"), b, Arc::clone(&stop), Duration::from_secs(60));
    let kept = Stream::open(bed.host("corp1"), a, Duration::from_secs(40));
    let cut = Stream::open(bed.host("corp2"), b, Duration::from_secs(40));
    assert!(kept.progresses(5, Duration::from_secs(5)) && cut.progresses(5, Duration::from_secs(5)));

    // A broken policy is rejected with its position; the running one stays.
    let bad = bed.dir.path("bad.yaml");
    std::fs::write(&bad, "apiVersion: bulkhead.io/v1\nkind: Policy\nmetadata: {name: x}\nspec:\n  rules: [{name: r, action: maybe}]\n").unwrap();
    let out = bed.ctl(&["reload", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.yaml:5:") && err.contains("running policy stays"), "{err}");
    assert_eq!(bed.ctl_json(&["status"])["policy"]["generation"], 1);
    assert!(kept.progresses(5, Duration::from_secs(5)) && cut.progresses(5, Duration::from_secs(5)));

    // SIGHUP with the same broken content in the policy file: rejected too.
    std::fs::copy(&bad, bed.dir.path("policy.yaml")).unwrap();
    bed.fw.as_ref().unwrap().signal(Signal::SIGHUP).unwrap();
    let end = Instant::now() + Duration::from_secs(5);
    while bed.ctl_json(&["status"])["reloads_failed"] != 2 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(bed.ctl_json(&["status"])["reloads_failed"], 2);
    assert_eq!(bed.ctl_json(&["status"])["policy"]["generation"], 1);

    // Now a valid policy without tcp/8080, by SIGHUP.
    std::fs::write(bed.dir.path("policy.yaml"), policy(true)).unwrap();
    bed.fw.as_ref().unwrap().signal(Signal::SIGHUP).unwrap();
    let end = Instant::now() + Duration::from_secs(5);
    while bed.ctl_json(&["status"])["policy"]["generation"] != 2 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(bed.ctl_json(&["status"])["policy"]["generation"], 2);
    assert!(cut.fails_within(Duration::from_secs(5)), "the stream whose rule was removed is cut");
    assert!(kept.progresses(20, Duration::from_secs(5)), "the allowed stream goes on: {:?}", kept.error());
    assert_eq!(kept.error(), None, "no reset on the allowed stream");
    let stats = bed.stats();
    assert!(stats["total"]["flows_revoked"].as_u64().unwrap() >= 1, "{stats}");
    let rec = wait_flow_record(&bed.flow_log(), |r| r["bulkhead"]["verdict"] == "revoked")
        .expect("a revoked record in the flow log");
    assert_eq!(rec["destination"]["port"], 8080);
    assert_eq!(rec["bulkhead"]["policy"]["generation"], 2);

    // `bulkhead reload` (no path) with the good file: generation 3, the kept stream still fine.
    let out = bed.ctl(&["reload"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(kept.progresses(10, Duration::from_secs(5)), "{:?}", kept.error());
    drop((kept, cut));
    stop.store(true, Ordering::Relaxed);
    bed.stop();
}

#[test]
fn quarantine_cuts_an_established_stream_while_the_forensics_exception_works() {
    require_root!();
    let mut bed = Bed::new("quar", &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let web: SocketAddr = format!("{WEB1}:80").parse().unwrap();
    let forensics: SocketAddr = format!("{REPO1}:22").parse().unwrap();
    let _s1 = echo_server(bed.host("web1"), web, Arc::clone(&stop), Duration::from_secs(60));
    let _s2 = echo_server(bed.host("repo1"), forensics, Arc::clone(&stop), Duration::from_secs(60));
    let to_web = Stream::open(bed.host("corp1"), web, Duration::from_secs(40));
    let to_forensics = Stream::open(bed.host("corp1"), forensics, Duration::from_secs(40));
    assert!(
        to_web.progresses(5, Duration::from_secs(5)) && to_forensics.progresses(5, Duration::from_secs(5))
    );

    let out = bed.ctl_json(&["quarantine", "add", "corp1", "--except", &format!("{REPO1}/32:tcp/22")]);
    assert_eq!(out["entry"]["target"], "corp1");
    assert_eq!(out["entry"]["generation"], 2);
    assert_eq!(out["contained"], true, "the live stream is dropped within the wait: {out}");
    let ttc = out["entry"]["time_to_contain_ns"].as_u64().expect("time to contain in the reply");
    assert!(ttc > 0);

    assert!(to_web.fails_within(Duration::from_secs(5)), "the established stream is cut");
    assert!(
        to_forensics.progresses(20, Duration::from_secs(5)),
        "forensics goes on: {:?}",
        to_forensics.error()
    );
    assert!(!ping(bed.host("corp1"), WEB1, 1), "new traffic of the quarantined workload is dropped");
    assert!(ping(bed.host("corp2"), WEB1, 1), "other workloads are not affected");

    let list = bed.ctl_json(&["quarantine", "list"]);
    assert_eq!(list["entries"][0]["target"], "corp1");
    assert_eq!(list["entries"][0]["source"], "runtime");
    assert_eq!(list["entries"][0]["time_to_contain_ns"], ttc);
    assert_eq!(list["exceptions"], serde_json::json!([format!("{REPO1}/32:tcp/22")]));
    assert_eq!(list["time_to_contain_ns"]["count"], 1);
    let stats = bed.stats();
    assert!(drop_count(&stats, "quarantined") + drop_count(&stats, "revoked") >= 1, "{stats}");
    assert_eq!(stats["time_to_contain_ns"]["count"], 1);

    // A restart does not release it: the state file beside the control socket brings it back
    // into the first generation.
    drop((to_web, to_forensics));
    bed.stop();
    assert!(bed.dir.path("control.quarantine.json").exists(), "quarantine state file written");
    bed.start(&[]);
    assert_eq!(bed.ctl_json(&["status"])["policy"]["generation"], 1);
    let list = bed.ctl_json(&["quarantine", "list"]);
    assert_eq!(list["entries"][0]["target"], "corp1", "{list}");
    assert_eq!(list["entries"][0]["source"], "runtime");
    assert_eq!(list["entries"][0]["time_to_contain_ns"], ttc, "the measured time to contain is kept");
    assert_eq!(list["exceptions"], serde_json::json!([format!("{REPO1}/32:tcp/22")]));
    assert!(!ping(bed.host("corp1"), WEB1, 1), "still quarantined after the restart");
    assert!(ping(bed.host("corp2"), WEB1, 1), "other workloads are not affected");

    // Lifting it restores new connections, also across the next restart.
    let out = bed.ctl(&["quarantine", "remove", "corp1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(ping(bed.host("corp1"), WEB1, 2), "reachable again after the quarantine is lifted");
    let out = bed.ctl(&["quarantine", "remove", "corp1"]);
    assert_eq!(out.status.code(), Some(1), "nothing left to remove");
    bed.stop();
    bed.start(&[]);
    assert_eq!(bed.ctl_json(&["quarantine", "list"])["entries"], serde_json::json!([]));
    assert!(ping(bed.host("corp1"), WEB1, 1), "a lifted quarantine stays lifted after a restart");
    stop.store(true, Ordering::Relaxed);
    bed.stop();
}

/// Out-of-order fragments: the kernel sends a datagram's fragments in order, so the sender here
/// is `tcpreplay` with the fragments of one UDP datagram reversed. The engine holds the early
/// (non-first) fragments until the first decides; the AF_XDP loop then transmits the released
/// copies, and the server's kernel reassembles the datagram.
#[test]
fn out_of_order_fragments_are_held_then_sent_and_reassembled() {
    require_root!();
    let bed = Bed::new("frags", &[]);
    assert!(
        Command::new("tcpreplay").arg("--version").output().is_ok_and(|o| o.status.success()),
        "tcpreplay is missing: run scripts/setup.sh"
    );
    let addr: SocketAddr = format!("{WEB1}:5001").parse().unwrap();
    let srv = bed.host("web1").run(move || UdpSocket::bind(addr)).unwrap().unwrap();
    srv.set_read_timeout(Some(IO)).unwrap();
    let mac = |name: &str| -> [u8; 6] {
        let m: Vec<u8> =
            bed.topo.host(name).mac.split(':').map(|h| u8::from_str_radix(h, 16).expect("MAC hex")).collect();
        m.try_into().expect("6-byte MAC")
    };
    let payload: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 251) as u8).collect();
    let corp: std::net::Ipv4Addr = CORP1.parse().unwrap();
    let web: std::net::Ipv4Addr = WEB1.parse().unwrap();
    let mut frags = bulkhead_wire::builder::Frame::udp(corp, web, 40123, 5001)
        .macs(mac("corp1"), mac("web1"))
        .ip_id(4242)
        .payload(&payload)
        .fragments(1400);
    assert_eq!(frags.len(), 3);
    frags.reverse();
    let pcap = bed.dir.path("frags.pcap");
    let mut w = bulkhead_wire::pcap::PcapWriter::new(std::fs::File::create(&pcap).unwrap(), 1).unwrap();
    for (i, f) in frags.iter().enumerate() {
        w.write(i as u64 * 1000, f).unwrap();
    }
    drop(w);
    let before = bed.stats();
    let out = bed.host("corp1").exec("tcpreplay", &["-q", "-i", "eth0", pcap.to_str().unwrap()]).unwrap();
    assert!(out.status.success(), "tcpreplay: {}", String::from_utf8_lossy(&out.stderr));

    let mut buf = [0u8; 4096];
    let (n, from) = srv.recv_from(&mut buf).expect("the reassembled datagram reaches the server");
    assert_eq!(&buf[..n], &payload[..], "payload intact");
    assert_eq!(from, SocketAddr::from((corp, 40123)));
    let after = bed.stats();
    let released = |v: &Value| v["total"]["frag_released"].as_u64().unwrap();
    assert_eq!(released(&after) - released(&before), 2, "two early fragments held, then released");
    assert_eq!(after["frag_released_unsent"].as_u64(), Some(0), "and transmitted");
}

/// Starts `bulkhead run` on `bed`'s control socket with `inside` and `policy`, expects it to refuse
/// (exit 1), and returns its stderr.
fn refused_start(bed: &Bed, inside: &str, policy: &Path) -> String {
    let out = bed
        .topo
        .fw()
        .command(BIN)
        .args(["run", "--inside", inside, "--outside", OUTSIDE_IF, "--policy"])
        .arg(policy)
        .arg("--control")
        .arg(bed.control())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn restart_after_sigkill_and_start_up_errors() {
    require_root!();
    let mut bed = Bed::new("restart", &[]);
    assert!(ping(bed.host("corp1"), WEB1, 1));
    let fw = bed.fw.as_mut().unwrap();
    fw.signal(Signal::SIGKILL).unwrap();
    assert!(fw.wait_timeout(Duration::from_secs(5)).is_some(), "killed");
    assert!(bed.control().exists(), "a crash leaves the socket file behind");
    // A new instance finds the stale socket and programs and starts.
    bed.start(&[]);
    assert!(ping(bed.host("corp1"), WEB1, 2), "forwarding after the restart");
    assert_eq!(bed.ctl_json(&["status"])["policy"]["generation"], 1);

    // A second instance on the same control socket is refused, the first keeps running.
    let policy = bed.dir.path("policy.yaml");
    refused_start(&bed, INSIDE_IF, &policy);
    assert!(ping(bed.host("corp1"), WEB1, 1), "the first instance still forwards");
    bed.stop();

    // An invalid policy refuses to start, with its position, before touching the interfaces.
    let bad = bed.dir.path("bad.yaml");
    std::fs::write(&bad, "apiVersion: bulkhead.io/v1\nkind: Nope\nmetadata: {name: x}\nspec: {}\n").unwrap();
    let err = refused_start(&bed, INSIDE_IF, &bad);
    assert!(err.contains("bad.yaml:2:") && err.contains("not starting"), "{err}");
    assert_eq!(xdp_on_fw(&bed.topo), "");

    // A missing interface is a clear error.
    let err = refused_start(&bed, "nosuch0", &policy);
    assert!(err.contains("nosuch0"), "{err}");

    // A damaged quarantine state file stops the start (a quarantine is never dropped silently).
    let qstate = bed.dir.path("control.quarantine.json");
    std::fs::write(&qstate, "{\"version\": 1, \"entries\": [{\"target\": \"corp1\"},]}\n").unwrap();
    let err = refused_start(&bed, INSIDE_IF, &policy);
    assert!(err.contains("control.quarantine.json:1:") && err.contains("not starting"), "{err}");
    assert_eq!(xdp_on_fw(&bed.topo), "", "refused before touching the interfaces");
}
