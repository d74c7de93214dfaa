//! End-to-end test of software flow steering on the netns testbed: two workers on veth (one queue
//! per interface), so worker 0 receives every frame and hands the flows worker 1 owns to it.
//!
//! The dataplane runs in this process (inside the firewall namespace) with a processor that
//! forwards everything and records, per worker, every directed 5-tuple it judged. Real TCP
//! connections (data echoed both ways) and UDP request/response flows cross the bump; client ports
//! are picked with the dataplane's own steering function so that each worker owns some of each.
//! The test then checks that every connection's two directions were judged by one worker, the
//! worker its hash names, and that all traffic arrived intact.
//!
//! Needs root (namespaces, XDP); skips with a message otherwise. Traffic and every wait are bounded.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use bulkhead_testbed::{is_root, Netns, Topology, INSIDE_IF, OUTSIDE_IF};
use bulkhead_xdp::{Dataplane, DataplaneConfig, FlowSteer, Side, Steering, XdpError, XdpMode};
use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn};
use nix::sys::time::{TimeVal, TimeValLike};

const IO: Duration = Duration::from_secs(5);
const TCP_BYTES: usize = 96 * 1024;
const UDP_ROUNDS: usize = 4;
const FLOWS_PER_WORKER: usize = 3;

/// proto, src, sport, dst, dport
type Tuple = (u8, Ipv4Addr, u16, Ipv4Addr, u16);

macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("skipping: end-to-end XDP tests need root (network namespaces, bpf)");
            return;
        }
    };
}

/// The directed 5-tuple of an untagged IPv4 TCP/UDP frame.
fn tuple(frame: &[u8]) -> Option<Tuple> {
    if frame.len() < 38 || frame[12..14] != [0x08, 0x00] {
        return None;
    }
    let ip = &frame[14..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let proto = ip[9];
    if !matches!(proto, 6 | 17) || ip.len() < ihl + 4 {
        return None;
    }
    let a = |o: usize| Ipv4Addr::new(ip[o], ip[o + 1], ip[o + 2], ip[o + 3]);
    let p = |o: usize| u16::from_be_bytes([ip[ihl + o], ip[ihl + o + 1]]);
    Some((proto, a(12), p(0), a(16), p(2)))
}

/// A minimal frame carrying `t`, to ask the steering function who owns it.
fn frame_of(t: Tuple) -> Vec<u8> {
    let (proto, src, sp, dst, dp) = t;
    let mut f = vec![0u8; 12];
    f.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, proto, 0, 0]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(&sp.to_be_bytes());
    f.extend_from_slice(&dp.to_be_bytes());
    f.extend_from_slice(&[0; 16]);
    f
}

/// Client ports for flows `src -> dst:dport`, `per_worker` of them owned by each worker.
fn ports_for(steer: &FlowSteer, proto: u8, src: Ipv4Addr, dst: Ipv4Addr, dport: u16, base: u16) -> Vec<u16> {
    let workers = steer.workers() as usize;
    let mut per = vec![0usize; workers];
    let mut out = Vec::new();
    for sport in base..base + 2000 {
        let w = steer.owner(&frame_of((proto, src, sport, dst, dport))) as usize;
        if per[w] < FLOWS_PER_WORKER {
            per[w] += 1;
            out.push(sport);
        }
        if per.iter().all(|n| *n == FLOWS_PER_WORKER) {
            return out;
        }
    }
    panic!("2000 ports did not give every worker {FLOWS_PER_WORKER} flows: {per:?}");
}

/// A TCP connection from a chosen source port, made in `ns`, with bounded connect/read/write.
fn connect_from(ns: &Netns, src: SocketAddrV4, dst: SocketAddrV4) -> TcpStream {
    let s = ns
        .run(move || -> nix::Result<TcpStream> {
            let fd = socket::socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
            socket::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
            // SO_SNDTIMEO also bounds connect(2).
            socket::setsockopt(&fd, sockopt::SendTimeout, &TimeVal::seconds(5))?;
            socket::bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn::from(src))?;
            socket::connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn::from(dst))?;
            Ok(TcpStream::from(fd))
        })
        .expect("setns")
        .unwrap_or_else(|e| panic!("TCP connect {src} -> {dst} through the bump: {e}"));
    s.set_read_timeout(Some(IO)).unwrap();
    s.set_write_timeout(Some(IO)).unwrap();
    s
}

/// Echo server accepting `n` connections one after another.
fn tcp_echo(ns: &Netns, addr: SocketAddr, n: usize) -> std::thread::JoinHandle<std::io::Result<u64>> {
    let listener = ns.run(move || TcpListener::bind(addr)).expect("setns").expect("bind");
    std::thread::spawn(move || {
        let mut total = 0u64;
        for _ in 0..n {
            let (mut s, _) = listener.accept()?;
            s.set_read_timeout(Some(IO))?;
            s.set_write_timeout(Some(IO))?;
            let mut buf = [0u8; 16 * 1024];
            loop {
                let k = s.read(&mut buf)?;
                if k == 0 {
                    break;
                }
                s.write_all(&buf[..k])?;
                total += k as u64;
            }
        }
        Ok(total)
    })
}

fn tcp_exchange(mut s: TcpStream, seed: usize) {
    let data: Vec<u8> = (0..TCP_BYTES).map(|i| ((i + seed) * 7 % 251) as u8).collect();
    let mut writer = s.try_clone().unwrap();
    let payload = data.clone();
    let w = std::thread::spawn(move || -> std::io::Result<()> {
        writer.write_all(&payload)?;
        writer.shutdown(std::net::Shutdown::Write)
    });
    let mut back = Vec::with_capacity(TCP_BYTES);
    s.read_to_end(&mut back).expect("echo through the bump");
    w.join().unwrap().expect("send through the bump");
    assert!(back == data, "echoed bytes unchanged ({} of {TCP_BYTES} back)", back.len());
}

/// Sets the stop flag when dropped, so a failing test still stops the dataplane thread.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[test]
fn two_workers_on_veth_judge_both_directions_of_each_flow_on_one_worker() {
    require_root!();
    let topo = Topology::builder()
        .inside("corp1", "corp", "198.18.1.10".parse().unwrap())
        .inside("corp2", "corp", "198.18.1.11".parse().unwrap())
        .outside("web1", "prod-web", "198.19.1.10".parse().unwrap())
        .build()
        .expect("building the testbed");
    const WORKERS: usize = 2;
    let seen: Arc<Vec<Mutex<BTreeSet<Tuple>>>> = Arc::new((0..WORKERS).map(|_| Mutex::default()).collect());
    let stop = AtomicBool::new(false);
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(FlowSteer, usize), String>>();

    let stats = std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        let seen_w = Arc::clone(&seen);
        let (fw, stop) = (topo.fw(), &stop);
        let dp_thread = s.spawn(move || {
            fw.run(move || {
                let mut cfg = DataplaneConfig::new(INSIDE_IF, OUTSIDE_IF);
                cfg.mode = XdpMode::Native;
                cfg.workers = WORKERS as u32;
                let mut dp = match Dataplane::open(cfg) {
                    Ok(dp) => dp,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return Vec::new();
                    }
                };
                let _ = ready_tx.send(Ok((dp.steer(), dp.queue_pairs())));
                let stats = dp.stats();
                dp.run(stop, |w| {
                    let seen = Arc::clone(&seen_w);
                    move |_now: u64, _from: Side, frames: &[&[u8]], fwd: &mut [bool]| {
                        let mut set = seen[w as usize].lock().unwrap();
                        set.extend(frames.iter().filter_map(|f| tuple(f)));
                        fwd.fill(true);
                    }
                })
                .expect("run");
                dp.shutdown().expect("detach");
                stats
            })
            .expect("setns into the firewall namespace")
        });

        let (steer, pairs) =
            ready_rx.recv_timeout(Duration::from_secs(20)).expect("dataplane start").unwrap();
        assert_eq!(pairs, 1, "veth has one queue: one receiving worker");
        assert_eq!(steer.workers() as usize, WORKERS);

        let web = topo.host("web1");
        let clients = [topo.host("corp1"), topo.host("corp2")];

        // TCP: from each client, flows owned by each worker, data echoed both ways.
        let echo_addr = SocketAddrV4::new(web.ip(), 18080);
        let server = tcp_echo(web.netns(), echo_addr.into(), clients.len() * WORKERS * FLOWS_PER_WORKER);
        for (ci, c) in clients.iter().enumerate() {
            for (k, sport) in ports_for(&steer, 6, c.ip(), web.ip(), 18080, 21000).into_iter().enumerate() {
                let conn = connect_from(c.netns(), SocketAddrV4::new(c.ip(), sport), echo_addr);
                tcp_exchange(conn, ci * 100 + k);
            }
        }
        let echoed = server.join().unwrap().expect("echo server");
        assert_eq!(echoed, (clients.len() * WORKERS * FLOWS_PER_WORKER * TCP_BYTES) as u64);

        // UDP: request/response flows initiated from the outside this time.
        for c in &clients {
            let srv_addr = SocketAddrV4::new(c.ip(), 15353);
            let srv = c.netns().run(move || UdpSocket::bind(srv_addr)).unwrap().unwrap();
            srv.set_read_timeout(Some(IO)).unwrap();
            let ports = ports_for(&steer, 17, web.ip(), c.ip(), 15353, 31000);
            let flows = ports.len();
            let responder = std::thread::spawn(move || -> std::io::Result<()> {
                let mut buf = [0u8; 1500];
                for _ in 0..flows * UDP_ROUNDS {
                    let (n, from) = srv.recv_from(&mut buf)?;
                    let mut reply = b"re:".to_vec();
                    reply.extend_from_slice(&buf[..n]);
                    srv.send_to(&reply, from)?;
                }
                Ok(())
            });
            for sport in ports {
                let cli = web.netns().run(move || UdpSocket::bind((web.ip(), sport))).unwrap().unwrap();
                cli.set_read_timeout(Some(IO)).unwrap();
                for round in 0..UDP_ROUNDS {
                    let msg = format!("q{sport}-{round}");
                    cli.send_to(msg.as_bytes(), srv_addr).unwrap();
                    let mut buf = [0u8; 1500];
                    let (n, from) = cli.recv_from(&mut buf).expect("UDP reply through the bump");
                    assert_eq!(&buf[..n], format!("re:{msg}").as_bytes());
                    assert_eq!(from, srv_addr.into());
                }
            }
            responder.join().unwrap().expect("UDP responder");
        }

        stop.store(true, Ordering::Relaxed);
        let stats = dp_thread.join().expect("dataplane thread");
        (steer, stats)
    });
    let (steer, stats) = stats;

    // Group what each worker saw by connection (the unordered pair of endpoints).
    let canon = |t: &Tuple| {
        let (p, a, ap, b, bp) = *t;
        if (a, ap) <= (b, bp) {
            (p, a, ap, b, bp)
        } else {
            (p, b, bp, a, ap)
        }
    };
    let mut by_conn: BTreeMap<Tuple, BTreeMap<usize, BTreeSet<Tuple>>> = BTreeMap::new();
    for (w, set) in seen.iter().enumerate() {
        for t in set.lock().unwrap().iter() {
            by_conn.entry(canon(t)).or_default().entry(w).or_default().insert(*t);
        }
    }
    // Two clients, each with FLOWS_PER_WORKER flows per worker, once over TCP and once over UDP.
    let expected_conns = 2 * (2 * WORKERS * FLOWS_PER_WORKER);
    let tested: Vec<_> = by_conn
        .iter()
        .filter(|(c, _)| c.2 == 18080 || c.4 == 18080 || c.2 == 15353 || c.4 == 15353)
        .collect();
    assert_eq!(tested.len(), expected_conns, "every test connection was seen: {by_conn:#?}");
    let mut per_worker = [0usize; WORKERS];
    for (conn, workers) in &tested {
        assert_eq!(workers.len(), 1, "connection {conn:?} was judged by more than one worker: {workers:?}");
        let (w, dirs) = workers.iter().next().unwrap();
        assert_eq!(dirs.len(), 2, "worker {w} saw both directions of {conn:?}: {dirs:?}");
        let owner = steer.owner(&frame_of(**conn)) as usize;
        assert_eq!(*w, owner, "{conn:?} judged by the worker its hash names");
        per_worker[*w] += 1;
    }
    assert!(per_worker.iter().all(|n| *n >= 2 * FLOWS_PER_WORKER), "each worker owned flows: {per_worker:?}");

    // The counters tell the same story: worker 0 received everything and lent worker 1 its share.
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    assert_eq!(stats.len(), WORKERS);
    assert!(load(&stats[0].handed_off) > 0, "worker 0 handed frames off");
    assert_eq!(load(&stats[1].handed_off), 0, "worker 1 has no queue to receive on");
    assert_eq!(load(&stats[1].from_inside.rx_packets) + load(&stats[1].from_outside.rx_packets), 0);
    assert!(load(&stats[1].handoffs_judged) > 0, "worker 1 judged handed-off frames");
    assert_eq!(
        load(&stats[1].handoffs_judged),
        load(&stats[0].handed_off),
        "every frame lent out was judged once"
    );
    eprintln!(
        "worker 0: rx {} handed off {} handoff_full {}; worker 1 judged {}; connections per worker {per_worker:?}",
        load(&stats[0].from_inside.rx_packets) + load(&stats[0].from_outside.rx_packets),
        load(&stats[0].handed_off),
        load(&stats[0].handoff_full),
        load(&stats[1].handoffs_judged),
    );
}

#[test]
fn symmetric_rss_with_more_workers_than_queues_is_refused() {
    require_root!();
    let topo = Topology::builder()
        .inside("corp1", "corp", "198.18.1.10".parse().unwrap())
        .outside("web1", "prod-web", "198.19.1.10".parse().unwrap())
        .build()
        .expect("building the testbed");
    let err = topo
        .fw()
        .run(|| {
            let mut cfg = DataplaneConfig::new(INSIDE_IF, OUTSIDE_IF);
            cfg.workers = 2;
            cfg.steering = Steering::Rss;
            Dataplane::open(cfg).map(|_| ())
        })
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, XdpError::NoSuchQueue { queues: 1, .. }), "{err}");
    assert!(err.to_string().contains("at most 1 workers"), "{err}");
}
