//! AF_XDP packet I/O for the Bulkhead dataplane: an L2-transparent bump in the wire.
//!
//! Frames arriving on the `inside` interface are handed, in batches, to a [`PacketProcessor`];
//! those it forwards leave through `outside` unchanged, and the other way round. This crate knows
//! nothing about policy: the control plane's `bulkhead run` plugs the engine in as the processor.
//!
//! ```no_run
//! use std::sync::atomic::AtomicBool;
//! use bulkhead_xdp::{Dataplane, DataplaneConfig, PassAll, XdpMode};
//!
//! let mut cfg = DataplaneConfig::new("inside", "outside");
//! cfg.mode = XdpMode::Generic;
//! let mut dp = Dataplane::open(cfg)?;           // attach programs, bind sockets
//! let stats = dp.stats();                        // per-worker counters for metrics
//! let stop = AtomicBool::new(false);             // set from a signal handler to stop
//! dp.run(&stop, |_worker| PassAll)?;             // one pinned thread per worker
//! dp.shutdown()?;                                // detach both XDP programs
//! # Ok::<(), bulkhead_xdp::XdpError>(())
//! ```
//!
//! # Pieces
//!
//! * [`prog`]: the five-instruction XDP program that redirects each receive queue to its socket,
//!   attached through a bpf_link (the kernel detaches it if the process dies), with stale-program
//!   recovery and clear errors for a missing interface, missing privileges or a foreign program.
//! * [`io`]: a [`QueuePair`] is one worker's two AF_XDP sockets (same queue index on both
//!   interfaces) over one shared UMEM, and the batched run-to-completion forwarding loop.
//! * [`dataplane`]: [`Dataplane`] ties both interfaces together and runs the workers, one pinned
//!   thread each (`core_affinity`).
//! * [`steer`]: the symmetric flow hash and [`Steering`]; [`ring`]: the bounded lock-free SPSC ring
//!   the workers hand frames over with (the `handoff` module wires them together).
//!
//! # Workers and flow steering
//!
//! Connection tracking is per worker, so **both directions of a connection must be judged by the
//! same worker**. `--workers N` ([`DataplaneConfig::workers`]) is the number of worker threads,
//! each with its own processor (engine); worker `i < queues` also owns receive queue `i` of the
//! inside *and* the outside interface (one UMEM for both sockets). How a flow finds its worker is
//! [`DataplaneConfig::steering`]:
//!
//! * **[`Steering::Software`]** (the default, and the only safe choice unless the NIC's RSS is known
//!   to be symmetric). Every frame belongs to worker `symmetric_hash(frame) % N` ([`steer`]: a
//!   bounds-checked peek at Ethernet, two VLAN tags, the IPv4/IPv6 addresses and, for TCP, UDP,
//!   SCTP, DCCP and UDP-Lite, the ports; the two endpoints are ordered before hashing so a frame
//!   and its reply hash alike; fragments and non-IP hash on addresses, ICMP errors on the packet
//!   they quote, unparseable frames go to worker 0). The worker that receives a frame on its queue
//!   judges it itself if it owns it; otherwise it lends it to the owner through a preallocated
//!   lock-free SPSC ring per (receiver, owner) pair: the ring carries the UMEM descriptor, not a
//!   copy, and the owner reads the frame where the kernel wrote it, judges handed-off frames in
//!   batches with the same [`PacketProcessor`], and returns the verdicts on a second ring; the
//!   receiver then transmits the frame out of the other side on its own socket, or recycles it
//!   (the source of the `handoff` module documents the protocol). A receiver never has more than
//!   [`DataplaneConfig::handoff_ring`] frames out with one owner; beyond that a frame is dropped
//!   and counted ([`WorkerStats::handoff_full`]). Per worker, [`WorkerStats::handed_off`] and
//!   [`WorkerStats::handoffs_judged`] count the traffic between workers. An idle owner sleeps on
//!   an eventfd as well as its sockets, and is woken by the first handoff; a busy one pays no
//!   system call for handoffs.
//! * **[`Steering::Rss`]** (`--rss symmetric`): the operator asserts that the NICs hash both
//!   directions of a flow to the same queue index; each worker judges what its queues receive, no
//!   handoff, no hash in software. Needs `N` queues on both interfaces. With one worker both modes
//!   are the same (no hash is computed).
//!
//! ## What `--workers N` means on veth (the testbed) and other single-queue devices
//!
//! veth has one queue per interface, so worker 0 owns both sockets, receives and transmits every
//! frame, and judges the flows it owns; workers `1..N` own no queue and only judge the frames
//! worker 0 lends them. Judging (parse, classify, conntrack) is spread over N cores; receiving and
//! transmitting stay on worker 0's core, which is the ceiling. (veth picks a receive queue from
//! the sender's transmit queue, which is not symmetric, so a multi-queue veth also needs software
//! steering.) `Steering::Rss` with more workers than queues is refused at start.
//!
//! ## Cost per handoff
//!
//! Per frame, once N > 1: the steering decision, about 20 ns on-CPU (measured: `cargo test -p
//! bulkhead-xdp --release --lib steer_cost -- --ignored --nocapture`). Per frame owned by another
//! worker: a slot in the handoff ring and one in the verdict ring, written and read without
//! atomics (each ring is published with one release store per batch), about 9 ns on-CPU for the
//! four ring operations in batches of 64 (`handoff_cost`, same command), plus the cache-line
//! transfers of the 40-byte entries and of the frame's headers to the owner's core and back
//! (tens to a hundred nanoseconds each on a typical server, amortised over a batch for the ring
//! indices) and, when the owner is idle, its wake-up. The frame itself is not copied. No
//! allocation, no lock; memory is fixed at start (`2 x receivers x (N - 1)` rings of
//! `handoff_ring` slots).
//!
//! ## Scaling on a real multi-queue NIC
//!
//! Give each NIC `N` combined channels (`ethtool -L IF combined N`) and run `N` workers. With the
//! default software steering every worker receives on its queue and lends `(N-1)/N` of its frames
//! on average: correct whatever the RSS does, at the handoff cost above. For full speed make the
//! RSS **symmetric** on both NICs and tell Bulkhead (`--rss symmetric`, [`Steering::Rss`]):
//!
//! ```text
//! ethtool -X IF hkey 6d:5a:6d:5a:6d:5a:6d:5a:6d:5a:6d:5a:6d:5a:6d:5a:6d:5a:6d:5a:\
//!                    6d:5a:6d:5a:6d:5a:6d:5a:6d:5a:6d:5a:6d:5a:6d:5a:6d:5a:6d:5a equal N
//! ethtool -N IF rx-flow-hash tcp4 sdfn    # and udp4, tcp6, udp6
//! ```
//!
//! Toeplitz with a key made of the repeated 16-bit pattern `0x6d5a` gives the same hash when
//! source and destination (addresses and ports) are swapped, so a flow's packets on the inside
//! NIC and its replies on the outside NIC land on the same queue index, hence the same worker,
//! with no software work at all (some drivers offer `ethtool -X IF hfunc toeplitz` with a
//! symmetric-xor input transform instead). Caveat of any 4-tuple RSS: IP fragments carry no ports
//! and are hashed on addresses, so a flow whose datagrams are fragmented may see them on another
//! queue; use `rx-flow-hash udp4 sd` where that matters, or software steering with
//! [`SteerKey::Addresses`], which has the same trade-off made explicit (see [`steer`]).
//!
//! Each worker is pinned to its own core and never blocks except in its idle sleep; for the best
//! latency give each worker a dedicated core and raise `spin_iterations`.
//!
//! # Modes
//!
//! Native XDP runs the program in the driver; generic XDP runs it in the stack and works on every
//! device. Either way, sockets bind without forcing a mode, so the kernel uses zero-copy where the
//! driver offers it and copy mode elsewhere (veth: copy mode only). Frames up to `frame_size`
//! (2048 bytes by default, so MTU 1500) are handled; multi-buffer (jumbo) frames are not.
#![allow(unsafe_code)] // AF_XDP rings, bpf(2) and sockets need FFI; every block has a SAFETY note.

pub mod dataplane;
pub mod error;
mod handoff;
pub mod io;
pub mod prog;
pub mod ring;
pub mod signals;
pub mod steer;

pub use dataplane::{run_workers, Dataplane, DataplaneConfig};
pub use error::XdpError;
pub use io::{
    monotonic_ns, DirectionStats, IoConfig, KernelStats, PacketProcessor, PassAll, QueuePair, Side,
    WorkerStats, MAX_BATCH,
};
pub use prog::{
    attached_programs, remove_stale, AttachMethod, AttachedProgram, XdpMode, XdpProgram, PROG_NAME,
};
pub use steer::{symmetric_hash, FlowSteer, SteerKey, Steering};
