//! Software steering between workers: handoff rings, verdict rings and doorbells.
//!
//! With `N` workers and software steering, worker `w` owns the frames whose symmetric flow hash
//! is `w` modulo `N` ([`crate::steer`]). Only the workers that have a queue pair (`R = min(N,
//! queues)` of them, the *receivers*) take frames from the kernel; every worker is an *owner*.
//!
//! For every receiver `r` and every other worker `o` there are two preallocated SPSC rings
//! ([`crate::ring`]) of `handoff_ring` slots:
//!
//! * `r -> o` carries **handoffs**: the descriptor of a frame still in `r`'s UMEM and the side it
//!   arrived on. Nothing is copied: the owner reads the frame where the kernel wrote it (the UMEM
//!   is one mapping shared by the process' threads) and `r` does not touch the frame meanwhile.
//! * `o -> r` carries the **verdicts** back: the same descriptor with "forward or not". `r` then
//!   transmits the frame out of the other side on its own socket, or recycles it.
//!
//! The receiver transmits because it is the only worker guaranteed to have sockets: on a device
//! with fewer queues than workers (veth has one) owners `R..N` have none, and a second socket on
//! the same queue would share the first one's completion ring across threads.
//!
//! Each receiver counts, per owner, the frames it handed over and has not had back (`in_flight`)
//! and never lets that exceed the ring size: the handoff ring then always has room when the count
//! allows a handoff, the verdict ring always has room for every verdict, and the frames a receiver
//! lends out are bounded by `(N - 1) * handoff_ring`. A frame that finds its owner's budget used up
//! is dropped and counted (`WorkerStats::handoff_full`): backpressure from a saturated owner turns
//! into drops at the receiver, never into unbounded queues.
//!
//! A worker about to sleep in `poll(2)` raises its doorbell flag, checks its rings once more, and
//! sleeps on its eventfd as well as its sockets; a producer that publishes into a ring whose
//! consumer sleeps writes the eventfd once. So an idle owner wakes for a handoff at once, and a busy
//! one never pays a system call for it.
//!
//! On stop, receivers stop taking frames from the kernel first; then every worker keeps serving
//! handoffs and verdicts until all receivers have stopped, its incoming rings are empty and none
//! of its own frames is out (bounded by one second), so the queue pairs come back with every frame
//! accounted for and can be run again.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use xsk_rs::{FrameDesc, Umem};

use crate::error::XdpError;
use crate::io::{PacketProcessor, Side, WorkerStats, MAX_BATCH};
use crate::ring::{spsc, Consumer, Producer};
use crate::steer::FlowSteer;

/// One handed-off frame, or its verdict on the way back.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Handoff {
    pub desc: FrameDesc,
    /// Arrived on the outside interface (else inside).
    pub outside: bool,
    /// Verdict: transmit out of the other side.
    pub forward: bool,
}

// The ring slot size quoted in the crate docs' cost section.
const _: () = assert!(std::mem::size_of::<Handoff>() <= 40);

impl Handoff {
    pub fn side(&self) -> Side {
        if self.outside {
            Side::Outside
        } else {
            Side::Inside
        }
    }
}

/// An eventfd plus a "sleeping" flag: wakes a worker sleeping in poll(2) when a ring it consumes
/// gets work.
#[derive(Debug)]
pub(crate) struct Doorbell {
    fd: OwnedFd,
    sleeping: AtomicBool,
}

impl Doorbell {
    fn new() -> Result<Self, XdpError> {
        // SAFETY: plain system call; the returned descriptor is checked before use.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(XdpError::sys("create a worker eventfd", std::io::Error::last_os_error()));
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Doorbell { fd, sleeping: AtomicBool::new(false) })
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Called by a producer after publishing: wakes the consumer if it sleeps (once per sleep).
    pub fn ring(&self) {
        fence(Ordering::SeqCst); // orders our publish before reading the flag (pairs with `arm`)
        if self.sleeping.load(Ordering::Relaxed) && self.sleeping.swap(false, Ordering::SeqCst) {
            let one = 1u64;
            // SAFETY: writes 8 bytes from a live u64 to our eventfd. A failure (counter
            // saturated) means a wake-up is pending anyway.
            unsafe { libc::write(self.fd.as_raw_fd(), (&raw const one).cast(), 8) };
        }
    }

    /// Called by the consumer before it re-checks its rings and sleeps.
    pub fn arm(&self) {
        self.sleeping.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst); // orders the flag before the re-check of the rings
    }

    /// Called by the consumer after waking (or deciding not to sleep).
    pub fn disarm(&self) {
        self.sleeping.store(false, Ordering::Relaxed);
        let mut v = 0u64;
        // SAFETY: reads at most 8 bytes into a live u64; EAGAIN (nothing pending) is fine.
        unsafe { libc::read(self.fd.as_raw_fd(), (&raw mut v).cast(), 8) };
    }
}

/// State shared by all workers of one steered run.
#[derive(Debug)]
pub(crate) struct Shared {
    pub bells: Vec<Doorbell>,
    /// Receivers that have stopped taking frames from the kernel.
    pub stopped_receivers: AtomicUsize,
    pub receivers: usize,
}

/// One worker's ends of the rings.
#[derive(Debug)]
pub(crate) struct Mailbox {
    pub id: usize,
    pub steer: FlowSteer,
    batch: usize,
    budget: usize,
    shared: Arc<Shared>,
    // Receiver role (empty vectors when the worker has no queue pair), indexed by owner.
    out: Vec<Option<Producer<Handoff>>>,
    out_dirty: Vec<bool>,
    pub in_flight: Vec<usize>,
    verdicts_in: Vec<Option<Consumer<Handoff>>>,
    // Owner role, indexed by receiver.
    incoming: Vec<Option<Consumer<Handoff>>>,
    verdicts_out: Vec<Option<Producer<Handoff>>>,
    peer_umem: Vec<Option<Umem>>,
    /// Scratch for `serve`, allocated once (a stack array was zero-filled on every call).
    items: Box<[Handoff; MAX_BATCH]>,
}

/// Builds the mailboxes of `workers` workers, of which the first `umems.len()` are receivers.
pub(crate) fn build(
    workers: usize,
    umems: &[Umem],
    ring: usize,
    batch: usize,
    steer: FlowSteer,
) -> Result<Vec<Mailbox>, XdpError> {
    let receivers = umems.len();
    let mut bells = Vec::with_capacity(workers);
    for _ in 0..workers {
        bells.push(Doorbell::new()?);
    }
    let shared = Arc::new(Shared { bells, stopped_receivers: AtomicUsize::new(0), receivers });
    let mut boxes: Vec<Mailbox> = (0..workers)
        .map(|id| Mailbox {
            id,
            steer,
            batch,
            budget: ring,
            shared: Arc::clone(&shared),
            out: (0..workers).map(|_| None).collect(),
            out_dirty: vec![false; workers],
            in_flight: vec![0; workers],
            verdicts_in: (0..workers).map(|_| None).collect(),
            incoming: (0..receivers).map(|_| None).collect(),
            verdicts_out: (0..receivers).map(|_| None).collect(),
            peer_umem: (0..receivers).map(|_| None).collect(),
            items: Box::new([Handoff::default(); MAX_BATCH]),
        })
        .collect();
    for (r, umem) in umems.iter().enumerate() {
        for o in (0..workers).filter(|o| *o != r) {
            let (hp, hc) = spsc::<Handoff>(ring);
            let (vp, vc) = spsc::<Handoff>(ring);
            boxes[r].out[o] = Some(hp);
            boxes[r].verdicts_in[o] = Some(vc);
            boxes[o].incoming[r] = Some(hc);
            boxes[o].verdicts_out[r] = Some(vp);
            boxes[o].peer_umem[r] = Some(umem.clone());
        }
    }
    Ok(boxes)
}

impl Mailbox {
    pub fn bell(&self) -> &Doorbell {
        &self.shared.bells[self.id]
    }

    /// Queues a frame for its owner `to` (published by [`Mailbox::publish`]); `false` when the
    /// owner's budget is used up (the caller drops and counts the frame).
    #[inline]
    pub fn hand(&mut self, to: usize, desc: FrameDesc, from: Side) -> bool {
        if self.in_flight[to] >= self.budget {
            return false;
        }
        let Some(p) = self.out[to].as_mut() else { return false };
        let ok = p.push(Handoff { desc, outside: from == Side::Outside, forward: false });
        debug_assert!(ok, "in_flight bounds the ring");
        if ok {
            self.in_flight[to] += 1;
            self.out_dirty[to] = true;
        }
        ok
    }

    /// Publishes every ring [`Mailbox::hand`] wrote to and wakes sleeping owners.
    pub fn publish(&mut self) {
        for (to, dirty) in self.out_dirty.iter_mut().enumerate() {
            if std::mem::take(dirty) {
                if let Some(p) = self.out[to].as_mut() {
                    p.publish();
                }
                self.shared.bells[to].ring();
            }
        }
    }

    /// Owner role: judges up to a batch from each receiver's ring with `processor` and sends the
    /// verdicts back; frames the processor adds (see [`PacketProcessor::drain_extra`]) go to
    /// `send` with the side their batch arrived on. Returns how many frames it judged.
    pub fn serve<P: PacketProcessor + ?Sized>(
        &mut self,
        now: u64,
        processor: &mut P,
        stats: &WorkerStats,
        send: &mut dyn FnMut(Side, &[u8]) -> bool,
    ) -> usize {
        let items = &mut *self.items;
        let mut verdicts = [false; MAX_BATCH];
        let mut total = 0;
        for r in 0..self.incoming.len() {
            let (Some(cons), Some(umem)) = (self.incoming[r].as_mut(), self.peer_umem[r].as_ref()) else {
                continue;
            };
            let k = cons.pop_batch(&mut items[..self.batch]);
            if k == 0 {
                continue;
            }
            // Judge runs of frames that arrived on the same side, in ring order.
            let mut start = 0;
            while start < k {
                let side = items[start].side();
                let end = start + items[start..k].iter().take_while(|h| h.side() == side).count();
                let mut frames: [&[u8]; MAX_BATCH] = [&[]; MAX_BATCH];
                for (slot, h) in frames.iter_mut().zip(&items[start..end]) {
                    // SAFETY: the descriptor is a frame of receiver `r`'s UMEM (`umem` is a handle
                    // on that very UMEM) that `r` received from the kernel and lent to us through
                    // the ring (release/acquire ordered after the kernel's write); `r` does not read,
                    // write or recycle it until our verdict for it comes back, which happens after
                    // `frames` is dropped.
                    *slot = unsafe { umem.data(&h.desc) }.contents();
                }
                let v = &mut verdicts[..end - start];
                v.fill(false);
                processor.process(now, side, &frames[..end - start], v);
                for (h, fwd) in items[start..end].iter_mut().zip(v.iter()) {
                    h.forward = *fwd;
                }
                processor.drain_extra(&mut |bytes| send(side, bytes));
                start = end;
            }
            if let Some(back) = self.verdicts_out[r].as_mut() {
                for h in &items[..k] {
                    let ok = back.push(*h);
                    debug_assert!(ok, "the receiver's in_flight bounds the verdict ring");
                }
                back.publish();
            }
            self.shared.bells[r].ring();
            stats.handoffs_judged.fetch_add(k as u64, Ordering::Relaxed);
            total += k;
        }
        total
    }

    /// Receiver role: takes the verdicts that came back into `out` (up to its length) from one
    /// owner after another; returns how many.
    pub fn collect(&mut self, out: &mut [Handoff]) -> usize {
        let mut n = 0;
        for (o, cons) in self.verdicts_in.iter_mut().enumerate() {
            let Some(cons) = cons.as_mut() else { continue };
            if n == out.len() {
                break;
            }
            let k = cons.pop_batch(&mut out[n..]);
            self.in_flight[o] -= k;
            n += k;
        }
        n
    }

    /// Whether a ring this worker consumes has work (checked after [`Doorbell::arm`]).
    pub fn has_pending(&self) -> bool {
        self.incoming.iter().flatten().any(|c| !c.is_empty())
            || self.verdicts_in.iter().flatten().any(|c| !c.is_empty())
    }

    /// Marks this receiver as no longer taking frames from the kernel.
    pub fn stop_receiving(&self) {
        self.shared.stopped_receivers.fetch_add(1, Ordering::Release);
    }

    /// Whether this worker may exit: every receiver stopped, nothing left to judge for others,
    /// none of its own frames out.
    pub fn drained(&self) -> bool {
        self.shared.stopped_receivers.load(Ordering::Acquire) >= self.shared.receivers
            && self.incoming.iter().flatten().all(Consumer::is_empty)
            && self.in_flight.iter().all(|n| *n == 0)
    }
}
