//! AF_XDP packet I/O for the Bulkhead dataplane
