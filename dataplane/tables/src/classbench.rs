//! ClassBench rule and trace files (Taylor & Turner's packet-classification benchmark format).
//!
//! Rule line, one rule per line, fields separated by tabs or spaces, `@` starts the rule:
//!
//! ```text
//! @170.92.157.224/29    220.6.23.192/28    161 : 161    53 : 53    0x11/0xFF    0x0000/0x0000
//! ```
//!
//! source prefix, destination prefix, source port range, destination port range (inclusive, `lo : hi`),
//! protocol value/mask, TCP flags value/mask. Rules are in priority order: the first matching rule
//! wins, so the rule with index `i` (0-based, blank lines not counted) gets `priority = i` and, when
//! pushed in order into a [`crate::ClassifierBuilder`], `RuleId = i`.
//!
//! The TCP-flags column is parsed and validated but not part of [`ClassifierRule`]: the classifier is a
//! 5-tuple classifier, like DPDK's `dpdk-test-acl`, which reads the same files. The expected answer
//! for a trace header is therefore a linear first-match scan over the five fields
//! ([`crate::classifier::reference_classify`]).
//!
//! Trace line, whitespace separated: source and destination address as decimal u32, source port,
//! destination port, protocol, then optionally the flags and the index of the rule the header was
//! generated from. That last column is NOT the expected answer (an earlier rule often matches too);
//! it is returned as [`TraceHeader::generated_from`] for information only.
//!
//! Errors name the 1-based line and column and say what was expected, so an operator can fix a
//! hand-edited ACL (the `bulkhead acl match` command reads rule files through this module).

use crate::classifier::{ClassifierKey, ClassifierRule};
use std::fmt;
use std::path::Path;

/// A rule-file or trace-file syntax error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// 1-based column (in characters) where the problem starts.
    pub column: usize,
    /// What was expected, and what was found.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}: {}", self.line, self.column, self.message)
    }
}

impl std::error::Error for ParseError {}

/// Reading a ClassBench file from disk failed.
#[derive(Debug)]
pub enum LoadError {
    Io { path: String, error: std::io::Error },
    Parse { path: String, error: ParseError },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Io { path, error } => write!(f, "{path}: {error}"),
            LoadError::Parse { path, error } => write!(f, "{path}: {error}"),
        }
    }
}

impl std::error::Error for LoadError {}

/// One parsed rule line, with the flags column the classifier does not use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClassBenchRule {
    pub rule: ClassifierRule,
    /// TCP flags (value, mask) as written; not evaluated by the 5-tuple classifier.
    pub flags: (u16, u16),
}

/// One parsed trace line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceHeader {
    pub key: ClassifierKey,
    /// The flags column, if present.
    pub flags: Option<u32>,
    /// The rule the generator started from, if present. Not the expected answer.
    pub generated_from: Option<u32>,
}

/// Parses a rule file into classifier rules, `priority` = rule index.
///
/// # Errors
/// The first malformed line, with line, column and the expected form.
pub fn parse_rules(text: &str) -> Result<Vec<ClassifierRule>, ParseError> {
    Ok(parse_rules_full(text)?.into_iter().map(|r| r.rule).collect())
}

/// Parses a rule file, keeping the flags column.
///
/// # Errors
/// The first malformed line, with line, column and the expected form.
pub fn parse_rules_full(text: &str) -> Result<Vec<ClassBenchRule>, ParseError> {
    parse_rules_collect(text, 1).map_err(|mut e| e.swap_remove(0))
}

/// Parses a rule file, collecting up to `max_errors` malformed lines (at least one) before it
/// stops, so an operator sees every mistake of a file at once. A malformed line still counts
/// for the priorities of the lines after it.
///
/// # Errors
/// The malformed lines, in file order.
pub fn parse_rules_collect(text: &str, max_errors: usize) -> Result<Vec<ClassBenchRule>, Vec<ParseError>> {
    let mut priority = 0u32;
    collect_lines(text, max_errors, |line, n| {
        let r = parse_rule_line(line, n, priority);
        priority += 1;
        r
    })
}

/// Parses each non-empty line with `parse` (given the line and its 1-based number), collecting up
/// to `max_errors` malformed lines (at least one) before it stops.
fn collect_lines<T>(
    text: &str,
    max_errors: usize,
    mut parse: impl FnMut(&str, usize) -> Result<T, ParseError>,
) -> Result<Vec<T>, Vec<ParseError>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match parse(line, i + 1) {
            Ok(v) => out.push(v),
            Err(e) => {
                errors.push(e);
                if errors.len() >= max_errors.max(1) {
                    break;
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Parses a trace file into headers.
///
/// # Errors
/// The first malformed line, with line, column and the expected form.
pub fn parse_trace(text: &str) -> Result<Vec<TraceHeader>, ParseError> {
    parse_trace_collect(text, 1).map_err(|mut e| e.swap_remove(0))
}

/// Parses a trace file, collecting up to `max_errors` malformed lines (at least one).
///
/// # Errors
/// The malformed lines, in file order.
pub fn parse_trace_collect(text: &str, max_errors: usize) -> Result<Vec<TraceHeader>, Vec<ParseError>> {
    collect_lines(text, max_errors, parse_trace_line)
}

/// Parses a trace file into classifier keys only.
///
/// # Errors
/// The first malformed line, with line, column and the expected form.
pub fn parse_trace_keys(text: &str) -> Result<Vec<ClassifierKey>, ParseError> {
    Ok(parse_trace(text)?.into_iter().map(|h| h.key).collect())
}

/// Reads and parses a rule file.
///
/// # Errors
/// I/O errors and parse errors, both naming the path.
pub fn load_rules(path: &Path) -> Result<Vec<ClassifierRule>, LoadError> {
    let text = read(path)?;
    parse_rules(&text).map_err(|error| LoadError::Parse { path: path.display().to_string(), error })
}

/// Reads and parses a trace file.
///
/// # Errors
/// I/O errors and parse errors, both naming the path.
pub fn load_trace(path: &Path) -> Result<Vec<TraceHeader>, LoadError> {
    let text = read(path)?;
    parse_trace(&text).map_err(|error| LoadError::Parse { path: path.display().to_string(), error })
}

fn read(path: &Path) -> Result<String, LoadError> {
    std::fs::read_to_string(path).map_err(|error| LoadError::Io { path: path.display().to_string(), error })
}

/// A character cursor over one line that knows its position for error messages.
struct Cursor<'a> {
    s: &'a [u8],
    pos: usize,
    line: usize,
}

impl<'a> Cursor<'a> {
    fn new(s: &'a str, line: usize) -> Self {
        Self { s: s.as_bytes(), pos: 0, line }
    }

    fn err(&self, at: usize, expected: &str) -> ParseError {
        let found = match self.s.get(at) {
            None => "end of line".to_string(),
            Some(_) => {
                let rest = String::from_utf8_lossy(&self.s[at..]);
                let tok: String = rest.chars().take_while(|c| !c.is_whitespace()).take(24).collect();
                if tok.is_empty() {
                    "whitespace".to_string()
                } else {
                    format!("`{tok}`")
                }
            }
        };
        // Columns count characters; the inputs are ASCII in practice, count bytes up to `at` as chars.
        let column = String::from_utf8_lossy(&self.s[..at.min(self.s.len())]).chars().count() + 1;
        ParseError { line: self.line, column, message: format!("expected {expected}, found {found}") }
    }

    /// A number as written (not its saturated value), said to be over `max`.
    fn too_large(&self, start: usize, what: &str, max: &str) -> ParseError {
        let written = String::from_utf8_lossy(&self.s[start..self.pos]);
        let shown: String = written.chars().take(24).collect();
        let more = if written.chars().count() > 24 { "..." } else { "" };
        ParseError {
            message: format!("expected {what}, found `{shown}{more}` (more than {max})"),
            ..self.err(start, what)
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn skip_ws(&mut self) -> usize {
        let start = self.pos;
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r')) {
            self.pos += 1;
        }
        self.pos - start
    }

    /// Requires at least one whitespace character (a field separator).
    fn sep(&mut self, expected: &str) -> Result<(), ParseError> {
        if self.skip_ws() == 0 {
            return Err(self.err(self.pos, expected));
        }
        Ok(())
    }

    fn expect(&mut self, c: u8, expected: &str) -> Result<(), ParseError> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(self.pos, expected))
        }
    }

    /// A decimal number no larger than `max`.
    fn dec(&mut self, max: u64, what: &str) -> Result<u64, ParseError> {
        let start = self.pos;
        let mut v: u64 = 0;
        while let Some(c @ b'0'..=b'9') = self.peek() {
            v = v.saturating_mul(10).saturating_add(u64::from(c - b'0'));
            self.pos += 1;
        }
        if self.pos == start {
            return Err(self.err(start, what));
        }
        if v > max {
            return Err(self.too_large(start, what, &max.to_string()));
        }
        Ok(v)
    }

    /// A `0x`-prefixed hexadecimal number no larger than `max`.
    fn hex(&mut self, max: u64, what: &str) -> Result<u64, ParseError> {
        let start = self.pos;
        if !(self.s[self.pos..].starts_with(b"0x") || self.s[self.pos..].starts_with(b"0X")) {
            return Err(self.err(start, what));
        }
        self.pos += 2;
        let digits = self.pos;
        let mut v: u64 = 0;
        while let Some(c) = self.peek() {
            let d = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                b'A'..=b'F' => c - b'A' + 10,
                _ => break,
            };
            v = v.saturating_mul(16).saturating_add(u64::from(d));
            self.pos += 1;
        }
        if self.pos == digits {
            return Err(self.err(start, what));
        }
        if v > max {
            return Err(self.too_large(start, what, &format!("{max:#x}")));
        }
        Ok(v)
    }

    /// `a.b.c.d/len` as an inclusive u32 range (host bits below the prefix are ignored).
    fn prefix(&mut self, which: &str) -> Result<(u32, u32), ParseError> {
        let what = format!("{which} address (a.b.c.d/len)");
        let mut addr: u32 = 0;
        for i in 0..4 {
            if i > 0 {
                self.expect(b'.', &what)?;
            }
            let octet = self.dec(255, &format!("{which} address octet (0-255)"))?;
            addr = (addr << 8) | octet as u32;
        }
        self.expect(b'/', &format!("`/` and the {which} prefix length"))?;
        let len = self.dec(32, &format!("{which} prefix length (0-32)"))? as u32;
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        Ok((addr & mask, (addr & mask) | !mask))
    }

    /// `lo : hi` as an inclusive u16 range.
    fn port_range(&mut self, which: &str) -> Result<(u16, u16), ParseError> {
        let start = self.pos;
        let lo = self.dec(65535, &format!("{which} port range start (0-65535)"))? as u16;
        self.skip_ws();
        self.expect(b':', &format!("`:` between the {which} port range bounds"))?;
        self.skip_ws();
        let hi = self.dec(65535, &format!("{which} port range end (0-65535)"))? as u16;
        if lo > hi {
            return Err(ParseError {
                message: format!("expected {which} port range with start <= end, found {lo} : {hi}"),
                ..self.err(start, "")
            });
        }
        Ok((lo, hi))
    }

    fn end(&mut self) -> Result<(), ParseError> {
        self.skip_ws();
        if self.pos != self.s.len() {
            return Err(self.err(self.pos, "end of line"));
        }
        Ok(())
    }
}

fn parse_rule_line(line: &str, lineno: usize, priority: u32) -> Result<ClassBenchRule, ParseError> {
    let mut c = Cursor::new(line, lineno);
    c.skip_ws();
    c.expect(b'@', "`@` at the start of a rule")?;
    let src = c.prefix("source")?;
    c.sep("whitespace before the destination address")?;
    let dst = c.prefix("destination")?;
    c.sep("whitespace before the source port range")?;
    let sport = c.port_range("source")?;
    c.sep("whitespace before the destination port range")?;
    let dport = c.port_range("destination")?;
    c.sep("whitespace before the protocol (0xVV/0xMM)")?;
    let pv = c.hex(0xFF, "protocol value (0x00-0xFF)")? as u8;
    c.expect(b'/', "`/` and the protocol mask")?;
    let pm = c.hex(0xFF, "protocol mask (0x00-0xFF)")? as u8;
    c.sep("whitespace before the flags (0xVVVV/0xMMMM)")?;
    let fv = c.hex(0xFFFF, "flags value (0x0000-0xFFFF)")? as u16;
    c.expect(b'/', "`/` and the flags mask")?;
    let fm = c.hex(0xFFFF, "flags mask (0x0000-0xFFFF)")? as u16;
    c.end()?;
    Ok(ClassBenchRule {
        rule: ClassifierRule { src, dst, proto: (pv & pm, pm), sport, dport, priority },
        flags: (fv, fm),
    })
}

fn parse_trace_line(line: &str, lineno: usize) -> Result<TraceHeader, ParseError> {
    let mut c = Cursor::new(line, lineno);
    c.skip_ws();
    let src = c.dec(u64::from(u32::MAX), "source address (decimal u32)")? as u32;
    c.sep("whitespace before the destination address")?;
    let dst = c.dec(u64::from(u32::MAX), "destination address (decimal u32)")? as u32;
    c.sep("whitespace before the source port")?;
    let sport = c.dec(65535, "source port (0-65535)")? as u16;
    c.sep("whitespace before the destination port")?;
    let dport = c.dec(65535, "destination port (0-65535)")? as u16;
    c.sep("whitespace before the protocol")?;
    let proto = c.dec(255, "protocol (0-255)")? as u8;
    let key = ClassifierKey { src, dst, proto, sport, dport };
    let mut flags = None;
    let mut generated_from = None;
    if c.skip_ws() > 0 && c.peek().is_some() {
        flags = Some(c.dec(u64::from(u32::MAX), "flags (decimal u32)")? as u32);
        if c.skip_ws() > 0 && c.peek().is_some() {
            generated_from = Some(c.dec(u64::from(u32::MAX), "rule index (decimal u32)")? as u32);
        }
    }
    c.end()?;
    Ok(TraceHeader { key, flags, generated_from })
}

/// Where the ClassBench rule sets and traces live: `$BULKHEAD_CLASSBENCH_DIR` (or
/// `$BULKHEAD_CLASSBENCH`) when set, else `shared/data/classbench` beside the repository (the
/// layout of the project's machines and CI), else inside it. Shared by tests, benches and the
/// benchmark harness so they all look in the same place.
pub fn default_data_dir() -> std::path::PathBuf {
    for var in ["BULKHEAD_CLASSBENCH_DIR", "BULKHEAD_CLASSBENCH"] {
        if let Ok(d) = std::env::var(var) {
            return std::path::PathBuf::from(d);
        }
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let beside = root.join("../shared/data/classbench");
    let inside = root.join("shared/data/classbench");
    if !beside.is_dir() && inside.is_dir() {
        return inside;
    }
    beside
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "@170.92.157.224/29\t220.6.23.192/28\t161 : 161\t53 : 53\t0x11/0xFF\t0x0000/0x0000\t";

    fn rule_err(line: &str) -> ParseError {
        parse_rules(line).expect_err("must be rejected")
    }

    #[test]
    fn parses_a_rule_line() {
        let r = parse_rules_full(GOOD).unwrap();
        assert_eq!(r.len(), 1);
        let rule = r[0].rule;
        assert_eq!(rule.src, (0xAA5C_9DE0, 0xAA5C_9DE7));
        assert_eq!(rule.dst, (0xDC06_17C0, 0xDC06_17CF));
        assert_eq!(rule.sport, (161, 161));
        assert_eq!(rule.dport, (53, 53));
        assert_eq!(rule.proto, (0x11, 0xFF));
        assert_eq!(rule.priority, 0);
        assert_eq!(r[0].flags, (0, 0));
    }

    #[test]
    fn priorities_are_rule_indices_and_blank_lines_are_skipped() {
        let text =
            format!("{GOOD}\n\n{GOOD}\r\n@0.0.0.0/0 0.0.0.0/0 0 : 65535 0 : 65535 0x00/0x00 0x0000/0x0000\n");
        let r = parse_rules(&text).unwrap();
        assert_eq!(r.iter().map(|r| r.priority).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert_eq!(r[2], ClassifierRule::any(2));
    }

    #[test]
    fn host_bits_are_masked_and_proto_value_is_masked() {
        let r = parse_rules("@10.1.2.3/8\t10.1.2.3/0\t0 : 1\t2 : 3\t0x17/0xF0\t0x0000/0x0000").unwrap();
        assert_eq!(r[0].src, (0x0A00_0000, 0x0AFF_FFFF));
        assert_eq!(r[0].dst, (0, u32::MAX));
        assert_eq!(r[0].proto, (0x10, 0xF0));
    }

    #[test]
    fn rejects_missing_at() {
        let e = rule_err("170.92.157.224/29\t220.6.23.192/28\t161 : 161\t53 : 53\t0x11/0xFF\t0x0000/0x0000");
        assert_eq!((e.line, e.column), (1, 1));
        assert!(e.message.contains("`@`"), "{e}");
    }

    #[test]
    fn rejects_bad_octet() {
        let e = rule_err("@170.300.157.224/29\t220.6.23.192/28\t161 : 161\t53 : 53\t0x11/0xFF\t0x0/0x0");
        assert_eq!(e.column, 6);
        assert!(e.message.contains("octet") && e.message.contains("300"), "{e}");
    }

    #[test]
    fn rejects_missing_dot() {
        let e = rule_err("@170.92/29\t220.6.23.192/28\t161 : 161\t53 : 53\t0x11/0xFF\t0x0/0x0");
        assert!(e.message.contains("source address"), "{e}");
        assert_eq!(e.column, 8);
    }

    #[test]
    fn rejects_missing_prefix_length() {
        let e = rule_err("@170.92.157.224\t220.6.23.192/28\t161 : 161\t53 : 53\t0x11/0xFF\t0x0/0x0");
        assert!(e.message.contains("prefix length"), "{e}");
    }

    #[test]
    fn rejects_prefix_length_over_32() {
        let e = rule_err("@1.2.3.4/8\t220.6.23.192/33\t161 : 161\t53 : 53\t0x11/0xFF\t0x0/0x0");
        assert!(e.message.contains("destination prefix length") && e.message.contains("33"), "{e}");
    }

    #[test]
    fn rejects_missing_separator() {
        let e = rule_err("@1.2.3.4/8220.6.23.192/28\t161 : 161\t53 : 53\t0x11/0xFF\t0x0/0x0");
        // `/8220` is read as a too-large length.
        assert!(e.message.contains("prefix length"), "{e}");
        let e = rule_err("@1.2.3.4/8\t220.6.23.192/28\t161 : 161\t53 : 53\t0x11/0xFF;0x0/0x0");
        assert!(e.message.contains("whitespace before the flags"), "{e}");
    }

    #[test]
    fn rejects_port_over_65535() {
        let e = rule_err("@1.2.3.4/8\t2.3.4.5/28\t161 : 70000\t53 : 53\t0x11/0xFF\t0x0/0x0");
        assert!(e.message.contains("source port range end"), "{e}");
        assert!(e.message.contains("found `70000` (more than 65535)"), "{e}");
        // A number past u64 is shown as written, not as a saturated value.
        let e =
            rule_err("@1.2.3.4/8\t2.3.4.5/28\t161 : 99999999999999999999999\t53 : 53\t0x11/0xFF\t0x0/0x0");
        assert!(e.message.contains("found `99999999999999999999999`"), "{e}");
    }

    #[test]
    fn rejects_missing_colon_in_port_range() {
        let e = rule_err("@1.2.3.4/8\t2.3.4.5/28\t161 : 161\t53 - 53\t0x11/0xFF\t0x0/0x0");
        assert!(e.message.contains("`:` between the destination"), "{e}");
    }

    #[test]
    fn rejects_inverted_port_range() {
        let e = rule_err("@1.2.3.4/8\t2.3.4.5/28\t161 : 161\t80 : 53\t0x11/0xFF\t0x0/0x0");
        assert!(e.message.contains("start <= end") && e.message.contains("80 : 53"), "{e}");
    }

    #[test]
    fn rejects_non_hex_protocol() {
        let e = rule_err("@1.2.3.4/8\t2.3.4.5/28\t161 : 161\t53 : 53\t17/0xFF\t0x0/0x0");
        assert!(e.message.contains("protocol value"), "{e}");
        let e = rule_err("@1.2.3.4/8\t2.3.4.5/28\t161 : 161\t53 : 53\t0x/0xFF\t0x0/0x0");
        assert!(e.message.contains("protocol value"), "{e}");
    }

    #[test]
    fn rejects_protocol_over_255() {
        let e = rule_err("@1.2.3.4/8\t2.3.4.5/28\t161 : 161\t53 : 53\t0x111/0xFF\t0x0/0x0");
        assert!(e.message.contains("0x111"), "{e}");
    }

    #[test]
    fn rejects_missing_protocol_mask() {
        let e = rule_err("@1.2.3.4/8\t2.3.4.5/28\t161 : 161\t53 : 53\t0x11\t0x0/0x0");
        assert!(e.message.contains("protocol mask"), "{e}");
    }

    #[test]
    fn rejects_missing_flags() {
        let e = rule_err("@1.2.3.4/8\t2.3.4.5/28\t161 : 161\t53 : 53\t0x11/0xFF");
        assert!(e.message.contains("flags"), "{e}");
        assert!(e.message.contains("end of line"), "{e}");
    }

    #[test]
    fn rejects_bad_flags_mask() {
        let e = rule_err("@1.2.3.4/8\t2.3.4.5/28\t161 : 161\t53 : 53\t0x11/0xFF\t0x0000/0x10000");
        assert!(e.message.contains("flags mask"), "{e}");
    }

    #[test]
    fn rejects_trailing_garbage() {
        let e = rule_err("@1.2.3.4/8\t2.3.4.5/28\t161 : 161\t53 : 53\t0x11/0xFF\t0x0/0x0\tjunk");
        assert!(e.message.contains("end of line") && e.message.contains("junk"), "{e}");
    }

    #[test]
    fn reports_the_line_number_of_the_bad_line() {
        let text = format!("{GOOD}\n{GOOD}\n@1.2.3.4/8\n");
        let e = rule_err(&text);
        assert_eq!(e.line, 3);
        assert_eq!(e.to_string(), format!("line 3, column 11: {}", e.message));
    }

    #[test]
    fn parses_trace_lines() {
        let t = parse_trace("2229176273\t2147483648\t750\t65535\t17\t4294967295\t335\n1 2 3 4 6\n").unwrap();
        assert_eq!(
            t[0],
            TraceHeader {
                key: ClassifierKey {
                    src: 2_229_176_273,
                    dst: 2_147_483_648,
                    proto: 17,
                    sport: 750,
                    dport: 65535
                },
                flags: Some(u32::MAX),
                generated_from: Some(335),
            }
        );
        assert_eq!(t[1].key, ClassifierKey { src: 1, dst: 2, proto: 6, sport: 3, dport: 4 });
        assert_eq!((t[1].flags, t[1].generated_from), (None, None));
        assert_eq!(parse_trace_keys("1 2 3 4 6").unwrap(), vec![t[1].key]);
    }

    #[test]
    fn rejects_trace_address_over_u32() {
        let e = parse_trace("4294967296 1 2 3 4").unwrap_err();
        assert!(e.message.contains("source address"), "{e}");
    }

    #[test]
    fn rejects_trace_missing_field() {
        let e = parse_trace("1 2 3 4").unwrap_err();
        assert!(e.message.contains("whitespace before the protocol"), "{e}");
        let e = parse_trace("1 2 3").unwrap_err();
        assert!(e.message.contains("destination port"), "{e}");
    }

    #[test]
    fn rejects_trace_port_and_proto_out_of_range() {
        assert!(parse_trace("1 2 65536 4 6").unwrap_err().message.contains("source port"));
        assert!(parse_trace("1 2 3 65536 6").unwrap_err().message.contains("destination port"));
        assert!(parse_trace("1 2 3 4 256").unwrap_err().message.contains("protocol"));
    }

    #[test]
    fn rejects_trace_junk() {
        let e = parse_trace("1 2 3 4 6 x").unwrap_err();
        assert!(e.message.contains("flags"), "{e}");
        let e = parse_trace("1 2 3 4 6 0 7 8").unwrap_err();
        assert!(e.message.contains("end of line"), "{e}");
        let e = parse_trace("1 2 3 4 6 0 y").unwrap_err();
        assert!(e.message.contains("rule index"), "{e}");
        let e = parse_trace("\n\n1 2 3 4 a").unwrap_err();
        assert_eq!(e.line, 3);
    }

    #[test]
    fn load_errors_name_the_path() {
        let e = load_rules(Path::new("/nonexistent/acl")).unwrap_err();
        assert!(e.to_string().starts_with("/nonexistent/acl: "), "{e}");
    }
}
