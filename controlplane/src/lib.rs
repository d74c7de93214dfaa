//! Bulkhead control plane: policy-as-code, compiler, CLI and operator surfaces.
//!
//! Pipeline: YAML files -> [`yaml`] (positioned tree) -> [`parse`] (objects) -> [`load`]
//! (cross-object validation) -> [`model::Policy`] -> [`compile`] -> `bulkhead_tables::TableSet`.
//! [`reference`] interprets a [`model::Policy`] directly and is the oracle the compiler is tested
//! against. [`cases`], [`trace`] and [`diff`] back the `bulkhead policy` subcommands; the CLI
//! itself lives in [`cli`] (one module per verb). The language is documented in `docs/policy.md`.

pub mod cases;
pub mod classbench;
pub mod cli;
pub mod compile;
pub mod daemon;
pub mod diag;
pub mod diff;
pub mod incremental;
pub mod load;
pub mod metrics;
pub mod model;
pub mod parse;
pub mod reference;
pub mod replay;
pub mod top;
pub mod trace;
pub mod yaml;

pub use compile::{compile, CompileStats, CompiledPolicy};
pub use diag::{Diagnostic, Diagnostics, Loc};
pub use load::{load_paths, load_str};
pub use model::Policy;
