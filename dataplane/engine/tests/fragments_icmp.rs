//! Virtual reassembly (in order, out of order, overlap, tiny first fragment, denied datagram,
//! expiry) and ICMP errors (match a live flow and go back to the quoted sender, or drop).

mod common;

use bulkhead_engine::{DropReason, EngineConfig, Verdict};
use bulkhead_wire::builder::{icmp, tcp, Frame};
use bulkhead_wire::Malformed;
use common::*;

fn dgram(id: u32) -> Frame {
    Frame::udp(client(), server(), 5353, 53).ip_id(id).payload(&[0xab; 600])
}

#[test]
fn in_order_fragments_follow_the_first() {
    let t = web_policy(1);
    let mut h = Harness::new();
    let frags = dgram(1).fragments(200);
    assert_eq!(frags.len(), 4);
    assert_eq!(h.batch(&t, &frags), vec![Verdict::Pass; 4]);
    // A denied datagram: every fragment drops with the first fragment's reason.
    let denied = Frame::udp(client(), server(), 5353, 54).ip_id(2).payload(&[1; 600]).fragments(200);
    assert_eq!(h.batch(&t, &denied), vec![drop_(DropReason::DefaultDeny); 4]);
    // IPv6 fragments too.
    let v6 = Frame::udp(client6(), server6(), 5353, 53).ip_id(3).payload(&[2; 600]).fragments(200);
    assert_eq!(h.batch(&t, &v6), vec![Verdict::Pass; v6.len()]);
}

#[test]
fn out_of_order_fragments_are_held_then_released_with_the_first_verdict() {
    let t = web_policy(1);
    let mut h = Harness::new();
    let mut frags = dgram(7).fragments(200);
    let first = frags.remove(0);
    // Later fragments first (reversed): held.
    frags.reverse();
    assert_eq!(h.batch(&t, &frags), vec![Verdict::Held; 3]);
    assert_eq!(h.snap().frag_held, 3);
    assert_eq!(h.w.released_len(), 0);
    assert_eq!(h.send(&t, &first), Verdict::Pass);
    assert_eq!(h.w.released_len(), 3);
    let mut out: Vec<(Vec<u8>, Verdict)> = Vec::new();
    h.w.drain_released(|b, v| out.push((b.to_vec(), v)));
    assert_eq!(out.len(), 3);
    for ((bytes, v), orig) in out.iter().zip(frags.iter()) {
        assert_eq!(*v, Verdict::Pass);
        assert_eq!(bytes, orig, "the released frame is the held frame, byte for byte");
    }
    h.send(&t, &Frame::udp(client(), server(), 1, 53).build());
    let s = h.snap();
    assert_eq!((s.frag_held, s.frag_released), (0, 3));
    assert_eq!(s.pass, 5);
    assert_eq!(s.packets, 5);
}

#[test]
fn held_fragments_of_a_denied_datagram_are_dropped_and_expired_ones_counted() {
    let t = web_policy(1);
    let mut h = Harness::new();
    let mut frags = Frame::udp(client(), server(), 5353, 99).ip_id(9).payload(&[1; 400]).fragments(200);
    let first = frags.remove(0);
    assert_eq!(h.batch(&t, &frags), vec![Verdict::Held; frags.len()]);
    assert_eq!(h.send(&t, &first), drop_(DropReason::DefaultDeny));
    assert_eq!(h.w.released_len(), 0);
    assert_eq!(h.snap().drop_count(DropReason::DefaultDeny), 1 + frags.len() as u64);
    // Fragments whose first never comes expire as fragment_no_first.
    let mut lost = dgram(10).fragments(200);
    lost.remove(0);
    assert_eq!(h.batch(&t, &lost), vec![Verdict::Held; 3]);
    h.advance(6 * SEC);
    for _ in 0..1024 {
        h.w.maintain(h.now, &t, 1);
    }
    let s = h.snap();
    assert_eq!(s.drop_count(DropReason::FragmentNoFirst), 3);
    assert_eq!(s.frag_held, 0);
}

#[test]
fn hold_buffer_is_bounded() {
    let t = web_policy(1);
    let mut h = Harness::with(EngineConfig { frag_hold_slots: 2, ..EngineConfig::default() });
    let mut frags = dgram(11).fragments(100);
    frags.remove(0);
    let v = h.batch(&t, &frags);
    assert_eq!(v[..2], [Verdict::Held; 2]);
    assert!(v[2..].iter().all(|v| *v == drop_(DropReason::FragmentNoFirst)), "{v:?}");
}

#[test]
fn overlapping_fragments_drop_the_datagram() {
    let t = web_policy(1);
    let mut h = Harness::new();
    let frags = dgram(12).fragments(200);
    assert_eq!(h.send(&t, &frags[0]), Verdict::Pass);
    assert_eq!(h.send(&t, &frags[1]), Verdict::Pass);
    // A fragment overlapping [200, 400) (offset 296).
    let overlap = Frame::udp(client(), server(), 0, 0).ip_id(12).frag(296, true).raw_l4(&[0; 64]).build();
    assert_eq!(h.send(&t, &overlap), drop_(DropReason::FragmentOverlap));
    // The rest of the datagram drops too.
    assert_eq!(h.send(&t, &frags[2]), drop_(DropReason::FragmentOverlap));
    assert_eq!(h.send(&t, &frags[3]), drop_(DropReason::FragmentOverlap));
    // An exact duplicate is an overlap too.
    let frags = dgram(13).fragments(200);
    assert_eq!(h.batch(&t, &frags[..2]), vec![Verdict::Pass; 2]);
    assert_eq!(h.send(&t, &frags[1]), drop_(DropReason::FragmentOverlap));
}

#[test]
fn tiny_first_fragment_is_malformed() {
    let t = web_policy(1);
    let mut h = Harness::new();
    // A first fragment of 8 bytes cannot hold a TCP header.
    let f = Frame::tcp(client(), server(), 40000, 80, tcp::SYN).ip_id(14).fragments(8);
    assert_eq!(h.send(&t, &f[0]), drop_(DropReason::Malformed(Malformed::TinyFirstFragment)));
}

#[test]
fn icmp_errors_pass_only_for_a_live_flow_back_to_its_sender() {
    let t = web_policy(1);
    let mut h = Harness::new();
    let (c, s) = (client(), server());
    let syn = Frame::tcp(c, s, 40000, 80, tcp::SYN).seq(100);
    assert_eq!(h.send(&t, &syn.build()), Verdict::Pass);
    let router = other();
    // Time exceeded from a router back to the client, quoting the client's SYN: passes.
    let te = Frame::icmp_error(router, c, icmp::V4_TIME_EXCEEDED, 0, &syn).build();
    assert_eq!(h.send(&t, &te), Verdict::Pass);
    // The same error sent to the server (not the quoted sender): dropped.
    let wrong = Frame::icmp_error(router, s, icmp::V4_TIME_EXCEEDED, 0, &syn).build();
    assert_eq!(h.send(&t, &wrong), drop_(DropReason::IcmpErrorNoFlow));
    // Quoting a connection that does not exist: dropped.
    let ghost = Frame::tcp(c, s, 40001, 80, tcp::SYN);
    let e = Frame::icmp_error(s, c, icmp::V4_DEST_UNREACH, 3, &ghost).build();
    assert_eq!(h.send(&t, &e), drop_(DropReason::IcmpErrorNoFlow));
    // Port unreachable from the server for a UDP flow: passes. Once the flow expired: dropped.
    let q = Frame::udp(c, s, 5353, 53);
    assert_eq!(h.send(&t, &q.build()), Verdict::Pass);
    let pu = Frame::icmp_error(s, c, icmp::V4_DEST_UNREACH, 3, &q).build();
    assert_eq!(h.send(&t, &pu), Verdict::Pass);
    h.advance(61 * SEC);
    assert_eq!(h.send(&t, &pu), drop_(DropReason::IcmpErrorNoFlow));
    // IPv6: packet too big back to the sender.
    let q6 = Frame::udp(client6(), server6(), 5353, 53).payload(&[0; 100]);
    assert_eq!(h.send(&t, &q6.build()), Verdict::Pass);
    let ptb = Frame::icmp_error(server6(), client6(), icmp::V6_PACKET_TOO_BIG, 0, &q6).build();
    assert_eq!(h.send(&t, &ptb), Verdict::Pass);
    let ptb_wrong = Frame::icmp_error(client6(), server6(), icmp::V6_PACKET_TOO_BIG, 0, &q6).build();
    assert_eq!(h.send(&t, &ptb_wrong), drop_(DropReason::IcmpErrorNoFlow));
}
