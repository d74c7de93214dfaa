//! Regression inputs kept as pcap files under tests/data/: each `NAME.pcap` has a `NAME.expect`
//! beside it with one line per packet, the expected parse result in the notation of
//! [`describe`]. The check reads only the files, so a parser change that alters a result fails
//! here. Add captures from the field the same way (write the .expect by hand).
//!
//! The fixtures were written by `regenerate_fixtures` (ignored; run with
//! `cargo test -p bulkhead-wire --test pcap_regression -- --ignored`), from the builder frames
//! and the hand-written expectations below; regenerate only on purpose.

use std::fmt::Write as _;
use std::fs;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use bulkhead_wire::builder::{icmp, tcp, v4, v6, Ext, Frame};
use bulkhead_wire::pcap::{PcapReader, PcapWriter, LINKTYPE_ETHERNET};
use bulkhead_wire::{parse, Malformed, Parsed};

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// One line per parse result.
fn describe(r: Result<Parsed, Malformed>) -> String {
    match r {
        Err(m) => format!("drop {}", m.as_str()),
        Ok(Parsed::Arp) => "arp".into(),
        Ok(Parsed::OtherEthertype(e)) => format!("ether {e:#06x}"),
        Ok(Parsed::Ip(p)) => {
            let mut s = format!(
                "ip {} > {} proto={} ports={}>{} len={} vlan={}",
                p.src, p.dst, p.proto, p.sport, p.dport, p.l4_payload_len, p.vlan_tags
            );
            if p.proto == 6 && p.frag.is_none_or(|f| f.offset == 0) {
                let _ = write!(s, " tcp={:#04x}/{}/{}/{}", p.tcp_flags, p.tcp_seq, p.tcp_ack, p.tcp_window);
            }
            if p.icmp_type != 0 || p.icmp_code != 0 {
                let _ = write!(s, " icmp={}/{}", p.icmp_type, p.icmp_code);
            }
            if let Some(f) = p.frag {
                let _ = write!(
                    s,
                    " frag=id{}/off{}/more{}/len{}",
                    f.id,
                    f.offset,
                    u8::from(f.more),
                    f.payload_len
                );
            }
            if let Some(q) = p.quoted {
                let _ = write!(
                    s,
                    " quoted={} > {} proto={} ports={}>{}",
                    q.src, q.dst, q.proto, q.sport, q.dport
                );
            }
            if p.is_ndp {
                s.push_str(" ndp");
            }
            s
        }
    }
}

fn check_file(name: &str) -> usize {
    let dir = data_dir();
    let bytes = fs::read(dir.join(format!("{name}.pcap"))).expect("read pcap");
    let expect = fs::read_to_string(dir.join(format!("{name}.expect"))).expect("read expect");
    let reader = PcapReader::new(&bytes).expect("pcap header");
    assert_eq!(reader.linktype(), LINKTYPE_ETHERNET);
    let got: Vec<String> = reader.map(|r| describe(parse(r.expect("record").data))).collect();
    let want: Vec<&str> = expect.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    assert_eq!(got.len(), want.len(), "{name}: packet count");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "{name}: packet {} (1-based)", i + 1);
    }
    got.len()
}

#[test]
fn valid_pcap() {
    assert!(check_file("valid") >= 10);
}

#[test]
fn malformed_pcap() {
    // Every drop reason appears in the malformed capture.
    check_file("malformed");
    let expect = fs::read_to_string(data_dir().join("malformed.expect")).unwrap();
    for m in Malformed::ALL {
        assert!(expect.contains(&format!("drop {}\n", m.as_str())), "no sample for {m:?}");
    }
}

#[test]
fn fragments_pcap() {
    assert_eq!(check_file("fragments"), 7);
}

// ---- fixture generation -----------------------------------------------------------------------

fn a4() -> std::net::IpAddr {
    v4(198, 18, 0, 1)
}
fn b4() -> std::net::IpAddr {
    v4(198, 18, 0, 2)
}

fn valid_frames() -> Vec<Vec<u8>> {
    let inner = Frame::tcp(b4(), v4(198, 19, 0, 9), 5555, 80, tcp::SYN);
    let inner6 = Frame::udp(v6(2), v6(9), 4000, 53).ext(Ext::DestOpts { len8: 0 });
    vec![
        Frame::tcp(a4(), b4(), 40000, 443, tcp::SYN).seq(100).pad_to(60).build(),
        Frame::tcp(b4(), a4(), 443, 40000, tcp::SYN_ACK).seq(900).ack(101).vlan(10).build(),
        Frame::tcp(a4(), b4(), 40000, 443, tcp::PSH_ACK)
            .seq(101)
            .ack(901)
            .payload(b"GET /")
            .vlan(1)
            .vlan(2)
            .build(),
        Frame::tcp(v6(1), v6(2), 40000, 22, tcp::SYN)
            .ext(Ext::HopByHop { len8: 0 })
            .ext(Ext::Routing { len8: 0 })
            .build(),
        Frame::udp(a4(), b4(), 5353, 53).payload_len(20).ipv4_options(&[0x94, 4, 0, 0]).build(),
        Frame::udp(v6(1), v6(2), 5353, 53).payload_len(12).ext(Ext::Ah { icv_len: 12 }).build(),
        Frame::sctp(a4(), b4(), 2905, 2905).payload_len(16).build(),
        Frame::echo_request(a4(), b4(), 0x1234, 1).payload_len(56).build(),
        Frame::echo_reply(v6(2), v6(1), 0x99, 7).build(),
        Frame::icmp_error(v4(198, 18, 0, 254), b4(), icmp::V4_DEST_UNREACH, 4, &inner)
            .icmp_rest([0, 0, 5, 0xdc])
            .build(),
        Frame::icmp_error(v6(0xfe), v6(2), icmp::V6_PACKET_TOO_BIG, 0, &inner6).build(),
        Frame::icmp(v6(1), v6(2), icmp::V6_NEIGHBOR_SOLICIT, 0).payload_len(24).build(),
        Frame::icmp(v6(1), v6(2), icmp::V6_NEIGHBOR_SOLICIT, 0).payload_len(24).ttl(64).build(),
        Frame::raw_ip(v6(1), v6(2), 50).payload_len(32).build(),
        Frame::arp_request(Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 2)).pad_to(60).build(),
        Frame::ethertype(0x88cc).payload(&[0; 46]).build(),
    ]
}

fn malformed_frames() -> Vec<Vec<u8>> {
    let syn4 = || Frame::tcp(a4(), b4(), 40000, 443, tcp::SYN);
    let syn6 = || Frame::tcp(v6(1), v6(2), 40000, 443, tcp::SYN);
    let patch = |f: Frame, at: usize, val: u8| {
        let mut b = f.build();
        b[f.l3_offset() + at] = val;
        b
    };
    let tcp_head = syn4().build()[34..42].to_vec();
    vec![
        vec![0; 13],
        syn4().vlan(1).build()[..16].to_vec(),
        syn4().vlan(1).vlan(2).vlan(3).build(),
        syn4().build()[..30].to_vec(),
        patch(syn4(), 0, 0x65),
        patch(syn4(), 0, 0x44),
        patch(syn4(), 3, 99),
        syn6().build()[..50].to_vec(),
        patch(syn6(), 5, 99),
        syn6().ext(Ext::DestOpts { len8: 0 }).ext(Ext::HopByHop { len8: 0 }).build(),
        (0..9).fold(syn6(), |f, _| f.ext(Ext::DestOpts { len8: 0 })).build(),
        syn4().raw_l4(&tcp_head).frag(0, true).build(),
        syn4().raw_l4(&[0; 3]).build(),
        patch(syn4(), 32, 0x10),
        Frame::raw_ip(a4(), b4(), 17).payload(&[0; 7]).build(),
        patch(Frame::udp(a4(), b4(), 1, 2), 25, 7),
        Frame::raw_ip(a4(), b4(), 132).payload(&[0; 7]).build(),
        Frame::raw_ip(a4(), b4(), 1).payload(&[0; 7]).build(),
        Frame::arp_request(Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST).payload(&[0; 27]).build(),
        Frame::raw_ip(a4(), b4(), 1).payload(&[0; 16]).frag(65528, false).build(),
        Frame::raw_ip(a4(), b4(), 47).payload(&[0; 12]).frag(0, true).build(),
        Frame::icmp_error_quoting(a4(), b4(), 3, 1, &[0x45; 19]).build(),
        syn4().ipv4_options(&[0x94, 8, 0, 0]).build(),
    ]
}

fn fragment_frames() -> Vec<Vec<u8>> {
    let mut v = Frame::udp(a4(), b4(), 1000, 53).payload_len(100).ip_id(0xbeef).fragments(48);
    v.extend(Frame::tcp(v6(1), v6(2), 40000, 443, tcp::SYN).payload_len(60).ip_id(77).fragments(40));
    v.push(Frame::udp(v6(1), v6(2), 9, 9).frag(0, false).build()); // atomic: an ordinary packet
    v.push(
        Frame::raw_ip(v6(1), v6(2), 17)
            .ext(Ext::Fragment { id: 5, offset: 0, more: true })
            .ext(Ext::Raw { code: 60, bytes: vec![17, 1, 0, 0, 0, 0, 0] })
            .build(),
    );
    v
}

fn write_fixture(name: &str, frames: &[Vec<u8>]) {
    let dir = data_dir();
    fs::create_dir_all(&dir).unwrap();
    let mut w = PcapWriter::new(Vec::new(), LINKTYPE_ETHERNET).unwrap();
    let mut expect = String::new();
    for (i, f) in frames.iter().enumerate() {
        w.write(1_700_000_000_000_000_000 + i as u64 * 1000, f).unwrap();
        expect.push_str(&describe(parse(f)));
        expect.push('\n');
    }
    fs::write(dir.join(format!("{name}.pcap")), w.finish().unwrap()).unwrap();
    fs::write(dir.join(format!("{name}.expect")), expect).unwrap();
}

/// Writes the fixtures and their .expect files from the current parser: review the diff of the
/// .expect files by hand before committing them.
#[test]
#[ignore = "writes tests/data; run on purpose and review the diff"]
fn regenerate_fixtures() {
    write_fixture("valid", &valid_frames());
    write_fixture("malformed", &malformed_frames());
    write_fixture("fragments", &fragment_frames());
}
