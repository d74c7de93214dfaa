//! The engine as the AF_XDP loop's [`PacketProcessor`]: one per worker thread.
//!
//! Per batch: load the table set once (a swap takes effect at the next batch boundary), judge
//! the frames with [`Worker::process_batch`], turn verdicts into forward flags, record the
//! dequeue -> verdict latency (the loop reads `now_ns` when it takes the batch off the RX ring;
//! the processor reads the clock again after the verdicts), then service a pending
//! `bulkhead flows` request. Nothing here allocates per packet; a flows request allocates its
//! reply between batches, on the worker thread, once per operator command.
//!
//! Held fragments: the engine copies early (non-first) fragments into its hold slots and hands
//! them back through [`Worker::drain_released`] once their first fragment decides. The AF_XDP
//! loop asks for them right after each batch ([`PacketProcessor::drain_extra`]) and transmits
//! copies out of the other side. Those it cannot send (no free UMEM frame, TX ring full, or a
//! steering worker without sockets of its own) are counted in
//! [`EngineProcessor::released_unsent`]; housekeeping drains any left over the same way.

use super::state::{FlowRequests, State};
use bulkhead_engine::{FlowSummary, Verdict, Worker};
use bulkhead_tables::TableHandle;
use bulkhead_xdp::{monotonic_ns, PacketProcessor, Side, MAX_BATCH};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Flow slots checked for expiry per housekeeping call when idle.
const IDLE_SWEEP_BUDGET: u32 = 64;

/// Adapts an engine [`Worker`] to the AF_XDP loop.
#[derive(Debug)]
pub struct EngineProcessor {
    worker: Worker,
    tables: Arc<TableHandle>,
    requests: Arc<FlowRequests>,
    latency: Arc<bulkhead_engine::LatencyRecorder>,
    verdicts: Box<[Verdict; MAX_BATCH]>,
    /// Released held fragments that could not be transmitted (see the module docs).
    pub released_unsent: Arc<AtomicU64>,
}

impl EngineProcessor {
    pub fn new(worker: Worker, tables: Arc<TableHandle>, requests: Arc<FlowRequests>) -> Self {
        Self {
            latency: worker.latency(),
            worker,
            tables,
            requests,
            verdicts: Box::new([Verdict::Pass; MAX_BATCH]),
            released_unsent: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Builds the processor for worker `id` of `state` (its mailbox), taking ownership of `worker`.
    pub fn for_state(worker: Worker, state: &State) -> Self {
        let id = worker.id();
        let requests = state
            .workers()
            .iter()
            .find(|w| w.id == id)
            .map_or_else(|| Arc::new(FlowRequests::default()), |w| Arc::clone(&w.flows));
        let mut p = Self::new(worker, Arc::clone(state.tables()), requests);
        p.released_unsent = Arc::clone(&state.frag_released_unsent);
        p
    }

    pub fn worker(&self) -> &Worker {
        &self.worker
    }

    fn service_requests(&mut self) {
        if !self.requests.pending() {
            return;
        }
        while let Some(req) = self.requests.take() {
            let (from, to) = (req.from, req.to);
            let flows: Vec<FlowSummary> = self
                .worker
                .flows(usize::MAX, req.filter)
                .filter(|f| from.is_none_or(|a| f.src == a) && to.is_none_or(|a| f.dst == a))
                .take(req.limit)
                .collect();
            // The requester may have given up waiting; that is fine.
            let _ = req.reply.try_send(flows);
        }
    }

    /// Hands released fragments to `send`; counts those it refuses.
    fn drain_released(&mut self, send: &mut dyn FnMut(&[u8]) -> bool) {
        if self.worker.released_len() == 0 {
            return;
        }
        let mut unsent = 0u64;
        self.worker.drain_released(|bytes, _| {
            if !send(bytes) {
                unsent += 1;
            }
        });
        if unsent > 0 {
            self.released_unsent.fetch_add(unsent, Ordering::Relaxed);
        }
    }
}

impl PacketProcessor for EngineProcessor {
    fn process(&mut self, now_ns: u64, _from: Side, frames: &[&[u8]], forward: &mut [bool]) {
        let tables = self.tables.load();
        let mut start = 0;
        // The loop hands at most MAX_BATCH frames; chunk anyway so a larger batch is not cut.
        while start < frames.len() {
            let end = (start + MAX_BATCH).min(frames.len());
            let n = end - start;
            self.worker.process_batch(now_ns, &tables, &frames[start..end], &mut self.verdicts[..n]);
            for (f, v) in forward[start..end].iter_mut().zip(self.verdicts[..n].iter()) {
                *f = v.forwards();
            }
            start = end;
        }
        let done = monotonic_ns();
        if !frames.is_empty() {
            self.latency.record(done.saturating_sub(now_ns), frames.len() as u64);
        }
        self.service_requests();
    }

    fn housekeeping(&mut self, now_ns: u64) {
        let tables = self.tables.load();
        self.worker.maintain(now_ns, &tables, IDLE_SWEEP_BUDGET);
        // Normally empty: the loop drains after every batch.
        self.drain_released(&mut |_| false);
        self.service_requests();
    }

    fn drain_extra(&mut self, send: &mut dyn FnMut(&[u8]) -> bool) {
        self.drain_released(send);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::state::FlowRequest;
    use bulkhead_engine::{EngineConfig, FlowFilter};
    use bulkhead_tables::TableSet;

    #[test]
    fn verdicts_become_forward_flags_and_latency_is_recorded() {
        let cfg = EngineConfig { flow_capacity: 1024, ..EngineConfig::default() };
        let w = Worker::new(0, &cfg);
        let latency = w.latency();
        let h = Arc::new(TableHandle::new(TableSet::empty(1)));
        let mut p = EngineProcessor::new(w, h, Arc::new(FlowRequests::default()));
        // Two garbage frames: malformed, dropped, never forwarded.
        let frames: [&[u8]; 2] = [&[0u8; 3], &[0xffu8; 20]];
        let mut fwd = [true; 2];
        p.process(monotonic_ns(), Side::Inside, &frames, &mut fwd);
        assert_eq!(fwd, [false, false]);
        assert_eq!(latency.count(), 2);
        let c = p.worker().counters().snapshot();
        assert_eq!(c.packets, 2);
        assert_eq!(c.dropped(), 2);
    }

    #[test]
    fn a_flows_request_is_answered_between_batches() {
        let w = Worker::new(3, &EngineConfig { flow_capacity: 64, ..EngineConfig::default() });
        let h = Arc::new(TableHandle::new(TableSet::empty(1)));
        let mailbox = Arc::new(FlowRequests::default());
        let mut p = EngineProcessor::new(w, h, Arc::clone(&mailbox));
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        mailbox
            .submit(FlowRequest { limit: 10, filter: FlowFilter::default(), from: None, to: None, reply: tx })
            .unwrap();
        p.housekeeping(monotonic_ns());
        assert_eq!(rx.try_recv().unwrap(), Vec::new());
        assert!(!mailbox.pending());
    }
}
