//! The named scenarios of issue 6, one module each.

pub mod classify;
pub mod engine;
pub mod swap;
pub mod synflood;
pub mod xdp;
