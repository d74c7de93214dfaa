//! Runtime quarantines on disk, so that a restart does not release a quarantined workload.
//!
//! CONTRACT: `bulkhead quarantine add/remove` rewrite the state file after every change that
//! took effect (write to a temporary file in the same directory, fsync, rename: a crash leaves
//! the old or the new list, never half of one). At start, `bulkhead run` reads it and compiles
//! the entries into generation 1, so a restarted firewall enforces them from its first packet.
//! An unreadable or malformed file stops the start with an error naming the file and the entry
//! (the operator decides; silently dropping a quarantine would be the dangerous choice); an
//! entry naming an identity the policy no longer has is skipped with a warning, as on reload.
//!
//! Format (JSON, one object): `{"version": 1, "entries": [{"target": "198.18.1.10",
//! "exceptions": ["198.19.9.9/32:tcp/22"], "added_at_unix": 1764800000, "time_to_contain_ns":
//! 21000000}]}`. Targets and exceptions use the CLI's own syntax.

use super::state::{QuarantineEntry, QuarantineExceptionArg, QuarantineSource, QuarantineTarget};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

const VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    version: u32,
    entries: Vec<Entry>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    target: String,
    #[serde(default)]
    exceptions: Vec<String>,
    #[serde(default)]
    added_at_unix: u64,
    #[serde(default)]
    time_to_contain_ns: Option<u64>,
}

/// The default state file for a control socket path: `DIR/STEM.quarantine.json` beside it.
pub fn default_path(control: &Path) -> PathBuf {
    let stem = control.file_stem().map_or_else(|| "bulkhead".into(), |s| s.to_string_lossy().into_owned());
    control.with_file_name(format!("{stem}.quarantine.json"))
}

/// Writes the runtime entries to `path` atomically.
///
/// # Errors
/// Any I/O error, naming the file.
pub fn save(path: &Path, entries: &[QuarantineEntry]) -> Result<(), String> {
    let file = File {
        version: VERSION,
        entries: entries
            .iter()
            .filter(|e| e.source == QuarantineSource::Runtime)
            .map(|e| Entry {
                target: e.target.to_string(),
                exceptions: e.exceptions.iter().map(ToString::to_string).collect(),
                added_at_unix: e.added_at_unix,
                time_to_contain_ns: e.time_to_contain_ns,
            })
            .collect(),
    };
    let mut text = serde_json::to_string_pretty(&file).map_err(|e| format!("{}: {e}", path.display()))?;
    text.push('\n');
    let tmp = path.with_extension("json.tmp");
    let res = (|| -> std::io::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    res.map_err(|e| format!("cannot write the quarantine state file {}: {e}", path.display()))
}

/// Reads the runtime entries saved in `path`; none when the file does not exist.
///
/// # Errors
/// An unreadable file, bad JSON, an unknown version, or an entry whose target or exception does
/// not parse: each message names the file (and the entry).
pub fn load(path: &Path, now_mono_ns: u64) -> Result<Vec<QuarantineEntry>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read the quarantine state file {}: {e}", path.display())),
    };
    let file: File = serde_json::from_str(&text)
        .map_err(|e| format!("{}:{}:{}: quarantine state file: {e}", path.display(), e.line(), e.column()))?;
    if file.version != VERSION {
        return Err(format!(
            "{}: quarantine state file version {} (this bulkhead reads version {VERSION})",
            path.display(),
            file.version
        ));
    }
    file.entries
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let bad = |what: String| format!("{}: entry {}: {what}", path.display(), i + 1);
            let target: QuarantineTarget = e.target.parse().map_err(|m| bad(format!("target: {m}")))?;
            let exceptions = e
                .exceptions
                .iter()
                .map(|x| {
                    x.parse::<QuarantineExceptionArg>().map_err(|m| bad(format!("exception `{x}`: {m}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(QuarantineEntry {
                target,
                exceptions,
                source: QuarantineSource::Runtime,
                added_at_unix: e.added_at_unix,
                added_mono_ns: now_mono_ns,
                generation: 0,
                time_to_contain_ns: e.time_to_contain_ns,
                restored: true,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("bulkhead-persist-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn entry(target: &str, exceptions: &[&str]) -> QuarantineEntry {
        QuarantineEntry {
            target: target.parse().unwrap(),
            exceptions: exceptions.iter().map(|x| x.parse().unwrap()).collect(),
            source: QuarantineSource::Runtime,
            added_at_unix: 1_764_800_000,
            added_mono_ns: 5,
            generation: 3,
            time_to_contain_ns: Some(21_000_000),
            restored: false,
        }
    }

    #[test]
    fn default_path_sits_beside_the_control_socket() {
        assert_eq!(
            default_path(Path::new("/run/bulkhead/control.sock")),
            PathBuf::from("/run/bulkhead/control.quarantine.json")
        );
    }

    #[test]
    fn runtime_entries_round_trip_and_policy_entries_are_not_saved() {
        let d = dir("roundtrip");
        let p = d.join("q.json");
        let mut from_policy = entry("web1", &[]);
        from_policy.source = QuarantineSource::Policy;
        let saved = vec![entry("198.18.1.10", &["198.19.9.9/32:tcp/22"]), entry("db1", &[]), from_policy];
        save(&p, &saved).unwrap();
        let back = load(&p, 77).unwrap();
        assert_eq!(back.len(), 2);
        for (b, s) in back.iter().zip(&saved) {
            assert_eq!(
                (&b.target, &b.exceptions, b.added_at_unix),
                (&s.target, &s.exceptions, s.added_at_unix)
            );
            assert_eq!(b.time_to_contain_ns, s.time_to_contain_ns);
            assert_eq!((b.source, b.added_mono_ns, b.restored), (QuarantineSource::Runtime, 77, true));
        }
        assert!(!p.with_extension("json.tmp").exists(), "no temporary file left");
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn a_missing_file_is_an_empty_list() {
        assert!(load(&dir("missing").join("none.json"), 0).unwrap().is_empty());
    }

    #[test]
    fn bad_json_names_file_line_and_column() {
        let d = dir("badjson");
        let p = d.join("q.json");
        std::fs::write(&p, "{\"version\": 1,\n \"entries\": [}\n").unwrap();
        let e = load(&p, 0).unwrap_err();
        assert!(e.starts_with(&format!("{}:2:", p.display())), "{e}");
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn unknown_version_is_refused() {
        let d = dir("version");
        let p = d.join("q.json");
        std::fs::write(&p, r#"{"version": 9, "entries": []}"#).unwrap();
        assert!(load(&p, 0).unwrap_err().contains("version 9"));
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn a_bad_target_names_the_entry() {
        let d = dir("target");
        let p = d.join("q.json");
        std::fs::write(
            &p,
            r#"{"version": 1, "entries": [{"target": "198.18.1.10"}, {"target": "300.1.1.1"}]}"#,
        )
        .unwrap();
        let e = load(&p, 0).unwrap_err();
        assert!(e.contains("entry 2: target"), "{e}");
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn a_bad_exception_names_the_entry_and_the_exception() {
        let d = dir("exception");
        let p = d.join("q.json");
        std::fs::write(&p, r#"{"version": 1, "entries": [{"target": "db1", "exceptions": ["nonsense"]}]}"#)
            .unwrap();
        let e = load(&p, 0).unwrap_err();
        assert!(e.contains("entry 1: exception `nonsense`"), "{e}");
        let _ = std::fs::remove_dir_all(d);
    }
}
