//! Loading a policy from files and directories, and the checks that span objects.
//!
//! A policy is the union of every object in every given path; a directory contributes its
//! `*.yaml` / `*.yml` files, recursively, in sorted path order (so rule order, which only affects
//! which rule a trace names when several tie, is stable). All problems are collected; if there is
//! any, the caller gets the whole list and no [`Policy`] — a policy is never partially loaded.

use crate::diag::{Diagnostic, Diagnostics, Loc};
use crate::model::*;
use crate::parse::{decode_object, Object};
use crate::yaml::{for_each_document, Ctx};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Largest policy file read: bounds memory on hostile input.
pub const MAX_FILE_BYTES: u64 = 512 * 1024 * 1024;

/// Lists the policy files under `paths` (files as given, directories recursively, sorted).
///
/// # Errors
/// Unreadable paths, and paths that yield no file at all.
pub fn policy_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Diagnostics> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        let before = out.len();
        match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => walk(p, &mut out, &mut errors),
            Ok(_) => out.push(p.clone()),
            Err(e) => errors
                .push(Diagnostic::new(&Loc::file(&p.display().to_string()), format!("cannot read: {e}"))),
        }
        if out.len() == before && errors.is_empty() {
            errors.push(Diagnostic::new(
                &Loc::file(&p.display().to_string()),
                "no policy files (*.yaml, *.yml) found here",
            ));
        }
    }
    // A file named twice (`check dir dir`, or a directory and a file in it) is read once:
    // otherwise every object in it would be a duplicate of itself.
    let mut seen = std::collections::HashSet::new();
    out.retain(|p| seen.insert(std::fs::canonicalize(p).unwrap_or_else(|_| p.clone())));
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(Diagnostics::sorted(errors))
    }
}

/// Reads at most `max` bytes of `path`: a larger file, or an endless one (`/dev/zero`, a FIFO
/// that never closes), is an error instead of a read until memory runs out.
///
/// # Errors
/// The open or read error, or "too large".
pub fn read_limited(path: &Path, max: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let mut bytes = Vec::new();
    f.take(max + 1).read_to_end(&mut bytes).map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > max {
        return Err(format!("file too large: more than {} MiB", max >> 20));
    }
    Ok(bytes)
}

/// [`read_limited`] as UTF-8 text.
///
/// # Errors
/// As [`read_limited`], and text that is not UTF-8.
pub fn read_text_limited(path: &Path, max: u64) -> Result<String, String> {
    String::from_utf8(read_limited(path, max)?)
        .map_err(|e| format!("not UTF-8 text (invalid byte at offset {})", e.utf8_error().valid_up_to()))
}

/// Where the first invalid UTF-8 byte of `bytes` is: line and column (1-based, columns in
/// characters), for an error that points at it like every other.
fn utf8_error_loc(file: &str, bytes: &[u8], valid_up_to: usize) -> Loc {
    let valid = std::str::from_utf8(&bytes[..valid_up_to]).unwrap_or_default();
    let line = valid.matches('\n').count() + 1;
    let col = valid.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Loc::new(&std::sync::Arc::from(file), line as u32, col as u32)
}

/// `*.yaml` / `*.yml`, in any letter case (`rules.YAML` is not silently skipped).
fn is_yaml_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with(".yaml") || lower.ends_with(".yml")
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>, errors: &mut Vec<Diagnostic>) {
    let rd = match std::fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) => {
            errors.push(Diagnostic::new(
                &Loc::file(&dir.display().to_string()),
                format!("cannot list directory: {e}"),
            ));
            return;
        }
    };
    let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with('.') {
            continue;
        }
        if p.is_dir() {
            walk(&p, out, errors);
        } else if is_yaml_name(name) {
            out.push(p);
        }
    }
}

/// Loads and validates a policy from files and directories.
///
/// # Errors
/// Every problem found, positioned; no policy is returned if there is any.
pub fn load_paths(paths: &[PathBuf]) -> Result<Policy, Diagnostics> {
    let files = policy_files(paths)?;
    let mut sources = Vec::new();
    let mut errors = Vec::new();
    for f in files {
        let name = f.display().to_string();
        match read_limited(&f, MAX_FILE_BYTES) {
            Ok(bytes) => {
                match String::from_utf8(bytes) {
                    Ok(mut s) => {
                        // A UTF-8 byte-order mark (Windows editors write one) is not part of the YAML.
                        if s.starts_with('\u{feff}') {
                            s.drain(..'\u{feff}'.len_utf8());
                        }
                        sources.push((name, f.parent().map(Path::to_path_buf).unwrap_or_default(), s))
                    }
                    Err(e) => {
                        let at = e.utf8_error().valid_up_to();
                        errors.push(Diagnostic::new(
                        &utf8_error_loc(&name, e.as_bytes(), at),
                        format!("not UTF-8 text: invalid byte 0x{:02x} (byte offset {at}); expected UTF-8 YAML", e.as_bytes()[at]),
                    ));
                    }
                }
            }
            Err(e) => errors.push(Diagnostic::new(&Loc::file(&name), e)),
        }
    }
    let refs: Vec<(&str, &Path, &str)> =
        sources.iter().map(|(n, d, s)| (n.as_str(), d.as_path(), s.as_str())).collect();
    match load_sources(&refs) {
        Ok(p) if errors.is_empty() => Ok(p),
        Ok(_) => Err(Diagnostics::sorted(errors)),
        Err(d) => {
            errors.extend(d.0);
            Err(Diagnostics::sorted(errors))
        }
    }
}

/// Loads a policy from in-memory sources: (file name, directory for relative paths, text).
///
/// # Errors
/// Every problem found, positioned.
pub fn load_sources(sources: &[(&str, &Path, &str)]) -> Result<Policy, Diagnostics> {
    let mut ctx = Ctx::default();
    let mut objects = Vec::new();
    for (name, dir, text) in sources {
        let file: Arc<str> = Arc::from(*name);
        // Each document is decoded as soon as it is parsed, then its tree dropped.
        let parsed = for_each_document(&file, text, |d| {
            if let Some(o) = decode_object(&mut ctx, &d, dir) {
                objects.push(o);
            }
        });
        if let Err(d) = parsed {
            ctx.errors.extend(d.0);
        }
    }
    let policy = assemble(&mut ctx, objects);
    if ctx.errors.is_empty() {
        Ok(policy)
    } else {
        Err(Diagnostics::sorted(ctx.errors))
    }
}

/// Loads a policy from one YAML string (tests, tools).
///
/// # Errors
/// Every problem found, positioned against `name`.
pub fn load_str(name: &str, text: &str) -> Result<Policy, Diagnostics> {
    load_sources(&[(name, Path::new("."), text)])
}

fn dup_check(ctx: &mut Ctx, seen: &mut HashMap<String, Loc>, what: &str, name: &str, loc: &Loc) {
    if let Some(first) = seen.get(name) {
        ctx.err(loc, format!("duplicate {what} name `{name}` (first defined at {first})"));
    } else {
        seen.insert(name.to_string(), loc.clone());
    }
}

/// Merges objects into one policy and runs the cross-object checks.
fn assemble(ctx: &mut Ctx, objects: Vec<Object>) -> Policy {
    let mut p = Policy::default();
    let mut names: HashMap<&'static str, HashMap<String, Loc>> = HashMap::new();
    let mut settings_seen: Option<Loc> = None;
    for o in objects {
        match o {
            Object::Identity(i) => {
                dup_check(ctx, names.entry("Identity").or_default(), "Identity", &i.name, &i.loc);
                p.identities.push(i);
            }
            Object::Policy { name, loc, rules } => {
                dup_check(ctx, names.entry("Policy").or_default(), "Policy", &name, &loc);
                let mut seen = HashMap::new();
                for r in &rules {
                    dup_check(ctx, &mut seen, "rule", &r.name, &r.loc);
                }
                p.rules.extend(rules);
            }
            Object::Settings(s) => {
                let loc = s.loc.clone().unwrap_or_else(|| Loc::file("?"));
                if let Some(first) = &settings_seen {
                    ctx.err(
                        &loc,
                        format!("a policy has at most one Settings object (another is at {first})"),
                    );
                } else {
                    settings_seen = Some(loc);
                    p.settings = s;
                }
            }
            Object::Quarantine { name, loc, spec } => {
                dup_check(ctx, names.entry("Quarantine").or_default(), "Quarantine", &name, &loc);
                p.quarantine.identities.extend(spec.identities);
                p.quarantine.addresses.extend(spec.addresses);
                p.quarantine.exceptions.extend(spec.exceptions);
            }
            Object::AclTier(t) => {
                dup_check(ctx, names.entry("AclTier").or_default(), "AclTier", &t.name, &t.loc);
                let mut seen = HashMap::new();
                for r in &t.rules {
                    dup_check(ctx, &mut seen, "ACL rule", &r.name, &r.loc);
                }
                p.acl_tiers.push(t);
            }
        }
    }
    let mut seen = HashMap::new();
    for e in &p.quarantine.exceptions {
        dup_check(ctx, &mut seen, "quarantine exception", &e.name, &e.loc);
    }
    check_addresses(ctx, &p);
    // Cross-object checks only once every object is whole: an object dropped for an error (a
    // misspelt field) would make every reference to it look unknown.
    if ctx.errors.is_empty() {
        check_references(ctx, &p);
    }
    p
}

/// One address has one identity: the same prefix may not be claimed twice.
fn check_addresses(ctx: &mut Ctx, p: &Policy) {
    let mut owner: HashMap<Cidr, (usize, &Loc)> = HashMap::new();
    for (idx, id) in p.identities.iter().enumerate() {
        for (c, loc) in &id.addresses {
            match owner.get(c) {
                Some(&(o, first)) if o == idx => ctx.err(loc, format!("address {c} is listed twice for identity `{}` (first at {first})", id.name)),
                Some(&(o, first)) => ctx.err(
                    loc,
                    format!(
                        "address {c} is claimed by identity `{}` and by identity `{}` (at {first}); one address has one identity",
                        id.name, p.identities[o].name
                    ),
                ),
                None => {
                    owner.insert(*c, (idx, loc));
                }
            }
        }
    }
}

/// Which identities carry each label, so "can this selector match anything?" checks only the
/// identities of its rarest positive term, once per distinct selector. (Scanning every identity
/// for every selector was rules x identities: seconds for a 20k-rule, 8k-identity policy.)
struct LabelPostings<'a> {
    /// key -> value -> identities.
    pairs: HashMap<&'a str, HashMap<&'a str, Vec<usize>>>,
    keys: HashMap<&'a str, Vec<usize>>,
}

impl<'a> LabelPostings<'a> {
    fn new(p: &'a Policy) -> Self {
        let mut pairs: HashMap<&str, HashMap<&str, Vec<usize>>> = HashMap::new();
        let mut keys: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, id) in p.identities.iter().enumerate() {
            for (k, v) in &id.labels {
                pairs.entry(k.as_str()).or_default().entry(v.as_str()).or_default().push(i);
                keys.entry(k.as_str()).or_default().push(i);
            }
        }
        Self { pairs, keys }
    }

    fn pair(&self, k: &str, v: &str) -> &[usize] {
        self.pairs.get(k).and_then(|m| m.get(v)).map_or(&[], Vec::as_slice)
    }

    /// Whether some identity satisfies `sel` (a label selector).
    fn any_match(&self, p: &Policy, sel: &Selector) -> bool {
        let Selector::Labels { labels, exprs } = sel else { return false };
        // Each positive term gives the lists an identity must be in to match it.
        let mut terms: Vec<Vec<&[usize]>> = labels.iter().map(|(k, v)| vec![self.pair(k, v)]).collect();
        for e in exprs {
            match e {
                Expr::In(k, vs) => terms.push(vs.iter().map(|v| self.pair(k, v)).collect()),
                Expr::Exists(k) => terms.push(vec![self.keys.get(k.as_str()).map_or(&[], Vec::as_slice)]),
                Expr::NotIn(..) | Expr::DoesNotExist(_) => {}
            }
        }
        let size = |t: &Vec<&[usize]>| t.iter().map(|l| l.len()).sum::<usize>();
        let check = |i: usize| sel.matches_labels(&p.identities[i].name, &p.identities[i].labels);
        match terms.iter().min_by_key(|t| size(t)) {
            Some(rarest) => rarest.iter().any(|l| l.iter().any(|&i| check(i))),
            None => (0..p.identities.len()).any(check),
        }
    }
}

/// Names that must exist, and selectors that can never match anything.
fn check_references(ctx: &mut Ctx, p: &Policy) {
    let names: HashSet<&str> = p.identities.iter().map(|i| i.name.as_str()).collect();
    let postings = LabelPostings::new(p);
    let mut matchable: HashMap<&Selector, bool> = HashMap::new();
    for r in &p.rules {
        for s in r.from.iter().chain(&r.to) {
            match &s.sel {
                Selector::Identity(n) if !names.contains(n.as_str()) => {
                    ctx.err(&s.loc, format!("unknown identity `{n}`: no Identity object has this name"));
                }
                sel @ Selector::Labels { .. }
                    if !*matchable.entry(sel).or_insert_with(|| postings.any_match(p, sel)) =>
                {
                    ctx.err(
                        &s.loc,
                        format!("selector {sel} can never match: no identity has matching labels"),
                    );
                }
                _ => {}
            }
        }
    }
    for (n, loc) in &p.quarantine.identities {
        if !names.contains(n.as_str()) {
            ctx.err(loc, format!("unknown identity `{n}` in quarantine: no Identity object has this name"));
        }
    }
    let zones: HashSet<&str> = p.identities.iter().filter_map(Identity::zone).collect();
    for (z, s) in &p.settings.segments {
        if !zones.contains(z.as_str()) {
            let mut known: Vec<&str> = zones.iter().copied().collect();
            known.sort_unstable();
            ctx.err(
                &s.loc,
                format!(
                    "unknown segment `{z}`: no identity has label zone={z} (known zones: {})",
                    known.join(", ")
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A misspelt field in an Identity is the one error: no "unknown identity" or "selector can
    /// never match" for the rules that name it.
    #[test]
    fn no_phantom_reference_errors_while_an_object_is_broken() {
        let text = "apiVersion: bulkhead.io/v1\nkind: Identity\nmetadata: {name: x}\nspec: {labels: {zone: a}, adresses: [198.18.1.1]}\n---\n\
                    apiVersion: bulkhead.io/v1\nkind: Policy\nmetadata: {name: p}\nspec:\n  rules:\n    \
                    - {name: r, from: [{identity: x}], to: [{matchLabels: {zone: a}}], action: allow}\n";
        let e = load_str("b.yaml", text).unwrap_err().to_string();
        assert!(
            e.contains("unknown field `adresses`") && e.contains("missing required field `addresses`"),
            "{e}"
        );
        assert!(!e.contains("unknown identity") && !e.contains("can never match"), "{e}");
    }

    #[test]
    fn reads_are_bounded_even_from_an_endless_file() {
        let e = read_limited(Path::new("/dev/zero"), 1 << 20).unwrap_err();
        assert!(e.contains("too large: more than 1 MiB"), "{e}");
        assert!(read_limited(Path::new("/no/such/file"), 1).unwrap_err().starts_with("cannot read:"));
    }

    #[test]
    fn yaml_extensions_in_any_case_are_policy_files() {
        let dir = std::env::temp_dir().join(format!("bulkhead-load-ext-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["a.yaml", "b.YAML", "c.Yml", "d.txt", ".hidden.yaml"] {
            std::fs::write(dir.join(f), "").unwrap();
        }
        let files = policy_files(std::slice::from_ref(&dir)).unwrap();
        let names: Vec<String> =
            files.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["a.yaml", "b.YAML", "c.Yml"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
