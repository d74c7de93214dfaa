//! ClassBench rule sets: every trace header classified by the tuple-space classifier must give the
//! rule a linear first-match scan gives (never the trace's last column; see the data README).
//!
//! The data lives in the shared tree beside the repository (`../shared/data/classbench` from the
//! repository root); `BULKHEAD_CLASSBENCH_DIR` overrides the location. Missing data is a failure,
//! not a skip. The 100k-rule sets are `#[ignore]`d (minutes in a debug build):
//! `cargo test -p bulkhead-tables --release --test classbench -- --ignored`.

use bulkhead_tables::classbench::{load_rules, load_trace};
use bulkhead_tables::classifier::reference_classify;
use bulkhead_tables::{ClassifierBuilder, ClassifierKey, ClassifierRule, RuleId};
use std::path::PathBuf;

fn data_dir() -> PathBuf {
    bulkhead_tables::classbench::default_data_dir()
}

/// First-match linear scan (rules are in priority order).
fn first_match(rules: &[ClassifierRule], k: &ClassifierKey) -> Option<RuleId> {
    rules.iter().position(|r| r.matches(k)).map(|i| i as RuleId)
}

fn check(name: &str) {
    let dir = data_dir();
    let rules = load_rules(&dir.join(name)).unwrap_or_else(|e| panic!("ClassBench data missing or bad: {e}"));
    let trace = load_trace(&dir.join(format!("{name}_trace"))).unwrap_or_else(|e| panic!("{e}"));
    assert!(rules.len() > 500 && trace.len() > 5000, "{name}: suspiciously small data");
    // Priorities are the line order, so first match == best priority.
    assert!(rules.iter().enumerate().all(|(i, r)| r.priority == i as u32));

    let mut b = ClassifierBuilder::new();
    for r in &rules {
        b.push(*r);
    }
    let c = b.build();
    assert_eq!(c.len(), rules.len());

    let keys: Vec<ClassifierKey> = trace.iter().map(|h| h.key).collect();
    let mut batch = vec![None; keys.len()];
    c.classify_batch(&keys, &mut batch);

    let mut earlier_than_generator = 0usize;
    for (n, h) in trace.iter().enumerate() {
        let want = first_match(&rules, &h.key);
        assert_eq!(c.classify(&h.key), want, "{name} trace line {}: {:?}", n + 1, h.key);
        assert_eq!(batch[n], want, "{name} (batch) trace line {}: {:?}", n + 1, h.key);
        if n % 97 == 0 {
            assert_eq!(reference_classify(&rules, &h.key), want);
        }
        if let (Some(w), Some(g)) = (want, h.generated_from) {
            if w < g {
                earlier_than_generator += 1;
            }
        }
    }
    // Every header was generated from some rule, so something always matches; and the README's
    // warning holds: the last column is not always the answer.
    assert!(trace.iter().all(|h| first_match(&rules, &h.key).is_some()));
    assert!(earlier_than_generator > 0, "{name}: expected some headers to match an earlier rule");
}

#[test]
fn acl1_1000() {
    check("acl1_1000");
}

#[test]
fn fw1_1000() {
    check("fw1_1000");
}

#[test]
fn ipc1_1000() {
    check("ipc1_1000");
}

#[test]
fn acl1_10000() {
    check("acl1_10000");
}

#[test]
fn fw1_10000() {
    check("fw1_10000");
}

#[test]
fn ipc1_10000() {
    check("ipc1_10000");
}

#[test]
#[ignore = "100k-rule sets: run with --release -- --ignored"]
fn all_100000() {
    for set in ["acl1_100000", "fw1_100000", "ipc1_100000"] {
        check(set);
    }
}

/// The incremental path on real rules: build half, insert the rest one by one, remove a slice,
/// and compare against the scan over the survivors.
#[test]
fn fw1_1000_incremental() {
    let dir = data_dir();
    let rules = load_rules(&dir.join("fw1_1000")).unwrap_or_else(|e| panic!("{e}"));
    let trace = load_trace(&dir.join("fw1_1000_trace")).unwrap_or_else(|e| panic!("{e}"));
    let half = rules.len() / 2;
    let mut b = ClassifierBuilder::new();
    for r in &rules[..half] {
        b.push(*r);
    }
    let mut c = b.build();
    for r in &rules[half..] {
        c.insert(*r);
    }
    let removed = 100..400usize;
    for id in removed.clone() {
        assert!(c.remove(id as RuleId));
    }
    for h in &trace {
        let want = rules.iter().enumerate().position(|(i, r)| !removed.contains(&i) && r.matches(&h.key));
        assert_eq!(c.classify(&h.key), want.map(|i| i as RuleId), "{:?}", h.key);
    }
}
