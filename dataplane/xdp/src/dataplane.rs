//! The bump in the wire: both interfaces' XDP programs, their queue pairs, and the worker threads.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::error::XdpError;
use crate::handoff;
use crate::io::{run_owner, IoConfig, KernelStats, PacketProcessor, QueuePair, Side, WorkerStats};
use crate::prog::{ifindex, remove_stale, rx_queue_count, XdpMode, XdpProgram};
use crate::steer::{random_seed, FlowSteer, SteerKey, Steering};

/// What to open: the two interfaces, the XDP hook, the number of workers and how flows are
/// steered to them.
#[derive(Debug, Clone)]
pub struct DataplaneConfig {
    /// The protected side.
    pub inside: String,
    /// The other side.
    pub outside: String,
    /// Native (driver) or generic XDP.
    pub mode: XdpMode,
    /// Workers (threads with a processor each). Worker `i < queues` also serves queue `i` of both
    /// interfaces; see [`Steering`] for who judges what.
    pub workers: u32,
    /// Ring, frame and timer settings of every queue pair.
    pub io: IoConfig,
    /// How both directions of a flow reach one worker. [`Steering::Software`] (the default) is
    /// correct on any device; [`Steering::Rss`] is for NICs configured with a symmetric RSS hash.
    /// With one worker both mean the same.
    pub steering: Steering,
    /// What the software steering hash covers (addresses and ports by default).
    pub steer_key: SteerKey,
    /// Slots of each handoff ring (power of two, 64..=8192): how many frames a receiver may have
    /// lent to one owner at once. Bounded further by the UMEM (see [`DataplaneConfig::validate`]).
    pub handoff_ring: u32,
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
            steering: Steering::Software,
            steer_key: SteerKey::Ports,
            handoff_ring: 512,
        }
    }

    /// Whether frames are steered in software (more than one worker and no symmetric RSS).
    pub fn software_steering(&self) -> bool {
        self.workers > 1 && self.steering == Steering::Software
    }

    /// Checks the steering settings: the handoff ring size, and that the frames a receiver may
    /// lend out (`(workers - 1) * handoff_ring`) leave at least half of its UMEM to its own rings.
    pub fn validate(&self) -> Result<(), XdpError> {
        if self.workers == 0 {
            return Err(XdpError::BadConfig { what: "at least one worker is needed".into() });
        }
        if !self.software_steering() {
            return Ok(());
        }
        let ring = self.handoff_ring;
        if !ring.is_power_of_two() || !(64..=8192).contains(&ring) {
            return Err(XdpError::BadConfig {
                what: format!("handoff ring {ring} is not a power of two in 64..=8192"),
            });
        }
        let lent = u64::from(self.workers - 1) * u64::from(ring);
        if lent > u64::from(self.io.frame_count) / 2 {
            let max_workers = u64::from(self.io.frame_count) / 2 / u64::from(ring) + 1;
            return Err(XdpError::BadConfig {
                what: format!(
                    "{} workers is too many for software steering: at most {max_workers} with \
                     {} UMEM frames and a handoff ring of {ring} (each other worker may borrow up \
                     to a ring of frames, and they may take at most half)",
                    self.workers, self.io.frame_count
                ),
            });
        }
        Ok(())
    }
}

/// XDP programs attached to both interfaces plus the queue pairs not yet handed to workers.
/// Dropping it (or [`Dataplane::shutdown`]) detaches both programs.
#[derive(Debug)]
pub struct Dataplane {
    cfg: DataplaneConfig,
    steer: FlowSteer,
    stats: Vec<Arc<WorkerStats>>,
    // Queue pairs are declared before the programs so they drop (sockets close) first.
    pairs: Vec<QueuePair>,
    inside: XdpProgram,
    outside: XdpProgram,
}

impl Dataplane {
    /// Checks both interfaces, removes Bulkhead programs a crashed run left behind, attaches the
    /// redirect program to both, and opens the queue pairs: one per worker with symmetric RSS
    /// (the interfaces need that many queues), `min(workers, queues)` with software steering.
    pub fn open(cfg: DataplaneConfig) -> Result<Self, XdpError> {
        if cfg.inside == cfg.outside {
            return Err(XdpError::SameInterface { ifname: cfg.inside.clone() });
        }
        cfg.validate()?;
        let mut pairs_n = cfg.workers;
        for ifname in [&cfg.inside, &cfg.outside] {
            ifindex(ifname)?;
            let queues = rx_queue_count(ifname)?;
            if cfg.workers > queues && !cfg.software_steering() {
                return Err(XdpError::NoSuchQueue { ifname: ifname.clone(), queue: cfg.workers - 1, queues });
            }
            pairs_n = pairs_n.min(queues.max(1));
            // Both interfaces are checked before either is touched, so a foreign program on the
            // second one does not leave ours attached to the first.
            remove_stale(ifname)?;
        }
        let inside = XdpProgram::attach(&cfg.inside, cfg.mode, pairs_n)?;
        let outside = XdpProgram::attach(&cfg.outside, cfg.mode, pairs_n)?;
        let mut pairs = Vec::with_capacity(pairs_n as usize);
        for q in 0..pairs_n {
            pairs.push(QueuePair::open(q, &cfg.io, &inside, &outside)?);
        }
        let mut stats: Vec<Arc<WorkerStats>> = pairs.iter().map(QueuePair::stats).collect();
        stats.resize_with(cfg.workers as usize, Default::default);
        let steer = FlowSteer::new(cfg.workers, random_seed(), cfg.steer_key);
        Ok(Dataplane { cfg, steer, stats, pairs, inside, outside })
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &DataplaneConfig {
        &self.cfg
    }

    /// Kernel ids of the inside and outside programs.
    pub fn prog_ids(&self) -> (u32, u32) {
        (self.inside.prog_id(), self.outside.prog_id())
    }

    /// Live counters of every worker, in worker order (clone before [`Dataplane::run`]). Workers
    /// without a queue pair (more workers than queues) only count handoffs they judged.
    pub fn stats(&self) -> Vec<Arc<WorkerStats>> {
        self.stats.clone()
    }

    /// Number of queue pairs (receiving workers): `workers` with symmetric RSS, at most the
    /// interfaces' queue count with software steering.
    pub fn queue_pairs(&self) -> usize {
        self.pairs.len()
    }

    /// The software steering function: which worker judges a frame.
    pub fn steer(&self) -> FlowSteer {
        self.steer
    }

    /// Takes the queue pairs out, for callers that run their own threads. Such callers get no
    /// software steering ([`run_workers`] judges each frame on the worker that received it).
    pub fn take_queue_pairs(&mut self) -> Vec<QueuePair> {
        std::mem::take(&mut self.pairs)
    }

    /// Runs one thread per worker until `stop` is set, each pinned to its own core (worker `i` on
    /// the `i`-th core the process may use, wrapping around), each with the processor `make(i)`
    /// built inside its thread. With software steering, workers hand frames to the worker that
    /// owns their flow (see the crate docs). Returns when every worker has stopped.
    pub fn run<P, F>(&mut self, stop: &AtomicBool, make: F) -> Result<(), XdpError>
    where
        P: PacketProcessor,
        F: Fn(u32) -> P + Sync,
    {
        let pairs = self.take_queue_pairs();
        if pairs.is_empty() {
            return Err(XdpError::BadConfig { what: "the queue pairs were already taken".into() });
        }
        if !self.cfg.software_steering() {
            self.pairs = run_workers(pairs, stop, make);
            return Ok(());
        }
        let umems: Vec<_> = pairs.iter().map(QueuePair::umem_handle).collect();
        let mailboxes = match handoff::build(
            self.cfg.workers as usize,
            &umems,
            self.cfg.handoff_ring as usize,
            self.cfg.io.batch,
            self.steer,
        ) {
            Ok(m) => m,
            Err(e) => {
                self.pairs = pairs;
                return Err(e);
            }
        };
        drop(umems);
        self.pairs = run_steered(pairs, mailboxes, &self.stats, &self.cfg.io, stop, make);
        Ok(())
    }

    /// Kernel drop counters of every queue pair's two sockets, in queue order: `[inside, outside]`.
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

/// Runs each queue pair on its own pinned thread until `stop` is set, each judging what its queues
/// receive (no steering: for one worker or symmetric RSS); returns the pairs (sockets still open,
/// so their kernel counters stay readable) in queue order.
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

/// Runs `mailboxes.len()` workers with software steering: the first `pairs.len()` receive on
/// their queue pair, the rest only judge handed-off frames. Returns the pairs in queue order.
fn run_steered<P, F>(
    pairs: Vec<QueuePair>,
    mailboxes: Vec<handoff::Mailbox>,
    stats: &[Arc<WorkerStats>],
    io: &IoConfig,
    stop: &AtomicBool,
    make: F,
) -> Vec<QueuePair>
where
    P: PacketProcessor,
    F: Fn(u32) -> P + Sync,
{
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let mut pairs = pairs.into_iter();
    std::thread::scope(|s| {
        let mut handles = Vec::with_capacity(mailboxes.len());
        for (i, mut mb) in mailboxes.into_iter().enumerate() {
            let core = (!cores.is_empty()).then(|| cores[i % cores.len()]);
            let make = &make;
            let mut pair = pairs.next();
            let stats = Arc::clone(&stats[i]);
            let handle = std::thread::Builder::new()
                .name(format!("bulkhead-w{i}"))
                .spawn_scoped(s, move || {
                    if let Some(core) = core {
                        core_affinity::set_for_current(core);
                    }
                    let mut processor = make(i as u32);
                    match pair.as_mut() {
                        Some(p) => p.run_inner(stop, &mut processor, Some(&mut mb)),
                        None => run_owner(stop, &mut processor, &mut mb, &stats, io),
                    }
                    pair
                })
                .expect("spawning a worker thread");
            handles.push(handle);
        }
        handles
            .into_iter()
            .filter_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Too many workers for the UMEM: the error gives the largest count that fits.
    #[test]
    fn too_many_workers_names_the_maximum() {
        let mut c = DataplaneConfig::new("a", "b");
        c.workers = 9; // 8 * 512 = 4096 lent = half of 8192: the limit
        assert!(c.validate().is_ok());
        c.workers = 64;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("64 workers is too many") && e.contains("at most 9"), "{e}");
    }
}
