//! The `bulkhead` command line: one module per verb, each with its clap `Args` and a `run`
//! returning the process exit code. `src/main.rs` only parses and dispatches, so adding a verb is
//! one new module here plus one enum variant and one match arm there.
//!
//! Exit codes: 0 success; 1 the policy, the cases or the input is wrong (errors are printed as
//! `file:line:col: error: ...`); 2 usage errors (from clap).

pub mod acl;
pub mod ops;
pub mod policy;
pub mod replay;
pub mod run;
pub mod top;

use crate::diag::Diagnostics;
use std::process::ExitCode;

/// Prints diagnostics to stderr and returns exit code 1.
pub fn fail(d: &Diagnostics) -> ExitCode {
    eprintln!("{d}");
    if d.len() > 1 {
        eprintln!("{} errors", d.len());
    }
    ExitCode::from(1)
}
