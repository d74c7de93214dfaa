//! The bump in the wire: both interfaces' XDP programs, their queue pairs, and the worker threads.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::error::XdpError;
use crate::io::{IoConfig, KernelStats, PacketProcessor, QueuePair, Side, WorkerStats};
use crate::prog::{ifindex, remove_stale, rx_queue_count, XdpMode, XdpProgram};

/// What to open: the two interfaces, the XDP hook and the number of queue pairs (= workers).
#[derive(Debug, Clone)]
pub struct DataplaneConfig {
    /// The protected side.
    pub inside: String,
    /// The other side.
    pub outside: String,
    /// Native (driver) or generic XDP.
    pub mode: XdpMode,
    /// Workers = queue pairs; worker `i` serves queue `i` of both interfaces.
    pub workers: u32,
    /// Ring, frame and timer settings of every queue pair.
    pub io: IoConfig,
}

impl DataplaneConfig {
    /// One worker, native mode, default I/O settings.
    pub fn new(inside: impl Into<String>, outside: impl Into<String>) -> Self {
        DataplaneConfig {
            inside: inside.into(),
            outside: outside.into(),
            mode: XdpMode::Native,
            workers: 1,
            io: IoConfig::default(),
        }
    }
}

/// XDP programs attached to both interfaces plus the queue pairs not yet handed to workers.
/// Dropping it (or [`Dataplane::shutdown`]) detaches both programs.
#[derive(Debug)]
pub struct Dataplane {
    cfg: DataplaneConfig,
    // Queue pairs are declared before the programs so they drop (sockets close) first.
    pairs: Vec<QueuePair>,
    inside: XdpProgram,
    outside: XdpProgram,
}

impl Dataplane {
    /// Checks both interfaces, removes Bulkhead programs a crashed run left behind, attaches the
    /// redirect program to both, and opens one queue pair per worker.
    pub fn open(cfg: DataplaneConfig) -> Result<Self, XdpError> {
        if cfg.inside == cfg.outside {
            return Err(XdpError::SameInterface { ifname: cfg.inside.clone() });
        }
        if cfg.workers == 0 {
            return Err(XdpError::BadConfig { what: "at least one worker is needed".into() });
        }
        for ifname in [&cfg.inside, &cfg.outside] {
            ifindex(ifname)?;
            let queues = rx_queue_count(ifname)?;
            if cfg.workers > queues {
                return Err(XdpError::NoSuchQueue { ifname: ifname.clone(), queue: cfg.workers - 1, queues });
            }
            // Both interfaces are checked before either is touched, so a foreign program on the
            // second one does not leave ours attached to the first.
            remove_stale(ifname)?;
        }
        let inside = XdpProgram::attach(&cfg.inside, cfg.mode, cfg.workers)?;
        let outside = XdpProgram::attach(&cfg.outside, cfg.mode, cfg.workers)?;
        let mut pairs = Vec::with_capacity(cfg.workers as usize);
        for q in 0..cfg.workers {
            pairs.push(QueuePair::open(q, &cfg.io, &inside, &outside)?);
        }
        Ok(Dataplane { cfg, pairs, inside, outside })
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &DataplaneConfig {
        &self.cfg
    }

    /// Kernel ids of the inside and outside programs.
    pub fn prog_ids(&self) -> (u32, u32) {
        (self.inside.prog_id(), self.outside.prog_id())
    }

    /// Live counters of every worker, in queue order (clone before [`Dataplane::run`]).
    pub fn stats(&self) -> Vec<Arc<WorkerStats>> {
        self.pairs.iter().map(QueuePair::stats).collect()
    }

    /// Takes the queue pairs out, for callers that run their own threads.
    pub fn take_queue_pairs(&mut self) -> Vec<QueuePair> {
        std::mem::take(&mut self.pairs)
    }

    /// Runs one worker thread per queue pair until `stop` is set, each pinned to its own core
    /// (worker `i` on the `i`-th core the process may use, wrapping around), each with the
    /// processor `make(i)` built inside its thread. Returns when every worker has stopped.
    pub fn run<P, F>(&mut self, stop: &AtomicBool, make: F) -> Result<(), XdpError>
    where
        P: PacketProcessor,
        F: Fn(u32) -> P + Sync,
    {
        let pairs = self.take_queue_pairs();
        if pairs.is_empty() {
            return Err(XdpError::BadConfig { what: "the queue pairs were already taken".into() });
        }
        self.pairs = run_workers(pairs, stop, make);
        Ok(())
    }

    /// Kernel drop counters of every worker's two sockets, in queue order: `[inside, outside]`.
    /// Available before and after [`Dataplane::run`] (the workers hand their pairs back).
    pub fn kernel_stats(&self) -> Result<Vec<[KernelStats; 2]>, XdpError> {
        self.pairs
            .iter()
            .map(|p| Ok([p.kernel_stats(Side::Inside)?, p.kernel_stats(Side::Outside)?]))
            .collect()
    }

    /// Detaches both programs, reporting failures (dropping does the same silently).
    pub fn shutdown(mut self) -> Result<(), XdpError> {
        self.pairs.clear();
        let Dataplane { inside, outside, .. } = self;
        let a = inside.detach();
        let b = outside.detach();
        a.and(b)
    }
}

/// Runs each queue pair on its own pinned thread until `stop` is set; returns the pairs (sockets
/// still open, so their kernel counters stay readable) in queue order.
pub fn run_workers<P, F>(pairs: Vec<QueuePair>, stop: &AtomicBool, make: F) -> Vec<QueuePair>
where
    P: PacketProcessor,
    F: Fn(u32) -> P + Sync,
{
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    std::thread::scope(|s| {
        let mut handles = Vec::with_capacity(pairs.len());
        for (i, mut pair) in pairs.into_iter().enumerate() {
            let core = (!cores.is_empty()).then(|| cores[i % cores.len()]);
            let make = &make;
            let handle = std::thread::Builder::new()
                .name(format!("bulkhead-w{i}"))
                .spawn_scoped(s, move || {
                    if let Some(core) = core {
                        core_affinity::set_for_current(core);
                    }
                    let mut processor = make(pair.queue());
                    pair.run(stop, &mut processor);
                    pair
                })
                .expect("spawning a worker thread");
            handles.push(handle);
        }
        handles.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    })
}
