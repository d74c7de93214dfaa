//! The per-core worker: the batch API (work in progress: the API is final, the body is not).

use crate::counters::{CountersSnapshot, WorkerCounters};
use crate::events::{FlowEvent, FlowFilter, FlowSummary};
use crate::latency::LatencyRecorder;
use crate::{DropReason, EngineConfig, Verdict};
use bulkhead_tables::{Decision, TableSet};
use crossbeam_queue::ArrayQueue;
use std::sync::Arc;

/// All per-core state. Create one per worker thread with [`Worker::new`].
#[derive(Debug)]
pub struct Worker {
    id: u16,
    cfg: EngineConfig,
    local: CountersSnapshot,
    counters: Arc<WorkerCounters>,
    latency: Arc<LatencyRecorder>,
    sink: Option<Arc<ArrayQueue<FlowEvent>>>,
    /// Per frame of the last batch chunk: the policy decision behind its verdict (see
    /// [`Worker::last_decisions`]). Allocated once, `max_batch` long.
    decisions: Box<[Option<Decision>]>,
    decisions_len: usize,
}

impl Worker {
    /// Allocates every table and scratch buffer up front.
    pub fn new(worker_id: u16, cfg: &EngineConfig) -> Worker {
        Worker {
            id: worker_id,
            cfg: cfg.clone(),
            local: CountersSnapshot::default(),
            counters: Arc::new(WorkerCounters::new(worker_id)),
            latency: Arc::new(LatencyRecorder::new()),
            sink: None,
            decisions: vec![None; cfg.max_batch.max(1)].into_boxed_slice(),
            decisions_len: 0,
        }
    }

    pub fn id(&self) -> u16 {
        self.id
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// Judges `frames`, writing one verdict per frame into `verdicts[..frames.len()]`.
    /// `verdicts` must be at least as long as `frames` (extra frames get no verdict: they are
    /// not processed). No allocation, no lock, no panic.
    pub fn process_batch(
        &mut self,
        now_ns: u64,
        tables: &TableSet,
        frames: &[&[u8]],
        verdicts: &mut [Verdict],
    ) {
        let _ = (now_ns, tables);
        self.decisions_len = 0;
        for (f, v) in frames.iter().zip(verdicts.iter_mut()) {
            self.local.packets += 1;
            self.local.bytes += f.len() as u64;
            *v = Verdict::Drop(DropReason::DefaultDeny);
            self.local.drops[DropReason::DefaultDeny.index()] += 1;
            if let Some(d) = self.decisions.get_mut(self.decisions_len) {
                *d = Some(Decision::DefaultDeny);
                self.decisions_len += 1;
            }
        }
        self.local.batches += 1;
        self.counters.publish(&self.local);
    }

    /// The policy decision behind each verdict of the last `process_batch` call, one per frame
    /// of its last chunk of at most `max_batch` frames (call with batches of at most `max_batch`
    /// to get one per frame): the flow's (possibly revalidated) decision for a packet of a
    /// tracked flow, the fresh judgement for a new or denied packet, `None` when no policy lookup
    /// decided (malformed, ARP / ND, ethertype, invalid TCP flags, held fragments). Used by
    /// `bulkhead replay` to name the deciding rule; no allocation.
    pub fn last_decisions(&self) -> &[Option<Decision>] {
        &self.decisions[..self.decisions_len]
    }

    /// Hands every held fragment that may now be transmitted to `f` (frame bytes and verdict,
    /// `Pass` or `WouldDeny`), then frees its hold slot. Call after `process_batch`.
    pub fn drain_released(&mut self, mut f: impl FnMut(&[u8], Verdict)) {
        let _ = &mut f;
    }

    /// Number of held fragments waiting in the released queue.
    pub fn released_len(&self) -> usize {
        0
    }

    /// Idle-time upkeep with no packets: expires up to `budget` flow slots and stale fragments.
    pub fn maintain(&mut self, now_ns: u64, tables: &TableSet, budget: u32) {
        let _ = (now_ns, tables, budget);
    }

    /// The live flows matching `filter`, at most `limit` of them. Call on the worker thread
    /// between batches.
    pub fn flows(&self, limit: usize, filter: FlowFilter) -> impl Iterator<Item = FlowSummary> + '_ {
        std::iter::empty().filter(move |s| filter.matches(s)).take(limit)
    }

    /// The published counters (share with readers).
    pub fn counters(&self) -> Arc<WorkerCounters> {
        Arc::clone(&self.counters)
    }

    /// The latency recorder (the I/O loop records into it; readers merge it).
    pub fn latency(&self) -> Arc<LatencyRecorder> {
        Arc::clone(&self.latency)
    }

    /// Sets (or clears) the flow-event sink.
    pub fn set_event_sink(&mut self, sink: Option<Arc<ArrayQueue<FlowEvent>>>) {
        self.sink = sink;
    }

    /// Flows in the table now.
    pub fn flow_count(&self) -> usize {
        0
    }

    /// Bytes of memory the flow table holds (index + records), fixed at start.
    pub fn flow_table_bytes(&self) -> usize {
        0
    }
}
