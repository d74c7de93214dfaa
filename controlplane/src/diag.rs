//! Positioned diagnostics: every error the policy layer reports names a file, a line and a column
//! and says what was expected, so an operator can jump straight to the offending token.
//!
//! Errors are collected, not thrown: a loader keeps going after the first problem so one run of
//! `bulkhead policy check` lists everything wrong with a policy. A policy with any diagnostic is
//! never compiled (see [`crate::load`]).

use std::fmt;
use std::sync::Arc;

/// A position in a source file. `line` and `col` are 1-based; `line == 0` means "the whole file"
/// (I/O errors, problems that have no better anchor).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Loc {
    pub file: Arc<str>,
    pub line: u32,
    pub col: u32,
}

impl Loc {
    pub fn new(file: &Arc<str>, line: u32, col: u32) -> Self {
        Self { file: Arc::clone(file), line, col }
    }

    /// A location for a whole file (no line or column).
    pub fn file(file: &str) -> Self {
        Self { file: Arc::from(file), line: 0, col: 0 }
    }
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file)
        } else {
            write!(f, "{}:{}:{}", self.file, self.line, self.col)
        }
    }
}

/// One problem found in a policy, a cases file or a rule file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub loc: Loc,
    pub message: String,
}

impl Diagnostic {
    pub fn new(loc: &Loc, message: impl Into<String>) -> Self {
        Self { loc: loc.clone(), message: message.into() }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: error: {}", self.loc, self.message)
    }
}

impl std::error::Error for Diagnostic {}

/// A non-empty list of diagnostics, sorted by position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn sorted(mut v: Vec<Diagnostic>) -> Self {
        v.sort_by(|a, b| a.loc.cmp(&b.loc).then_with(|| a.message.cmp(&b.message)));
        v.dedup();
        Self(v)
    }

    pub fn single(loc: &Loc, message: impl Into<String>) -> Self {
        Self(vec![Diagnostic::new(loc, message)])
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}
