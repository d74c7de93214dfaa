//! Per-worker flow table (work in progress).
