//! On-CPU timing shared by this crate's benches (a machine shared with other work makes wall time
//! noisy; the summaries report time the benchmarking thread actually ran).

use std::time::{Duration, Instant};

/// On-CPU nanoseconds of this thread (Linux schedstat), so that time spent descheduled on a
/// shared machine does not count. Falls back to wall time elsewhere.
pub fn cpu_now() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| {
            static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
            START.get_or_init(Instant::now).elapsed().as_nanos() as u64
        })
}

/// Runs `f` repeatedly for about a second of wall time; returns the mean on-CPU ns per call
/// (schedstat is updated at scheduler events, so only long totals are precise).
pub fn cpu_best(mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    let cpu0 = cpu_now();
    let mut runs = 0u32;
    while runs < 3 || start.elapsed() < Duration::from_secs(1) {
        f();
        runs += 1;
    }
    (cpu_now() - cpu0) as f64 / f64::from(runs)
}
