//! Flow logs: engine flow events -> ECS-shaped JSON lines, written off the packet path.
//!
//! Workers push [`FlowEvent`]s (plain `Copy` records, no heap) into one bounded lock-free
//! `ArrayQueue` each; a full queue makes the worker drop the record and count it in its
//! `events_dropped` counter, so the dataplane never waits for the log. One writer thread
//! ([`spawn_writer`]) drains every queue, names rules and identities with the table set of the
//! event's generation ([`State::tables_for`]), feeds quarantine drops to the time-to-contain
//! bookkeeping, and writes one JSON object per line to a file (appending) or to stdout.
//!
//! The schema is documented in `docs/flow-log.md`; [`record`] is its single implementation.
//! Community ID v1 ([`community_id_v1`]) follows the Corelight specification and is tested
//! against its published baseline vectors.

use super::state::State;
use base64::Engine as _;
use bulkhead_engine::{DropReason, FlowEvent, FlowEventKind, Verdict};
use bulkhead_tables::{Decision, Mode, TableSet};
use crossbeam_queue::ArrayQueue;
use serde_json::{json, Map, Value};
use sha1::{Digest, Sha1};
use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const ICMP: u8 = 1;
const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMPV6: u8 = 58;
const SCTP: u8 = 132;

/// Community ID v1 of a flow given as "port equivalents" (for ICMP, see [`icmp_port_equivalents`]).
///
/// `sha1(seed (2 bytes BE) . saddr . daddr . proto . 0 . sport (BE) . dport (BE))`, base64,
/// prefixed with `1:`. The endpoints are first ordered so the smaller (address, port) comes
/// first, unless `one_way` (ICMP messages without a reply type). For protocols without ports
/// (anything but TCP, UDP, SCTP, ICMP, ICMPv6) the ports are left out of the hash.
pub fn community_id_v1(
    seed: u16,
    saddr: IpAddr,
    daddr: IpAddr,
    proto: u8,
    sport: u16,
    dport: u16,
    one_way: bool,
) -> String {
    let bytes = |a: IpAddr| -> Vec<u8> {
        match a {
            IpAddr::V4(v) => v.octets().to_vec(),
            IpAddr::V6(v) => v.octets().to_vec(),
        }
    };
    let (mut sa, mut da, mut sp, mut dp) = (bytes(saddr), bytes(daddr), sport, dport);
    let ordered = sa < da || (sa == da && sp < dp);
    if !one_way && !ordered {
        std::mem::swap(&mut sa, &mut da);
        std::mem::swap(&mut sp, &mut dp);
    }
    let mut h = Sha1::new();
    h.update(seed.to_be_bytes());
    h.update(&sa);
    h.update(&da);
    h.update([proto, 0]);
    if matches!(proto, TCP | UDP | SCTP | ICMP | ICMPV6) {
        h.update(sp.to_be_bytes());
        h.update(dp.to_be_bytes());
    }
    format!("1:{}", base64::engine::general_purpose::STANDARD.encode(h.finalize()))
}

/// Zeek's mapping of an ICMP / ICMPv6 (type, code) to (sport, dport, one_way): request/reply
/// types map to (type, counterpart type) so both directions hash alike; any other message is
/// one-way with (type, code).
pub fn icmp_port_equivalents(proto: u8, icmp_type: u8, code: u8) -> (u16, u16, bool) {
    let counterpart = match proto {
        ICMP => match icmp_type {
            8 => Some(0),
            0 => Some(8),
            13 => Some(14),
            14 => Some(13),
            15 => Some(16),
            16 => Some(15),
            10 => Some(9),
            9 => Some(10),
            17 => Some(18),
            18 => Some(17),
            _ => None,
        },
        _ => match icmp_type {
            128 => Some(129),
            129 => Some(128),
            130 => Some(131),
            131 => Some(130),
            133 => Some(134),
            134 => Some(133),
            135 => Some(136),
            136 => Some(135),
            139 => Some(140),
            140 => Some(139),
            144 => Some(145),
            145 => Some(144),
            _ => None,
        },
    };
    match counterpart {
        Some(c) => (u16::from(icmp_type), c, false),
        None => (u16::from(icmp_type), u16::from(code), true),
    }
}

/// The Community ID of an engine flow tuple. Engine convention for ICMP: an echo flow carries
/// the echo identifier in both ports (the tuple is in the opening direction, so the message is
/// an echo request); any other ICMP message carries (type, code).
pub fn community_id_of(seed: u16, src: IpAddr, dst: IpAddr, proto: u8, sport: u16, dport: u16) -> String {
    match proto {
        ICMP | ICMPV6 => {
            let (t, c) = icmp_type_code(proto, sport, dport);
            let (sp, dp, one_way) = icmp_port_equivalents(proto, t, c);
            community_id_v1(seed, src, dst, proto, sp, dp, one_way)
        }
        _ => community_id_v1(seed, src, dst, proto, sport, dport, false),
    }
}

/// (type, code) of an engine ICMP tuple (see [`community_id_of`]).
fn icmp_type_code(proto: u8, sport: u16, dport: u16) -> (u8, u8) {
    if sport == dport || sport > 255 || dport > 255 {
        (if proto == ICMP { 8 } else { 128 }, 0)
    } else {
        (sport as u8, dport as u8)
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for Unix seconds.
pub fn rfc3339(unix: f64) -> String {
    let ms_total = (unix * 1000.0).round().max(0.0) as i64;
    let (secs, ms) = (ms_total.div_euclid(1000), ms_total.rem_euclid(1000));
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z", sod / 3600, sod / 60 % 60, sod % 60)
}

/// ECS `network.transport` name.
pub fn transport_name(proto: u8) -> String {
    match proto {
        TCP => "tcp".into(),
        UDP => "udp".into(),
        ICMP => "icmp".into(),
        ICMPV6 => "ipv6-icmp".into(),
        SCTP => "sctp".into(),
        n => n.to_string(),
    }
}

/// `bulkhead.verdict` of an event: allowed, denied, would_deny or revoked.
pub fn verdict_name(ev: &FlowEvent) -> &'static str {
    match ev.kind {
        FlowEventKind::Denied => "denied",
        FlowEventKind::WouldDeny => "would_deny",
        FlowEventKind::Revoked => "revoked",
        FlowEventKind::Start | FlowEventKind::End => match ev.verdict {
            Verdict::WouldDeny => "would_deny",
            Verdict::Drop(DropReason::Revoked) => "revoked",
            Verdict::Drop(_) => "denied",
            Verdict::Pass | Verdict::Held => "allowed",
        },
    }
}

/// `bulkhead.reason`: why the decision was made (`allow`, `rule_deny`, `default_deny`,
/// `quarantined`, `quarantine_exception`), or the drop reason when the engine dropped the packet
/// for something other than policy.
pub fn reason_name(ev: &FlowEvent) -> &'static str {
    if let Verdict::Drop(r) = ev.verdict {
        if !matches!(
            r,
            DropReason::Revoked | DropReason::RuleDeny | DropReason::DefaultDeny | DropReason::Quarantined
        ) {
            return r.as_str();
        }
    }
    match ev.decision {
        Decision::Allow { .. } => "allow",
        Decision::Deny { .. } => "rule_deny",
        Decision::DefaultDeny => "default_deny",
        Decision::Quarantined => "quarantined",
        Decision::QuarantineException => "quarantine_exception",
    }
}

/// One flow-log record (see `docs/flow-log.md`). `tables` must be the table set of
/// `ev.generation` when available (rule and identity names).
pub fn record(ev: &FlowEvent, tables: &TableSet, unix_ts: f64) -> Value {
    let verdict = verdict_name(ev);
    let (ecs_type, action) = match ev.kind {
        FlowEventKind::Denied => ("denied", "flow-denied"),
        FlowEventKind::WouldDeny => ("allowed", "flow-would-deny"),
        FlowEventKind::Revoked => ("denied", "flow-revoked"),
        FlowEventKind::Start => ("start", "flow-start"),
        FlowEventKind::End => ("end", "flow-end"),
    };
    let mut event = Map::new();
    event.insert("kind".into(), json!("event"));
    event.insert("category".into(), json!(["network"]));
    event.insert("type".into(), json!(["connection", ecs_type]));
    event.insert("action".into(), json!(action));
    event.insert(
        "outcome".into(),
        json!(if matches!(verdict, "denied" | "revoked") { "failure" } else { "success" }),
    );
    let ported = matches!(ev.proto, TCP | UDP | SCTP);
    let endpoint = |ip: IpAddr, port: u16| {
        let mut m = Map::new();
        m.insert("ip".into(), json!(ip.to_string()));
        if ported {
            m.insert("port".into(), json!(port));
        }
        Value::Object(m)
    };
    let mut network = Map::new();
    network.insert("transport".into(), json!(transport_name(ev.proto)));
    network.insert("iana_number".into(), json!(ev.proto.to_string()));
    network.insert("type".into(), json!(if ev.src.is_ipv4() { "ipv4" } else { "ipv6" }));
    network.insert(
        "community_id".into(),
        json!(community_id_of(0, ev.src, ev.dst, ev.proto, ev.sport, ev.dport)),
    );
    network.insert("packets".into(), json!(ev.packets));
    network.insert("bytes".into(), json!(ev.bytes));

    let mut bulkhead = Map::new();
    bulkhead.insert("verdict".into(), json!(verdict));
    bulkhead.insert("reason".into(), json!(reason_name(ev)));
    bulkhead.insert(
        "identity".into(),
        json!({
            "source": tables.identity_name(ev.src_identity),
            "destination": tables.identity_name(ev.dst_identity),
        }),
    );
    bulkhead.insert("policy".into(), json!({ "generation": ev.generation }));
    bulkhead.insert("mode".into(), json!(if ev.mode == Mode::Monitor { "monitor" } else { "enforce" }));
    bulkhead.insert("worker".into(), json!(ev.worker));
    if matches!(ev.proto, ICMP | ICMPV6) {
        let (t, c) = icmp_type_code(ev.proto, ev.sport, ev.dport);
        let mut icmp = json!({ "type": t, "code": c });
        if ev.sport == ev.dport {
            icmp["id"] = json!(ev.sport);
        }
        bulkhead.insert("icmp".into(), icmp);
    }

    let mut root = Map::new();
    root.insert("@timestamp".into(), json!(rfc3339(unix_ts)));
    root.insert("event".into(), Value::Object(event));
    root.insert("source".into(), endpoint(ev.src, ev.sport));
    root.insert("destination".into(), endpoint(ev.dst, ev.dport));
    root.insert("network".into(), Value::Object(network));
    if let Decision::Allow { tier, .. } | Decision::Deny { tier, .. } = ev.decision {
        let mut rule = Map::new();
        if let Some(name) = tables.rule_name(ev.decision) {
            rule.insert("name".into(), json!(name));
        }
        if let Some(t) = tables.tiers.get(tier as usize) {
            rule.insert("ruleset".into(), json!(t.name));
        }
        root.insert("rule".into(), Value::Object(rule));
    }
    root.insert(
        "observer".into(),
        json!({ "type": "firewall", "product": "bulkhead", "vendor": "Bulkhead" }),
    );
    root.insert("bulkhead".into(), Value::Object(bulkhead));
    Value::Object(root)
}

/// Where records go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FlowLogTarget {
    /// Records are drained (quarantine bookkeeping still runs) but not written.
    None,
    Stdout,
    File(PathBuf),
}

impl FlowLogTarget {
    /// `-` is stdout, anything else a file path.
    pub fn parse(s: &str) -> Self {
        if s == "-" {
            FlowLogTarget::Stdout
        } else {
            FlowLogTarget::File(PathBuf::from(s))
        }
    }

    fn open(&self) -> std::io::Result<Option<Box<dyn Write + Send>>> {
        Ok(match self {
            FlowLogTarget::None => None,
            FlowLogTarget::Stdout => Some(Box::new(std::io::stdout())),
            FlowLogTarget::File(p) => {
                Some(Box::new(OpenOptions::new().create(true).append(true).open(p)?) as Box<dyn Write + Send>)
            }
        })
    }
}

/// The running writer: signal it to stop (after a final drain) or to reopen its file.
#[derive(Debug)]
pub struct FlowLogWriter {
    stop: Arc<AtomicBool>,
    reopen: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FlowLogWriter {
    /// Reopens the file at the next drain (log rotation; the daemon does it on reload).
    pub fn reopen(&self) {
        self.reopen.store(true, Ordering::Relaxed);
    }

    /// The flag [`FlowLogWriter::reopen`] sets, for a thread that does not own the writer.
    pub fn reopen_handle(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.reopen)
    }

    /// Drains what is left, flushes and joins.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Records written between flushes at most (bounds the loss on a crash and the time a record
/// waits while events keep coming).
const FLUSH_EVERY: usize = 256;

/// Called by the writer for every event, with the table set of its generation (the metrics
/// KPIs hook in here).
pub type EventObserver = Box<dyn Fn(&FlowEvent, &TableSet) + Send>;

/// Starts the writer thread over the workers' queues.
///
/// # Errors
/// When the file cannot be opened (the daemon refuses to start).
pub fn spawn_writer(
    state: Arc<State>,
    queues: Vec<Arc<ArrayQueue<FlowEvent>>>,
    target: FlowLogTarget,
    observer: Option<EventObserver>,
) -> std::io::Result<FlowLogWriter> {
    let mut out = target.open()?.map(|w| BufWriter::with_capacity(64 << 10, w));
    let stop = Arc::new(AtomicBool::new(false));
    let reopen = Arc::new(AtomicBool::new(false));
    let (stop2, reopen2) = (Arc::clone(&stop), Arc::clone(&reopen));
    let thread = std::thread::Builder::new().name("bulkhead-flowlog".into()).spawn(move || {
        let mut line = Vec::with_capacity(1024);
        loop {
            let stopping = stop2.load(Ordering::Relaxed);
            if reopen2.swap(false, Ordering::Relaxed) {
                if let Some(o) = out.as_mut() {
                    let _ = o.flush();
                }
                match target.open() {
                    Ok(w) => out = w.map(|w| BufWriter::with_capacity(64 << 10, w)),
                    Err(e) => tracing::error!(error = %e, "cannot reopen the flow log; keeping the old file"),
                }
            }
            let mut n = 0usize;
            for q in &queues {
                // Bounded per queue per round so one busy worker cannot starve the others.
                for _ in 0..4096 {
                    let Some(ev) = q.pop() else { break };
                    n += 1;
                    state.observe_quarantine_drop(&ev);
                    if out.is_none() && observer.is_none() {
                        continue;
                    }
                    let tables = state.tables_for(ev.generation);
                    if let Some(f) = &observer {
                        f(&ev, &tables);
                    }
                    let Some(o) = out.as_mut() else { continue };
                    line.clear();
                    let rec = record(&ev, &tables, state.wall_from_mono(ev.ts_ns));
                    if serde_json::to_writer(&mut line, &rec).is_err() {
                        continue;
                    }
                    line.push(b'\n');
                    if o.write_all(&line).is_ok() {
                        state.flow_log.written.fetch_add(1, Ordering::Relaxed);
                    } else {
                        state.flow_log.write_errors.fetch_add(1, Ordering::Relaxed);
                        state.flow_log.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    if n.is_multiple_of(FLUSH_EVERY) {
                        let _ = o.flush();
                    }
                }
            }
            if n == 0 {
                if let Some(o) = out.as_mut() {
                    if o.flush().is_err() {
                        state.flow_log.write_errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if stopping {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    })?;
    Ok(FlowLogWriter { stop, reopen, thread: Some(thread) })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Community ID spec's baseline vectors (baseline_deflt.json and baseline_seed1.json):
    /// (proto, saddr, daddr, sport, dport, default-seed id, seed-1 id). Ports are the spec's port
    /// equivalents; None = a protocol without ports.
    #[allow(clippy::type_complexity)]
    #[rustfmt::skip]
    const BASELINE: &[(u8, &str, &str, Option<(u16, u16)>, &str, &str)] = &[
        (58, "fe80::200:86ff:fe05:80da", "fe80::260:97ff:fe07:69ea", Some((135, 136)), "1:dGHyGvjMfljg6Bppwm3bg0LO8TY=", "1:kHa1FhMYIT6Ym2Vm2AOtoOARDzY="),
        (58, "fe80::260:97ff:fe07:69ea", "fe80::200:86ff:fe05:80da", Some((136, 135)), "1:dGHyGvjMfljg6Bppwm3bg0LO8TY=", "1:kHa1FhMYIT6Ym2Vm2AOtoOARDzY="),
        (58, "fe80::260:97ff:fe07:69ea", "fe80::200:86ff:fe05:80da", Some((135, 136)), "1:zavyT/cezQr1fmImYCwYnMXbgck=", "1:2hSqmsDZ2kdcY9kbiUzOEBic0iM="),
        (58, "3ffe:501:1800:2345::2", "3ffe:507:0:1:200:86ff:fe05:80da", Some((3, 0)), "1:2ObVBgIn28oZvibYZhZMBgh7WdQ=", "1:lVEtCZpYu84Xqaa++3lXFyuu2n4="),
        (58, "3ffe:501:410:0:2c0:dfff:fe47:33e", "3ffe:507:0:1:200:86ff:fe05:80da", Some((1, 4)), "1:hLZd0XGWojozrvxqE0dWB1iM6R0=", "1:W8MHwXpWzpoSTD+cGcaJr4u0ys8="),
        (58, "3ffe:507:0:1:200:86ff:fe05:80da", "3ffe:501:0:1001::2", Some((128, 129)), "1:+TW+HtLHvV1xnGhV1lv7XoJrqQg=", "1:GfZxjAkDk2MkegpBYHV6tadtFXQ="),
        (58, "fe80::200:86ff:fe05:80da", "ff02::2", Some((133, 134)), "1:hO+sN4H+MG5MY/8hIrXPqc4ZQz0=", "1:L7Ka0ZMYu+J3bL4ulW2PrqyXNo8="),
        (58, "fe80::260:97ff:fe07:69ea", "ff02::1", Some((134, 133)), "1:pkvHqCL88/tg1k4cPigmZXUtL00=", "1:K/ee5UCqAMAQXDorP5nSa2CGLjc="),
        (1, "192.168.0.89", "192.168.0.1", Some((8, 0)), "1:X0snYXpgwiv9TZtqg64sgzUn6Dk=", "1:03g6IloqVBdcZlPyX8r0hgoE7kA="),
        (1, "192.168.0.1", "192.168.0.89", Some((0, 8)), "1:X0snYXpgwiv9TZtqg64sgzUn6Dk=", "1:03g6IloqVBdcZlPyX8r0hgoE7kA="),
        (1, "10.0.0.1", "10.0.0.2", Some((11, 0)), "1:YHxtAirCG//0OzkcVAukqKQN9xM=", "1:XjUibYHaafLQ3pxQeiMI8g25q20="),
        (6, "2001:470:e5bf:dead:4957:2174:e82c:4887", "2607:f8b0:400c:c03::1a", Some((63943, 25)), "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4=", "1:eJYTW6AOzFLlSUoESovMjnu7rMw="),
        (6, "2607:f8b0:400c:c03::1a", "2001:470:e5bf:dead:4957:2174:e82c:4887", Some((25, 63943)), "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4=", "1:eJYTW6AOzFLlSUoESovMjnu7rMw="),
        (132, "192.168.170.8", "192.168.170.56", Some((7, 7)), "1:MP2EtRCAUIZvTw6MxJHLV7N7JDs=", "1:5w3ZRjeKBzqT3zsaEECDGjUbYeg="),
        (132, "192.168.170.56", "192.168.170.8", Some((7, 7)), "1:MP2EtRCAUIZvTw6MxJHLV7N7JDs=", "1:5w3ZRjeKBzqT3zsaEECDGjUbYeg="),
        (6, "128.232.110.120", "66.35.250.204", Some((34855, 80)), "1:LQU9qZlK+B5F3KDmev6m5PMibrg=", "1:3V71V58M3Ksw/yuFALMcW0LAHvc="),
        (6, "66.35.250.204", "128.232.110.120", Some((80, 34855)), "1:LQU9qZlK+B5F3KDmev6m5PMibrg=", "1:3V71V58M3Ksw/yuFALMcW0LAHvc="),
        (17, "192.168.1.52", "8.8.8.8", Some((54585, 53)), "1:d/FP5EW3wiY1vCndhwleRRKHowQ=", "1:Q9We8WO3piVF8yEQBNJF4uiSVrI="),
        (17, "8.8.8.8", "192.168.1.52", Some((53, 54585)), "1:d/FP5EW3wiY1vCndhwleRRKHowQ=", "1:Q9We8WO3piVF8yEQBNJF4uiSVrI="),
        (46, "10.1.12.1", "10.1.12.2", None, "1:KHlLkgoJW7ifUTyTSgyVfkFHzKw=", "1:rYir8gphR31noO9iDRQmF/BteEI="),
        (46, "10.1.12.2", "10.1.12.1", None, "1:KHlLkgoJW7ifUTyTSgyVfkFHzKw=", "1:rYir8gphR31noO9iDRQmF/BteEI="),
    ];

    #[test]
    fn community_id_matches_the_spec_baseline() {
        for &(proto, s, d, ports, want0, want1) in BASELINE {
            let (sa, da) = (s.parse().unwrap(), d.parse().unwrap());
            let (sp, dp) = ports.unwrap_or((0, 0));
            // Baseline ports are already port equivalents; ICMP one-way messages in it are
            // ordered anyway, so ordering is applied as for any other flow.
            assert_eq!(community_id_v1(0, sa, da, proto, sp, dp, false), want0, "{s} -> {d} proto {proto}");
            assert_eq!(
                community_id_v1(1, sa, da, proto, sp, dp, false),
                want1,
                "seed 1: {s} -> {d} proto {proto}"
            );
        }
    }

    #[test]
    fn community_id_of_engine_icmp_tuples() {
        let (a, b) = ("192.168.0.89".parse().unwrap(), "192.168.0.1".parse().unwrap());
        // An echo flow (identifier in both ports) hashes as echo request / reply.
        assert_eq!(community_id_of(0, a, b, 1, 4242, 4242), "1:X0snYXpgwiv9TZtqg64sgzUn6Dk=");
        // Time exceeded: one-way (type 11, code 0).
        let (c, d) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        assert_eq!(community_id_of(0, c, d, 1, 11, 0), "1:YHxtAirCG//0OzkcVAukqKQN9xM=");
        assert_eq!(icmp_port_equivalents(1, 3, 3), (3, 3, true));
        assert_eq!(icmp_port_equivalents(58, 135, 0), (135, 136, false));
        // One-way messages are not reordered: reversing the endpoints changes the id.
        assert_ne!(community_id_v1(0, d, c, 1, 11, 0, true), community_id_v1(0, d, c, 1, 11, 0, false));
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(0.0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400.5), "2000-02-29T00:00:00.500Z");
        assert_eq!(rfc3339(1_700_000_000.123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339(4_102_444_799.999), "2099-12-31T23:59:59.999Z");
    }

    fn event(kind: FlowEventKind, verdict: Verdict, decision: Decision) -> FlowEvent {
        FlowEvent {
            ts_ns: 0,
            kind,
            worker: 1,
            src: "198.18.1.10".parse().unwrap(),
            dst: "198.19.2.10".parse().unwrap(),
            proto: 6,
            sport: 40000,
            dport: 5432,
            verdict,
            decision,
            mode: Mode::Enforce,
            src_identity: 0,
            dst_identity: 0,
            generation: 7,
            packets: 1,
            bytes: 74,
        }
    }

    #[test]
    fn a_denied_record_has_every_schema_field() {
        let t = TableSet::empty(7);
        let ev = event(FlowEventKind::Denied, Verdict::Drop(DropReason::DefaultDeny), Decision::DefaultDeny);
        let r = record(&ev, &t, 1_700_000_000.0);
        assert_eq!(r["@timestamp"], "2023-11-14T22:13:20.000Z");
        assert_eq!(r["event"]["kind"], "event");
        assert_eq!(r["event"]["category"], json!(["network"]));
        assert_eq!(r["event"]["type"], json!(["connection", "denied"]));
        assert_eq!(r["event"]["action"], "flow-denied");
        assert_eq!(r["source"]["ip"], "198.18.1.10");
        assert_eq!(r["source"]["port"], 40000);
        assert_eq!(r["destination"]["ip"], "198.19.2.10");
        assert_eq!(r["destination"]["port"], 5432);
        assert_eq!(r["network"]["transport"], "tcp");
        assert_eq!(
            r["network"]["community_id"],
            community_id_v1(0, ev.src, ev.dst, 6, 40000, 5432, false).as_str()
        );
        assert!(r.get("rule").is_none(), "default deny has no rule");
        assert_eq!(r["bulkhead"]["verdict"], "denied");
        assert_eq!(r["bulkhead"]["reason"], "default_deny");
        assert_eq!(r["bulkhead"]["identity"]["source"], "world");
        assert_eq!(r["bulkhead"]["identity"]["destination"], "world");
        assert_eq!(r["bulkhead"]["policy"]["generation"], 7);
    }

    #[test]
    fn verdicts_and_reasons_follow_the_event() {
        let rev = event(FlowEventKind::Revoked, Verdict::Drop(DropReason::Revoked), Decision::Quarantined);
        assert_eq!((verdict_name(&rev), reason_name(&rev)), ("revoked", "quarantined"));
        let wd = event(FlowEventKind::WouldDeny, Verdict::WouldDeny, Decision::Deny { tier: 0, rule: 0 });
        assert_eq!((verdict_name(&wd), reason_name(&wd)), ("would_deny", "rule_deny"));
        let st = event(FlowEventKind::Start, Verdict::Pass, Decision::Allow { tier: 0, rule: 0 });
        assert_eq!((verdict_name(&st), reason_name(&st)), ("allowed", "allow"));
        let end = event(FlowEventKind::End, Verdict::WouldDeny, Decision::DefaultDeny);
        assert_eq!(verdict_name(&end), "would_deny");
        let bad =
            event(FlowEventKind::Denied, Verdict::Drop(DropReason::InvalidState), Decision::DefaultDeny);
        assert_eq!(reason_name(&bad), "invalid_state");
        let icmp = FlowEvent { proto: 1, sport: 77, dport: 77, ..wd };
        let r = record(&icmp, &TableSet::empty(7), 0.0);
        assert!(r["source"].get("port").is_none(), "ICMP has no ports");
        assert_eq!(r["network"]["transport"], "icmp");
        assert_eq!(r["bulkhead"]["icmp"], json!({"type": 8, "code": 0, "id": 77}));
    }
}
