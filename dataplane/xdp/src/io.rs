//! Queue pairs: one AF_XDP socket on each side sharing one UMEM, and the forwarding loop.
//!
//! # Frame ownership
//!
//! Each worker owns one UMEM of `frame_count` frames and two sockets bound to the same queue index
//! of the inside and the outside interface. Each socket has its own fill and completion ring over
//! the shared UMEM, so a frame received on one side is transmitted on the other by moving its
//! descriptor (address and length) from one ring to another: the bytes are never copied in user
//! space. A frame is always in exactly one place: the worker's free list, a fill ring, an RX ring,
//! the batch being judged, a TX ring, or a completion ring. Frames the processor drops go straight
//! back to the free list; frames sent come back through the completion ring of the sending side.
//!
//! # The loop
//!
//! Per iteration and per side: take up to `batch` descriptors from the RX ring, hand the frames to
//! the [`PacketProcessor`] in one call, push the ones it forwards onto the other side's TX ring.
//! Then reclaim both completion rings, refill both fill rings, and kick TX (`sendto`) when the TX
//! ring holds a full batch, when the burst that fed it has ended (RX returned less than a batch),
//! or when `tx_flush_ns` has passed since the last kick. Wake-ups are only issued when the kernel
//! asks for them (`XDP_USE_NEED_WAKEUP`), and the fill ring's only when that side's RX ring
//! came back empty. Everything the loop touches is allocated before it
//! starts; the free list is a `Vec` with capacity for every frame, so pushes never reallocate.
//!
//! After `spin_iterations` iterations without work the worker sleeps in `poll(2)` on both sockets
//! for at most `idle_poll_ms`, so an idle firewall does not burn its cores and a stop request is
//! seen within that bound. Set `spin_iterations` high for benchmark runs on dedicated cores.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use xsk_rs::config::{BindFlags, FrameSize, LibxdpFlags, QueueSize, SocketConfig, UmemConfig, XdpFlags};
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, Socket, TxQueue, Umem};

use crate::error::XdpError;
use crate::handoff::{Handoff, Mailbox};
use crate::prog::XdpProgram;

/// Largest batch the loop handles at once (sizes the on-stack arrays).
pub const MAX_BATCH: usize = 256;

/// Which interface a frame arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The protected side (`--inside`).
    Inside,
    /// The other side (`--outside`).
    Outside,
}

impl Side {
    /// The side a frame arriving here leaves through.
    pub fn other(self) -> Side {
        match self {
            Side::Inside => Side::Outside,
            Side::Outside => Side::Inside,
        }
    }

    fn index(self) -> usize {
        match self {
            Side::Inside => 0,
            Side::Outside => 1,
        }
    }
}

/// Judges batches of frames. Implemented by the engine adapter in the control plane; any
/// `FnMut(u64, Side, &[&[u8]], &mut [bool])` closure is one too.
pub trait PacketProcessor {
    /// Decide a batch received on `from`. `forward` has one entry per frame, all `false` on entry;
    /// set an entry to `true` to send that frame, unchanged, out of the other side. `now_ns` is
    /// CLOCK_MONOTONIC, read once per batch.
    fn process(&mut self, now_ns: u64, from: Side, frames: &[&[u8]], forward: &mut [bool]);

    /// Called at least every millisecond while traffic flows and after each idle sleep: the place
    /// for flow expiry or picking up a new table generation when no batch arrives.
    fn housekeeping(&mut self, _now_ns: u64) {}

    /// Frames to send that were not in the batch: e.g. early fragments the processor held and
    /// the batch's first fragment has now released. The loop calls this right after each
    /// `process` call; `send` copies a frame into a free UMEM frame and queues it out of the
    /// side opposite the batch's arrival side, and returns false when it could not (no free
    /// frame, frame too long, TX ring full, or a worker without sockets): the processor counts
    /// those.
    fn drain_extra(&mut self, _send: &mut dyn FnMut(&[u8]) -> bool) {}
}

impl<F> PacketProcessor for F
where
    F: FnMut(u64, Side, &[&[u8]], &mut [bool]),
{
    fn process(&mut self, now_ns: u64, from: Side, frames: &[&[u8]], forward: &mut [bool]) {
        self(now_ns, from, frames, forward);
    }
}

/// Forwards every frame: the I/O path alone, for tests and baselines.
#[derive(Debug, Default, Clone, Copy)]
pub struct PassAll;

impl PacketProcessor for PassAll {
    fn process(&mut self, _now_ns: u64, _from: Side, _frames: &[&[u8]], forward: &mut [bool]) {
        forward.fill(true);
    }
}

/// Sizes and timers of a queue pair.
#[derive(Debug, Clone)]
pub struct IoConfig {
    /// Frames in the worker's UMEM (shared by both sides).
    pub frame_count: u32,
    /// Bytes per frame (2048 or 4096); bounds the largest frame (MTU 1500 fits 2048).
    pub frame_size: u32,
    /// Entries in each RX, TX, fill and completion ring (power of two).
    pub ring_size: u32,
    /// Descriptors taken from a ring at once (1..=MAX_BATCH).
    pub batch: usize,
    /// Longest time a frame waits in the TX ring before a kick.
    pub tx_flush_ns: u64,
    /// Empty iterations before sleeping in poll(2).
    pub spin_iterations: u32,
    /// Longest idle sleep; also bounds how late a stop request is noticed.
    pub idle_poll_ms: i32,
    /// Ask for zero-copy; `false` lets the kernel pick (copy mode on veth).
    pub force_copy: bool,
}

impl Default for IoConfig {
    fn default() -> Self {
        IoConfig {
            frame_count: 8192,
            frame_size: 2048,
            ring_size: 2048,
            batch: 64,
            tx_flush_ns: 50_000,
            spin_iterations: 2_000,
            idle_poll_ms: 1,
            force_copy: false,
        }
    }
}

impl IoConfig {
    fn validate(&self) -> Result<(), XdpError> {
        let bad = |what: String| Err(XdpError::BadConfig { what });
        if !self.ring_size.is_power_of_two() || self.ring_size < 64 {
            return bad(format!("ring size {} is not a power of two >= 64", self.ring_size));
        }
        if self.frame_size != 2048 && self.frame_size != 4096 {
            return bad(format!("frame size {} (2048 or 4096)", self.frame_size));
        }
        if self.batch == 0 || self.batch > MAX_BATCH {
            return bad(format!("batch {} (1..={MAX_BATCH})", self.batch));
        }
        if (self.frame_count as u64) < 2 * self.ring_size as u64 + self.batch as u64 {
            return bad(format!(
                "frame count {} is too small for two fill rings of {}",
                self.frame_count, self.ring_size
            ));
        }
        if self.idle_poll_ms < 0 {
            return bad("idle poll timeout must not be negative".into());
        }
        Ok(())
    }
}

/// Per-direction I/O counters of one worker. Updated once per batch with relaxed atomics, so the
/// metrics thread can read them while the worker runs.
#[derive(Debug, Default)]
pub struct DirectionStats {
    /// Frames received on this side.
    pub rx_packets: AtomicU64,
    /// Bytes received on this side.
    pub rx_bytes: AtomicU64,
    /// Frames forwarded to the other side (placed on its TX ring).
    pub forwarded: AtomicU64,
    /// Frames the processor did not forward.
    pub dropped: AtomicU64,
    /// Frames the processor forwarded but the other side's TX ring had no room for.
    pub tx_ring_full: AtomicU64,
}

/// I/O counters of one worker.
#[derive(Debug, Default)]
pub struct WorkerStats {
    /// Frames that arrived on the inside interface.
    pub from_inside: DirectionStats,
    /// Frames that arrived on the outside interface.
    pub from_outside: DirectionStats,
    /// TX kicks (sendto) issued.
    pub tx_kicks: AtomicU64,
    /// Idle sleeps in poll(2).
    pub idle_sleeps: AtomicU64,
    /// Times the fill ring of a side could not be refilled for lack of free frames.
    pub fill_starved: AtomicU64,
    /// Software steering: frames this worker received and handed to the worker that owns their
    /// flow. They are counted in `rx_packets` here, and in `forwarded`/`dropped` here when the
    /// owner's verdict comes back (this worker transmits them).
    pub handed_off: AtomicU64,
    /// Software steering: frames dropped because their owner already had `handoff_ring` frames of
    /// this worker to judge (owner saturated). Counted in `rx_packets`, not in `dropped`.
    pub handoff_full: AtomicU64,
    /// Software steering: frames this worker judged on behalf of the worker that received them.
    pub handoffs_judged: AtomicU64,
}

impl WorkerStats {
    /// Counters of the given arrival side.
    pub fn direction(&self, from: Side) -> &DirectionStats {
        match from {
            Side::Inside => &self.from_inside,
            Side::Outside => &self.from_outside,
        }
    }
}

/// Kernel-side drop counters of one socket (`XDP_STATISTICS`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct KernelStats {
    /// Frames dropped for reasons other than invalid descriptors.
    pub rx_dropped: u64,
    /// Frames dropped because the RX ring was full.
    pub rx_ring_full: u64,
    /// Times the fill ring was empty when a frame arrived.
    pub rx_fill_ring_empty: u64,
    /// Invalid descriptors on the RX side.
    pub rx_invalid_descs: u64,
    /// Invalid descriptors on the TX side.
    pub tx_invalid_descs: u64,
}

/// One side of a queue pair.
#[derive(Debug)]
struct Port {
    tx: TxQueue,
    rx: RxQueue,
    fq: FillQueue,
    cq: CompQueue,
    last_kick_ns: u64,
}

impl Port {
    fn kernel_stats(&self) -> Result<KernelStats, XdpError> {
        let s = self.rx.fd().xdp_statistics().map_err(|e| XdpError::sys("read XDP_STATISTICS", e))?;
        Ok(KernelStats {
            rx_dropped: s.rx_dropped(),
            rx_ring_full: s.rx_ring_full(),
            rx_fill_ring_empty: s.rx_fill_ring_empty_descs(),
            rx_invalid_descs: s.rx_invalid_descs(),
            tx_invalid_descs: s.tx_invalid_descs(),
        })
    }
}

/// The two sockets of one worker (same queue index on both interfaces) and their shared UMEM.
/// Move it into the worker thread and call [`QueuePair::run`].
#[derive(Debug)]
pub struct QueuePair {
    queue: u32,
    cfg: IoConfig,
    umem: Umem,
    ports: [Port; 2],
    /// Frames owned by the worker and not in any ring. Capacity = every frame: never reallocates.
    free: Vec<FrameDesc>,
    stats: Arc<WorkerStats>,
    /// Scratch for completion-ring reads and returned verdicts, allocated once: as stack arrays
    /// they were zero-filled on every loop iteration (8-10 KiB each), which showed up as the
    /// worker's top user-space symbol in `perf` while it spun waiting for frames.
    comp: Box<[FrameDesc; MAX_BATCH]>,
    back: Box<[Handoff; MAX_BATCH]>,
}

impl QueuePair {
    /// Creates the UMEM and both sockets and registers them in the interfaces' XSKMAPs.
    pub(crate) fn open(
        queue: u32,
        cfg: &IoConfig,
        inside: &XdpProgram,
        outside: &XdpProgram,
    ) -> Result<Self, XdpError> {
        cfg.validate()?;
        let ring = QueueSize::new(cfg.ring_size)
            .map_err(|e| XdpError::BadConfig { what: format!("ring size: {e}") })?;
        let umem_cfg = UmemConfig::builder()
            .frame_size(
                FrameSize::new(cfg.frame_size)
                    .map_err(|e| XdpError::BadConfig { what: format!("frame size: {e}") })?,
            )
            .fill_queue_size(ring)
            .comp_queue_size(ring)
            .build()
            .map_err(|e| XdpError::BadConfig { what: format!("UMEM: {e}") })?;
        let count = std::num::NonZeroU32::new(cfg.frame_count)
            .ok_or(XdpError::BadConfig { what: "frame count 0".into() })?;
        raise_memlock_limit();
        let (umem, descs) = Umem::new(umem_cfg, count, false).map_err(|e| {
            XdpError::sys(
                format!("create the UMEM for queue {queue} ({e})"),
                std::error::Error::source(&e)
                    .and_then(|s| s.downcast_ref::<std::io::Error>())
                    .map_or_else(|| std::io::Error::other(e.to_string()), clone_io_error),
            )
        })?;

        let mut bind = BindFlags::XDP_USE_NEED_WAKEUP;
        if cfg.force_copy {
            bind |= BindFlags::XDP_COPY;
        }
        let sock_cfg = SocketConfig::builder()
            .rx_queue_size(ring)
            .tx_queue_size(ring)
            .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
            .xdp_flags(XdpFlags::empty())
            .bind_flags(bind)
            .build();

        let inside_port = open_port(&umem, sock_cfg, inside, queue)?;
        let outside_port = open_port(&umem, sock_cfg, outside, queue)?;

        let mut free = Vec::with_capacity(descs.len());
        free.extend(descs);
        let mut qp = QueuePair {
            queue,
            cfg: cfg.clone(),
            umem,
            ports: [inside_port, outside_port],
            free,
            stats: Arc::new(WorkerStats::default()),
            comp: Box::new([FrameDesc::default(); MAX_BATCH]),
            back: Box::new([Handoff::default(); MAX_BATCH]),
        };
        qp.refill([true; 2]);
        Ok(qp)
    }

    /// Queue index this pair serves on both interfaces.
    pub fn queue(&self) -> u32 {
        self.queue
    }

    /// Live counters; clone the `Arc` before moving the pair into its thread.
    pub fn stats(&self) -> Arc<WorkerStats> {
        Arc::clone(&self.stats)
    }

    /// Kernel drop counters of the socket on `side`.
    pub fn kernel_stats(&self, side: Side) -> Result<KernelStats, XdpError> {
        self.ports[side.index()].kernel_stats()
    }

    /// Forwards until `stop` is set. Returns after at most about `idle_poll_ms` once it is.
    /// Judges every frame its queues receive itself (no steering).
    pub fn run<P: PacketProcessor + ?Sized>(&mut self, stop: &AtomicBool, processor: &mut P) {
        self.run_inner(stop, processor, None);
    }

    /// A handle on this pair's UMEM, for owners that read frames handed to them.
    pub(crate) fn umem_handle(&self) -> Umem {
        self.umem.clone()
    }

    /// The forwarding loop; with a mailbox, frames owned by other workers are handed to them and
    /// their verdicts applied when they come back, and frames handed to this worker are judged.
    pub(crate) fn run_inner<P: PacketProcessor + ?Sized>(
        &mut self,
        stop: &AtomicBool,
        processor: &mut P,
        mut mailbox: Option<&mut Mailbox>,
    ) {
        let batch = self.cfg.batch;
        // A second handle on the counters, so `serve` can borrow it while its `send` callback
        // borrows the pair.
        let stats = Arc::clone(&self.stats);
        let mut rx_descs = [FrameDesc::default(); MAX_BATCH];
        let mut forward = [false; MAX_BATCH];
        let mut idle_iterations: u32 = 0;
        let mut last_housekeeping = 0u64;

        while !stop.load(Ordering::Relaxed) {
            let now = monotonic_ns();
            let mut work = 0usize;
            let mut burst_ended = [true; 2];
            let mut rx_empty = [true; 2];

            for from in [Side::Inside, Side::Outside] {
                let (rx_i, tx_i) = (from.index(), from.other().index());
                // SAFETY: `rx_descs` is scratch space; the RX ring hands us descriptors of frames
                // in this pair's UMEM that the kernel has finished writing.
                let n = unsafe { self.ports[rx_i].rx.consume(&mut rx_descs[..batch]) };
                if n == 0 {
                    continue;
                }
                rx_empty[rx_i] = false;
                work += n;
                burst_ended[tx_i] = n < batch;

                let mut bytes = 0u64;
                let mut local = n;
                if let Some(mb) = mailbox.as_deref_mut() {
                    // Steering: keep the frames this worker owns (compacted in place, in order),
                    // lend the others to their owners.
                    local = 0;
                    let (mut handed, mut full) = (0u64, 0u64);
                    for i in 0..n {
                        let desc = rx_descs[i];
                        // SAFETY: as below; the slice is dropped before the frame is lent out.
                        let data = unsafe { self.umem.data(&desc) }.contents();
                        bytes += data.len() as u64;
                        let owner = mb.steer.owner(data) as usize;
                        if owner == mb.id {
                            rx_descs[local] = desc;
                            local += 1;
                        } else if mb.hand(owner, desc, from) {
                            handed += 1;
                        } else {
                            self.free.push(desc);
                            full += 1;
                        }
                    }
                    mb.publish();
                    self.stats.handed_off.fetch_add(handed, Ordering::Relaxed);
                    if full > 0 {
                        self.stats.handoff_full.fetch_add(full, Ordering::Relaxed);
                    }
                }
                let st = self.stats.direction(from);
                st.rx_packets.fetch_add(n as u64, Ordering::Relaxed);

                let mut frames: [&[u8]; MAX_BATCH] = [&[]; MAX_BATCH];
                for (slot, desc) in frames.iter_mut().zip(&rx_descs[..local]) {
                    // SAFETY: `desc` came from this UMEM's RX ring and is owned by us until we put
                    // it on a ring again; nothing writes the frame while `frames` lives.
                    let data = unsafe { self.umem.data(desc) };
                    *slot = data.contents();
                    if mailbox.is_none() {
                        bytes += slot.len() as u64;
                    }
                }
                st.rx_bytes.fetch_add(bytes, Ordering::Relaxed);
                if local == 0 {
                    continue;
                }
                let verdicts = &mut forward[..local];
                verdicts.fill(false);
                processor.process(now, from, &frames[..local], verdicts);
                // Forwarded descriptors are compacted to the front of `rx_descs`, in order.
                let mut t = 0usize;
                for i in 0..local {
                    let desc = rx_descs[i];
                    if verdicts[i] {
                        rx_descs[t] = desc;
                        t += 1;
                    } else {
                        self.free.push(desc);
                    }
                }
                self.send_judged(from, &rx_descs[..t], (local - t) as u64, now);
                processor.drain_extra(&mut |bytes| self.send_copy(from, bytes, now));
            }

            if let Some(mb) = mailbox.as_deref_mut() {
                work += mb.serve(now, processor, &stats, &mut |from, bytes| self.send_copy(from, bytes, now));
                work += self.apply_verdicts(mb, now);
            }

            self.kick_due(now, burst_ended);
            work += self.reclaim();
            self.refill(rx_empty);

            if now.saturating_sub(last_housekeeping) >= 1_000_000 {
                processor.housekeeping(now);
                last_housekeeping = now;
            }

            if work == 0 {
                idle_iterations += 1;
                if idle_iterations >= self.cfg.spin_iterations {
                    idle_iterations = 0;
                    self.idle_sleep(mailbox.as_deref());
                }
            } else {
                idle_iterations = 0;
            }
        }

        if let Some(mb) = mailbox {
            // Stop taking frames from the kernel, then finish what others lent us and wait for
            // what we lent them, so every frame is back in this pair when it returns.
            mb.stop_receiving();
            let deadline = monotonic_ns() + DRAIN_NS;
            loop {
                let now = monotonic_ns();
                mb.serve(now, processor, &stats, &mut |from, bytes| self.send_copy(from, bytes, now));
                self.apply_verdicts(mb, now);
                self.reclaim();
                if mb.drained() || now > deadline {
                    break;
                }
                std::thread::yield_now();
            }
            let now = monotonic_ns();
            for port in &mut self.ports {
                kick(port, self.cfg.ring_size, now, &self.stats);
            }
        }
    }

    /// Transmits frames this worker judged (they arrived on `from`) out of the other side, and
    /// counts them with the `dropped` ones in `from`'s direction.
    fn send_judged(&mut self, from: Side, descs: &[FrameDesc], dropped: u64, now: u64) {
        let tx_i = from.other().index();
        let sent = self.transmit(tx_i, descs, now);
        for desc in &descs[sent..] {
            self.free.push(*desc);
        }
        let st = self.stats.direction(from);
        st.forwarded.fetch_add(sent as u64, Ordering::Relaxed);
        st.dropped.fetch_add(dropped, Ordering::Relaxed);
        if sent < descs.len() {
            st.tx_ring_full.fetch_add((descs.len() - sent) as u64, Ordering::Relaxed);
        }
    }

    /// Copies `bytes` (a frame the processor produced, for a batch that arrived on `from`) into a
    /// free frame of this UMEM and queues it out of the other side. False (nothing queued) when no
    /// frame is free, the frame does not fit, or the TX ring is full.
    fn send_copy(&mut self, from: Side, bytes: &[u8], now: u64) -> bool {
        let Some(mut desc) = self.free.pop() else { return false };
        let written = {
            // SAFETY: `desc` came off the free list: a frame of this UMEM in no ring, so neither the
            // kernel nor any slice of ours reads or writes it while `data` lives.
            let mut data = unsafe { self.umem.data_mut(&mut desc) };
            let mut cursor = data.cursor();
            cursor.set_pos(0);
            std::io::Write::write_all(&mut cursor, bytes).is_ok()
        };
        if !written || self.transmit(from.other().index(), &[desc], now) == 0 {
            self.free.push(desc);
            return false;
        }
        self.stats.direction(from).forwarded.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Applies verdicts that owners sent back for frames this worker lent them.
    fn apply_verdicts(&mut self, mb: &mut Mailbox, now: u64) -> usize {
        let n = mb.collect(&mut self.back[..self.cfg.batch]);
        if n == 0 {
            return 0;
        }
        for from in [Side::Inside, Side::Outside] {
            let mut fwd = [FrameDesc::default(); MAX_BATCH];
            let (mut t, mut dropped) = (0usize, 0u64);
            for i in 0..n {
                let h = self.back[i];
                if h.side() != from {
                    continue;
                }
                if h.forward {
                    fwd[t] = h.desc;
                    t += 1;
                } else {
                    self.free.push(h.desc);
                    dropped += 1;
                }
            }
            if t > 0 || dropped > 0 {
                self.send_judged(from, &fwd[..t], dropped, now);
            }
        }
        n
    }

    /// Kicks TX where frames wait: a full batch, an ended burst, or the flush timer.
    fn kick_due(&mut self, now: u64, burst_ended: [bool; 2]) {
        let (batch, ring_size) = (self.cfg.batch, self.cfg.ring_size);
        for (i, ended) in burst_ended.iter().enumerate() {
            let port = &mut self.ports[i];
            let queued = ring_size - port.tx.nb_free_exact();
            if queued > 0
                && (queued as usize >= batch
                    || *ended
                    || now.saturating_sub(port.last_kick_ns) >= self.cfg.tx_flush_ns)
            {
                kick(port, self.cfg.ring_size, now, &self.stats);
            }
        }
    }

    /// Places descriptors on side `tx_i`'s TX ring; returns how many fit. Reclaims completions
    /// and kicks once if the ring is full before giving up on the rest.
    fn transmit(&mut self, tx_i: usize, descs: &[FrameDesc], now: u64) -> usize {
        if descs.is_empty() {
            return 0;
        }
        // SAFETY: every descriptor is a frame of this UMEM that we own (just received and judged);
        // after this call the kernel owns the ones accepted until they come back on the CQ.
        let mut sent = unsafe { self.ports[tx_i].tx.produce(descs) };
        if sent < descs.len() {
            kick(&mut self.ports[tx_i], self.cfg.ring_size, now, &self.stats);
            self.reclaim();
            // SAFETY: as above, for the remaining descriptors.
            sent += unsafe { self.ports[tx_i].tx.produce(&descs[sent..]) };
        }
        sent
    }

    /// Moves completed TX frames of both sides to the free list.
    fn reclaim(&mut self) -> usize {
        let mut total = 0;
        let comp = &mut *self.comp;
        for port in &mut self.ports {
            loop {
                // SAFETY: the completion ring returns frames of this UMEM the kernel has finished
                // sending; they are ours again.
                let n = unsafe { port.cq.consume(comp) };
                self.free.extend_from_slice(&comp[..n]);
                total += n;
                if n < MAX_BATCH {
                    break;
                }
            }
        }
        total
    }

    /// Tops up both fill rings from the free list, half of what is free at most per side so one
    /// busy side cannot starve the other. The kernel's fill-ring wake-up (a `poll` syscall) is
    /// issued only for a side whose RX ring came back empty this iteration, as xdpsock and
    /// DPDK's af_xdp PMD do: while frames arrive, the kernel is not starved.
    fn refill(&mut self, rx_empty: [bool; 2]) {
        for (i, rx_was_empty) in rx_empty.into_iter().enumerate() {
            let room = self.ports[i].fq.nb_free(self.cfg.ring_size) as usize;
            if room == 0 {
                continue;
            }
            let share = if i == 0 { self.free.len().div_ceil(2) } else { self.free.len() };
            let give = room.min(share);
            if give == 0 {
                self.stats.fill_starved.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let start = self.free.len() - give;
            // SAFETY: the descriptors are frames of this UMEM owned by us (free list); the kernel
            // owns the accepted ones until they come back on the RX ring.
            let n = unsafe { self.ports[i].fq.produce(&self.free[start..]) };
            // Accepted descriptors are those at the front of the slice; keep the rest.
            self.free.drain(start..start + n);
            if rx_was_empty && self.ports[i].fq.needs_wakeup() {
                let port = &mut self.ports[i];
                let _ = port.fq.wakeup(port.rx.fd_mut(), 0);
            }
        }
    }

    fn idle_sleep(&mut self, mailbox: Option<&Mailbox>) {
        if let Some(mb) = mailbox {
            mb.bell().arm();
            if mb.has_pending() {
                mb.bell().disarm();
                return;
            }
        }
        self.stats.idle_sleeps.fetch_add(1, Ordering::Relaxed);
        let mut fds = [
            libc::pollfd { fd: self.ports[0].rx.fd().as_raw_fd(), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: self.ports[1].rx.fd().as_raw_fd(), events: libc::POLLIN, revents: 0 },
            libc::pollfd {
                fd: mailbox.map_or(-1, |mb| mb.bell().raw_fd()),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is a valid array of three pollfds for the duration of the call (a
        // negative fd is ignored by poll).
        unsafe {
            libc::poll(fds.as_mut_ptr(), 3, self.cfg.idle_poll_ms);
        }
        if let Some(mb) = mailbox {
            mb.bell().disarm();
        }
    }
}

/// Longest time a stopping worker waits for frames it lent to other workers.
const DRAIN_NS: u64 = 1_000_000_000;

/// The loop of a worker without a queue pair (more workers than queues): it only judges frames
/// that receivers hand it, and sleeps on its doorbell when there are none.
pub(crate) fn run_owner<P: PacketProcessor + ?Sized>(
    stop: &AtomicBool,
    processor: &mut P,
    mb: &mut Mailbox,
    stats: &WorkerStats,
    cfg: &IoConfig,
) {
    let mut idle_iterations: u32 = 0;
    let mut last_housekeeping = 0u64;
    let mut deadline = u64::MAX;
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        let now = monotonic_ns();
        // No sockets here: frames a processor adds (released fragments) cannot be sent.
        let work = mb.serve(now, processor, stats, &mut |_, _| false);
        if stopping {
            deadline = deadline.min(now + DRAIN_NS);
            if mb.drained() || now > deadline {
                break;
            }
        }
        if now.saturating_sub(last_housekeeping) >= 1_000_000 {
            processor.housekeeping(now);
            last_housekeeping = now;
        }
        if work > 0 {
            idle_iterations = 0;
            continue;
        }
        idle_iterations += 1;
        if idle_iterations >= cfg.spin_iterations || stopping {
            idle_iterations = 0;
            mb.bell().arm();
            if !mb.has_pending() {
                stats.idle_sleeps.fetch_add(1, Ordering::Relaxed);
                let mut fd = libc::pollfd { fd: mb.bell().raw_fd(), events: libc::POLLIN, revents: 0 };
                // SAFETY: `fd` is a valid pollfd for the duration of the call.
                unsafe {
                    libc::poll(&mut fd, 1, cfg.idle_poll_ms);
                }
            }
            mb.bell().disarm();
        }
    }
}

/// Most `sendto` calls one flush issues (see [`kick`]): 16 x 32 frames.
const MAX_KICKS_PER_FLUSH: u32 = 16;

/// Asks the kernel to transmit what the TX ring holds. In copy mode one `sendto` sends at most 32
/// frames (the kernel's TX batch) and answers EAGAIN for the rest, which xsk-rs does not report,
/// so the kick is repeated while the ring keeps draining (at most [`MAX_KICKS_PER_FLUSH`] times),
/// as DPDK's af_xdp PMD loops on EAGAIN. A ring that does not move (zero-copy drivers transmit
/// asynchronously) ends the loop after one call.
fn kick(port: &mut Port, ring_size: u32, now: u64, stats: &WorkerStats) {
    if port.tx.needs_wakeup() {
        let mut queued = ring_size - port.tx.nb_free_exact();
        for _ in 0..MAX_KICKS_PER_FLUSH {
            // Errors here (ENOBUFS, EAGAIN, ENETDOWN) are transient; the next kick retries.
            let _ = port.tx.wakeup();
            stats.tx_kicks.fetch_add(1, Ordering::Relaxed);
            let left = ring_size - port.tx.nb_free_exact();
            if left == 0 || left >= queued {
                break;
            }
            queued = left;
        }
    }
    port.last_kick_ns = now;
}

fn open_port(umem: &Umem, cfg: SocketConfig, prog: &XdpProgram, queue: u32) -> Result<Port, XdpError> {
    let ifname = prog.ifname();
    let iface = ifname.parse().map_err(|_| XdpError::BadInterfaceName { ifname: ifname.to_owned() })?;
    // SAFETY: xsk-rs requires that no other socket of this process is bound to the same
    // (interface, queue); the Dataplane creates exactly one QueuePair per queue, and a socket of
    // another process on the same pair makes bind fail with EBUSY rather than alias rings.
    let created = unsafe { Socket::new(cfg, umem, &iface, queue) };
    let (tx, rx, fq_cq) = created.map_err(|e| {
        let io = std::error::Error::source(&e)
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .map_or_else(|| std::io::Error::other(e.to_string()), clone_io_error);
        match io.raw_os_error() {
            Some(libc::EBUSY) => XdpError::Sys {
                what: format!(
                    "bind an AF_XDP socket to {ifname} queue {queue}: another socket (another \
                     Bulkhead?) already uses it"
                ),
                source: io,
            },
            _ => XdpError::sys(format!("create the AF_XDP socket on {ifname} queue {queue} ({e})"), io),
        }
    })?;
    let (fq, cq) = fq_cq.ok_or_else(|| XdpError::Sys {
        what: format!("get fill/completion rings for {ifname} queue {queue}"),
        source: std::io::Error::other("libxdp reused an existing ring pair"),
    })?;
    prog.register(queue, rx.fd().as_raw_fd())?;
    Ok(Port { tx, rx, fq, cq, last_kick_ns: 0 })
}

fn clone_io_error(e: &std::io::Error) -> std::io::Error {
    match e.raw_os_error() {
        Some(code) => std::io::Error::from_raw_os_error(code),
        None => std::io::Error::new(e.kind(), e.to_string()),
    }
}

/// UMEM registration pins memory against RLIMIT_MEMLOCK unless the process has CAP_IPC_LOCK;
/// lift the limit as far as we are allowed (failure is fine: the UMEM error then says why).
fn raise_memlock_limit() {
    let lim = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: `lim` is a valid rlimit for the duration of the call.
    unsafe {
        libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim);
    }
}

/// CLOCK_MONOTONIC in nanoseconds: the time base handed to processors.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is valid for writes; CLOCK_MONOTONIC always exists on Linux.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid() {
        IoConfig::default().validate().unwrap();
    }

    #[test]
    fn config_rejects_each_bad_value() {
        let base = IoConfig::default();
        let cases: [(&str, IoConfig); 5] = [
            ("ring", IoConfig { ring_size: 1000, ..base.clone() }),
            ("frame size", IoConfig { frame_size: 1500, ..base.clone() }),
            ("batch", IoConfig { batch: 0, ..base.clone() }),
            ("batch", IoConfig { batch: MAX_BATCH + 1, ..base.clone() }),
            ("frame count", IoConfig { frame_count: 1024, ..base.clone() }),
        ];
        for (what, cfg) in cases {
            let err = cfg.validate().unwrap_err().to_string();
            assert!(err.contains(what), "{what}: {err}");
        }
    }

    #[test]
    fn pass_all_forwards_every_frame() {
        let mut v = [false; 3];
        PassAll.process(0, Side::Inside, &[&[1u8][..], &[], &[2, 3]], &mut v);
        assert_eq!(v, [true; 3]);
    }

    #[test]
    fn closures_are_processors() {
        let mut seen = 0usize;
        let mut f = |_now: u64, from: Side, frames: &[&[u8]], fwd: &mut [bool]| {
            assert_eq!(from, Side::Outside);
            seen += frames.len();
            fwd[0] = true;
        };
        let mut v = [false; 2];
        f.process(5, Side::Outside, &[&[0u8][..], &[1]], &mut v);
        assert_eq!(v, [true, false]);
        assert_eq!(seen, 2);
    }

    #[test]
    fn sides_are_opposites() {
        assert_eq!(Side::Inside.other(), Side::Outside);
        assert_eq!(Side::Outside.other(), Side::Inside);
    }

    #[test]
    fn clock_is_monotonic() {
        let a = monotonic_ns();
        let b = monotonic_ns();
        assert!(b >= a);
    }
}
