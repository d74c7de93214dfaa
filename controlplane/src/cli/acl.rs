//! `bulkhead acl match --rules FILE --trace FILE`: which ACL line matches each header.
//!
//! The ClassBench rules become one ordered classifier tier (priority = line order, first match
//! wins) built with the same `ClassifierBuilder` the dataplane uses; each trace header is
//! classified and the 0-based index of the first matching rule (or -1) printed, one per line.

use crate::classbench::{parse_rules, parse_trace};
use crate::cli::{fail, stdout_failed};
use crate::diag::{Diagnostics, Loc};
use bulkhead_tables::ClassifierBuilder;
use clap::{Args, Subcommand};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Debug, Subcommand)]
pub enum AclCmd {
    /// Print, per trace header, the 0-based index of the first matching rule, or -1.
    Match(MatchArgs),
}

#[derive(Debug, Args)]
pub struct MatchArgs {
    /// ClassBench rule file (`@src/len dst/len sp : sp dp : dp proto/mask flags/mask`).
    #[arg(long)]
    pub rules: PathBuf,
    /// ClassBench trace file (`src dst sport dport proto ...`, decimal).
    #[arg(long)]
    pub trace: PathBuf,
}

pub fn run(cmd: AclCmd) -> ExitCode {
    match cmd {
        AclCmd::Match(a) => match_cmd(&a),
    }
}

fn read(p: &Path) -> Result<(Arc<str>, String), Diagnostics> {
    let name: Arc<str> = Arc::from(p.display().to_string());
    crate::load::read_text_limited(p, crate::load::MAX_FILE_BYTES)
        .map(|t| (Arc::clone(&name), t))
        .map_err(|e| Diagnostics::single(&Loc::file(&name), e))
}

fn match_cmd(a: &MatchArgs) -> ExitCode {
    let run = || -> Result<std::io::Result<()>, Diagnostics> {
        let (rf, rt) = read(&a.rules)?;
        let (tf, tt) = read(&a.trace)?;
        let rules = parse_rules(&rf, &rt)?;
        let keys = parse_trace(&tf, &tt)?;
        // Valid, but usually the wrong file: say so rather than print a column of -1 silently.
        if rules.is_empty() {
            eprintln!("warning: {rf}: no rules: no header can match (every line is -1)");
        }
        if keys.is_empty() {
            eprintln!("warning: {tf}: no trace headers: nothing to match");
        }
        let mut b = ClassifierBuilder::new();
        for (r, _) in rules {
            b.push(r);
        }
        let cls = b.build();
        let out = std::io::stdout();
        let mut w = std::io::BufWriter::new(out.lock());
        let written = keys
            .iter()
            .try_for_each(|k| match cls.classify(k) {
                Some(i) => writeln!(w, "{i}"),
                None => writeln!(w, "-1"),
            })
            .and_then(|()| w.flush());
        Ok(written)
    };
    match run() {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => stdout_failed("acl match", &e),
        Err(d) => fail(&d),
    }
}
