//! The `bulkhead` command line: one module per verb, each with its clap `Args` and a `run`
//! returning the process exit code. `src/main.rs` only parses and dispatches, so adding a verb is
//! one new module here plus one enum variant and one match arm there.
//!
//! Exit codes: 0 success; 1 the policy, the cases or the input is wrong (errors are printed as
//! `file:line:col: error: ...`), or the output cannot be written (disk full); 2 usage errors (from
//! clap); 141 standard output was closed early (`| head`), quietly, as a program killed by
//! SIGPIPE would report it.

pub mod acl;
pub mod ops;
pub mod policy;
pub mod replay;
pub mod run;
pub mod top;

use crate::diag::Diagnostics;
use std::process::ExitCode;

/// The exit code when standard output was closed early: 128 + SIGPIPE, as a shell reports a
/// program the signal killed.
pub const EXIT_STDOUT_CLOSED: u8 = 141;

/// The exit code after writing to standard output failed: a closed pipe (the reader, e.g.
/// `head`, has all it wants) ends the command quietly with 141; any other error (disk full) is
/// reported and gives 1.
pub fn stdout_failed(verb: &str, e: &std::io::Error) -> ExitCode {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        return ExitCode::from(EXIT_STDOUT_CLOSED);
    }
    eprintln!("bulkhead {verb}: cannot write to standard output: {e}");
    ExitCode::from(1)
}

/// Prints diagnostics to stderr and returns exit code 1.
pub fn fail(d: &Diagnostics) -> ExitCode {
    eprintln!("{d}");
    if d.len() > 1 {
        eprintln!("{} errors", d.len());
    }
    ExitCode::from(1)
}
