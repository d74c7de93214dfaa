//! ClassBench rule and trace files, read through `bulkhead_tables::classbench` (the one parser
//! the project uses); this adapter turns its errors into positioned [`Diagnostics`] naming the
//! file, and pairs each rule with its source line for traces and `AclTier` rule locations.

use crate::diag::{Diagnostic, Diagnostics, Loc};
use bulkhead_tables::classbench::{self as cb, ParseError};
use bulkhead_tables::{ClassifierKey, ClassifierRule};
use std::sync::Arc;

/// Malformed lines reported per file before parsing stops (a wrong file would otherwise print
/// one error per line).
pub const MAX_ERRORS: usize = 50;

fn diag(file: &Arc<str>, errors: &[ParseError]) -> Diagnostics {
    let one = |e: &ParseError| {
        let line = u32::try_from(e.line).unwrap_or(u32::MAX);
        let col = u32::try_from(e.column).unwrap_or(u32::MAX);
        Diagnostic::new(&Loc::new(file, line, col), e.message.clone())
    };
    let mut out: Vec<Diagnostic> = errors.iter().map(one).collect();
    if errors.len() >= MAX_ERRORS {
        out.push(Diagnostic::new(&Loc::file(file), format!("stopped after {MAX_ERRORS} malformed lines")));
    }
    Diagnostics(out)
}

/// Parses a rule file: rule `i` (0-based, blank lines not counted) gets priority `i`; each rule
/// comes with its 1-based line number.
///
/// # Errors
/// Every malformed line (up to [`MAX_ERRORS`]), positioned.
pub fn parse_rules(file: &Arc<str>, text: &str) -> Result<Vec<(ClassifierRule, u32)>, Diagnostics> {
    let rules = cb::parse_rules_collect(text, MAX_ERRORS).map_err(|e| diag(file, &e))?;
    let lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, _)| u32::try_from(i + 1).unwrap_or(u32::MAX));
    Ok(rules.into_iter().map(|r| r.rule).zip(lines).collect())
}

/// Parses a trace file into classifier keys.
///
/// # Errors
/// Every malformed line (up to [`MAX_ERRORS`]), positioned.
pub fn parse_trace(file: &Arc<str>, text: &str) -> Result<Vec<ClassifierKey>, Diagnostics> {
    cb::parse_trace_collect(text, MAX_ERRORS)
        .map(|h| h.into_iter().map(|h| h.key).collect())
        .map_err(|e| diag(file, &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f() -> Arc<str> {
        Arc::from("r")
    }

    #[test]
    fn rules_carry_their_line_numbers() {
        let text = "\n@170.92.157.224/29\t220.6.23.192/28\t161 : 161\t53 : 53\t0x11/0xFF\t0x0000/0x0000\n\n@0.0.0.0/0\t0.0.0.0/0\t0 : 65535\t0 : 65535\t0x00/0x00\t0x0000/0x0000\n";
        let r = parse_rules(&f(), text).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].1, r[1].1), (2, 4));
        assert_eq!(r[0].0.sport, (161, 161));
        assert_eq!(r[1].0.priority, 1);
    }

    #[test]
    fn rule_errors_name_file_and_line() {
        let e = parse_rules(&f(), "@1.2.3.4/33\t1.2.3.4/32\t0 : 1\t0 : 1\t0x06/0xFF\t0x0000/0x0000\n")
            .unwrap_err();
        assert_eq!(&*e.0[0].loc.file, "r");
        assert_eq!(e.0[0].loc.line, 1);
        assert!(e.0[0].loc.col >= 1);
        // Every malformed line is reported, not only the first.
        let good = "@1.2.3.4/32\t1.2.3.4/32\t0 : 1\t0 : 1\t0x06/0xFF\t0x0000/0x0000\n";
        let bad = "@1.2.3.4/33\t1.2.3.4/32\t0 : 1\t0 : 1\t0x06/0xFF\t0x0000/0x0000\n";
        let e = parse_rules(&f(), &format!("{bad}{good}{bad}")).unwrap_err();
        assert_eq!(e.0.iter().map(|d| d.loc.line).collect::<Vec<_>>(), [1, 3]);
        let many = bad.repeat(MAX_ERRORS + 10);
        let e = parse_rules(&f(), &many).unwrap_err();
        assert_eq!(e.len(), MAX_ERRORS + 1, "capped, with a line saying so");
    }

    #[test]
    fn trace_errors_are_positioned() {
        assert_eq!(parse_trace(&f(), "1 2 3 4 6\n").unwrap()[0].dport, 4);
        let e = parse_trace(&f(), "1 2 3 4 6\n1 2 3 70000 6\n").unwrap_err();
        assert_eq!(e.0[0].loc.line, 2);
    }
}
