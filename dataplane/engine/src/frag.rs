//! Fragment tracking (work in progress).
