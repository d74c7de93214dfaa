//! Network-namespace testbed for Bulkhead end-to-end tests and the demo
