//! Regression capture: a conversation (handshake, data, blind RST, close and TIME_WAIT reuse,
//! illegal flags, out-of-order fragments, ICMP errors, denied opens, UDP, ARP, malformed frames)
//! replayed through one worker with the capture's timestamps as the injected time; the verdict
//! of every packet must match `tests/data/conversation.expect` (one line per packet, frames
//! released from the hold buffer are listed as `released <verdict>` after their batch).
//!
//! To regenerate both files after an intended behaviour change:
//! `BULKHEAD_BLESS=1 cargo test -p bulkhead-engine --test pcap_regression` and review the diff.

mod common;

use bulkhead_engine::{EngineConfig, Worker};
use bulkhead_wire::builder::{icmp, tcp, Frame};
use bulkhead_wire::pcap::{PcapReader, PcapWriter, LINKTYPE_ETHERNET};
use common::*;
use std::net::Ipv4Addr;
use std::path::PathBuf;

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// The scenario, as (seconds offset, frame).
fn scenario() -> Vec<(u64, Vec<u8>)> {
    let (c, s, o) = (client(), server(), other());
    let t = |sp, dp, fl, seq, ack| Frame::tcp(c, s, sp, dp, fl).seq(seq).ack(ack).build();
    let r = |sp, dp, fl, seq, ack| Frame::tcp(s, c, dp, sp, fl).seq(seq).ack(ack).build();
    let mut v = vec![
        (0, t(40000, 80, tcp::SYN, 100, 0)),
        (0, r(40000, 80, tcp::SYN_ACK, 5000, 101)),
        (0, t(40000, 80, tcp::ACK, 101, 5001)),
        (1, Frame::tcp(c, s, 40000, 80, tcp::PSH_ACK).seq(101).ack(5001).payload(b"GET /").build()),
        (1, r(40000, 80, tcp::RST, 0x4000_0000, 0)),
        (1, r(40000, 80, tcp::ACK, 5001, 106)),
        (2, t(40000, 80, tcp::FIN_ACK, 106, 5001)),
        (2, r(40000, 80, tcp::FIN_ACK, 5001, 107)),
        (2, t(40000, 80, tcp::ACK, 107, 5002)),
        (3, t(40000, 80, tcp::SYN, 9000, 0)),
        (3, t(40001, 80, tcp::SYN | tcp::FIN, 1, 0)),
        (3, r(40002, 80, tcp::SYN, 1, 0)),
        (3, t(40003, 22, tcp::SYN, 1, 0)),
        (4, Frame::udp(c, s, 5353, 53).payload(&[1; 20]).build()),
        (4, Frame::udp(s, c, 53, 5353).payload(&[2; 40]).build()),
        (4, Frame::icmp_error(s, c, icmp::V4_DEST_UNREACH, 3, &Frame::udp(c, s, 5353, 53)).build()),
        (4, Frame::icmp_error(o, s, icmp::V4_TIME_EXCEEDED, 0, &Frame::udp(c, s, 5353, 53)).build()),
        (5, Frame::arp_request(Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 19, 0, 1)).build()),
        (5, vec![0xff; 12]),
        (5, Frame::ethertype(0x88cc).payload(&[0; 46]).build()),
    ];
    let mut frags = Frame::udp(c, s, 6000, 53).ip_id(42).payload(&[3; 500]).fragments(200);
    let first = frags.remove(0);
    for f in frags.into_iter().rev() {
        v.push((6, f));
    }
    v.push((6, first));
    v.push((100, Frame::udp(s, c, 53, 5353).build())); // UDP flow expired by now
    v
}

fn replay(pcap: &[u8]) -> Vec<String> {
    let t = web_policy(1);
    let mut w = Worker::new(0, &EngineConfig { flow_capacity: 256, ..EngineConfig::default() });
    let mut out = Vec::new();
    let reader = PcapReader::new(pcap).expect("capture header");
    assert_eq!(reader.linktype(), LINKTYPE_ETHERNET);
    for rec in reader {
        let rec = rec.expect("capture record");
        let mut v = [bulkhead_engine::Verdict::Pass];
        w.process_batch(rec.ts_ns, &t, &[rec.data], &mut v);
        out.push(v[0].as_str().to_string());
        w.drain_released(|_, v| out.push(format!("released {}", v.as_str())));
    }
    out
}

#[test]
fn conversation_capture_verdicts_match_expectations() {
    let dir = data_dir();
    if std::env::var_os("BULKHEAD_BLESS").is_some() {
        let mut wr = PcapWriter::new(Vec::new(), LINKTYPE_ETHERNET).expect("writer");
        for (sec, f) in scenario() {
            wr.write(1_700_000_000 * SEC + sec * SEC, &f).expect("write");
        }
        let pcap = wr.finish().expect("finish");
        std::fs::write(dir.join("conversation.pcap"), &pcap).expect("write pcap");
        std::fs::write(dir.join("conversation.expect"), replay(&pcap).join("\n") + "\n")
            .expect("write expect");
    }
    let pcap = std::fs::read(dir.join("conversation.pcap")).expect("tests/data/conversation.pcap");
    let expect = std::fs::read_to_string(dir.join("conversation.expect")).expect("expectations");
    let got = replay(&pcap);
    let want: Vec<&str> = expect.lines().collect();
    assert_eq!(got, want);
}
