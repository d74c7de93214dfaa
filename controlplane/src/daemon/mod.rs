//! The running firewall: `bulkhead run`'s process.
//!
//! - [`state`]: [`State`], the shared runtime state every operator surface reads (table handle,
//!   policy info, per-worker counters and latency, quarantine list and time to contain, flow-log
//!   counters).

pub mod control;
pub mod controller;
pub mod flowlog;
pub mod persist;
pub mod processor;
pub mod protocol;
pub mod run;
pub mod state;

pub use state::{
    CountersView, FlowLogStats, FlowRequest, FlowRequests, PolicyInfo, QuarantineBook, QuarantineEntry,
    QuarantineExceptionArg, QuarantineSource, QuarantineTarget, ReloadFailure, ReloadStats, RunInfo, State,
    WorkerHandle, RECENT_TABLES,
};
