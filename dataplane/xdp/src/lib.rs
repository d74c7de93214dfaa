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
//! dp.run(&stop, |_queue| PassAll)?;              // one pinned thread per queue pair
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
//! * [`dataplane`]: [`Dataplane`] ties both interfaces together and runs the workers, one thread
//!   per queue pair, pinned with `core_affinity`.
//!
//! # Workers and flow steering
//!
//! `--workers N` means N queue pairs: worker `i` owns receive queue `i` of the inside interface
//! *and* receive queue `i` of the outside interface, with one UMEM between them. Connection
//! tracking is per worker, so both directions of a connection must arrive on the same queue index
//! of the two interfaces. How that holds:
//!
//! * **veth (the testbed) and any single-queue device**: one queue per interface, one worker; it
//!   sees both directions of every flow by construction. veth picks its receive queue from the
//!   sender's transmit queue, which is not a symmetric function of the flow, so N > 1 on veth would
//!   split flows between workers; use one worker there.
//! * **Real multi-queue NICs**: configure the same number of combined channels on both NICs and a
//!   *symmetric* RSS hash: Toeplitz with the key made of the 16-bit pattern `0x6d5a` repeated
//!   (`ethtool -X IF hkey 6d:5a:6d:5a:... equal N`, hashing on src/dst IP and ports with
//!   `ethtool -N IF rx-flow-hash tcp4 sdfn`). With that key, swapping source and destination gives
//!   the same hash, so a flow's forward packets on the inside NIC and its replies on the outside
//!   NIC land on the same queue index, hence the same worker. Devices whose RSS cannot be made
//!   symmetric need software steering (a dispatcher core hashing the sorted 5-tuple), which this
//!   crate does not implement.
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
