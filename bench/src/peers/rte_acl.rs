//! DPDK's `dpdk-test-acl` (package dpdk-dev) as the classification peer and second correctness
//! reference.
//!
//! It reads the same ClassBench rule files, and a trace of headers whose numbers `strtoul(.., 0)`
//! parses, so we write the trace as `0x...` hex (decimal would do, but hex cannot be misread as
//! octal). It is run without hugepages or PCI access (`--no-huge --no-pci`) and with a unique
//! `--file-prefix`, so it touches no device and collides with no other DPDK process; the runtime
//! directory it leaves under /var/run/dpdk/<prefix> is removed afterwards.
//!
//! What we read from its output:
//! - lookups/s and cycles/lookup: its `search_ip5tuples ... cycles/pkt, ... pkt/sec` line;
//! - build time: it prints none, so we timestamp its line-buffered stdout (`stdbuf -oL`): from the
//!   end of its configuration dump to `rte_acl_build(..) finished`. This span also covers reading
//!   and adding the rules from the file (milliseconds next to the build at 10k+ rules);
//! - memory: with `--log-level=lib.acl:debug` the build logs its runtime footprint (`total: N bytes`,
//!   what classification uses) and the build's temporary memory (`memory consumed: N`);
//! - with `--verbose=2`, the first-matching rule index for every header (`result: N`, where no
//!   match prints 4294967295), the second correctness reference beside the linear scan.

use bulkhead_tables::ClassifierKey;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

/// The binary's name on PATH.
pub const BINARY: &str = "dpdk-test-acl";

/// True when `dpdk-test-acl` and `stdbuf` are installed.
pub fn available() -> bool {
    crate::util::on_path(BINARY) && crate::util::on_path("stdbuf")
}

/// How to run the peer.
#[derive(Clone, Debug)]
pub struct AclOptions {
    /// Passes over the trace in the timed run.
    pub iters: u32,
    /// Also collect the per-header answers (`--verbose=2`, which prints one line per header, so
    /// it is a separate, untimed run with one pass).
    pub answers: bool,
    /// EAL memory in MiB (`-m`): the 100k-rule builds need about 3 GiB.
    pub mem_mb: u32,
    /// The lcore to run on (`-l`).
    pub lcore: usize,
}

impl Default for AclOptions {
    fn default() -> Self {
        Self { iters: 10, answers: false, mem_mb: 4096, lcore: 0 }
    }
}

/// What one run of the peer reported.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AclRun {
    /// Headers classified in the timed section (trace length x iterations).
    pub lookups: u64,
    pub seconds: f64,
    pub lookups_per_sec: f64,
    pub cycles_per_lookup: f64,
    /// Wall-clock nanoseconds from the end of the config dump to the build's completion.
    pub build_ns: Option<u64>,
    /// Runtime footprint of the built context, bytes (`total:` in the gen phase log).
    pub runtime_bytes: Option<u64>,
    /// Temporary memory the build consumed, bytes.
    pub build_bytes: Option<u64>,
    /// The classify method the context chose (rte_acl_classify_alg: 1 scalar, 2 sse, 3 avx2, ...).
    pub alg: Option<u32>,
    pub tries: Option<u32>,
    pub rules: Option<u32>,
    /// Per header, the 0-based index of the first matching rule (`--verbose=2` runs only).
    pub answers: Vec<Option<u32>>,
}

/// Writes headers as a `dpdk-test-acl` trace file: `0xSRC 0xDST SPORT DPORT PROTO` per line.
///
/// # Errors
/// I/O errors writing the file.
pub fn write_trace(keys: &[ClassifierKey], path: &Path) -> std::io::Result<()> {
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    for k in keys {
        writeln!(w, "0x{:08x} 0x{:08x} {} {} {}", k.src, k.dst, k.sport, k.dport, k.proto)?;
    }
    w.flush()
}

/// One output line, with the time it arrived.
#[derive(Clone, Debug)]
struct Line {
    at: Instant,
    text: String,
}

static RUN_SEQ: AtomicU32 = AtomicU32::new(0);

/// Runs the peer on a rule file and a trace file of `n_headers` headers.
///
/// # Errors
/// The peer is missing, fails to start, exits non-zero, or prints no rate line.
pub fn run(rules: &Path, trace: &Path, n_headers: usize, opts: &AclOptions) -> Result<AclRun, String> {
    let timed = run_once(rules, trace, n_headers, opts.iters.max(1), 0, opts)?;
    let mut out = parse_output(&timed)?;
    if opts.answers {
        let verbose = run_once(rules, trace, n_headers, 1, 2, opts)?;
        out.answers = parse_answers(verbose.iter().map(|l| l.text.as_str()), n_headers);
    }
    Ok(out)
}

fn run_once(
    rules: &Path,
    trace: &Path,
    n_headers: usize,
    iters: u32,
    verbose: u32,
    opts: &AclOptions,
) -> Result<Vec<Line>, String> {
    let prefix = format!("bhbench{}_{}", std::process::id(), RUN_SEQ.fetch_add(1, Ordering::Relaxed));
    let n_rules = count_rule_lines(rules)?;
    let mut cmd = Command::new("stdbuf");
    cmd.arg("-oL")
        .arg(BINARY)
        .arg("--no-huge")
        .arg("--no-pci")
        .arg("--no-telemetry")
        .arg(format!("--file-prefix={prefix}"))
        .arg(format!("-m{}", opts.mem_mb))
        .arg(format!("-l{}", opts.lcore))
        .arg("--log-level=lib.acl:debug")
        .arg("--")
        .arg(format!("--rulesf={}", rules.display()))
        .arg(format!("--tracef={}", trace.display()))
        .arg(format!("--rulenum={}", n_rules.max(1) + 1))
        .arg(format!("--tracenum={}", n_headers.max(1)))
        .arg(format!("--iter={iters}"))
        .arg(format!("--verbose={verbose}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("cannot start {BINARY}: {e}"))?;
    let stderr = child.stderr.take().ok_or("no stderr pipe")?;
    let err_thread = std::thread::spawn(move || read_lines(BufReader::new(stderr)));
    let stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let mut lines = read_lines(BufReader::new(stdout));
    let status = child.wait().map_err(|e| e.to_string())?;
    let err_lines = err_thread.join().unwrap_or_default();
    let _ = std::fs::remove_dir_all(Path::new("/var/run/dpdk").join(&prefix));
    if !status.success() {
        let tail: Vec<&str> = err_lines.iter().rev().take(5).map(|l| l.text.as_str()).collect();
        return Err(format!("{BINARY} exited with {status}: {}", tail.join(" / ")));
    }
    lines.extend(err_lines);
    lines.sort_by_key(|l| l.at);
    Ok(lines)
}

fn read_lines(r: impl BufRead) -> Vec<Line> {
    let mut out = Vec::new();
    for text in r.lines().map_while(Result::ok) {
        out.push(Line { at: Instant::now(), text });
    }
    out
}

fn count_rule_lines(rules: &Path) -> Result<usize, String> {
    let text = std::fs::read_to_string(rules).map_err(|e| format!("{}: {e}", rules.display()))?;
    Ok(text.lines().filter(|l| l.trim_start().starts_with('@')).count())
}

fn parse_output(lines: &[Line]) -> Result<AclRun, String> {
    let mut run = parse_text(lines.iter().map(|l| l.text.as_str()))?;
    let start = lines.iter().find(|l| l.text.starts_with("ipv6:")).map(|l| l.at);
    let end = lines.iter().find(|l| l.text.starts_with("rte_acl_build(")).map(|l| l.at);
    if let (Some(s), Some(e)) = (start, end) {
        run.build_ns = Some(e.saturating_duration_since(s).as_nanos() as u64);
    }
    Ok(run)
}

/// Parses the figures out of the peer's output text (everything but the build time).
///
/// # Errors
/// No `search_ip5tuples ... pkt/sec` line, or a failed build.
pub fn parse_text<'a>(lines: impl Iterator<Item = &'a str>) -> Result<AclRun, String> {
    let mut run = AclRun::default();
    let mut have_rate = false;
    let mut in_gen = false;
    for line in lines {
        let t = line.trim();
        if t.starts_with("ACL: Gen phase") {
            in_gen = true;
        } else if t.starts_with("ACL: Build phase") {
            in_gen = false;
        }
        if let Some(rest) = t.strip_prefix("rte_acl_build(") {
            if let Some(code) = rest.split("finished with").nth(1) {
                if code.trim() != "0" {
                    return Err(format!("rte_acl_build failed: {t}"));
                }
            }
        } else if let Some(v) = t.strip_prefix("total:") {
            if in_gen {
                run.runtime_bytes = first_number(v);
            }
        } else if let Some(v) = t.strip_prefix("memory consumed:") {
            run.build_bytes = first_number(v);
        } else if let Some(v) = t.strip_prefix("alg=") {
            run.alg = first_number(v).map(|x| x as u32);
        } else if let Some(v) = t.strip_prefix("num_tries=") {
            run.tries = first_number(v).map(|x| x as u32);
        } else if let Some(v) = t.strip_prefix("num_rules=") {
            run.rules = first_number(v).map(|x| x as u32);
        } else if t.starts_with("search_ip5tuples ") && t.contains("pkt/sec") {
            // search_ip5tuples  @lcore 0: 10 iterations, 80800 pkts, 1 categories,
            //   27304686 cycles (0.01 sec), 337.93 cycles/pkt, 7250037.59 pkt/sec
            for part in t.split(',') {
                let p = part.trim();
                if let Some(n) = p.strip_suffix(" pkts") {
                    run.lookups = n.trim().parse().unwrap_or(0);
                } else if let Some(n) = p.strip_suffix(" cycles/pkt") {
                    run.cycles_per_lookup = n.trim().parse().unwrap_or(0.0);
                } else if let Some(n) = p.strip_suffix(" pkt/sec") {
                    run.lookups_per_sec = n.trim().parse().unwrap_or(0.0);
                    have_rate = true;
                }
            }
        }
    }
    if !have_rate {
        return Err("no `search_ip5tuples ... pkt/sec` line in dpdk-test-acl output".into());
    }
    if run.lookups_per_sec > 0.0 {
        run.seconds = run.lookups as f64 / run.lookups_per_sec;
    }
    Ok(run)
}

/// Per-header answers from `--verbose=2` output: `ipv4_5tuple: N, category: 0, result: R`, where N
/// is 1-based and R is the 0-based rule index, or 4294967295 for no match.
pub fn parse_answers<'a>(lines: impl Iterator<Item = &'a str>, n_headers: usize) -> Vec<Option<u32>> {
    let mut out = vec![None; n_headers];
    for line in lines {
        let Some(rest) = line.trim().strip_prefix("ipv4_5tuple:") else { continue };
        let mut idx = None;
        let mut cat = None;
        let mut res = None;
        for (i, part) in rest.split(',').enumerate() {
            let p = part.trim();
            match i {
                0 => idx = p.parse::<usize>().ok(),
                _ => {
                    if let Some(v) = p.strip_prefix("category:") {
                        cat = v.trim().parse::<u32>().ok();
                    } else if let Some(v) = p.strip_prefix("result:") {
                        res = v.trim().parse::<u32>().ok();
                    }
                }
            }
        }
        if let (Some(i), Some(0), Some(r)) = (idx, cat, res) {
            if (1..=n_headers).contains(&i) {
                out[i - 1] = if r == u32::MAX { None } else { Some(r) };
            }
        }
    }
    out
}

fn first_number(s: &str) -> Option<u64> {
    let digits: String = s.trim().chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "dump_config:\nrulesf:x\nipv6:0\nACL: Gen phase for ACL \"TESTACL\":\n\
runtime memory footprint on socket -1:\nsingle nodes/bytes used: 3594/28752\ntotal: 5301056 bytes\n\
max limit: 18446744073709551615 bytes\nACL: Build phase for ACL \"TESTACL\":\nmemory consumed: 25165845\n\
rte_acl_build(3) finished with 0\nacl context <TESTACL>@0x11f3c4280\n  alg=3\n  num_rules=808\n  num_tries=2\n\
search_ip5tuples  @lcore 0: 10 iterations, 80800 pkts, 1 categories, 27304686 cycles (0.01 sec), \
337.93 cycles/pkt, 7250037.59 pkt/sec\n";

    #[test]
    fn parses_rate_memory_and_context() {
        let r = parse_text(SAMPLE.lines()).unwrap();
        assert_eq!(r.lookups, 80800);
        assert!((r.lookups_per_sec - 7_250_037.59).abs() < 1e-3);
        assert!((r.cycles_per_lookup - 337.93).abs() < 1e-9);
        assert_eq!(r.runtime_bytes, Some(5_301_056));
        assert_eq!(r.build_bytes, Some(25_165_845));
        assert_eq!(r.alg, Some(3));
        assert_eq!(r.rules, Some(808));
        assert_eq!(r.tries, Some(2));
    }

    #[test]
    fn rejects_output_without_rate_line() {
        assert!(parse_text("dump_config:\nipv6:0\n".lines()).is_err());
    }

    #[test]
    fn rejects_failed_build() {
        let text = "rte_acl_build(3) finished with -12\nsearch_ip5tuples  @lcore 0: 1 iterations, 1 pkts, \
1 categories, 1 cycles (0.01 sec), 1.00 cycles/pkt, 1.00 pkt/sec\n";
        assert!(parse_text(text.lines()).unwrap_err().contains("failed"));
    }

    #[test]
    fn answers_map_no_match_and_ignore_other_categories() {
        let text =
            "ipv4_5tuple: 1, category: 0, result: 335\nipv4_5tuple: 2, category: 0, result: 4294967295\n\
ipv4_5tuple: 2, category: 1, result: 7\nipv4_5tuple: 9, category: 0, result: 1\ngarbage\n";
        assert_eq!(parse_answers(text.lines(), 3), vec![Some(335), None, None]);
    }

    #[test]
    fn trace_file_is_hex_addresses_then_decimal_ports() {
        let dir = std::env::temp_dir().join(format!("bhbench-trace-{}", std::process::id()));
        let k = ClassifierKey { src: 0x84de_87d1, dst: 0x8000_0000, proto: 17, sport: 750, dport: 65535 };
        write_trace(&[k], &dir).unwrap();
        let text = std::fs::read_to_string(&dir).unwrap();
        let _ = std::fs::remove_file(&dir);
        assert_eq!(text, "0x84de87d1 0x80000000 750 65535 17\n");
    }
}
