//! End-to-end tests of the AF_XDP bump in the wire with the pass-all processor (`xdp-passall`),
//! on the netns testbed: the kernel's own ARP, ICMP, TCP and UDP cross the firewall namespace only
//! through Bulkhead's sockets, and the XDP lifecycle (clean stop, SIGKILL, stale and foreign
//! programs, missing interface, missing privileges) behaves as an operator expects.
//!
//! Needs root (namespaces, XDP); skips with a message otherwise. Every wait is bounded.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::time::Duration;

use bulkhead_testbed::{is_root, ChildGuard, Netns, Topology, INSIDE_IF, OUTSIDE_IF};
use bulkhead_xdp::{AttachMethod, XdpMode, XdpProgram};
use nix::sys::signal::Signal;

const READY: Duration = Duration::from_secs(20);
const IO: Duration = Duration::from_secs(5);

macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("skipping: end-to-end XDP tests need root (network namespaces, bpf)");
            return;
        }
    };
}

fn small_topology() -> Topology {
    Topology::builder()
        .inside("corp1", "corp", "198.18.1.10".parse().unwrap())
        .outside("web1", "prod-web", "198.19.1.10".parse().unwrap())
        .build()
        .expect("building the testbed")
}

fn passall_cmd(topo: &Topology, mode: &str) -> Command {
    let mut cmd = topo.fw().command(env!("CARGO_BIN_EXE_xdp-passall"));
    cmd.args(["--inside", INSIDE_IF, "--outside", OUTSIDE_IF, "--mode", mode]);
    cmd
}

fn start_passall(topo: &Topology, mode: &str) -> ChildGuard {
    start_passall_with(topo, mode, &[])
}

fn start_passall_with(topo: &Topology, mode: &str, extra: &[&str]) -> ChildGuard {
    let mut cmd = passall_cmd(topo, mode);
    cmd.args(extra);
    let mut fw = ChildGuard::spawn("xdp-passall", cmd).expect("spawn");
    assert!(
        fw.wait_for_line("ready", READY).is_some(),
        "xdp-passall did not become ready; output: {:?}",
        fw.lines()
    );
    fw
}

fn ping(ns: &Netns, dst: &str, count: u32) -> bool {
    ns.command("ping")
        .args(["-c", &count.to_string(), "-i", "0.2", "-W", "1", dst])
        .stdout(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn xdp_on_fw(topo: &Topology) -> String {
    let out = topo.fw().ip(&["link", "show"]).expect("ip link show");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines().filter(|l| l.contains("xdp")).collect::<Vec<_>>().join("\n")
}

/// Echo server on `host`: accepts one connection and echoes until EOF.
fn tcp_echo_once(ns: &Netns, addr: SocketAddr) -> std::thread::JoinHandle<std::io::Result<u64>> {
    let listener = ns.run(move || TcpListener::bind(addr)).expect("setns").expect("bind");
    std::thread::spawn(move || {
        listener.set_nonblocking(false)?;
        let (mut s, _) = listener.accept()?;
        s.set_read_timeout(Some(IO))?;
        s.set_write_timeout(Some(IO))?;
        let mut buf = [0u8; 16 * 1024];
        let mut total = 0u64;
        loop {
            let n = s.read(&mut buf)?;
            if n == 0 {
                return Ok(total);
            }
            s.write_all(&buf[..n])?;
            total += n as u64;
        }
    })
}

fn tcp_roundtrip(client_ns: &Netns, server: SocketAddr, len: usize) -> std::io::Result<Vec<u8>> {
    let mut s = client_ns.run(move || TcpStream::connect_timeout(&server, IO)).expect("setns")?;
    s.set_read_timeout(Some(IO))?;
    s.set_write_timeout(Some(IO))?;
    let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    let mut writer = s.try_clone()?;
    let payload = data.clone();
    let w = std::thread::spawn(move || -> std::io::Result<()> {
        writer.write_all(&payload)?;
        writer.shutdown(std::net::Shutdown::Write)
    });
    let mut back = Vec::with_capacity(len);
    s.read_to_end(&mut back)?;
    w.join().expect("writer thread")?;
    Ok(back)
}

fn assert_forwarding(topo: &Topology) {
    let corp = topo.host("corp1");
    let web = topo.host("web1");

    // ICMP (and, on the way, ARP for the far host through the bump).
    assert!(ping(corp.netns(), "198.19.1.10", 3), "ping inside -> outside");
    assert!(ping(web.netns(), "198.18.1.10", 2), "ping outside -> inside");
    let neigh = corp.netns().ip(&["neigh", "show", "198.19.1.10"]).expect("ip neigh");
    let neigh = String::from_utf8_lossy(&neigh.stdout).to_lowercase();
    assert!(
        neigh.contains(&web.mac.to_lowercase()),
        "corp1 resolved web1 to its real MAC {} through the bump: {neigh}",
        web.mac
    );

    // TCP, data both ways (the server echoes everything back).
    let addr: SocketAddr = "198.19.1.10:18080".parse().unwrap();
    let server = tcp_echo_once(web.netns(), addr);
    let sent_len = 512 * 1024;
    let back = tcp_roundtrip(corp.netns(), addr, sent_len).expect("TCP through the bump");
    assert_eq!(back.len(), sent_len, "echoed byte count");
    assert!(back.iter().enumerate().all(|(i, b)| *b == (i * 7 % 251) as u8), "echoed bytes unchanged");
    assert_eq!(server.join().expect("server thread").expect("server io"), sent_len as u64);

    // UDP request / response, initiated from the outside this time.
    let srv: SocketAddr = "198.18.1.10:15353".parse().unwrap();
    let usrv = corp.netns().run(move || UdpSocket::bind(srv)).unwrap().unwrap();
    usrv.set_read_timeout(Some(IO)).unwrap();
    let responder = std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        let (n, from) = usrv.recv_from(&mut buf)?;
        let mut reply = b"re:".to_vec();
        reply.extend_from_slice(&buf[..n]);
        usrv.send_to(&reply, from)
    });
    let cli = web.netns().run(|| UdpSocket::bind("198.19.1.10:0")).unwrap().unwrap();
    cli.set_read_timeout(Some(IO)).unwrap();
    cli.send_to(b"query", srv).unwrap();
    let mut buf = [0u8; 1500];
    let (n, from) = cli.recv_from(&mut buf).expect("UDP reply through the bump");
    assert_eq!(&buf[..n], b"re:query");
    assert_eq!(from, srv);
    responder.join().unwrap().unwrap();
}

fn assert_clean_stop(topo: &Topology, fw: &mut ChildGuard) {
    let status = fw.terminate(Duration::from_secs(10));
    let status = status.expect("xdp-passall stops within 10 s of SIGTERM");
    assert!(status.success(), "clean exit after SIGTERM: {status:?}");
    assert!(fw.lines().iter().any(|l| l == "stopped"), "{:?}", fw.lines());
    assert_eq!(xdp_on_fw(topo), "", "no XDP program left after SIGTERM");
}

#[test]
fn native_mode_forwards_arp_icmp_tcp_udp_and_stops_clean() {
    require_root!();
    let topo = small_topology();
    // With nothing in the firewall namespace, the sides are disconnected.
    assert!(!ping(topo.host("corp1").netns(), "198.19.1.10", 1), "no path exists without the forwarder");
    let mut fw = start_passall(&topo, "native");
    assert!(xdp_on_fw(&topo).contains("bulkhead_xsk"), "program attached");
    assert_forwarding(&topo);
    assert_clean_stop(&topo, &mut fw);
    let stats = fw.lines().into_iter().find(|l| l.starts_with("stats")).unwrap_or_default();
    assert!(!stats.contains("inside[rx=0"), "frames were counted: {stats}");
    // And once it is gone, so is the path.
    assert!(!ping(topo.host("corp1").netns(), "198.19.1.10", 1));
}

#[test]
fn generic_mode_forwards() {
    require_root!();
    let topo = small_topology();
    let mut fw = start_passall(&topo, "generic");
    assert!(xdp_on_fw(&topo).contains("xdpgeneric"), "{}", xdp_on_fw(&topo));
    assert_forwarding(&topo);
    assert_clean_stop(&topo, &mut fw);
}

#[test]
fn more_workers_than_veth_queues_forward_with_software_steering() {
    require_root!();
    let topo = small_topology();
    let mut fw = start_passall_with(&topo, "native", &["--workers", "3"]);
    assert_forwarding(&topo);
    assert_clean_stop(&topo, &mut fw);
    let lines = fw.lines();
    let stats: Vec<_> = lines.iter().filter(|l| l.starts_with("stats worker=")).collect();
    assert_eq!(stats.len(), 3, "one stats line per worker: {lines:?}");
    assert!(stats[0].contains("inside[rx=") && !stats[0].contains("inside[rx=0 "), "{}", stats[0]);
    // Workers 1 and 2 have no queue on veth; at least one of them judged frames handed to it.
    assert!(
        stats[1..].iter().any(|l| !l.contains("judged_for_others=0")),
        "handed-off frames were judged: {stats:?}"
    );
}

#[test]
fn symmetric_rss_needs_a_queue_per_worker() {
    require_root!();
    let topo = small_topology();
    let out = passall_cmd(&topo, "native").args(["--workers", "2", "--rss", "symmetric"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("has 1 receive queue"), "{err}");
    assert_eq!(xdp_on_fw(&topo), "", "nothing attached by the refused start");
}

#[test]
fn restart_after_sigkill_works() {
    require_root!();
    let topo = small_topology();
    let mut fw = start_passall(&topo, "native");
    assert!(ping(topo.host("corp1").netns(), "198.19.1.10", 1));
    fw.signal(Signal::SIGKILL).unwrap();
    assert!(fw.wait_timeout(Duration::from_secs(5)).is_some(), "killed");
    // The bpf_link died with the process, so nothing black-holes the interfaces...
    assert_eq!(xdp_on_fw(&topo), "", "kernel detached the link-owned programs");
    // ...and a new instance starts and forwards.
    let mut fw2 = start_passall(&topo, "native");
    assert!(ping(topo.host("corp1").netns(), "198.19.1.10", 2));
    assert_clean_stop(&topo, &mut fw2);
}

#[test]
fn stale_netlink_program_is_removed_at_start() {
    require_root!();
    let topo = small_topology();
    // Simulate a crashed run that attached through netlink (which outlives its process).
    topo.fw()
        .run(|| {
            for ifname in [INSIDE_IF, OUTSIDE_IF] {
                let p = XdpProgram::attach_with(
                    ifname,
                    XdpMode::Native,
                    1,
                    AttachMethod::Netlink,
                    bulkhead_xdp::PROG_NAME,
                )
                .expect("legacy attach");
                std::mem::forget(p); // "crash": never detached
            }
        })
        .unwrap();
    assert!(xdp_on_fw(&topo).contains("bulkhead_xsk"), "stale program present");
    let mut fw = start_passall(&topo, "native");
    assert!(ping(topo.host("corp1").netns(), "198.19.1.10", 2));
    assert_clean_stop(&topo, &mut fw);
}

#[test]
fn foreign_program_and_second_instance_are_refused() {
    require_root!();
    let topo = small_topology();
    // A second Bulkhead on the same interfaces must not steal them.
    let mut first = start_passall(&topo, "native");
    let out = passall_cmd(&topo, "native").output().expect("second instance");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already has an XDP program"), "{err}");
    assert!(ping(topo.host("corp1").netns(), "198.19.1.10", 1), "first still forwards");
    assert_clean_stop(&topo, &mut first);

    // Someone else's program is left alone and reported by id and name.
    topo.fw()
        .run(|| {
            let p =
                XdpProgram::attach_with(OUTSIDE_IF, XdpMode::Generic, 1, AttachMethod::Netlink, "other_fw")
                    .expect("foreign attach");
            std::mem::forget(p);
        })
        .unwrap();
    let out = passall_cmd(&topo, "native").output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("other_fw") && err.contains("\"outside\""), "{err}");
    // Nothing of ours was left on the inside interface by the refused start.
    let xdp = xdp_on_fw(&topo);
    assert!(!xdp.contains("bulkhead_xsk"), "{xdp}");
    assert!(xdp.contains("other_fw"), "the foreign program is untouched: {xdp}");
    topo.fw().ip(&["link", "set", "dev", OUTSIDE_IF, "xdpgeneric", "off"]).unwrap();
}

#[test]
fn missing_interface_and_missing_privileges_are_clear_errors() {
    require_root!();
    let topo = small_topology();
    let out = topo
        .fw()
        .command(env!("CARGO_BIN_EXE_xdp-passall"))
        .args(["--inside", "nosuch0", "--outside", OUTSIDE_IF])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("\"nosuch0\" does not exist"), "{err}");

    // Root without capabilities (empty bounding set) cannot create BPF objects.
    let out = topo
        .fw()
        .command("setpriv")
        .args(["--bounding-set", "-all", "--inh-caps", "-all", "--"])
        .arg(env!("CARGO_BIN_EXE_xdp-passall"))
        .args(["--inside", INSIDE_IF, "--outside", OUTSIDE_IF])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not permitted"), "{err}");
    assert_eq!(xdp_on_fw(&topo), "");
}
