//! Connection-tracking scenarios: handshake, replies, loose pickup, strict mode, illegal flags,
//! timeouts, SYN-flood eviction, TIME_WAIT reuse, out-of-window RST, UDP / ICMP echo / SCTP.

mod common;

use bulkhead_engine::{DropReason, EngineConfig, FlowFilter, TcpStateName, Verdict};
use bulkhead_wire::builder::{tcp, Frame};
use common::*;
use std::net::{IpAddr, Ipv4Addr};

fn seg(src: IpAddr, dst: IpAddr, sp: u16, dp: u16, flags: u8, seq: u32, ack: u32) -> Vec<u8> {
    Frame::tcp(src, dst, sp, dp, flags).seq(seq).ack(ack).build()
}

/// Runs a full handshake client:40000 -> server:80; returns the verdicts.
fn handshake(h: &mut Harness, t: &bulkhead_tables::TableSet, sp: u16) -> [Verdict; 3] {
    let (c, s) = (client(), server());
    [
        h.send(t, &seg(c, s, sp, 80, tcp::SYN, 100, 0)),
        h.send(t, &seg(s, c, 80, sp, tcp::SYN_ACK, 5000, 101)),
        h.send(t, &seg(c, s, sp, 80, tcp::ACK, 101, 5001)),
    ]
}

fn state_of(h: &Harness, sp: u16) -> Option<TcpStateName> {
    h.w.flows(10, FlowFilter { port: Some(sp), ..FlowFilter::default() }).next().map(|f| f.tcp_state)
}

#[test]
fn handshake_replies_and_data_pass_and_reverse_open_is_denied() {
    let t = web_policy(1);
    let mut h = Harness::new();
    assert_eq!(handshake(&mut h, &t, 40000), [Verdict::Pass; 3]);
    assert_eq!(state_of(&h, 40000), Some(TcpStateName::Established));
    let (c, s) = (client(), server());
    assert_eq!(
        h.send(&t, &Frame::tcp(s, c, 80, 40000, tcp::PSH_ACK).seq(5001).ack(101).payload(b"hi").build()),
        Verdict::Pass
    );
    // The server may not open a connection to the client: replies only.
    assert_eq!(h.send(&t, &seg(s, c, 80, 40001, tcp::SYN, 1, 0)), drop_(DropReason::DefaultDeny));
    // Nor to an unlisted port.
    assert_eq!(h.send(&t, &seg(c, s, 40002, 22, tcp::SYN, 1, 0)), drop_(DropReason::DefaultDeny));
    let snap = h.snap();
    assert_eq!(snap.pass, 4);
    assert_eq!(snap.drop_count(DropReason::DefaultDeny), 2);
    assert_eq!(snap.flows_created, 1);
    assert_eq!(snap.flows_active, 1);
    assert_eq!(snap.packets, 6);
}

#[test]
fn repeated_syn_and_syn_ack_stay_half_open_with_short_timeout() {
    let t = web_policy(1);
    let mut h = Harness::new();
    let (c, s) = (client(), server());
    assert_eq!(h.send(&t, &seg(c, s, 40000, 80, tcp::SYN, 100, 0)), Verdict::Pass);
    assert_eq!(h.send(&t, &seg(c, s, 40000, 80, tcp::SYN, 100, 0)), Verdict::Pass);
    assert_eq!(state_of(&h, 40000), Some(TcpStateName::SynSent));
    assert_eq!(h.send(&t, &seg(s, c, 80, 40000, tcp::SYN_ACK, 5000, 101)), Verdict::Pass);
    assert_eq!(h.send(&t, &seg(s, c, 80, 40000, tcp::SYN_ACK, 5000, 101)), Verdict::Pass);
    assert_eq!(state_of(&h, 40000), Some(TcpStateName::SynReceived));
    // 31 s later (half-open timeout 30 s) the flow is gone: a mid-stream server packet is now
    // judged on its own (server -> client is not allowed).
    h.advance(31 * SEC);
    assert_eq!(h.send(&t, &seg(s, c, 80, 40000, tcp::ACK, 5001, 101)), drop_(DropReason::DefaultDeny));
    assert_eq!(h.snap().flows_expired, 1);
}

#[test]
fn established_flow_lives_for_hours_and_expires_after_the_idle_timeout() {
    let t = web_policy(1);
    let mut h = Harness::new();
    handshake(&mut h, &t, 40000);
    let (c, s) = (client(), server());
    h.advance(3 * 3600 * SEC);
    assert_eq!(h.send(&t, &seg(s, c, 80, 40000, tcp::ACK, 5001, 101)), Verdict::Pass);
    h.advance(4 * 3600 * SEC + SEC);
    assert_eq!(h.send(&t, &seg(s, c, 80, 40000, tcp::ACK, 5001, 101)), drop_(DropReason::DefaultDeny));
}

#[test]
fn sweep_expires_idle_flows_without_traffic_on_them() {
    let t = web_policy(1);
    let mut h =
        Harness::with(EngineConfig { flow_capacity: 64, sweep_per_batch: 8, ..EngineConfig::default() });
    for i in 0..20u16 {
        let f = Frame::udp(client(), server(), 1000 + i, 53).build();
        assert_eq!(h.send(&t, &f), Verdict::Pass);
    }
    assert_eq!(h.w.flow_count(), 20);
    h.advance(61 * SEC);
    for _ in 0..16 {
        h.w.maintain(h.now, &t, 8);
    }
    assert_eq!(h.w.flow_count(), 0);
    assert_eq!(h.snap().flows_expired, 20);
    assert_eq!(h.snap().flows_active, 0);
}

#[test]
fn loose_pickup_only_in_an_allowed_direction_and_never_in_strict_mode() {
    let t = web_policy(1);
    let mut h = Harness::new();
    let (c, s) = (client(), server());
    // Mid-stream client -> server: allowed direction, creates state; the reply then passes.
    assert_eq!(h.send(&t, &seg(c, s, 40000, 80, tcp::ACK, 1000, 2000)), Verdict::Pass);
    assert_eq!(h.send(&t, &seg(s, c, 80, 40000, tcp::ACK, 2000, 1000)), Verdict::Pass);
    assert_eq!(state_of(&h, 40000), Some(TcpStateName::Established));
    // Mid-stream server -> client with no state: that direction is not allowed.
    assert_eq!(h.send(&t, &seg(s, c, 80, 40001, tcp::ACK, 1, 1)), drop_(DropReason::DefaultDeny));

    let mut strict = web_policy(2);
    strict.config.strict_tcp = true;
    let mut h = Harness::new();
    assert_eq!(h.send(&strict, &seg(c, s, 40000, 80, tcp::ACK, 1000, 2000)), drop_(DropReason::InvalidState));
    assert_eq!(h.w.flow_count(), 0);
    assert_eq!(handshake(&mut h, &strict, 40001), [Verdict::Pass; 3], "a real handshake still works");
}

#[test]
fn illegal_flag_combinations_drop_and_create_or_refresh_nothing() {
    let t = web_policy(1);
    let mut h = Harness::new();
    let (c, s) = (client(), server());
    for flags in [
        tcp::SYN | tcp::FIN,
        tcp::SYN | tcp::RST,
        0,
        tcp::FIN,
        tcp::FIN | tcp::PSH | tcp::URG,
        tcp::RST | tcp::FIN,
    ] {
        assert_eq!(
            h.send(&t, &seg(c, s, 40000, 80, flags, 1, 0)),
            drop_(DropReason::InvalidTcpFlags),
            "{flags:#x}"
        );
    }
    assert_eq!(h.w.flow_count(), 0);
    // On an existing half-open flow, illegal flags do not refresh it.
    assert_eq!(h.send(&t, &seg(c, s, 40000, 80, tcp::SYN, 100, 0)), Verdict::Pass);
    h.advance(20 * SEC);
    assert_eq!(
        h.send(&t, &seg(c, s, 40000, 80, tcp::SYN | tcp::FIN, 100, 0)),
        drop_(DropReason::InvalidTcpFlags)
    );
    h.advance(11 * SEC);
    // 31 s after the SYN, the flow expired despite the illegal packet at 20 s.
    assert_eq!(h.send(&t, &seg(s, c, 80, 40000, tcp::SYN_ACK, 5000, 101)), drop_(DropReason::DefaultDeny));
    assert_eq!(h.snap().drop_count(DropReason::InvalidTcpFlags), 7);
}

#[test]
fn fin_close_then_time_wait_reuse_starts_a_fresh_flow() {
    let t = web_policy(1);
    let mut h = Harness::new();
    let (c, s) = (client(), server());
    handshake(&mut h, &t, 40000);
    assert_eq!(h.send(&t, &seg(c, s, 40000, 80, tcp::FIN_ACK, 101, 5001)), Verdict::Pass);
    assert_eq!(state_of(&h, 40000), Some(TcpStateName::FinWait));
    assert_eq!(h.send(&t, &seg(s, c, 80, 40000, tcp::FIN_ACK, 5001, 102)), Verdict::Pass);
    assert_eq!(h.send(&t, &seg(c, s, 40000, 80, tcp::ACK, 102, 5002)), Verdict::Pass);
    assert_eq!(state_of(&h, 40000), Some(TcpStateName::TimeWait));
    // Same tuple, new SYN: a fresh flow.
    h.advance(SEC);
    assert_eq!(h.send(&t, &seg(c, s, 40000, 80, tcp::SYN, 90_000, 0)), Verdict::Pass);
    assert_eq!(state_of(&h, 40000), Some(TcpStateName::SynSent));
    assert_eq!(h.snap().flows_closed, 1);
    assert_eq!(h.snap().flows_created, 2);
    // Closing timeout is the short one.
    assert_eq!(h.send(&t, &seg(s, c, 80, 40000, tcp::SYN_ACK, 7000, 90_001)), Verdict::Pass);
    assert_eq!(h.send(&t, &seg(c, s, 40000, 80, tcp::ACK, 90_001, 7001)), Verdict::Pass);
    assert_eq!(state_of(&h, 40000), Some(TcpStateName::Established));
}

#[test]
fn out_of_window_rst_is_ignored_and_in_window_rst_closes() {
    let t = web_policy(1);
    let mut h = Harness::new();
    let (c, s) = (client(), server());
    handshake(&mut h, &t, 40000);
    // Blind RST from the server's side with a sequence number far outside any window.
    assert_eq!(
        h.send(&t, &seg(s, c, 80, 40000, tcp::RST, 5001 + 0x4000_0000, 0)),
        drop_(DropReason::InvalidState)
    );
    assert_eq!(state_of(&h, 40000), Some(TcpStateName::Established));
    assert_eq!(h.send(&t, &seg(s, c, 80, 40000, tcp::ACK, 5001, 101)), Verdict::Pass);
    // The real RST.
    assert_eq!(h.send(&t, &seg(s, c, 80, 40000, tcp::RST, 5001, 0)), Verdict::Pass);
    assert_eq!(state_of(&h, 40000), Some(TcpStateName::Closed));
    // A RST with no flow at all is invalid state.
    assert_eq!(h.send(&t, &seg(c, s, 40009, 80, tcp::RST, 1, 0)), drop_(DropReason::InvalidState));
}

#[test]
fn rst_answering_a_syn_must_acknowledge_it() {
    let t = web_policy(1);
    let mut h = Harness::new();
    let (c, s) = (client(), server());
    assert_eq!(h.send(&t, &seg(c, s, 40000, 80, tcp::SYN, 100, 0)), Verdict::Pass);
    assert_eq!(h.send(&t, &seg(s, c, 80, 40000, tcp::RST_ACK, 0, 999)), drop_(DropReason::InvalidState));
    assert_eq!(state_of(&h, 40000), Some(TcpStateName::SynSent));
    assert_eq!(h.send(&t, &seg(s, c, 80, 40000, tcp::RST_ACK, 0, 101)), Verdict::Pass);
    assert_eq!(state_of(&h, 40000), Some(TcpStateName::Closed));
}

#[test]
fn syn_flood_evicts_half_open_flows_and_a_legit_handshake_still_passes() {
    let t = web_policy(1);
    let cap = 1024;
    let mut h = Harness::with(EngineConfig { flow_capacity: cap, ..EngineConfig::default() });
    // Some established connections first.
    for sp in 30000..30050u16 {
        assert_eq!(handshake(&mut h, &t, sp), [Verdict::Pass; 3]);
    }
    let mem = h.w.flow_table_bytes();
    let (c, s) = (client(), server());
    // A flood of SYNs from the (allowed) client, 20x the capacity, in batches of 64.
    let mut sp = 1u16;
    for round in 0..320 {
        let frames: Vec<Vec<u8>> = (0..64)
            .map(|_| {
                sp = sp.wrapping_add(1).max(1);
                seg(c, s, sp, 80, tcp::SYN, 7, 0)
            })
            .collect();
        let v = h.batch(&t, &frames);
        assert!(v.iter().all(|v| *v == Verdict::Pass), "round {round}: {v:?}");
        h.advance(1_000_000);
        if round == 160 {
            // A legitimate handshake in the middle of the flood.
            assert_eq!(handshake(&mut h, &t, 45000), [Verdict::Pass; 3]);
        }
    }
    assert_eq!(h.w.flow_count(), cap as usize);
    assert_eq!(h.w.flow_table_bytes(), mem, "memory never grows");
    assert_eq!(state_of(&h, 45000), Some(TcpStateName::Established));
    // The established connections survived the flood.
    for sp in 30000..30050u16 {
        assert_eq!(h.send(&t, &seg(s, c, 80, sp, tcp::ACK, 5001, 101)), Verdict::Pass, "port {sp}");
    }
    let snap = h.snap();
    assert!(snap.flows_evicted > 19_000, "{snap:?}");
    assert_eq!(snap.drop_count(DropReason::TableFull), 0);
}

#[test]
fn full_table_of_active_flows_refuses_new_flows() {
    let t = web_policy(1);
    let mut h = Harness::with(EngineConfig { flow_capacity: 16, ..EngineConfig::default() });
    for sp in 0..16u16 {
        assert_eq!(handshake(&mut h, &t, 30000 + sp), [Verdict::Pass; 3]);
    }
    assert_eq!(h.send(&t, &Frame::udp(client(), server(), 999, 53).build()), drop_(DropReason::TableFull));
    // Once they idle past the transitory timeout they may be evicted.
    h.advance(31 * SEC);
    assert_eq!(h.send(&t, &Frame::udp(client(), server(), 999, 53).build()), Verdict::Pass);
    assert_eq!(h.snap().flows_evicted, 1);
}

#[test]
fn udp_sctp_and_icmp_echo_are_pseudo_connections() {
    let t = web_policy(1);
    let mut h = Harness::new();
    let (c, s) = (client(), server());
    assert_eq!(h.send(&t, &Frame::udp(c, s, 5353, 53).build()), Verdict::Pass);
    assert_eq!(h.send(&t, &Frame::udp(s, c, 53, 5353).build()), Verdict::Pass);
    assert_eq!(h.send(&t, &Frame::udp(s, c, 53, 5354).build()), drop_(DropReason::DefaultDeny));
    assert_eq!(h.send(&t, &Frame::sctp(c, s, 7000, 9000).build()), Verdict::Pass);
    assert_eq!(h.send(&t, &Frame::sctp(s, c, 9000, 7000).build()), Verdict::Pass);
    assert_eq!(h.send(&t, &Frame::echo_request(c, s, 77, 1).build()), Verdict::Pass);
    assert_eq!(h.send(&t, &Frame::echo_reply(s, c, 77, 1).build()), Verdict::Pass);
    // A reply with another identifier matches nothing, and a server-initiated ping is denied.
    assert_eq!(h.send(&t, &Frame::echo_reply(s, c, 78, 1).build()), drop_(DropReason::DefaultDeny));
    assert_eq!(h.send(&t, &Frame::echo_request(s, c, 79, 1).build()), drop_(DropReason::DefaultDeny));
    // IPv6 too.
    assert_eq!(h.send(&t, &Frame::udp(client6(), server6(), 5353, 53).build()), Verdict::Pass);
    assert_eq!(h.send(&t, &Frame::udp(server6(), client6(), 53, 5353).build()), Verdict::Pass);
    assert_eq!(h.send(&t, &Frame::echo_request(client6(), server6(), 5, 1).build()), Verdict::Pass);
    assert_eq!(h.send(&t, &Frame::echo_reply(server6(), client6(), 5, 1).build()), Verdict::Pass);
    h.advance(61 * SEC);
    assert_eq!(
        h.send(&t, &Frame::udp(s, c, 53, 5353).build()),
        drop_(DropReason::DefaultDeny),
        "UDP timeout 60 s"
    );
}

#[test]
fn arp_ndp_and_ethertypes() {
    let mut t = web_policy(1);
    let mut h = Harness::new();
    let arp = Frame::arp_request(Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 2)).build();
    assert_eq!(h.send(&t, &arp), Verdict::Pass);
    let ns = Frame::icmp(client6(), server6(), 135, 0).payload(&[0; 20]).build();
    assert_eq!(h.send(&t, &ns), Verdict::Pass);
    let lldp = Frame::ethertype(0x88cc).payload(&[0; 46]).build();
    assert_eq!(h.send(&t, &lldp), drop_(DropReason::Ethertype));
    t.config.allowed_ethertypes.push(0x88cc);
    assert_eq!(h.send(&t, &lldp), Verdict::Pass);
    assert_eq!(
        h.send(&t, &[0u8; 10]),
        drop_(DropReason::Malformed(bulkhead_wire::Malformed::TruncatedEthernet))
    );
}

#[test]
fn flows_listing_filters_and_limits() {
    let t = web_policy(1);
    let mut h = Harness::new();
    for sp in 0..10u16 {
        h.send(&t, &Frame::udp(client(), server(), 2000 + sp, 53).build());
    }
    handshake(&mut h, &t, 40000);
    assert_eq!(h.w.flows(100, FlowFilter::default()).count(), 11);
    assert_eq!(h.w.flows(3, FlowFilter::default()).count(), 3);
    let tcp_only: Vec<_> = h.w.flows(100, FlowFilter { proto: Some(6), ..FlowFilter::default() }).collect();
    assert_eq!(tcp_only.len(), 1);
    let f = tcp_only[0];
    assert_eq!((f.src, f.dst, f.sport, f.dport), (client(), server(), 40000, 80));
    assert_eq!((f.src_identity, f.dst_identity, f.packets), (CLIENT, SERVER, 3));
    assert!(f.replied);
}

#[test]
fn ipv6_tcp_handshake_and_reply_direction() {
    let t = web_policy(1);
    let mut h = Harness::new();
    let (c, s) = (client6(), server6());
    assert_eq!(h.send(&t, &seg(c, s, 40000, 80, tcp::SYN, 100, 0)), Verdict::Pass);
    assert_eq!(h.send(&t, &seg(s, c, 80, 40000, tcp::SYN_ACK, 5000, 101)), Verdict::Pass);
    assert_eq!(h.send(&t, &seg(c, s, 40000, 80, tcp::ACK, 101, 5001)), Verdict::Pass);
    assert_eq!(state_of(&h, 40000), Some(TcpStateName::Established));
    assert_eq!(h.send(&t, &seg(s, c, 80, 40001, tcp::SYN, 1, 0)), drop_(DropReason::DefaultDeny));
    // The same ports over IPv4 are another flow.
    assert_eq!(
        h.send(&t, &seg(server(), client(), 80, 40000, tcp::ACK, 5001, 101)),
        drop_(DropReason::DefaultDeny)
    );
}
