//! `bulkhead run`: the firewall process, from policy file to a clean stop.
//!
//! Start-up, in order, each step refusing to start with a clear error:
//! 1. load and validate the policy, compile it as generation 1 (a policy error is printed with
//!    its file:line:col positions and the process exits 1 before touching any interface);
//! 2. allocate one engine [`Worker`] per worker thread (flow table sized by `--flow-capacity`),
//!    each with a bounded flow-event queue;
//! 3. open the AF_XDP dataplane (attach both XDP programs, removing stale ones a crash left);
//! 4. build the shared [`State`], start the flow-event drain (and flow log), the control socket
//!    and, with `--metrics`, the Prometheus endpoint;
//! 5. print `ready generation=1 control=PATH inside_prog=ID outside_prog=ID` on stdout and run
//!    the workers until SIGINT / SIGTERM.
//!
//! While running, a supervisor thread turns SIGHUP into [`Controller::reload`] (the flow-log file
//! is reopened too, for log rotation). On stop: the workers return at their next poll, the
//! control socket is removed, the flow-event queues are drained one last time, both XDP programs
//! are detached, and `stopped` is printed. Exit status: 0 after a clean stop, 1 on a start-up
//! error.

use super::control::ControlServer;
use super::controller::{compile_with, load, policy_info, Controller};
use super::flowlog::{spawn_writer, EventObserver, FlowLogTarget};
use super::persist;
use super::processor::EngineProcessor;
use super::state::{FlowRequests, QuarantineTarget, RunInfo, State, WorkerHandle};
use bulkhead_engine::{EngineConfig, FlowEvent, Worker};
use bulkhead_tables::TableHandle;
use bulkhead_xdp::{Dataplane, DataplaneConfig, XdpMode};
use crossbeam_queue::ArrayQueue;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Daemon log format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines on stderr.
    #[default]
    Text,
    /// One JSON object per line on stderr.
    Json,
}

/// Everything `bulkhead run` is started with.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub inside: String,
    pub outside: String,
    pub policy: PathBuf,
    pub workers: u32,
    pub xdp_mode: XdpMode,
    /// `ADDR` for the Prometheus endpoint (a bare port binds to loopback).
    pub metrics: Option<String>,
    /// `PATH` or `-` (stdout).
    pub flow_log: Option<String>,
    /// Also log connection start / end records.
    pub flow_log_start_end: bool,
    pub control: PathBuf,
    pub log_format: LogFormat,
    /// Flow-table capacity per worker.
    pub flow_capacity: u32,
    /// Flow-event queue capacity per worker.
    pub flow_queue: usize,
    /// Where runtime quarantines are kept across restarts (`None`: not kept); see
    /// [`super::persist`].
    pub quarantine_state: Option<PathBuf>,
}

/// Installs the tracing subscriber (stderr; filter from `BULKHEAD_LOG`, default `info`).
/// Harmless when called twice (the second call keeps the first subscriber).
pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("BULKHEAD_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    JSON_LOG.store(format == LogFormat::Json, std::sync::atomic::Ordering::Relaxed);
    let _ = match format {
        LogFormat::Text => b.try_init(),
        LogFormat::Json => b.json().flatten_event(true).with_current_span(false).try_init(),
    };
}

/// Whether the daemon logs JSON (then a start-up failure is one JSON record, not a plain line).
static JSON_LOG: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A start-up failure, said once: a JSON log record for log pipelines, else a plain line.
fn fail(msg: impl std::fmt::Display) -> ExitCode {
    if JSON_LOG.load(std::sync::atomic::Ordering::Relaxed) {
        tracing::error!("{msg}");
    } else {
        eprintln!("bulkhead run: {msg}");
    }
    ExitCode::from(1)
}

/// Hook for the metrics endpoint: given the state, returns a guard that keeps it serving and an
/// optional flow-event observer (KPIs). Set by the binary when it has a metrics module.
pub type MetricsStarter =
    fn(&str, Arc<State>) -> Result<(Box<dyn std::any::Any + Send>, Option<EventObserver>), String>;

/// Runs the firewall until SIGINT / SIGTERM (see the module docs).
pub fn run(cfg: RunConfig, metrics: Option<MetricsStarter>) -> ExitCode {
    init_logging(cfg.log_format);
    let stop = bulkhead_xdp::signals::stop_flag();
    let reload = bulkhead_xdp::signals::reload_flag();

    if super::control::live_daemon_on(&cfg.control) {
        return fail(format!(
            "another bulkhead daemon answers on {}; not starting (stop it, or choose another --control)",
            cfg.control.display()
        ));
    }

    // 1. Policy.
    let policy = match load(&cfg.policy) {
        Ok(p) => p,
        Err(e) => return fail(format!("the policy is invalid; not starting:\n{e}")),
    };
    // Runtime quarantines from before a restart are enforced from the first generation on.
    let restored =
        match cfg.quarantine_state.as_deref().map(|p| persist::load(p, bulkhead_xdp::monotonic_ns())) {
            None => Vec::new(),
            Some(Ok(v)) => v,
            Some(Err(e)) => {
                return fail(format!("{e}\nnot starting: fix or remove the quarantine state file"))
            }
        };
    for e in &restored {
        if let QuarantineTarget::Identity(n) = &e.target {
            if policy.identity(n).is_none() {
                tracing::warn!("restored quarantine of identity `{n}`: no such identity in the policy; it matches nothing");
            }
        }
    }
    if !restored.is_empty() {
        tracing::warn!(
            count = restored.len(),
            file = %cfg.quarantine_state.as_deref().unwrap_or(Path::new("")).display(),
            "runtime quarantines restored"
        );
    }
    let compiled = match compile_with(&policy, &restored, 1) {
        Ok(c) => c,
        Err(e) => return fail(format!("the policy cannot be compiled; not starting:\n{e}")),
    };
    tracing::info!(
        path = %cfg.policy.display(),
        identities = policy.identities.len(),
        rules = policy.rules.len(),
        "policy compiled (generation 1)"
    );

    // 2. Workers.
    if cfg.workers == 0 || cfg.workers > u32::from(u16::MAX) {
        return fail("--workers must be between 1 and 65535");
    }
    let ecfg = EngineConfig {
        flow_capacity: cfg.flow_capacity.max(1),
        log_start_end: cfg.flow_log_start_end,
        ..EngineConfig::default()
    };
    let mut queues = Vec::new();
    let mut slots = Vec::new();
    let mut handles = Vec::new();
    for i in 0..cfg.workers {
        let mut w = Worker::new(i as u16, &ecfg);
        let q = Arc::new(ArrayQueue::<FlowEvent>::new(cfg.flow_queue.max(16)));
        w.set_event_sink(Some(Arc::clone(&q)));
        handles.push(WorkerHandle {
            id: i as u16,
            counters: w.counters(),
            latency: w.latency(),
            io: None,
            flows: Arc::new(FlowRequests::default()),
        });
        queues.push(q);
        slots.push(Mutex::new(Some(w)));
    }

    // 3. Dataplane.
    let mut dcfg = DataplaneConfig::new(cfg.inside.clone(), cfg.outside.clone());
    dcfg.mode = cfg.xdp_mode;
    dcfg.workers = cfg.workers;
    let mut dp = match Dataplane::open(dcfg) {
        Ok(dp) => dp,
        Err(e) => return fail(format!("cannot open the dataplane: {e}")),
    };
    for (h, io) in handles.iter_mut().zip(dp.stats()) {
        h.io = Some(io);
    }
    let (inside_prog, outside_prog) = dp.prog_ids();

    // 4. State and operator surfaces.
    let run_info = RunInfo {
        inside: cfg.inside.clone(),
        outside: cfg.outside.clone(),
        workers: cfg.workers,
        xdp_mode: match cfg.xdp_mode {
            XdpMode::Native => "native".into(),
            XdpMode::Generic => "generic".into(),
        },
        flow_capacity: ecfg.flow_capacity,
        control: Some(cfg.control.clone()),
        metrics: cfg.metrics.clone(),
        flow_log: cfg.flow_log.clone(),
        pid: std::process::id(),
    };
    let info = policy_info(&cfg.policy, &policy, 1, "start");
    let state = Arc::new(State::new(Arc::new(TableHandle::new(compiled.tables)), info, run_info, handles));
    let ctl = Arc::new(Controller::with_runtime(
        Arc::clone(&state),
        cfg.policy.clone(),
        policy,
        restored,
        cfg.quarantine_state.clone(),
    ));

    let mut metrics_guard = None;
    let mut observer = None;
    if let Some(addr) = &cfg.metrics {
        let Some(start) = metrics else {
            return fail("this build has no metrics endpoint (--metrics)");
        };
        match start(addr, Arc::clone(&state)) {
            Ok((guard, obs)) => {
                metrics_guard = Some(guard);
                observer = obs;
            }
            Err(e) => return fail(format!("cannot start the metrics endpoint on {addr}: {e}")),
        }
    }
    let target = cfg.flow_log.as_deref().map_or(FlowLogTarget::None, FlowLogTarget::parse);
    let writer = match spawn_writer(Arc::clone(&state), queues, target, observer) {
        Ok(w) => w,
        Err(e) => {
            return fail(format!("cannot open the flow log {:?}: {e}", cfg.flow_log.as_deref().unwrap_or("")))
        }
    };
    let control = match ControlServer::start(&cfg.control, Arc::clone(&ctl)) {
        Ok(c) => c,
        Err(e) => {
            writer.stop();
            return fail(format!("cannot open the control socket {}: {e}", cfg.control.display()));
        }
    };

    // Supervisor: SIGHUP -> reload.
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let supervisor = {
        let (ctl, done) = (Arc::clone(&ctl), Arc::clone(&done));
        let writer_reopen = writer.reopen_handle();
        std::thread::Builder::new().name("bulkhead-supervisor".into()).spawn(move || {
            while !done.load(Ordering::Relaxed) {
                if reload.swap(false, Ordering::Relaxed) {
                    tracing::info!("SIGHUP: reloading the policy");
                    writer_reopen.store(true, Ordering::Relaxed);
                    let _ = ctl.reload(None);
                }
                if ctl.state().stop_requested() {
                    stop.store(true, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let supervisor = match supervisor {
        Ok(s) => s,
        Err(e) => {
            control.stop();
            writer.stop();
            return fail(format!("cannot start the supervisor thread: {e}"));
        }
    };

    tracing::info!(
        inside = %cfg.inside,
        outside = %cfg.outside,
        workers = cfg.workers,
        control = %cfg.control.display(),
        "bulkhead running"
    );
    println!(
        "ready generation=1 control={} inside_prog={inside_prog} outside_prog={outside_prog}",
        cfg.control.display()
    );
    let _ = std::io::stdout().flush();

    // 5. Run until stopped.
    let run_state = Arc::clone(&state);
    let res = dp.run(stop, |q| {
        let w = slots
            .get(q as usize)
            .and_then(|s| s.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take())
            .unwrap_or_else(|| Worker::new(q as u16, &ecfg));
        EngineProcessor::for_state(w, &run_state)
    });
    if let Err(e) = &res {
        tracing::error!(error = %e, "the workers could not run");
    }

    // Clean stop.
    tracing::info!("stopping");
    done.store(true, Ordering::Relaxed);
    let _ = supervisor.join();
    control.stop();
    writer.stop();
    // Times to contain measured since the last quarantine change go into the state file too.
    ctl.save_quarantine_state();
    drop(metrics_guard);
    let detach = dp.shutdown();
    let c = state.counters().total;
    tracing::info!(
        packets = c.packets,
        pass = c.pass,
        would_deny = c.would_deny,
        dropped = c.dropped(),
        flow_log_written = state.flow_log.written.load(Ordering::Relaxed),
        "stopped"
    );
    match (res, detach) {
        (Ok(()), Ok(())) => {
            println!("stopped");
            let _ = std::io::stdout().flush();
            ExitCode::SUCCESS
        }
        (_, Err(e)) => fail(format!("could not detach the XDP programs cleanly: {e}")),
        (Err(e), _) => fail(format!("the workers could not run: {e}")),
    }
}
