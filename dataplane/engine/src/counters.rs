//! Per-worker counters: one writer (the worker), any number of lock-free readers.
//!
//! The worker accumulates counts in plain integers during a batch and publishes them once per
//! batch with `Relaxed` stores into a cache-padded block of `AtomicU64`s ([`WorkerCounters`]), so
//! the packet path pays no atomic read-modify-write and readers never share a cache line with
//! another worker's writes. A reader takes a [`CountersSnapshot`] (plain `u64`s) and merges
//! workers with `+=`. Values are monotonic except the gauges (`flows_active`, `flow_capacity`,
//! `frag_held`, `generation`, `quarantine_first_drop_*`), which merge as sums except the
//! generation / quarantine fields, which merge as the newest.

use crate::DropReason;
use crossbeam_utils::CachePadded;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Published counters of one worker. Share it with `Arc`; read with [`WorkerCounters::snapshot`].
#[derive(Debug)]
pub struct WorkerCounters {
    worker_id: u16,
    block: CachePadded<Block>,
}

#[derive(Debug)]
struct Block {
    packets: AtomicU64,
    bytes: AtomicU64,
    pass: AtomicU64,
    would_deny: AtomicU64,
    drops: [AtomicU64; DropReason::COUNT],
    flows_created: AtomicU64,
    flows_evicted: AtomicU64,
    flows_expired: AtomicU64,
    flows_revoked: AtomicU64,
    flows_closed: AtomicU64,
    flows_active: AtomicU64,
    flow_capacity: AtomicU64,
    frag_held: AtomicU64,
    frag_released: AtomicU64,
    events_emitted: AtomicU64,
    events_dropped: AtomicU64,
    batches: AtomicU64,
    generation: AtomicU64,
    quarantine_first_drop_generation: AtomicU64,
    quarantine_first_drop_ns: AtomicU64,
}

impl Default for Block {
    fn default() -> Self {
        let z = || AtomicU64::new(0);
        Self {
            packets: z(),
            bytes: z(),
            pass: z(),
            would_deny: z(),
            drops: std::array::from_fn(|_| z()),
            flows_created: z(),
            flows_evicted: z(),
            flows_expired: z(),
            flows_revoked: z(),
            flows_closed: z(),
            flows_active: z(),
            flow_capacity: z(),
            frag_held: z(),
            frag_released: z(),
            events_emitted: z(),
            events_dropped: z(),
            batches: z(),
            generation: z(),
            quarantine_first_drop_generation: z(),
            quarantine_first_drop_ns: z(),
        }
    }
}

/// A plain copy of counters; add snapshots of several workers with `+=` for totals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CountersSnapshot {
    /// Frames handed to the engine.
    pub packets: u64,
    /// Bytes of those frames.
    pub bytes: u64,
    pub pass: u64,
    pub would_deny: u64,
    /// Drops per [`DropReason::index`].
    pub drops: [u64; DropReason::COUNT],
    pub flows_created: u64,
    /// Removed to make room in a full table.
    pub flows_evicted: u64,
    /// Removed after their idle timeout.
    pub flows_expired: u64,
    /// Cut because a newer generation denies them.
    pub flows_revoked: u64,
    /// Replaced on a closed tuple (TIME_WAIT reuse) or removed after an accepted RST.
    pub flows_closed: u64,
    /// Flows in the table at the last batch (gauge).
    pub flows_active: u64,
    /// Flow table capacity (gauge).
    pub flow_capacity: u64,
    /// Early fragments held now (gauge).
    pub frag_held: u64,
    /// Held fragments released to the caller for transmission.
    pub frag_released: u64,
    /// Flow events pushed to the sink.
    pub events_emitted: u64,
    /// Flow events lost because the sink was full.
    pub events_dropped: u64,
    pub batches: u64,
    /// Generation of the table set of the last batch (merge: max).
    pub generation: u64,
    /// Generation under which the first `quarantined` drop happened, and its `now_ns` (0 = none).
    /// "Time to contain" = `quarantine_first_drop_ns` - the time the quarantine was published,
    /// when `quarantine_first_drop_generation` >= the generation that introduced it
    /// (merge: the earliest drop among workers of the newest generation).
    pub quarantine_first_drop_generation: u64,
    pub quarantine_first_drop_ns: u64,
}

impl Default for CountersSnapshot {
    fn default() -> Self {
        Self {
            packets: 0,
            bytes: 0,
            pass: 0,
            would_deny: 0,
            drops: [0; DropReason::COUNT],
            flows_created: 0,
            flows_evicted: 0,
            flows_expired: 0,
            flows_revoked: 0,
            flows_closed: 0,
            flows_active: 0,
            flow_capacity: 0,
            frag_held: 0,
            frag_released: 0,
            events_emitted: 0,
            events_dropped: 0,
            batches: 0,
            generation: 0,
            quarantine_first_drop_generation: 0,
            quarantine_first_drop_ns: 0,
        }
    }
}

impl CountersSnapshot {
    /// Drops for one reason.
    pub fn drop_count(&self, r: DropReason) -> u64 {
        self.drops[r.index()]
    }

    /// All drops.
    pub fn dropped(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// `(reason, count)` for every reason, in index order (zeros included).
    pub fn drops_by_reason(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::all().map(|r| (r, self.drops[r.index()]))
    }
}

impl std::ops::AddAssign<&CountersSnapshot> for CountersSnapshot {
    fn add_assign(&mut self, o: &CountersSnapshot) {
        self.packets += o.packets;
        self.bytes += o.bytes;
        self.pass += o.pass;
        self.would_deny += o.would_deny;
        for (a, b) in self.drops.iter_mut().zip(o.drops.iter()) {
            *a += b;
        }
        self.flows_created += o.flows_created;
        self.flows_evicted += o.flows_evicted;
        self.flows_expired += o.flows_expired;
        self.flows_revoked += o.flows_revoked;
        self.flows_closed += o.flows_closed;
        self.flows_active += o.flows_active;
        self.flow_capacity += o.flow_capacity;
        self.frag_held += o.frag_held;
        self.frag_released += o.frag_released;
        self.events_emitted += o.events_emitted;
        self.events_dropped += o.events_dropped;
        self.batches += o.batches;
        self.generation = self.generation.max(o.generation);
        let (sg, og) = (self.quarantine_first_drop_generation, o.quarantine_first_drop_generation);
        if og > sg || (og == sg && og != 0 && o.quarantine_first_drop_ns < self.quarantine_first_drop_ns) {
            self.quarantine_first_drop_generation = og;
            self.quarantine_first_drop_ns = o.quarantine_first_drop_ns;
        }
    }
}

impl std::ops::AddAssign for CountersSnapshot {
    fn add_assign(&mut self, o: CountersSnapshot) {
        *self += &o;
    }
}

impl WorkerCounters {
    pub fn new(worker_id: u16) -> Self {
        Self { worker_id, block: CachePadded::new(Block::default()) }
    }

    pub fn worker_id(&self) -> u16 {
        self.worker_id
    }

    /// A consistent-enough copy (each field is read atomically; fields of one batch may straddle
    /// two reads, which only matters for a reader comparing fields to the last packet).
    pub fn snapshot(&self) -> CountersSnapshot {
        let b = &*self.block;
        let mut drops = [0u64; DropReason::COUNT];
        for (d, a) in drops.iter_mut().zip(b.drops.iter()) {
            *d = a.load(Relaxed);
        }
        CountersSnapshot {
            packets: b.packets.load(Relaxed),
            bytes: b.bytes.load(Relaxed),
            pass: b.pass.load(Relaxed),
            would_deny: b.would_deny.load(Relaxed),
            drops,
            flows_created: b.flows_created.load(Relaxed),
            flows_evicted: b.flows_evicted.load(Relaxed),
            flows_expired: b.flows_expired.load(Relaxed),
            flows_revoked: b.flows_revoked.load(Relaxed),
            flows_closed: b.flows_closed.load(Relaxed),
            flows_active: b.flows_active.load(Relaxed),
            flow_capacity: b.flow_capacity.load(Relaxed),
            frag_held: b.frag_held.load(Relaxed),
            frag_released: b.frag_released.load(Relaxed),
            events_emitted: b.events_emitted.load(Relaxed),
            events_dropped: b.events_dropped.load(Relaxed),
            batches: b.batches.load(Relaxed),
            generation: b.generation.load(Relaxed),
            quarantine_first_drop_generation: b.quarantine_first_drop_generation.load(Relaxed),
            quarantine_first_drop_ns: b.quarantine_first_drop_ns.load(Relaxed),
        }
    }

    /// Publishes the worker's local totals (single writer: plain stores, no RMW).
    pub(crate) fn publish(&self, s: &CountersSnapshot) {
        let b = &*self.block;
        b.packets.store(s.packets, Relaxed);
        b.bytes.store(s.bytes, Relaxed);
        b.pass.store(s.pass, Relaxed);
        b.would_deny.store(s.would_deny, Relaxed);
        for (a, v) in b.drops.iter().zip(s.drops.iter()) {
            a.store(*v, Relaxed);
        }
        b.flows_created.store(s.flows_created, Relaxed);
        b.flows_evicted.store(s.flows_evicted, Relaxed);
        b.flows_expired.store(s.flows_expired, Relaxed);
        b.flows_revoked.store(s.flows_revoked, Relaxed);
        b.flows_closed.store(s.flows_closed, Relaxed);
        b.flows_active.store(s.flows_active, Relaxed);
        b.flow_capacity.store(s.flow_capacity, Relaxed);
        b.frag_held.store(s.frag_held, Relaxed);
        b.frag_released.store(s.frag_released, Relaxed);
        b.events_emitted.store(s.events_emitted, Relaxed);
        b.events_dropped.store(s.events_dropped, Relaxed);
        b.batches.store(s.batches, Relaxed);
        b.generation.store(s.generation, Relaxed);
        b.quarantine_first_drop_generation.store(s.quarantine_first_drop_generation, Relaxed);
        b.quarantine_first_drop_ns.store(s.quarantine_first_drop_ns, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_then_snapshot_round_trips_and_merges() {
        let c = WorkerCounters::new(3);
        let mut s = CountersSnapshot { packets: 10, bytes: 640, pass: 7, ..Default::default() };
        s.drops[DropReason::DefaultDeny.index()] = 3;
        s.generation = 5;
        s.quarantine_first_drop_generation = 5;
        s.quarantine_first_drop_ns = 900;
        c.publish(&s);
        let r = c.snapshot();
        assert_eq!(r, s);
        let mut other = CountersSnapshot { packets: 1, ..Default::default() };
        other.quarantine_first_drop_generation = 5;
        other.quarantine_first_drop_ns = 800;
        other.generation = 4;
        let mut total = r;
        total += other;
        assert_eq!(total.packets, 11);
        assert_eq!(total.drop_count(DropReason::DefaultDeny), 3);
        assert_eq!(total.generation, 5);
        assert_eq!(total.quarantine_first_drop_ns, 800, "earliest drop of the newest generation");
    }
}
