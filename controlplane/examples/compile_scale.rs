//! Compile-time and memory at the issue's scale: 64k identities, 1M identity prefixes, 100k
//! rules (plus a 1% sprinkle of cidr selectors). Run in release:
//!
//! ```text
//! cargo run --release -p bulkhead-control --example compile_scale [RULES] [IDENTITIES] [PREFIXES] [--compile-only]
//! ```
//!
//! The policy is generated in memory (parsing 100k rules of YAML is measured separately by
//! `policy check --stats` on real files). Addresses: IPv4 /32s from 198.18.0.0/15 (131072 of
//! them) and IPv6 /64s from 2001:db8::/32 for the rest. RSS is read from /proc/self/status.
//!
//! Then 1000 single-rule additions and removals on that policy, twice: *warm* (back to back)
//! and *cold* (64 MiB written before each update, so the updater's ~50 MB of state, its code
//! and the TLB start cold, as for a lone change after the machine did other work). Each is
//! timed in wall time and in this thread's CPU time. `BULKHEAD_UPDATES=N` runs N of each, for
//! cache simulation: `valgrind --tool=callgrind --cache-sim=yes --toggle-collect='*Samples*time*'`.

use bulkhead_control::incremental::{Applied, IncrementalPolicy, Position};
use bulkhead_control::model::*;
use bulkhead_control::{compile, Loc};
use bulkhead_tables::{Action, FlowQuery};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// User + system CPU time of this process in ms (CLOCK_PROCESS_CPUTIME_ID: exact, not ticks).
fn cpu_ms() -> f64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_PROCESS_CPUTIME_ID)
        .map(|t| t.tv_sec() as f64 * 1e3 + t.tv_nsec() as f64 / 1e6)
        .unwrap_or(0.0)
}

/// CPU time of the calling thread in ns (CLOCK_THREAD_CPUTIME_ID): the time this thread ran,
/// its page faults included, time other processes had the core excluded.
fn thread_cpu_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// Pushes the updater's data out of the caches: reads and writes every line of `buf`.
fn evict(buf: &mut [u8]) {
    for line in buf.chunks_mut(64) {
        line[0] = line[0].wrapping_add(1);
    }
    std::hint::black_box(&buf[..]);
}

/// Wall and thread-CPU times of one kind of update.
#[derive(Default)]
struct Samples {
    wall: Vec<u64>,
    cpu: Vec<u64>,
}

impl Samples {
    // Not inlined: `valgrind --tool=callgrind --toggle-collect='*Samples*time*'` then sees
    // exactly the updates.
    #[inline(never)]
    fn time<R>(&mut self, f: impl FnOnce() -> R) -> R {
        // The CPU clock is a system call: read it outside the wall-clock interval.
        let c = thread_cpu_ns();
        let t = Instant::now();
        let r = f();
        let wall = t.elapsed().as_nanos() as u64;
        self.cpu.push(thread_cpu_ns().saturating_sub(c));
        self.wall.push(wall);
        r
    }

    /// Median, p99 and max in microseconds, wall and CPU. A wall maximum far above the CPU
    /// maximum is the thread waiting for the core (preemption on a shared machine), not work.
    fn print(&mut self, what: &str) {
        let stat = |v: &mut Vec<u64>| {
            v.sort_unstable();
            let us = |i: usize| v[i] as f64 / 1e3;
            (us(v.len() / 2), us(v.len() * 99 / 100), us(v.len() - 1))
        };
        let (m, p, x) = stat(&mut self.wall);
        let (cm, cp, cx) = stat(&mut self.cpu);
        println!(
            "{what:<24} median {m:.1} us, p99 {p:.1} us, max {x:.1} us wall; cpu {cm:.1} / {cp:.1} / {cx:.1} us ({} runs)",
            self.wall.len()
        );
    }
}

#[derive(Default)]
struct Timings {
    add: Samples,
    remove: Samples,
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    // `--compile-only`: skip the incremental part (for profiling the full compile alone).
    let compile_only = std::env::args().any(|a| a == "--compile-only");
    let n_rules = args.first().copied().unwrap_or(100_000);
    let n_ids = args.get(1).copied().unwrap_or(65_536);
    let n_prefixes = args.get(2).copied().unwrap_or(1_000_000);
    let loc = Loc::file("gen");
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let (zones, apps, tiers) = (8usize, 2000usize, 4usize);
    let per_id = n_prefixes.div_ceil(n_ids);
    let mut p = Policy::default();
    let mut v4_next = 0u32;
    let mut v6_next = 0u128;
    let mut total = 0usize;
    for i in 0..n_ids {
        let app = i % apps;
        let mut labels = BTreeMap::new();
        labels.insert("zone".to_string(), format!("z{}", app % zones));
        labels.insert("app".to_string(), format!("a{app}"));
        labels.insert("tier".to_string(), format!("t{}", (i / apps) % tiers));
        let mut addresses = Vec::with_capacity(per_id);
        for _ in 0..per_id {
            if total >= n_prefixes {
                break;
            }
            let c = if v4_next < (1 << 17) {
                let a = 0xC612_0000u32 + v4_next;
                v4_next += 1;
                Cidr { addr: IpAddr::V4(Ipv4Addr::from(a)), len: 32 }
            } else {
                let a = (0x2001_0db8u128 << 96) | (v6_next << 64);
                v6_next += 1;
                Cidr { addr: IpAddr::V6(Ipv6Addr::from(a)), len: 64 }
            };
            addresses.push((c, loc.clone()));
            total += 1;
        }
        p.identities.push(Identity { name: format!("id{i}"), loc: loc.clone(), labels, addresses });
    }
    for r in 0..n_rules {
        let sel = |app: usize, tier: usize| {
            let mut l = BTreeMap::new();
            l.insert("app".to_string(), format!("a{app}"));
            l.insert("tier".to_string(), format!("t{tier}"));
            SelectorAt { sel: Selector::Labels { labels: l, exprs: Vec::new() }, loc: Loc::file("gen") }
        };
        let from = vec![sel(rnd(apps), rnd(tiers))];
        let to = if r % 100 == 0 {
            let a = 0xC612_0000u32 + ((rnd(512) as u32) << 8);
            vec![SelectorAt {
                sel: Selector::Cidr {
                    cidr: Cidr { addr: IpAddr::V4(Ipv4Addr::from(a)), len: 24 },
                    except: Vec::new(),
                },
                loc: loc.clone(),
            }]
        } else {
            vec![sel(rnd(apps), rnd(tiers))]
        };
        let port = 1000 + rnd(20_000) as u16;
        let ports = if r % 3 == 0 {
            vec![
                PortMatch { proto: Some(6), sport: ANY_PORT, dport: (port, port + 10) },
                PortMatch { proto: Some(17), sport: ANY_PORT, dport: (53, 53) },
            ]
        } else {
            vec![PortMatch { proto: Some(6), sport: ANY_PORT, dport: (port, port) }]
        };
        let action = if r % 10 == 0 { Action::Deny } else { Action::Allow };
        p.rules.push(Rule {
            name: format!("gen/r{r}"),
            loc: loc.clone(),
            from,
            to,
            ports,
            action,
            mode: None,
        });
    }
    println!("policy: {} identities, {} prefixes, {} rules", p.identities.len(), total, p.rules.len());
    let before = rss_kib();
    let cpu0 = cpu_ms();
    let t = Instant::now();
    let c = compile(&p, 1).expect("compiles");
    let wall = t.elapsed();
    let cpu = cpu_ms() - cpu0;
    let after = rss_kib();
    let s = &c.stats;
    println!("identity ids (atoms):  {}", s.atoms);
    println!("lpm prefixes:          {}", s.prefixes);
    println!("classifier entries:    {:?}", s.entries);
    println!("identity classifier:   {:?}", c.tables.tiers[0].classifier);
    println!("labels, selectors, order: {:.1} ms", s.index_time.as_secs_f64() * 1e3);
    println!("atoms + lpm inserts:   {:.1} ms", s.atoms_time.as_secs_f64() * 1e3);
    println!(
        "other (names, segs):   {:.1} ms",
        (s.total_time - s.index_time - s.atoms_time - s.resolve_time - s.classifier_time - s.lpm_time)
            .as_secs_f64()
            * 1e3
    );
    println!("resolve selectors:     {:.1} ms", s.resolve_time.as_secs_f64() * 1e3);
    println!("build classifier:      {:.1} ms", s.classifier_time.as_secs_f64() * 1e3);
    println!("build lpm:             {:.1} ms", s.lpm_time.as_secs_f64() * 1e3);
    println!("compile total:         {:.1} ms wall, {cpu:.1} ms cpu", wall.as_secs_f64() * 1e3);
    println!("table memory:          {:.1} MiB", s.estimated_bytes as f64 / 1048576.0);
    println!("rss growth:            {:.1} MiB", after.saturating_sub(before) as f64 / 1024.0);
    // Sanity: one lookup through the compiled set.
    let q = FlowQuery {
        src: "198.18.0.1".parse().unwrap(),
        dst: "198.18.0.2".parse().unwrap(),
        proto: 6,
        sport: 40000,
        dport: 1234,
    };
    let j = c.tables.judge(&q);
    println!(
        "sample judge:          {:?} ({} -> {})",
        j.decision,
        c.tables.identity_name(j.src_identity),
        c.tables.identity_name(j.dst_identity)
    );
    drop(c);
    if compile_only {
        return;
    }

    // Incremental updates on the same policy: add one rule, then remove it, 1000 times.
    let t = Instant::now();
    let mut inc = IncrementalPolicy::new(p, 2).expect("compiles");
    println!(
        "incremental setup:     {:.1} ms (full compile + second table copy)",
        t.elapsed().as_secs_f64() * 1e3
    );
    let handle = bulkhead_tables::TableHandle::new(bulkhead_tables::TableSet::empty(0));
    // Warm: updates back to back, the updater's data hot in cache (a burst of changes).
    // Cold: 64 MiB touched before each update, as when a change arrives after the machine did
    // other work (the usual case for a single reload or API call).
    let mut evict_buf = vec![0u8; 64 << 20];
    // BULKHEAD_UPDATES=N: fewer updates per phase (for runs under callgrind).
    let updates: usize = std::env::var("BULKHEAD_UPDATES").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let mut copied = 0;
    for (label, cold) in [("warm", false), ("cold", true)] {
        let mut t = Timings::default();
        for i in 0..updates {
            let mut l = BTreeMap::new();
            l.insert("app".to_string(), format!("a{}", rnd(apps)));
            let mut l2 = BTreeMap::new();
            l2.insert("app".to_string(), format!("a{}", rnd(apps)));
            l2.insert("tier".to_string(), format!("t{}", rnd(tiers)));
            let port = 1000 + rnd(20_000) as u16;
            let name = format!("delta/{label}{i}");
            let rule = Rule {
                name: name.clone(),
                loc: loc.clone(),
                from: vec![SelectorAt {
                    sel: Selector::Labels { labels: l, exprs: Vec::new() },
                    loc: loc.clone(),
                }],
                to: vec![SelectorAt {
                    sel: Selector::Labels { labels: l2, exprs: Vec::new() },
                    loc: loc.clone(),
                }],
                ports: vec![PortMatch { proto: Some(6), sport: ANY_PORT, dport: (port, port) }],
                action: if i % 2 == 0 { Action::Allow } else { Action::Deny },
                mode: None,
            };
            if cold {
                evict(&mut evict_buf);
            }
            let a = t.add.time(|| inc.add_rule(rule, Position::End).expect("adds"));
            handle.publish_arc(inc.current()).expect("newer");
            if cold {
                evict(&mut evict_buf);
            }
            let b = t.remove.time(|| inc.remove_rule(&name).expect("removes"));
            handle.publish_arc(inc.current()).expect("newer");
            for x in [a, b] {
                match x {
                    Applied::Delta { copied: true, .. } => copied += 1,
                    Applied::Delta { .. } => {}
                    other => panic!("not a delta: {other:?}"),
                }
            }
        }
        t.add.print(&format!("add one rule ({label})"));
        t.remove.print(&format!("remove one rule ({label})"));
    }
    println!("copied instead of in place: {copied} of {}", 4 * updates);
}
