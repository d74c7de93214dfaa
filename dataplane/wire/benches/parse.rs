//! Parse cost per frame shape. Run: `cargo bench -p bulkhead-wire --bench parse`.

use std::hint::black_box;

use bulkhead_wire::builder::{tcp, v4, v6, Ext, Frame};
use bulkhead_wire::parse;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn shapes() -> Vec<(&'static str, Vec<u8>)> {
    let (a, b) = (v4(198, 18, 0, 1), v4(198, 18, 0, 2));
    let inner = Frame::tcp(b, v4(198, 19, 0, 9), 5555, 80, tcp::SYN);
    vec![
        ("ipv4_tcp_64B", Frame::tcp(a, b, 40000, 443, tcp::ACK).pad_to(60).build()),
        ("ipv4_udp_64B", Frame::udp(a, b, 40000, 53).payload_len(18).build()),
        ("ipv4_tcp_qinq", Frame::tcp(a, b, 40000, 443, tcp::ACK).vlan(1).vlan(2).build()),
        ("ipv6_tcp", Frame::tcp(v6(1), v6(2), 40000, 443, tcp::ACK).build()),
        (
            "ipv6_tcp_3ext",
            Frame::tcp(v6(1), v6(2), 40000, 443, tcp::ACK)
                .ext(Ext::HopByHop { len8: 0 })
                .ext(Ext::Routing { len8: 0 })
                .ext(Ext::DestOpts { len8: 0 })
                .build(),
        ),
        ("icmpv4_error", Frame::icmp_error(v4(198, 18, 0, 254), b, 3, 1, &inner).build()),
    ]
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(1));
    for (name, frame) in shapes() {
        g.bench_function(name, |bch| bch.iter(|| parse(black_box(&frame))));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
