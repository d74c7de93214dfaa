//! The Bulkhead benchmark harness: named scenarios that measure Bulkhead and, in the same run, the
//! peer a performance engineer would compare it with (DPDK rte_acl, dpdk-testpmd over AF_XDP,
//! kernel forwarding with nftables).
//!
//! Nothing here is a timed test. `bulkhead-bench --quick` is the CI smoke mode (tiny sizes, seconds,
//! no thresholds); the full run (`scripts/bench.sh`) produces the figures for the README. Every
//! result is a [`report::Measurement`]; every side-by-side figure is a [`report::Comparison`] with
//! its ratio and the target, which is reported and never asserted.

pub mod peers;
pub mod plot;
pub mod policy;
pub mod report;
pub mod scenarios;
pub mod traffic;
pub mod util;

use std::path::PathBuf;

/// What every scenario needs to know about the run.
#[derive(Clone, Debug)]
pub struct Settings {
    /// CI smoke mode: tiny sizes, a fraction of a second per case, peers only when cheap.
    pub quick: bool,
    /// Run the peers (rte_acl, testpmd, nftables) when they are installed.
    pub peers: bool,
    /// Also collect rte_acl's per-header answers and compare them with Bulkhead's.
    pub verify_peer: bool,
    /// Minimum seconds of timed work per case (full runs).
    pub seconds: f64,
    /// The ClassBench directory (rule files and traces).
    pub data_dir: PathBuf,
    /// Scratch directory for generated files (traces for the peers, policies).
    pub work_dir: PathBuf,
    /// The `bulkhead` binary for the AF_XDP scenario (None: look next to this executable).
    pub bulkhead_bin: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            quick: false,
            peers: true,
            verify_peer: true,
            seconds: 1.0,
            data_dir: default_data_dir(),
            work_dir: std::env::temp_dir(),
            bulkhead_bin: None,
        }
    }
}

/// The ClassBench directory: see [`bulkhead_tables::classbench::default_data_dir`].
pub fn default_data_dir() -> PathBuf {
    bulkhead_tables::classbench::default_data_dir()
}
