//! The CI smoke run: `bulkhead-bench --quick` over every in-memory scenario with tiny sizes. It
//! asserts that the harness runs end to end and writes its three outputs, and the behaviour the
//! figures stand for (every established frame passed, no swap lost or leaked a packet, the SYN
//! flood's legitimate handshake passed); it asserts no timing.

use std::process::Command;

#[test]
fn quick_run_writes_markdown_json_and_svg() {
    let out = std::env::temp_dir().join(format!("bulkhead-bench-quick-{}", std::process::id()));
    let status = Command::new(env!("CARGO_BIN_EXE_bulkhead-bench"))
        .args(["--quick", "--no-verify", "engine", "classify", "swap", "synflood"])
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run bulkhead-bench");
    let stdout = String::from_utf8_lossy(&status.stdout);
    let stderr = String::from_utf8_lossy(&status.stderr);
    assert!(status.status.success(), "bulkhead-bench failed:\n{stdout}\n{stderr}");
    for section in ["## engine", "## swap", "## synflood"] {
        assert!(stdout.contains(section), "missing {section} in:\n{stdout}");
    }
    let md = std::fs::read_to_string(out.join("results.md")).expect("results.md");
    assert_eq!(md.trim(), stdout.trim());
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).expect("results.json"))
            .expect("valid JSON");
    let svg = std::fs::read_to_string(out.join("latency.svg")).expect("latency.svg");
    let _ = std::fs::remove_dir_all(&out);
    assert!(svg.contains("</svg>"));

    let ms = json["measurements"].as_array().expect("measurements");
    let extra = |scenario: &str, key: &str| -> Vec<f64> {
        ms.iter()
            .filter(|m| m["scenario"] == scenario && m["system"] == "bulkhead")
            .filter_map(|m| m["extra"][key].as_f64())
            .collect()
    };
    // Every established frame of an allowed flow passes, in every engine case.
    let pass = extra("engine", "pass %");
    assert!(!pass.is_empty());
    assert!(pass.iter().all(|p| *p == 100.0), "engine pass %: {pass:?}");
    // Hot swap: nothing allowed lost, nothing denied passed.
    assert_eq!(extra("swap", "allowed lost"), vec![0.0]);
    assert_eq!(extra("swap", "denied passed"), vec![0.0]);
    // SYN flood: the legitimate connection's 5 frames all pass; the table did not grow.
    assert_eq!(extra("synflood", "legit frames passed"), vec![5.0]);
    assert_eq!(extra("synflood", "table KiB before"), extra("synflood", "table KiB after"));
    // Classification answers agree with the linear scan.
    assert!(extra("classify", "mismatches").iter().all(|m| *m == 0.0));
}
