//! The control socket: a local Unix stream socket speaking [`super::protocol`].
//!
//! Security: the socket file is created with mode 0600 (owner only) and every connection's peer
//! is checked with `SO_PEERCRED`: only root and the daemon's own user may talk to it, whatever
//! the file mode says (a socket in a directory with lax permissions, a descriptor passed to
//! another process). Nothing listens on a network address.
//!
//! Concurrency: one accept thread; each connection is served by its own thread, at most
//! [`MAX_CONNECTIONS`] at once (more are answered with an error and closed). A connection may
//! carry any number of requests, one per line, each answered by one line; an idle connection is
//! closed after [`IDLE_TIMEOUT`]. Requests that change the policy are serialized by the
//! [`Controller`].

use super::controller::Controller;
use super::flowlog::{community_id_of, rfc3339, transport_name};
use super::protocol::*;
use super::state::{QuarantineEntry, QuarantineExceptionArg, QuarantineTarget, State};
use bulkhead_engine::FlowFilter;
use bulkhead_tables::Decision;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::IpAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 16;
/// An idle connection is closed after this.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default and largest wait for a quarantine's first enforced drop.
pub const DEFAULT_CONTAIN_WAIT: Duration = Duration::from_millis(2000);
pub const MAX_CONTAIN_WAIT: Duration = Duration::from_millis(10_000);
/// How long `flows` waits for the workers (they answer between batches, at least every few ms).
pub const FLOWS_WAIT: Duration = Duration::from_millis(1000);
/// Default and largest `flows` limit.
pub const DEFAULT_FLOWS_LIMIT: usize = 100;
pub const MAX_FLOWS_LIMIT: usize = 100_000;

/// Creates the socket at `path` (mode 0600), creating its directory if needed.
///
/// # Errors
/// When a live daemon already answers on `path`, when `path` exists and is not a socket, or on
/// any I/O error. A stale socket (left by a crashed daemon) is removed.
/// Whether a daemon answers on the control socket `path` now: checked before anything else is
/// opened, so a second `bulkhead run` on the same socket says so instead of failing later on the
/// XDP programs the first one owns.
pub fn live_daemon_on(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
        && UnixStream::connect(path).is_ok()
}

pub fn bind(path: &Path) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::create_dir_all(dir)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket; refusing to replace it", path.display()),
            ));
        }
        if UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("another bulkhead daemon answers on {} (choose another --control)", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let l = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

/// The uid of the peer of `s` (`SO_PEERCRED`).
///
/// # Errors
/// When the kernel does not say.
pub fn peer_uid(s: &UnixStream) -> io::Result<u32> {
    let cred = nix::sys::socket::getsockopt(s, nix::sys::socket::sockopt::PeerCredentials)
        .map_err(io::Error::from)?;
    Ok(cred.uid())
}

/// True when `uid` may use the control socket: root or the daemon's own user.
pub fn peer_allowed(uid: u32) -> bool {
    uid == 0 || uid == nix::unistd::geteuid().as_raw()
}

/// The running server (accept thread). Dropping it does not stop it; call [`ControlServer::stop`].
#[derive(Debug)]
pub struct ControlServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ControlServer {
    /// Binds `path` and starts serving `ctl`.
    ///
    /// # Errors
    /// See [`bind`].
    pub fn start(path: &Path, ctl: Arc<Controller>) -> io::Result<ControlServer> {
        let listener = bind(path)?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let active = Arc::new(AtomicUsize::new(0));
        let thread = std::thread::Builder::new().name("bulkhead-control".into()).spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => accept_one(s, &ctl, &active),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "control socket accept failed");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })?;
        tracing::info!(path = %path.display(), "control socket listening");
        Ok(ControlServer { path: path.to_path_buf(), stop, thread: Some(thread) })
    }

    /// Stops accepting, joins the accept thread and removes the socket file.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn send(s: &mut UnixStream, r: &Reply) -> io::Result<()> {
    let mut line = serde_json::to_vec(r).map_err(io::Error::other)?;
    line.push(b'\n');
    s.write_all(&line)
}

fn accept_one(mut s: UnixStream, ctl: &Arc<Controller>, active: &Arc<AtomicUsize>) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
    match peer_uid(&s) {
        Ok(uid) if peer_allowed(uid) => {}
        Ok(uid) => {
            tracing::warn!(uid, "control socket: refused a peer that is neither root nor the daemon's user");
            let _ = send(
                &mut s,
                &Reply::err("permission denied: only root or the daemon's user may use this socket"),
            );
            return;
        }
        Err(e) => {
            tracing::warn!(error = %e, "control socket: cannot read peer credentials; refused");
            return;
        }
    }
    if active.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
        active.fetch_sub(1, Ordering::AcqRel);
        let _ = send(&mut s, &Reply::err("busy: too many control connections"));
        return;
    }
    let ctl = Arc::clone(ctl);
    let active2 = Arc::clone(active);
    let spawned = std::thread::Builder::new().name("bulkhead-ctl-conn".into()).spawn(move || {
        serve_connection(s, &ctl);
        active2.fetch_sub(1, Ordering::AcqRel);
    });
    if spawned.is_err() {
        active.fetch_sub(1, Ordering::AcqRel);
    }
}

fn serve_connection(s: UnixStream, ctl: &Controller) {
    let _ = s.set_read_timeout(Some(IDLE_TIMEOUT));
    let Ok(mut w) = s.try_clone() else { return };
    let mut r = BufReader::new(s);
    let mut line = Vec::with_capacity(512);
    loop {
        line.clear();
        match (&mut r).take(MAX_REQUEST_BYTES as u64 + 1).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line.len() > MAX_REQUEST_BYTES {
            let _ = send(&mut w, &Reply::err(format!("request longer than {MAX_REQUEST_BYTES} bytes")));
            return;
        }
        let text = String::from_utf8_lossy(&line);
        if text.trim().is_empty() {
            continue;
        }
        let received = bulkhead_xdp::monotonic_ns();
        let reply = match serde_json::from_str::<Request>(text.trim()) {
            Ok(req) => {
                tracing::debug!(?req, "control request");
                handle(ctl, req, received)
            }
            Err(e) => Reply::err(format!("bad request: {e}")),
        };
        if send(&mut w, &reply).is_err() {
            return;
        }
    }
}

/// Answers one request (`received_mono_ns`: when it arrived, the start of a time to contain).
pub fn handle(ctl: &Controller, req: Request, received_mono_ns: u64) -> Reply {
    let state = ctl.state();
    match req {
        Request::Status => Reply::ok(status(state)),
        Request::Stats => Reply::ok(stats(state)),
        Request::Reload { path } => match ctl.reload(path) {
            Ok(o) => Reply::ok(o),
            Err(e) => Reply::err(format!("reload rejected, the running policy stays in force:\n{e}")),
        },
        Request::QuarantineAdd { target, exceptions, wait_ms } => {
            if wait_ms.is_some_and(|w| u128::from(w) > MAX_CONTAIN_WAIT.as_millis()) {
                return Reply::err(format!("wait_ms must be at most {}", MAX_CONTAIN_WAIT.as_millis()));
            }
            let target: QuarantineTarget = match target.parse() {
                Ok(t) => t,
                Err(e) => return Reply::err(e),
            };
            let mut ex = Vec::with_capacity(exceptions.len());
            for e in &exceptions {
                match e.parse::<QuarantineExceptionArg>() {
                    Ok(x) => ex.push(x),
                    Err(e) => return Reply::err(format!("bad exception: {e}")),
                }
            }
            let entry = match ctl.quarantine_add(target.clone(), ex, received_mono_ns) {
                Ok(e) => e,
                Err(e) => return Reply::err(e),
            };
            let wait = wait_ms.map_or(DEFAULT_CONTAIN_WAIT, Duration::from_millis);
            let ttc = ctl.wait_contained(&target, wait);
            let mut entry = quarantine_data(state, &entry);
            entry.time_to_contain_ns = ttc;
            Reply::ok(QuarantineAddData {
                entry,
                contained: ttc.is_some(),
                note: if ttc.is_some() { "contained".into() } else { "no traffic yet".into() },
            })
        }
        Request::QuarantineRemove { target } => {
            let t: QuarantineTarget = match target.parse() {
                Ok(t) => t,
                Err(e) => return Reply::err(e),
            };
            match ctl.quarantine_remove(&t) {
                Ok(generation) => Reply::ok(QuarantineRemoveData { target: t.to_string(), generation }),
                Err(e) => Reply::err(e),
            }
        }
        Request::QuarantineList => Reply::ok(quarantine_list(state)),
        Request::Flows { from, to, limit } => {
            if limit.is_some_and(|l| l == 0 || l > MAX_FLOWS_LIMIT) {
                return Reply::err(format!("limit must be 1 to {MAX_FLOWS_LIMIT}"));
            }
            let parse = |s: Option<String>| -> Result<Option<IpAddr>, String> {
                s.map(|a| a.parse::<IpAddr>().map_err(|_| format!("`{a}` is not an IP address"))).transpose()
            };
            match (parse(from), parse(to)) {
                (Ok(f), Ok(t)) => Reply::ok(flows(state, f, t, limit.unwrap_or(DEFAULT_FLOWS_LIMIT))),
                (Err(e), _) | (_, Err(e)) => Reply::err(e),
            }
        }
    }
}

/// `status`.
pub fn status(state: &State) -> StatusData {
    let policy = state.policy();
    let now = bulkhead_xdp::monotonic_ns();
    StatusData {
        protocol: PROTOCOL_VERSION,
        version: env!("CARGO_PKG_VERSION").to_string(),
        pid: std::process::id(),
        started_at: rfc3339(state.started().0),
        uptime_s: state.uptime().as_secs_f64(),
        run: state.run_info().clone(),
        // How long it has been in force: the first policy is loaded just before the daemon is up.
        policy_age_s: (now.saturating_sub(policy.loaded_mono_ns) as f64 / 1e9)
            .min(state.uptime().as_secs_f64()),
        policy,
        quarantined: state.quarantine_entries().len(),
        reloads_ok: state.reloads.ok.load(Ordering::Relaxed),
        reloads_failed: state.reloads.failed.load(Ordering::Relaxed),
        last_reload_failure: super::state::lock(&state.reloads.last_failure).clone(),
    }
}

/// `stats`.
pub fn stats(state: &State) -> StatsData {
    let c = state.counters();
    let workers = c
        .workers
        .iter()
        .map(|(id, s)| WorkerData {
            id: *id,
            counters: s.into(),
            io: state.workers().iter().find(|w| w.id == *id).and_then(|w| w.io.as_deref()).map(IoData::from),
        })
        .collect();
    StatsData {
        uptime_s: state.uptime().as_secs_f64(),
        generation: state.current().generation,
        total: (&c.total).into(),
        workers,
        latency_ns: PercentilesData::of(&state.latency_histogram()),
        time_to_contain_ns: PercentilesData::of(&state.time_to_contain()),
        quarantined: state.quarantine_entries().len(),
        flow_log: FlowLogData {
            enabled: state.run_info().flow_log.is_some(),
            written: state.flow_log.written.load(Ordering::Relaxed),
            dropped: c.total.events_dropped + state.flow_log.dropped.load(Ordering::Relaxed),
            write_errors: state.flow_log.write_errors.load(Ordering::Relaxed),
        },
        frag_released_unsent: state.frag_released_unsent.load(Ordering::Relaxed),
    }
}

fn quarantine_data(_state: &State, e: &QuarantineEntry) -> QuarantineData {
    QuarantineData {
        target: e.target.to_string(),
        source: e.source,
        exceptions: e.exceptions.iter().map(ToString::to_string).collect(),
        added_at: (e.source == super::state::QuarantineSource::Runtime)
            .then(|| rfc3339(e.added_at_unix as f64)),
        generation: e.generation,
        time_to_contain_ns: e.time_to_contain_ns,
        restored: e.restored,
    }
}

/// `quarantine_list`.
pub fn quarantine_list(state: &State) -> QuarantineListData {
    let tables = state.current();
    let exceptions = tables
        .quarantine
        .exceptions
        .iter()
        .map(|x| QuarantineExceptionArg { peer: x.peer, proto: x.proto, ports: x.ports }.to_string())
        .collect();
    QuarantineListData {
        generation: tables.generation,
        entries: state.quarantine_entries().iter().map(|e| quarantine_data(state, e)).collect(),
        exceptions,
        time_to_contain_ns: PercentilesData::of(&state.time_to_contain()),
    }
}

fn reason_of(d: Decision) -> &'static str {
    match d {
        Decision::Allow { .. } => "allow",
        Decision::Deny { .. } => "rule_deny",
        Decision::DefaultDeny => "default_deny",
        Decision::Quarantined => "quarantined",
        Decision::QuarantineException => "quarantine_exception",
    }
}

/// `flows`: asks every worker for its live flows (they answer between batches).
pub fn flows(state: &State, from: Option<IpAddr>, to: Option<IpAddr>, limit: usize) -> FlowsData {
    let filter = FlowFilter { addr: from.or(to), ..FlowFilter::default() };
    let mut pending = Vec::new();
    for w in state.workers() {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let req = super::state::FlowRequest { limit: limit.saturating_add(1), filter, from, to, reply: tx };
        if w.flows.submit(req).is_ok() {
            pending.push((w.id, rx));
        }
    }
    let deadline = Instant::now() + FLOWS_WAIT;
    let now = bulkhead_xdp::monotonic_ns();
    let mut out = Vec::new();
    let mut answered = 0;
    for (id, rx) in pending {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(list) = rx.recv_timeout(left) else { continue };
        answered += 1;
        for f in list {
            let t = state.tables_for(f.generation);
            out.push(FlowData {
                worker: id,
                src: f.src.to_string(),
                dst: f.dst.to_string(),
                transport: transport_name(f.proto),
                sport: f.sport,
                dport: f.dport,
                state: f.tcp_state.as_str().to_string(),
                replied: f.replied,
                would_deny: f.would_deny,
                reason: reason_of(f.decision).to_string(),
                rule: t.rule_name(f.decision).map(str::to_string),
                src_identity: t.identity_name(f.src_identity).to_string(),
                dst_identity: t.identity_name(f.dst_identity).to_string(),
                generation: f.generation,
                packets: f.packets,
                bytes: f.bytes,
                idle_s: now.saturating_sub(f.last_seen_ns) as f64 / 1e9,
                community_id: community_id_of(0, f.src, f.dst, f.proto, f.sport, f.dport),
            });
        }
    }
    out.sort_by(|a, b| (&a.src, a.sport, &a.dst, a.dport).cmp(&(&b.src, b.sport, &b.dst, b.dport)));
    let truncated = out.len() > limit;
    out.truncate(limit);
    FlowsData { flows: out, workers_answered: answered, workers_total: state.workers().len(), truncated }
}

/// Sends one request to the daemon at `path` and reads its reply.
///
/// # Errors
/// A message for the operator: no daemon, no permission, timeout, or a malformed reply.
pub fn request(path: &Path, req: &Request, timeout: Duration) -> Result<Reply, String> {
    let mut s = UnixStream::connect(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => format!(
            "no bulkhead daemon answers on {} ({e}); is `bulkhead run` running? (use --control PATH)",
            path.display()
        ),
        io::ErrorKind::PermissionDenied => {
            format!("permission denied on {}: run as root or as the daemon's user", path.display())
        }
        _ => format!("cannot connect to {}: {e}", path.display()),
    })?;
    s.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    let mut line = serde_json::to_vec(req).map_err(|e| e.to_string())?;
    line.push(b'\n');
    s.write_all(&line).map_err(|e| format!("cannot send the request: {e}"))?;
    let mut r = BufReader::new(s);
    let mut reply = String::new();
    r.read_line(&mut reply).map_err(|e| match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => format!("no reply within {timeout:?}"),
        _ => format!("cannot read the reply: {e}"),
    })?;
    if reply.is_empty() {
        return Err("the daemon closed the connection without a reply".into());
    }
    serde_json::from_str(&reply).map_err(|e| format!("malformed reply ({e}): {}", reply.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::controller::{compile_with, policy_info};
    use crate::daemon::state::{FlowRequests, RunInfo, WorkerHandle};
    use bulkhead_engine::{LatencyRecorder, WorkerCounters};
    use bulkhead_tables::TableHandle;

    fn tmp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("bulkhead-ctl-test-{}-{name}", std::process::id()))
    }

    fn controller(policy_path: &Path) -> Arc<Controller> {
        std::fs::write(
            policy_path,
            "apiVersion: bulkhead.io/v1\nkind: Identity\nmetadata: {name: web}\nspec:\n  labels: {zone: prod}\n  addresses: [198.19.1.10/32]\n---\napiVersion: bulkhead.io/v1\nkind: Policy\nmetadata: {name: p}\nspec:\n  rules:\n    - {name: web, from: [{world: true}], to: [{identity: web}], ports: [{protocol: tcp, port: 80}], action: allow}\n",
        )
        .unwrap();
        let policy = crate::daemon::controller::load(policy_path).unwrap();
        let c = compile_with(&policy, &[], 1).unwrap();
        let w = WorkerHandle {
            id: 0,
            counters: Arc::new(WorkerCounters::new(0)),
            latency: Arc::new(LatencyRecorder::new()),
            io: None,
            flows: Arc::new(FlowRequests::default()),
        };
        let state = Arc::new(State::new(
            Arc::new(TableHandle::new(c.tables)),
            policy_info(policy_path, &policy, 1, "start"),
            RunInfo::default(),
            vec![w],
        ));
        Arc::new(Controller::new(state, policy_path.to_path_buf(), policy))
    }

    #[test]
    fn socket_is_private_answers_requests_and_refuses_a_second_daemon() {
        let pol = tmp("p.yaml");
        let sock = tmp("dir").join("control.sock");
        let ctl = controller(&pol);
        let server = ControlServer::start(&sock, Arc::clone(&ctl)).unwrap();
        let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(bind(&sock).unwrap_err().to_string().contains("another bulkhead daemon"));
        assert!(live_daemon_on(&sock), "the preflight of `bulkhead run` sees it too");

        let r = request(&sock, &Request::Status, Duration::from_secs(5)).unwrap();
        assert!(r.ok, "{r:?}");
        let st: StatusData = serde_json::from_value(r.data.unwrap()).unwrap();
        assert_eq!(st.policy.generation, 1);
        assert_eq!(st.pid, std::process::id());

        let r = request(&sock, &Request::Reload { path: None }, Duration::from_secs(5)).unwrap();
        assert!(r.ok, "{r:?}");
        let r = request(
            &sock,
            &Request::QuarantineAdd { target: "web".into(), exceptions: vec![], wait_ms: Some(0) },
            Duration::from_secs(5),
        )
        .unwrap();
        let q: QuarantineAddData = serde_json::from_value(r.data.unwrap()).unwrap();
        assert_eq!((q.entry.generation, q.contained, q.note.as_str()), (3, false, "no traffic yet"));
        // Out-of-range arguments are errors, not silently clamped (and change nothing).
        let r = request(
            &sock,
            &Request::QuarantineAdd {
                target: "198.18.9.9".into(),
                exceptions: vec![],
                wait_ms: Some(20_000),
            },
            Duration::from_secs(5),
        )
        .unwrap();
        assert!(!r.ok && r.error.as_deref().is_some_and(|e| e.contains("at most 10000")), "{r:?}");
        let r =
            request(&sock, &Request::Flows { from: None, to: None, limit: Some(0) }, Duration::from_secs(5))
                .unwrap();
        assert!(!r.ok && r.error.as_deref().is_some_and(|e| e.contains("1 to 100000")), "{r:?}");
        let r = request(&sock, &Request::QuarantineList, Duration::from_secs(5)).unwrap();
        let l: QuarantineListData = serde_json::from_value(r.data.unwrap()).unwrap();
        assert_eq!(l.entries.len(), 1);
        assert_eq!(l.entries[0].target, "web");

        // Bad input is answered, and the connection stays usable.
        let mut s = UnixStream::connect(&sock).unwrap();
        s.write_all(b"{nonsense\n{\"verb\":\"stats\"}\n").unwrap();
        let mut lines = BufReader::new(s).lines();
        let first: Reply = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        assert!(!first.ok && first.error.unwrap().starts_with("bad request"));
        let second: Reply = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        assert!(second.ok);

        server.stop();
        assert!(!sock.exists(), "the socket file is removed on stop");
        assert!(!live_daemon_on(&sock));
        assert!(request(&sock, &Request::Status, Duration::from_secs(1))
            .unwrap_err()
            .contains("no bulkhead daemon"));
        let _ = std::fs::remove_file(&pol);
        let _ = std::fs::remove_dir(sock.parent().unwrap());
    }

    #[test]
    fn a_stale_socket_is_replaced_and_a_regular_file_is_not() {
        let sock = tmp("stale.sock");
        drop(UnixListener::bind(&sock).unwrap()); // bound then closed: nobody answers
        let l = bind(&sock).unwrap();
        drop(l);
        let _ = std::fs::remove_file(&sock);
        let file = tmp("regular");
        std::fs::write(&file, b"x").unwrap();
        assert!(bind(&file).unwrap_err().to_string().contains("not a socket"));
        let _ = std::fs::remove_file(&file);
    }

    #[test]
    fn peer_check_admits_root_and_self_only() {
        assert!(peer_allowed(0));
        assert!(peer_allowed(nix::unistd::geteuid().as_raw()));
        let other = if nix::unistd::geteuid().as_raw() == 65534 { 65533 } else { 65534 };
        assert!(!peer_allowed(other));
        let (a, _b) = UnixStream::pair().unwrap();
        assert_eq!(peer_uid(&a).unwrap(), nix::unistd::geteuid().as_raw());
    }

    #[test]
    fn flows_reports_workers_that_do_not_answer() {
        let pol = tmp("p2.yaml");
        let ctl = controller(&pol);
        // No worker thread services the mailbox here.
        let f = flows(ctl.state(), None, None, 10);
        assert_eq!((f.workers_answered, f.workers_total, f.flows.len()), (0, 1, 0));
        let _ = std::fs::remove_file(&pol);
    }
}
