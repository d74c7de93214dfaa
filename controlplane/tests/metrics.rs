//! The Prometheus endpoint: the exposition is checked by `promtool check metrics` and scraped by a
//! real Prometheus server started on loopback (both from the Debian `prometheus` package that
//! scripts/setup.sh installs), which must answer a query about it through its HTTP API.

use bulkhead_control::daemon::{FlowRequests, PolicyInfo, RunInfo, State, WorkerHandle};
use bulkhead_control::metrics::{self, Kpis, Snapshot};
use bulkhead_engine::{
    CountersSnapshot, DropReason, EngineConfig, FlowEvent, FlowEventKind, Verdict, Worker,
};
use bulkhead_tables::{Decision, Mode, TableHandle, TableSet};
use bulkhead_wire::builder::{v4, Frame};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn fake_snapshot() -> Snapshot {
    let mut s = Snapshot::empty();
    let mut a =
        CountersSnapshot { packets: 1000, bytes: 640_000, pass: 900, would_deny: 40, ..Default::default() };
    a.drops[DropReason::DefaultDeny.index()] = 50;
    a.drops[DropReason::Quarantined.index()] = 10;
    a.flows_created = 120;
    a.flows_active = 80;
    a.flow_capacity = 1 << 20;
    let b =
        CountersSnapshot { packets: 5, bytes: 300, pass: 5, flow_capacity: 1 << 20, ..Default::default() };
    s.workers = vec![(0, a), (1, b)];
    s.latency_ns.record_n(3_000, 1000).unwrap();
    s.time_to_contain_ns.record(40_000_000).unwrap();
    s.generation = 7;
    s.policy_loaded_unix = 1_750_000_000.5;
    s.policy_age_seconds = 12.25;
    s.quarantine_entries = 1;
    s.kpis = Some(metrics::KpiSnapshot {
        denied_by_zone_pair: [("dev->prod".to_string(), 42), ("world->prod".to_string(), 3)].into(),
        default_deny: 40,
        rule_deny: 5,
        quarantined: 2,
        would_deny_flows: 20,
    });
    s
}

fn value(text: &str, series: &str) -> f64 {
    let key = format!("{series} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .unwrap_or_else(|| panic!("no series {series} in\n{text}"))
        .parse()
        .unwrap()
}

fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus, installed by scripts/setup.sh)");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn rendered_snapshot_has_the_documented_series_and_passes_promtool() {
    let t = metrics::render_snapshot(&fake_snapshot());
    assert_eq!(value(&t, r#"bulkhead_packets_total{worker="0"}"#), 1000.0);
    assert_eq!(value(&t, r#"bulkhead_packets_total{worker="1"}"#), 5.0);
    assert_eq!(value(&t, r#"bulkhead_verdicts_total{worker="0",verdict="drop"}"#), 60.0);
    assert_eq!(value(&t, r#"bulkhead_verdicts_total{worker="0",verdict="would_deny"}"#), 40.0);
    assert_eq!(value(&t, r#"bulkhead_drops_total{worker="0",reason="quarantined"}"#), 10.0);
    assert_eq!(value(&t, r#"bulkhead_drops_total{worker="1",reason="ipv4_bad_ihl"}"#), 0.0);
    assert_eq!(value(&t, r#"bulkhead_flow_table_capacity{worker="0"}"#), 1_048_576.0);
    assert_eq!(value(&t, "bulkhead_policy_generation"), 7.0);
    assert_eq!(value(&t, "bulkhead_policy_age_seconds"), 12.25);
    assert_eq!(value(&t, r#"bulkhead_packet_latency_seconds_bucket{le="0.000005"}"#), 1000.0);
    assert_eq!(value(&t, r#"bulkhead_packet_latency_seconds_bucket{le="0.000002"}"#), 0.0);
    assert_eq!(value(&t, r#"bulkhead_time_to_contain_seconds_bucket{le="0.05"}"#), 1.0);
    assert_eq!(value(&t, r#"bulkhead_time_to_contain_seconds_bucket{le="0.01"}"#), 0.0);
    assert_eq!(value(&t, r#"bulkhead_denied_attempts_total{zone_pair="dev->prod"}"#), 42.0);
    assert_eq!(value(&t, r#"bulkhead_flow_decisions_total{decision="explicit_allow"}"#), 100.0);
    assert_eq!(value(&t, r#"bulkhead_flow_decisions_total{decision="would_deny"}"#), 20.0);
    assert_eq!(value(&t, r#"bulkhead_flow_decisions_total{decision="rule_deny"}"#), 5.0);
    // Every metric is documented.
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/metrics.md")).unwrap();
    for l in t.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = l.split_whitespace().nth(2).unwrap();
        assert!(doc.contains(&format!("`{name}`")), "{name} is not documented in docs/metrics.md");
    }
    promtool_check(&t);
}

#[test]
fn kpis_count_denied_attempts_by_zone_pair_and_decision() {
    let policy = bulkhead_control::load_str(
        "p.yaml",
        r#"
apiVersion: bulkhead.io/v1
kind: Identity
metadata: {name: web}
spec: {labels: {zone: prod}, addresses: [198.18.1.0/24]}
---
apiVersion: bulkhead.io/v1
kind: Identity
metadata: {name: laptop}
spec: {labels: {zone: dev}, addresses: [198.18.3.0/24]}
"#,
    )
    .unwrap();
    let t = bulkhead_control::compile(&policy, 1).unwrap().tables;
    let id = |a| t.identities.lookup(a);
    let ev = |kind, src, dst, decision| FlowEvent {
        ts_ns: 1,
        kind,
        worker: 0,
        src,
        dst,
        proto: 6,
        sport: 1,
        dport: 2,
        verdict: Verdict::Drop(DropReason::DefaultDeny),
        decision,
        mode: Mode::Enforce,
        src_identity: id(src),
        dst_identity: id(dst),
        generation: 1,
        packets: 1,
        bytes: 60,
    };
    let k = Kpis::new();
    let (dev, prod, world) = (v4(198, 18, 3, 1), v4(198, 18, 1, 1), v4(198, 19, 9, 9));
    k.observe(&ev(FlowEventKind::Denied, dev, prod, Decision::DefaultDeny), &t);
    k.observe(&ev(FlowEventKind::Denied, dev, prod, Decision::DefaultDeny), &t);
    k.observe(&ev(FlowEventKind::Denied, world, prod, Decision::Quarantined), &t);
    k.observe(&ev(FlowEventKind::WouldDeny, dev, prod, Decision::DefaultDeny), &t);
    k.observe(&ev(FlowEventKind::Revoked, dev, prod, Decision::DefaultDeny), &t);
    let s = k.snapshot();
    assert_eq!(s.denied_by_zone_pair.get("dev->prod"), Some(&2));
    assert_eq!(s.denied_by_zone_pair.get("world->prod"), Some(&1));
    assert_eq!((s.default_deny, s.quarantined, s.would_deny_flows, s.rule_deny), (2, 1, 1, 0));
}

/// A State around one real engine worker that judged a few packets.
fn live_state() -> Arc<State> {
    let policy = bulkhead_control::load_str(
        "p.yaml",
        r#"
apiVersion: bulkhead.io/v1
kind: Identity
metadata: {name: web}
spec: {labels: {app: web, zone: prod}, addresses: [198.18.1.0/24]}
---
apiVersion: bulkhead.io/v1
kind: Identity
metadata: {name: db}
spec: {labels: {app: db, zone: prod}, addresses: [198.18.2.0/24]}
---
apiVersion: bulkhead.io/v1
kind: Policy
metadata: {name: p}
spec:
  rules:
    - {name: web-db, from: [{matchLabels: {app: web}}], to: [{matchLabels: {app: db}}], ports: [{port: 5432}], action: allow}
"#,
    )
    .unwrap();
    let tables: TableSet = bulkhead_control::compile(&policy, 1).unwrap().tables;
    let mut w = Worker::new(0, &EngineConfig { flow_capacity: 1024, ..EngineConfig::default() });
    let frames = [
        Frame::tcp(v4(198, 18, 1, 1), v4(198, 18, 2, 1), 40000, 5432, 0x02).build(),
        Frame::tcp(v4(198, 18, 1, 1), v4(198, 18, 2, 1), 40001, 22, 0x02).build(),
        Frame::tcp(v4(198, 18, 1, 1), v4(198, 18, 2, 1), 40002, 22, 0x02).build(),
    ];
    let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
    let mut v = [Verdict::Pass; 3];
    w.process_batch(1_000, &tables, &refs, &mut v);
    w.latency().record(4_000, 3);
    let handle = WorkerHandle {
        id: 0,
        counters: w.counters(),
        latency: w.latency(),
        io: None,
        flows: Arc::new(FlowRequests::default()),
    };
    let info = PolicyInfo {
        path: PathBuf::from("p.yaml"),
        generation: 1,
        loaded_at_unix: 1_750_000_000.0,
        loaded_mono_ns: 0,
        identities: 2,
        rules: 1,
        acl_rules: 0,
        cause: "start".into(),
    };
    Arc::new(State::new(Arc::new(TableHandle::new(tables)), info, RunInfo::default(), vec![handle]))
}

fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(c, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut resp = String::new();
    c.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    (head.to_string(), body.to_string())
}

#[test]
fn live_endpoint_serves_state_that_promtool_accepts() {
    let state = live_state();
    let kpis = Arc::new(Kpis::new());
    let srv = metrics::serve("127.0.0.1:0".parse().unwrap(), Arc::clone(&state), Some(kpis)).unwrap();
    let (head, body) = http_get(srv.local_addr(), "/metrics");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("Content-Type: text/plain; version=0.0.4"), "{head}");
    assert_eq!(value(&body, r#"bulkhead_packets_total{worker="0"}"#), 3.0);
    assert_eq!(value(&body, r#"bulkhead_drops_total{worker="0",reason="default_deny"}"#), 2.0);
    assert_eq!(value(&body, r#"bulkhead_flows_active{worker="0"}"#), 1.0);
    assert_eq!(value(&body, "bulkhead_packet_latency_seconds_count"), 3.0);
    promtool_check(&body);
    let (head, _) = http_get(srv.local_addr(), "/nope");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    let mut c = TcpStream::connect(srv.local_addr()).unwrap();
    c.write_all(b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").unwrap();
    let mut r = String::new();
    c.read_to_string(&mut r).unwrap();
    assert!(r.starts_with("HTTP/1.1 405"), "{r}");
}

/// Kills the Prometheus server (by PID) and removes its directory, also when the test fails.
struct PromGuard {
    child: Child,
    dir: PathBuf,
}

impl Drop for PromGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn real_prometheus_scrapes_the_endpoint_and_answers_a_query() {
    let state = live_state();
    let srv = metrics::serve("127.0.0.1:0".parse().unwrap(), state, Some(Arc::new(Kpis::new()))).unwrap();
    let dir = std::env::temp_dir().join(format!("bulkhead-prom-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nscrape_configs:\n  - job_name: bulkhead\n    static_configs: [{{targets: ['{}']}}]\n",
            srv.local_addr()
        ),
    )
    .unwrap();
    let port = free_port();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("prometheus (Debian package prometheus, installed by scripts/setup.sh)");
    let guard = PromGuard { child, dir: dir.clone() };
    let prom: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let query = "/api/v1/query?query=bulkhead_packets_total%7Bjob%3D%22bulkhead%22%2Cworker%3D%220%22%7D";
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = String::new();
    loop {
        if TcpStream::connect_timeout(&prom, Duration::from_millis(500)).is_ok() {
            let (_, body) = http_get(prom, query);
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            if let Some(r) = v["data"]["result"].as_array().and_then(|a| a.first()) {
                assert_eq!(r["value"][1], "3", "{body}");
                assert_eq!(r["metric"]["instance"], srv.local_addr().to_string());
                break;
            }
            last = body;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus did not answer with a scraped sample in time; last reply: {last}\nlog:\n{}",
            std::fs::read_to_string(guard.dir.join("prometheus.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // The scrape itself was healthy.
    let (_, body) = http_get(prom, "/api/v1/query?query=up%7Bjob%3D%22bulkhead%22%7D");
    assert!(body.contains(r#""value":["#) && body.contains(r#","1"]"#), "{body}");
    drop(guard);
}
