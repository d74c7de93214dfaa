//! Small helpers shared by the scenarios: PATH look-ups, process memory, histograms, timing.

use std::path::Path;
use std::time::Instant;

/// True when `name` is an executable file in a directory of `$PATH` (or `/usr/sbin`, `/sbin`,
/// which a non-login root shell may lack).
pub fn on_path(name: &str) -> bool {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin"])
        .any(|dir| !dir.is_empty() && Path::new(dir).join(name).is_file());
    found
}

/// Resident set size of this process in bytes (from /proc/self/statm), 0 if unreadable.
pub fn rss_bytes() -> u64 {
    let Ok(s) = std::fs::read_to_string("/proc/self/statm") else { return 0 };
    let pages: u64 = s.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0);
    pages * 4096
}

/// A latency histogram from 1 ns to 100 s with 3 significant digits.
pub fn histogram() -> hdrhistogram::Histogram<u64> {
    hdrhistogram::Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("constant, valid bounds")
}

/// Records `value` `count` times, saturating into the histogram's range.
pub fn record_n(h: &mut hdrhistogram::Histogram<u64>, value: u64, count: u64) {
    let v = value.clamp(1, h.high());
    let _ = h.record_n(v, count);
}

/// Monotonic nanoseconds since the first call (the harness's injected clock for the engine).
pub fn now_ns() -> u64 {
    use std::sync::OnceLock;
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Nanoseconds the calling thread has spent on a CPU (first field of
/// /proc/thread-self/schedstat), or `None` where the kernel does not provide it.
///
/// Rates computed from on-CPU time stay meaningful on a shared machine: time the thread spent
/// preempted by other processes is not charged to it.
pub fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// Human-readable counts for case names: 1000 -> "1k", 1_000_000 -> "1M".
pub fn short_count(n: usize) -> String {
    if n >= 1_000_000 && (n / 1_000_000) * 1_000_000 == n {
        format!("{}M", n / 1_000_000)
    } else if n >= 1000 && (n / 1000) * 1000 == n {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_counts() {
        assert_eq!(short_count(1000), "1k");
        assert_eq!(short_count(100_000), "100k");
        assert_eq!(short_count(1_000_000), "1M");
        assert_eq!(short_count(1234), "1234");
    }

    #[test]
    fn record_n_saturates_instead_of_failing() {
        let mut h = histogram();
        record_n(&mut h, 0, 2);
        record_n(&mut h, u64::MAX, 1);
        assert_eq!(h.len(), 3);
    }

    #[test]
    fn thread_cpu_time_advances_with_work() {
        let a = thread_cpu_ns().unwrap();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        let b = thread_cpu_ns().unwrap();
        assert!(b > a);
    }

    #[test]
    fn rss_is_nonzero_on_linux() {
        assert!(rss_bytes() > 0);
    }
}
