//! A timing loop for the parse cost (no assertion on time: machines differ and are shared).
//! Run: `cargo test --release -p bulkhead-wire --test parse_cost -- --ignored --nocapture`,
//! It prints wall time and this thread's on-CPU time (from /proc/thread-self/schedstat, Linux),
//! which stays meaningful on a loaded, shared machine where wall time lies. The criterion bench (`cargo bench -p bulkhead-wire --bench parse`) gives the same per
//! shape.

use std::hint::black_box;
use std::time::Instant;

use bulkhead_wire::builder::{tcp, v4, v6, Ext, Frame};
use bulkhead_wire::{parse, Parsed};

/// Nanoseconds this thread has spent on a CPU (0 where schedstat is unavailable).
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

#[test]
#[ignore = "timing loop; run by hand with --release"]
fn parse_cost() {
    let shapes = [
        (
            "ipv4_tcp_64B",
            Frame::tcp(v4(198, 18, 0, 1), v4(198, 18, 0, 2), 40000, 443, tcp::ACK).pad_to(60).build(),
        ),
        ("ipv6_tcp", Frame::tcp(v6(1), v6(2), 40000, 443, tcp::ACK).build()),
        (
            "ipv4_tcp_qinq",
            Frame::tcp(v4(198, 18, 0, 1), v4(198, 18, 0, 2), 40000, 443, tcp::ACK).vlan(1).vlan(2).build(),
        ),
        (
            "ipv6_tcp_3ext",
            Frame::tcp(v6(1), v6(2), 40000, 443, tcp::ACK)
                .ext(Ext::HopByHop { len8: 0 })
                .ext(Ext::Routing { len8: 0 })
                .ext(Ext::DestOpts { len8: 0 })
                .build(),
        ),
    ];
    for (name, frame) in &shapes {
        let n = 20_000_000u32;
        let start = Instant::now();
        let cpu0 = thread_cpu_ns();
        let mut ports = 0u64;
        for _ in 0..n {
            if let Ok(Parsed::Ip(p)) = parse(black_box(frame)) {
                ports += u64::from(p.sport);
            }
        }
        let cpu = (thread_cpu_ns() - cpu0) as f64 / f64::from(n);
        let ns = start.elapsed().as_nanos() as f64 / f64::from(n);
        assert_eq!(ports, u64::from(n) * 40000);
        println!("{name}: {cpu:.1} ns/frame on CPU, {ns:.1} ns/frame wall");
    }
}
