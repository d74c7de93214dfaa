//! The peers Bulkhead is measured against, each driven as an external program.

pub mod rte_acl;
