//! `bulkhead policy {check,test,trace,diff}`.

use crate::cases::{describe_query, parse_cases, run_case};
use crate::cli::fail;
use crate::compile::{compile, CompiledPolicy};
use crate::diag::{Diagnostics, Loc};
use crate::model::{has_ports, parse_proto, Policy};
use crate::{diff, load, trace};
use bulkhead_tables::FlowQuery;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum PolicyCmd {
    /// Validate policy files or directories; exit 0 when clean, 1 with positioned errors.
    Check(CheckArgs),
    /// Run a cases file (expected verdicts) against a policy; exit 1 on any failure.
    Test(TestArgs),
    /// Explain the verdict for one flow: identities, matching rules, what decided, the mode.
    Trace(TraceArgs),
    /// Show which identity pairs and ports change verdict between two policies.
    Diff(DiffArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Policy files or directories (directories are read recursively: *.yaml, *.yml).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Also print compile statistics (sizes, timings, estimated memory).
    #[arg(long)]
    pub stats: bool,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// Policy files or directories.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// The cases file: a YAML mapping whose `cases` list holds flows with their expected
    /// verdicts (format in docs/policy.md "Test cases").
    #[arg(long)]
    pub cases: PathBuf,
    /// Print every case, not only failures.
    #[arg(long, short)]
    pub verbose: bool,
}

#[derive(Debug, Args)]
pub struct TraceArgs {
    /// Policy file or directory (repeatable).
    #[arg(long = "policy", required = true)]
    pub policy: Vec<PathBuf>,
    /// Source (the side that opens the connection): an address, or an identity name (one of its
    /// addresses, IPv4 when both ends have one).
    #[arg(long)]
    pub from: String,
    /// Destination: an address or an identity name.
    #[arg(long)]
    pub to: String,
    /// tcp, udp, sctp, icmp, icmpv6, or a protocol number.
    #[arg(long, default_value = "tcp")]
    pub proto: String,
    /// Destination port: required for tcp, udp and sctp; refused for other protocols.
    #[arg(long)]
    pub dport: Option<u16>,
    /// Source port (tcp, udp, sctp; default 49152).
    #[arg(long)]
    pub sport: Option<u16>,
    /// ICMP type (default: echo request, 8 for icmp and 128 for icmpv6).
    #[arg(long = "type")]
    pub icmp_type: Option<u8>,
    /// ICMP code (default 0).
    #[arg(long)]
    pub code: Option<u8>,
}

/// `--from` / `--to`: an address, or an identity name (resolved against the compiled policy).
fn trace_endpoint(flag: &str, s: &str) -> Result<crate::cases::Endpoint, String> {
    if let Some(a) = crate::cases::endpoint_address(s).map_err(|e| format!("{flag}: {e}"))? {
        return Ok(crate::cases::Endpoint::Addr(a));
    }
    if s.is_empty() || !s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        return Err(format!("{flag}: expected an address or an identity name, found `{s}`"));
    }
    Ok(crate::cases::Endpoint::Identity(s.to_string()))
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The current policy (file or directory).
    pub old: PathBuf,
    /// The proposed policy (file or directory).
    pub new: PathBuf,
    /// Exit 1 when any verdict changes (0 when none), like `git diff --exit-code`: a CI gate
    /// for changes that must not alter behaviour (an invalid policy also exits 1, with errors).
    #[arg(long)]
    pub exit_code: bool,
}

pub fn run(cmd: PolicyCmd) -> ExitCode {
    match cmd {
        PolicyCmd::Check(a) => check(&a),
        PolicyCmd::Test(a) => test(&a),
        PolicyCmd::Trace(a) => trace_cmd(&a),
        PolicyCmd::Diff(a) => diff_cmd(&a),
    }
}

/// Loads and compiles; the one path every subcommand uses.
pub fn load_and_compile(paths: &[PathBuf]) -> Result<(Policy, CompiledPolicy), Diagnostics> {
    let p = load::load_paths(paths)?;
    let c = compile(&p, 1)?;
    Ok((p, c))
}

/// `1 rule`, `2 rules`, `1 identity`, `3 identities`, `2 prefixes`.
fn count(n: usize, word: &str) -> String {
    if n == 1 {
        return format!("1 {word}");
    }
    let plural = if let Some(stem) = word.strip_suffix('y') {
        format!("{stem}ies")
    } else if word.ends_with('x') {
        format!("{word}es")
    } else {
        format!("{word}s")
    };
    format!("{n} {plural}")
}

fn check(a: &CheckArgs) -> ExitCode {
    match load_and_compile(&a.paths) {
        Err(d) => fail(&d),
        Ok((p, c)) => {
            let s = &c.stats;
            let files = load::policy_files(&a.paths).map_or(0, |f| f.len());
            println!(
                "ok: {}: {} ({}), {}, {} ({}) -> {} in {}",
                count(files, "file"),
                count(p.identities.len(), "identity"),
                count(p.identities.iter().map(|i| i.addresses.len()).sum::<usize>(), "prefix"),
                count(p.rules.len(), "rule"),
                count(p.acl_tiers.len(), "ACL tier"),
                count(s.acl_rules, "line"),
                count(s.entries.iter().sum::<usize>(), "classifier entry"),
                count(s.entries.len(), "tier"),
            );
            if p.rules.is_empty() && p.acl_tiers.is_empty() && p.quarantine.exceptions.is_empty() {
                // Valid (a deny-all policy), but more often the wrong file or an empty commit.
                eprintln!("warning: no rules: this policy default-denies every flow");
            }
            if a.stats {
                println!("identity ids (atoms): {}", s.atoms);
                println!("lpm prefixes:         {}", s.prefixes);
                println!("entries per tier:     {:?}", s.entries);
                println!("atoms + lpm inserts:  {:.3} ms", s.atoms_time.as_secs_f64() * 1e3);
                println!("resolve selectors:    {:.3} ms", s.resolve_time.as_secs_f64() * 1e3);
                println!("build classifiers:    {:.3} ms", s.classifier_time.as_secs_f64() * 1e3);
                println!("build lpm:            {:.3} ms", s.lpm_time.as_secs_f64() * 1e3);
                println!("compile total:        {:.3} ms", s.total_time.as_secs_f64() * 1e3);
                println!("table memory:         {:.1} KiB", s.estimated_bytes as f64 / 1024.0);
            }
            ExitCode::SUCCESS
        }
    }
}

fn test(a: &TestArgs) -> ExitCode {
    let (p, c) = match load_and_compile(&a.paths) {
        Ok(x) => x,
        Err(d) => return fail(&d),
    };
    let file = a.cases.display().to_string();
    let text = match load::read_text_limited(&a.cases, load::MAX_FILE_BYTES) {
        Ok(t) => t,
        Err(e) => return fail(&Diagnostics::single(&Loc::file(&file), e)),
    };
    let cases = match parse_cases(&file, &text) {
        Ok(c) => c,
        Err(d) => return fail(&d),
    };
    let mut failed = 0usize;
    for case in &cases {
        let r = run_case(&c, &p, case);
        let label = case.name.clone().unwrap_or_else(|| format!("{} -> {}", case.from, case.to));
        if let Some(e) = &r.error {
            failed += 1;
            eprintln!("{}: error: case `{label}`: {e}", r.error_loc.as_ref().unwrap_or(&case.loc));
        } else if !r.pass {
            failed += 1;
            let rule = case.rule.as_ref().map_or(String::new(), |x| format!(" by {x}"));
            eprintln!(
                "{}: FAIL {label}: {}: expected {}{rule}, got {} (decided by {})",
                case.loc,
                describe_query(&r.query),
                case.expect,
                r.got,
                r.decided_by
            );
        } else if a.verbose {
            println!(
                "{}: ok {label}: {} -> {} (decided by {})",
                case.loc,
                describe_query(&r.query),
                r.got,
                r.decided_by
            );
        }
    }
    println!("{} passed, {} failed", cases.len() - failed, failed);
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn trace_cmd(a: &TraceArgs) -> ExitCode {
    let Some(Some(proto)) = parse_proto(&a.proto) else {
        eprintln!(
            "error: --proto: expected tcp, udp, sctp, icmp, icmpv6 or a protocol number 0-255, found `{}`",
            a.proto
        );
        return ExitCode::from(2);
    };
    let usage = |m: &str| {
        eprintln!("error: {m}");
        ExitCode::from(2)
    };
    let (from, to) = match (trace_endpoint("--from", &a.from), trace_endpoint("--to", &a.to)) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(e), _) | (_, Err(e)) => return usage(&e),
    };
    let icmp = matches!(proto, 1 | 58);
    if !icmp && (a.icmp_type.is_some() || a.code.is_some()) {
        return usage("--type and --code apply only to --proto icmp or icmpv6");
    }
    let (sport, dport) = if has_ports(proto) {
        let Some(dport) = a.dport else {
            return usage("--dport is required for tcp, udp and sctp");
        };
        (a.sport.unwrap_or(crate::cases::DEFAULT_SPORT), dport)
    } else if a.dport.is_some() || a.sport.is_some() {
        return usage(if icmp {
            "--dport and --sport apply only to tcp, udp and sctp (for icmp, use --type and --code)"
        } else {
            "--dport and --sport apply only to tcp, udp and sctp"
        });
    } else if icmp {
        (a.icmp_type.map_or(crate::cases::echo_request(proto), u16::from), u16::from(a.code.unwrap_or(0)))
    } else {
        (0, 0)
    };
    let (p, c) = match load_and_compile(&a.policy) {
        Ok(x) => x,
        Err(d) => return fail(&d),
    };
    let (src, dst) = match crate::cases::resolve_pair(&c, &p, &from, &to) {
        Ok(pair) => pair,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let q = FlowQuery { src, dst, proto, sport, dport };
    print!("{}", trace::explain(&p, &c, &q));
    ExitCode::SUCCESS
}

fn diff_cmd(a: &DiffArgs) -> ExitCode {
    let old = match load_and_compile(std::slice::from_ref(&a.old)) {
        Ok(x) => x,
        Err(d) => return fail(&d),
    };
    let new = match load_and_compile(std::slice::from_ref(&a.new)) {
        Ok(x) => x,
        Err(d) => return fail(&d),
    };
    let (rows, truncated) = diff::diff(&old.0, &old.1, &new.0, &new.1);
    if rows.is_empty() {
        println!("no verdict changes");
    } else {
        print!("{}", diff::render(&rows));
        println!("{}", count(rows.len(), "change"));
    }
    if truncated {
        eprintln!(
            "warning: the table is incomplete (more than {} probes, or more than {} ACL address ranges to compare)",
            diff::MAX_PROBES,
            diff::MAX_ACL_ENDPOINTS
        );
    }
    if a.exit_code && !rows.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
