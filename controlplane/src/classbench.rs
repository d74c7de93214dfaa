//! ClassBench rule and trace files (see `shared/data/classbench/README.md`).
//!
//! Rule line: `@src/len <TAB> dst/len <TAB> sp_lo : sp_hi <TAB> dp_lo : dp_hi <TAB> proto/mask
//! <TAB> flags/mask`; rules are in priority order (first match wins); the TCP-flags column is
//! parsed and ignored (the table contract has no flags field). Trace line: `src dst sport dport
//! proto flags rule` as decimal numbers; only the first five are used.
//!
//! A minimal parser kept in the control plane until `bulkhead_tables::classbench` lands; it is
//! strict (every malformed line is a positioned error) and never panics.

use crate::diag::{Diagnostic, Diagnostics, Loc};
use bulkhead_tables::{ClassifierKey, ClassifierRule};
use std::sync::Arc;

/// Parses a rule file; rule `i` (0-based, in file order) gets priority `i`.
///
/// # Errors
/// Every malformed line, positioned (line, column of the bad field).
pub fn parse_rules(file: &Arc<str>, text: &str) -> Result<Vec<(ClassifierRule, u32)>, Diagnostics> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (lineno, line) in text.lines().enumerate() {
        let ln = u32::try_from(lineno + 1).unwrap_or(u32::MAX);
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        match parse_rule_line(line, out.len() as u32) {
            Ok(r) => out.push((r, ln)),
            Err((col, msg)) => errors.push(Diagnostic::new(&Loc::new(file, ln, col), msg)),
        }
        if errors.len() > 100 {
            break;
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(Diagnostics::sorted(errors))
    }
}

fn parse_rule_line(line: &str, priority: u32) -> Result<ClassifierRule, (u32, String)> {
    let Some(body) = line.trim_start().strip_prefix('@') else {
        return Err((1, "expected a rule line starting with `@`".into()));
    };
    let offset = line.len() - line.trim_start().len() + 1;
    let fields: Vec<(usize, &str)> = split_fields(body, '\t');
    let col = |i: usize| u32::try_from(offset + fields.get(i).map_or(0, |f| f.0) + 1).unwrap_or(u32::MAX);
    if fields.len() < 5 {
        return Err((
            col(fields.len().saturating_sub(1)),
            format!("expected 6 tab-separated fields (src, dst, sport range, dport range, proto/mask, flags/mask), found {}", fields.len()),
        ));
    }
    let src = parse_prefix(fields[0].1).ok_or_else(|| (col(0), format!("expected an IPv4 prefix like 10.0.0.0/8, found `{}`", fields[0].1)))?;
    let dst = parse_prefix(fields[1].1).ok_or_else(|| (col(1), format!("expected an IPv4 prefix like 10.0.0.0/8, found `{}`", fields[1].1)))?;
    let sport = parse_range(fields[2].1).ok_or_else(|| (col(2), format!("expected a port range `lo : hi` with lo <= hi <= 65535, found `{}`", fields[2].1)))?;
    let dport = parse_range(fields[3].1).ok_or_else(|| (col(3), format!("expected a port range `lo : hi` with lo <= hi <= 65535, found `{}`", fields[3].1)))?;
    let proto = parse_value_mask(fields[4].1).ok_or_else(|| (col(4), format!("expected protocol/mask like 0x06/0xFF, found `{}`", fields[4].1)))?;
    Ok(ClassifierRule { src, dst, proto, sport, dport, priority })
}

/// Splits on `sep`, returning (byte offset, trimmed text) of each non-empty field.
fn split_fields(s: &str, sep: char) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = 0;
    for part in s.split(sep) {
        if !part.trim().is_empty() {
            out.push((start + (part.len() - part.trim_start().len()), part.trim()));
        }
        start += part.len() + sep.len_utf8();
    }
    out
}

fn parse_prefix(s: &str) -> Option<(u32, u32)> {
    let (a, l) = s.split_once('/')?;
    let a: std::net::Ipv4Addr = a.trim().parse().ok()?;
    let l: u32 = l.trim().parse().ok()?;
    if l > 32 {
        return None;
    }
    let mask = if l == 0 { 0 } else { u32::MAX << (32 - l) };
    let lo = u32::from(a) & mask;
    Some((lo, lo | !mask))
}

fn parse_range(s: &str) -> Option<(u16, u16)> {
    let (a, b) = s.split_once(':')?;
    let a: u16 = a.trim().parse().ok()?;
    let b: u16 = b.trim().parse().ok()?;
    (a <= b).then_some((a, b))
}

fn parse_value_mask(s: &str) -> Option<(u8, u8)> {
    let (v, m) = s.split_once('/')?;
    let p = |x: &str| {
        let x = x.trim();
        let h = x.strip_prefix("0x").or_else(|| x.strip_prefix("0X"))?;
        u8::from_str_radix(h, 16).ok()
    };
    Some((p(v)?, p(m)?))
}

/// Parses a trace file into classifier keys.
///
/// # Errors
/// Every malformed line, positioned.
pub fn parse_trace(file: &Arc<str>, text: &str) -> Result<Vec<ClassifierKey>, Diagnostics> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (lineno, line) in text.lines().enumerate() {
        let ln = u32::try_from(lineno + 1).unwrap_or(u32::MAX);
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let fields: Vec<(usize, &str)> = line
            .split_whitespace()
            .map(|w| (w.as_ptr() as usize - line.as_ptr() as usize, w))
            .collect();
        let num = |i: usize, max: u64| -> Result<u64, Diagnostic> {
            let (off, w) = fields.get(i).copied().unwrap_or((line.len(), ""));
            w.parse::<u64>().ok().filter(|&v| v <= max).ok_or_else(|| {
                Diagnostic::new(
                    &Loc::new(file, ln, u32::try_from(off + 1).unwrap_or(u32::MAX)),
                    format!("expected field {} as a decimal number from 0 to {max}, found `{w}`", i + 1),
                )
            })
        };
        let parsed = (|| {
            Ok::<_, Diagnostic>(ClassifierKey {
                src: num(0, u64::from(u32::MAX))? as u32,
                dst: num(1, u64::from(u32::MAX))? as u32,
                sport: num(2, 65535)? as u16,
                dport: num(3, 65535)? as u16,
                proto: num(4, 255)? as u8,
            })
        })();
        match parsed {
            Ok(k) => out.push(k),
            Err(d) => errors.push(d),
        }
        if errors.len() > 100 {
            break;
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(Diagnostics::sorted(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f() -> Arc<str> {
        Arc::from("r")
    }

    #[test]
    fn parses_rule_line() {
        let r = parse_rules(&f(), "@170.92.157.224/29\t220.6.23.192/28\t161 : 161\t53 : 53\t0x11/0xFF\t0x0000/0x0000\n").unwrap();
        let (r, line) = r[0];
        assert_eq!(line, 1);
        assert_eq!(r.src, (u32::from(std::net::Ipv4Addr::new(170, 92, 157, 224)), u32::from(std::net::Ipv4Addr::new(170, 92, 157, 231))));
        assert_eq!(r.sport, (161, 161));
        assert_eq!(r.proto, (0x11, 0xff));
    }

    #[test]
    fn rejects_missing_at() {
        let e = parse_rules(&f(), "1.2.3.4/32\t1.2.3.4/32\t0 : 1\t0 : 1\t0x06/0xFF\t0/0\n").unwrap_err();
        assert!(e.0[0].message.contains('@'));
    }

    #[test]
    fn rejects_bad_prefix() {
        let e = parse_rules(&f(), "@1.2.3.4/33\t1.2.3.4/32\t0 : 1\t0 : 1\t0x06/0xFF\t0/0\n").unwrap_err();
        assert_eq!(e.0[0].loc.col, 2);
        assert!(e.0[0].message.contains("IPv4 prefix"));
    }

    #[test]
    fn rejects_inverted_range() {
        let e = parse_rules(&f(), "@1.2.3.4/32\t1.2.3.4/32\t5 : 1\t0 : 1\t0x06/0xFF\t0/0\n").unwrap_err();
        assert!(e.0[0].message.contains("port range"));
    }

    #[test]
    fn rejects_bad_proto_and_short_lines() {
        assert!(parse_rules(&f(), "@1.2.3.4/32\t1.2.3.4/32\t0 : 1\t0 : 1\t6/0xFF\t0/0\n").is_err());
        assert!(parse_rules(&f(), "@1.2.3.4/32\t1.2.3.4/32\n").is_err());
    }

    #[test]
    fn parses_and_rejects_trace_lines() {
        let k = parse_trace(&f(), "2229176273\t2147483648\t750\t65535\t17\t4294967295\t335\n").unwrap();
        assert_eq!(k[0].dport, 65535);
        assert_eq!(k[0].proto, 17);
        let e = parse_trace(&f(), "1 2 3 70000 6\n").unwrap_err();
        assert_eq!(e.0[0].loc.col, 7);
        assert!(parse_trace(&f(), "1 2 3\n").is_err());
    }
}
