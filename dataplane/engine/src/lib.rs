//! The Bulkhead packet engine: conntrack, verdicts, counters and latency, with no I/O
