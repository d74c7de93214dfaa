//! Bulkhead benchmark harness
