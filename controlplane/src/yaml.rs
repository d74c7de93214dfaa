//! A positioned YAML tree and the strict decoding helpers built on it.
//!
//! The events come from `saphyr-parser` (a maintained, YAML 1.2 compliant parser that reports a
//! span for every event); this module turns them into a small tree in which every node remembers
//! where it started. We decode policy objects from that tree by hand instead of through serde:
//! that way every error — a syntax error, an unknown field, a value of the wrong shape, or a
//! semantic problem found much later — names the file, line and column of the exact node, and
//! says what was expected.
//!
//! Deliberate restrictions (policies are security configuration, not a data format playground):
//! - aliases (`*name`) are rejected: they make it hard to see what a rule really says, and
//!   refusing them rules out "billion laughs" expansion;
//! - duplicate mapping keys are rejected (YAML 1.2 forbids them; most libraries keep the last);
//! - nesting deeper than [`MAX_DEPTH`] is rejected;
//! - tags are ignored (a `!!str` tag does not change how a field is read).

use crate::diag::{Diagnostic, Diagnostics, Loc};
use saphyr_parser::{Event, Parser, ScalarStyle};
use std::collections::HashSet;
use std::sync::Arc;

/// Nesting limit for one document: far beyond what a policy needs, far below a stack problem.
pub const MAX_DEPTH: usize = 64;

/// A YAML node with the position where it starts.
#[derive(Clone, Debug)]
pub struct Node {
    pub kind: NodeKind,
    pub loc: Loc,
}

#[derive(Clone, Debug)]
pub enum NodeKind {
    /// `~`, `null`, or nothing at all after a key.
    Null,
    /// Any scalar; `quoted` is true for single- or double-quoted and block scalars.
    Scalar {
        text: String,
        quoted: bool,
    },
    Seq(Vec<Node>),
    /// Entries in source order; keys are unique (checked while loading).
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// What kind of node this is, for "expected X, found Y" messages.
    pub fn describe(&self) -> &'static str {
        match &self.kind {
            NodeKind::Null => "nothing (null)",
            NodeKind::Scalar { .. } => "a scalar",
            NodeKind::Seq(_) => "a list",
            NodeKind::Map(_) => "a mapping",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }
}

enum Frame {
    Seq(Loc, Vec<Node>),
    /// Entries, the key waiting for its value, and (for large mappings only) the keys seen.
    Map(Loc, Vec<(Node, Node)>, Option<Node>, Option<HashSet<String>>),
}

/// Mappings with more keys than this check duplicates through a set; smaller ones (every
/// mapping a policy has but the top of a huge document) scan their few keys, allocation-free.
const SCAN_KEYS: usize = 16;

/// Whether `key` is already a key of `entries` (`seen` holds them once there are many).
fn duplicate_key(entries: &[(Node, Node)], seen: &mut Option<HashSet<String>>, key: &str) -> bool {
    if let Some(set) = seen {
        return !set.insert(key.to_string());
    }
    let text = |n: &Node| match &n.kind {
        NodeKind::Scalar { text, .. } => text.clone(),
        _ => String::new(),
    };
    let dup = entries.iter().any(|(k, _)| match &k.kind {
        NodeKind::Scalar { text, .. } => text == key,
        NodeKind::Null => key.is_empty(),
        _ => false,
    });
    if !dup && entries.len() >= SCAN_KEYS {
        let mut set: HashSet<String> = entries.iter().map(|(k, _)| text(k)).collect();
        set.insert(key.to_string());
        *seen = Some(set);
    }
    dup
}

/// Parses every document of `src` (a file called `file`) into trees. Empty documents are skipped.
///
/// # Errors
/// The first syntax error, or every duplicate key / alias found, positioned.
pub fn load_documents(file: &Arc<str>, src: &str) -> Result<Vec<Node>, Diagnostics> {
    let mut docs = Vec::new();
    for_each_document(file, src, |d| docs.push(d))?;
    Ok(docs)
}

/// [`load_documents`], handing each document to `on_doc` as soon as it is complete, so a caller
/// can decode and drop it before the next is read (a file of many documents never holds all
/// their trees at once).
///
/// # Errors
/// As [`load_documents`]; documents before the error have been handed over.
pub fn for_each_document(
    file: &Arc<str>,
    src: &str,
    mut on_doc: impl FnMut(Node),
) -> Result<(), Diagnostics> {
    // The YAML parser takes a NUL as the end of the input, which would silently drop the rest of
    // the file (rules included): refuse it where it is.
    if let Some(at) = src.find('\0') {
        let before = &src[..at];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        let loc =
            Loc::new(file, u32::try_from(line).unwrap_or(u32::MAX), u32::try_from(col).unwrap_or(u32::MAX));
        return Err(Diagnostics::single(
            &loc,
            "a NUL byte (0x00) is not allowed in YAML: is this a binary file?",
        ));
    }
    let mut parser = Parser::new_from_str(src);
    let mut stack: Vec<Frame> = Vec::new();
    let mut errors = Vec::new();
    let loc_of = |m: &saphyr_parser::Marker| {
        Loc::new(
            file,
            u32::try_from(m.line()).unwrap_or(u32::MAX),
            u32::try_from(m.col() + 1).unwrap_or(u32::MAX),
        )
    };
    while let Some(ev) = parser.next_event() {
        let (ev, span) = match ev {
            Ok(x) => x,
            Err(e) => {
                let loc = loc_of(e.marker());
                errors.push(Diagnostic::new(&loc, format!("YAML syntax error: {}", e.info())));
                return Err(Diagnostics::sorted(errors));
            }
        };
        let loc = loc_of(&span.start);
        let node = match ev {
            Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart(_)
            | Event::DocumentEnd
            | Event::Nothing => continue,
            Event::Alias(_) => {
                errors.push(Diagnostic::new(
                    &loc,
                    "YAML aliases (*name) are not supported in policy files; write the value out",
                ));
                Node { kind: NodeKind::Null, loc }
            }
            Event::Scalar(text, style, _, _) => {
                let quoted = !matches!(style, ScalarStyle::Plain);
                let null = !quoted && matches!(&*text, "" | "~" | "null" | "Null" | "NULL");
                let kind =
                    if null { NodeKind::Null } else { NodeKind::Scalar { text: text.into_owned(), quoted } };
                Node { kind, loc }
            }
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                if stack.len() >= MAX_DEPTH {
                    errors.push(Diagnostic::new(&loc, format!("nesting deeper than {MAX_DEPTH} levels")));
                    return Err(Diagnostics::sorted(errors));
                }
                stack.push(if matches!(ev, Event::SequenceStart(..)) {
                    Frame::Seq(loc, Vec::new())
                } else {
                    Frame::Map(loc, Vec::new(), None, None)
                });
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some(Frame::Seq(l, items)) => Node { kind: NodeKind::Seq(items), loc: l },
                Some(Frame::Map(l, entries, _, _)) => Node { kind: NodeKind::Map(entries), loc: l },
                None => continue,
            },
        };
        match stack.last_mut() {
            None => {
                if !matches!(node.kind, NodeKind::Null) {
                    on_doc(node);
                }
            }
            Some(Frame::Seq(_, items)) => items.push(node),
            Some(Frame::Map(_, entries, pending, seen)) => match pending.take() {
                None => {
                    let key_text = match &node.kind {
                        NodeKind::Scalar { text, .. } => Some(text.as_str()),
                        NodeKind::Null => Some(""),
                        _ => None,
                    };
                    match key_text {
                        Some(k) if duplicate_key(entries, seen, k) => {
                            errors.push(Diagnostic::new(
                                &node.loc,
                                format!("duplicate key `{k}` in this mapping"),
                            ));
                        }
                        None => {
                            errors.push(Diagnostic::new(&node.loc, "mapping keys must be plain scalars"));
                        }
                        _ => {}
                    }
                    *pending = Some(node);
                }
                Some(key) => entries.push((key, node)),
            },
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Diagnostics::sorted(errors))
    }
}

/// Collects diagnostics while decoding; decoders return `None` after recording why.
#[derive(Debug, Default)]
pub struct Ctx {
    pub errors: Vec<Diagnostic>,
}

impl Ctx {
    pub fn err(&mut self, loc: &Loc, msg: impl Into<String>) {
        self.errors.push(Diagnostic::new(loc, msg));
    }

    /// Records "expected {what}, found ..." for `node` and returns `None`.
    pub fn expected<T>(&mut self, node: &Node, what: &str) -> Option<T> {
        let found = match &node.kind {
            NodeKind::Scalar { text, .. } => format!("`{}`", truncate(text, 60)),
            _ => node.describe().to_string(),
        };
        self.err(&node.loc, format!("expected {what}, found {found}"));
        None
    }

    /// A scalar as a string.
    pub fn string(&mut self, node: &Node, what: &str) -> Option<String> {
        match &node.kind {
            NodeKind::Scalar { text, .. } => Some(text.clone()),
            _ => self.expected(node, what),
        }
    }

    /// A non-empty name of letters, digits, `-`, `_`, `.`, up to 253 characters.
    pub fn name(&mut self, node: &Node) -> Option<String> {
        let s = self.string(node, "a name")?;
        if s.is_empty()
            || s.len() > 253
            || !s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            self.err(
                &node.loc,
                format!(
                    "invalid name `{}`: expected 1-253 characters of letters, digits, `-`, `_` or `.`",
                    truncate(&s, 60)
                ),
            );
            return None;
        }
        Some(s)
    }

    pub fn bool(&mut self, node: &Node) -> Option<bool> {
        match &node.kind {
            NodeKind::Scalar { text, quoted: false } if text == "true" => Some(true),
            NodeKind::Scalar { text, quoted: false } if text == "false" => Some(false),
            _ => self.expected(node, "`true` or `false`"),
        }
    }

    /// An unsigned integer in `0..=max`, decimal or `0x` hexadecimal.
    pub fn uint(&mut self, node: &Node, max: u64, what: &str) -> Option<u64> {
        let v = node.as_str().and_then(parse_uint);
        match v {
            Some(v) if v <= max => Some(v),
            _ => self.expected(node, &format!("{what} (an integer from 0 to {max})")),
        }
    }

    pub fn seq<'a>(&mut self, node: &'a Node, what: &str) -> Option<&'a [Node]> {
        match &node.kind {
            NodeKind::Seq(items) => Some(items),
            _ => self.expected(node, &format!("a list of {what}")),
        }
    }

    /// Opens a mapping for field-by-field reading; `fields` lists every accepted key.
    pub fn map<'a>(
        &mut self,
        node: &'a Node,
        what: &str,
        fields: &'static [&'static str],
    ) -> Option<MapReader<'a>> {
        match &node.kind {
            NodeKind::Map(entries) => {
                for (k, _) in entries {
                    let key = k.as_str().unwrap_or("");
                    if !fields.contains(&key) {
                        self.err(
                            &k.loc,
                            format!(
                                "unknown field `{}` in {what}, expected one of: {}",
                                truncate(key, 60),
                                fields.join(", ")
                            ),
                        );
                    }
                }
                Some(MapReader { node, entries })
            }
            _ => self.expected(node, &format!("{what} (a mapping)")),
        }
    }
}

/// Field access on a mapping whose keys were already checked against the accepted set.
#[derive(Debug, Clone, Copy)]
pub struct MapReader<'a> {
    pub node: &'a Node,
    entries: &'a [(Node, Node)],
}

impl<'a> MapReader<'a> {
    /// The value of `key`, if present and not null.
    pub fn get(&self, key: &str) -> Option<&'a Node> {
        self.entries
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
            .filter(|v| !matches!(v.kind, NodeKind::Null))
    }

    /// Whether `key` is written at all (even as null).
    pub fn has(&self, key: &str) -> bool {
        self.entries.iter().any(|(k, _)| k.as_str() == Some(key))
    }

    /// The value of a required field, or an error at the mapping.
    pub fn req(&self, ctx: &mut Ctx, key: &str, what: &str) -> Option<&'a Node> {
        let v = self.get(key);
        if v.is_none() {
            ctx.err(&self.node.loc, format!("missing required field `{key}` ({what})"));
        }
        v
    }

    pub fn entries(&self) -> &'a [(Node, Node)] {
        self.entries
    }
}

/// Decimal or `0x` hex.
pub fn parse_uint(s: &str) -> Option<u64> {
    let s = s.trim();
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        if h.is_empty() || h.len() > 16 {
            return None;
        }
        u64::from_str_radix(h, 16).ok()
    } else {
        if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    }
}

/// Shortens `s` to at most `n` characters for messages.
pub fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n).collect();
        t.push_str("...");
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f() -> Arc<str> {
        Arc::from("t.yaml")
    }

    #[test]
    fn positions_are_one_based() {
        let docs = load_documents(&f(), "a: 1\nbb:\n  - x\n").unwrap();
        let NodeKind::Map(entries) = &docs[0].kind else { panic!("not a map") };
        assert_eq!((entries[1].0.loc.line, entries[1].0.loc.col), (2, 1));
        let NodeKind::Seq(items) = &entries[1].1.kind else { panic!("not a seq") };
        assert_eq!((items[0].loc.line, items[0].loc.col), (3, 5));
    }

    #[test]
    fn multiple_documents() {
        let docs = load_documents(&f(), "a: 1\n---\nb: 2\n---\n").unwrap();
        assert_eq!(docs.len(), 2);
    }

    /// Duplicate keys are found in small mappings (scanned) and large ones (a set past 16 keys).
    #[test]
    fn duplicate_keys_in_small_and_large_mappings() {
        let e = load_documents(&Arc::from("f"), "a: 1\nb: 2\na: 3\n").unwrap_err().to_string();
        assert!(e.contains("f:3:1") && e.contains("duplicate key `a`"), "{e}");
        let mut big: String = (0..40).map(|i| format!("k{i}: {i}\n")).collect();
        big.push_str("k3: again\nk39: again\n");
        let e = load_documents(&Arc::from("f"), &big).unwrap_err().to_string();
        assert!(e.contains("f:41:1") && e.contains("duplicate key `k3`"), "{e}");
        assert!(e.contains("f:42:1") && e.contains("duplicate key `k39`"), "{e}");
        let fine: String = (0..40).map(|i| format!("k{i}: {i}\n")).collect();
        assert_eq!(load_documents(&Arc::from("f"), &fine).unwrap().len(), 1);
    }

    /// The parser would stop at a NUL and keep what came before: an error at its place instead.
    #[test]
    fn nul_byte_is_an_error_at_its_place() {
        let e = load_documents(&Arc::from("f"), "a: 1\nb: x\0y\nc: 3\n").unwrap_err().to_string();
        assert!(e.contains("f:2:5") && e.contains("NUL byte"), "{e}");
    }

    #[test]
    fn syntax_error_is_positioned() {
        let e = load_documents(&f(), "a: [1,\nb: }").unwrap_err();
        assert!(e.0[0].message.contains("syntax error"), "{e}");
        assert_eq!(e.0[0].loc.line, 2);
    }

    #[test]
    fn duplicate_key_rejected() {
        let e = load_documents(&f(), "a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!((e.0[0].loc.line, e.0[0].loc.col), (3, 1));
        assert!(e.0[0].message.contains("duplicate key `a`"));
    }

    #[test]
    fn alias_rejected() {
        let e = load_documents(&f(), "a: &x 1\nb: *x\n").unwrap_err();
        assert!(e.0[0].message.contains("aliases"));
    }

    #[test]
    fn complex_key_rejected() {
        let e = load_documents(&f(), "? [a]\n: 1\n").unwrap_err();
        assert!(e.0[0].message.contains("plain scalars"));
    }

    #[test]
    fn deep_nesting_rejected() {
        let src = "[".repeat(200) + &"]".repeat(200);
        let e = load_documents(&f(), &src).unwrap_err();
        assert!(e.0[0].message.contains("nesting"));
    }

    #[test]
    fn unknown_field_names_expected_fields() {
        let docs = load_documents(&f(), "name: x\nnmae: y\n").unwrap();
        let mut ctx = Ctx::default();
        let m = ctx.map(&docs[0], "a rule", &["name", "action"]).unwrap();
        assert!(m.get("name").is_some());
        assert_eq!(ctx.errors.len(), 1);
        assert_eq!(ctx.errors[0].loc.line, 2);
        assert!(ctx.errors[0].message.contains("unknown field `nmae`"));
        assert!(ctx.errors[0].message.contains("name, action"));
    }

    #[test]
    fn uint_parsing() {
        assert_eq!(parse_uint("0x1F"), Some(31));
        assert_eq!(parse_uint("12"), Some(12));
        assert_eq!(parse_uint("-1"), None);
        assert_eq!(parse_uint("0x"), None);
        assert_eq!(parse_uint("99999999999999999999999"), None);
    }
}
