//! Network-namespace testbed for Bulkhead end-to-end tests and the demo.
//!
//! Everything here is made of network namespaces and veth pairs that this crate creates itself,
//! with addresses from 198.18.0.0/15 only, and every piece is an RAII guard: dropping it (also while
//! a test panics) removes it.
//!
//! # Topology
//!
//! A bump in the wire is L2-transparent, so all hosts share **one** subnet and one broadcast
//! domain that the firewall cuts in two:
//!
//! ```text
//!  corp1 corp2 dev1 ci1                              web1  db1  repo1
//!    |     |    |    |      (host netns, eth0)         |    |     |
//!  +-------------------+                             +----------------+
//!  | swi: bridge br0   |--fw     inside [fw] outside--| swo: bridge br0 |
//!  +-------------------+   (veth)  firewall netns (veth)+----------------+
//! ```
//!
//! * Each host is a namespace with `eth0` (a veth whose peer `h-<host>` is a port of the bridge
//!   `br0` in its side's switch namespace). Host addresses use a /15 netmask, so every host can ARP
//!   for every other one through the firewall.
//! * The firewall namespace holds exactly two interfaces, `inside` and `outside`, whose peers are
//!   the `fw` ports of the two bridges. Nothing connects the sides except a forwarder running in
//!   that namespace, so with no forwarder no frame crosses.
//! * Linux bridges are used as plain learning switches (STP off); no bridge netfilter is needed.
//! * veth checksum offload is turned off on host interfaces: with it on, the kernel leaves TCP/UDP
//!   checksums unfilled in frames between namespaces (CHECKSUM_PARTIAL), and a forwarder that copies
//!   frames through AF_XDP would pass on invalid checksums. Real NICs do not have this artefact.
//! * IPv6 is disabled in every namespace by default so that router solicitations, DAD and MLD do
//!   not add noise to counters (opt in with [`TopologyBuilder::ipv6`]).
//!
//! # Addressing of the demo topology ([`Topology::demo`])
//!
//! | host  | side    | zone (label)   | address      |
//! |-------|---------|----------------|--------------|
//! | corp1 | inside  | corp           | 198.18.1.10  |
//! | corp2 | inside  | corp           | 198.18.1.11  |
//! | dev1  | inside  | dev            | 198.18.2.10  |
//! | ci1   | inside  | ci             | 198.18.3.10  |
//! | web1  | outside | prod-web       | 198.19.1.10  |
//! | db1   | outside | prod-db        | 198.19.2.10  |
//! | repo1 | outside | artifacts      | 198.19.3.10  |
//!
//! Inside zones live in 198.18.0.0/16 (one /24 per zone), outside zones in 198.19.0.0/16, all
//! with netmask /15.
//!
//! # Names
//!
//! Namespaces are named `bh-<tag>-<role>` (`fw`, `swi`, `swo`, or the host name). Tests get a
//! random tag; the demo CLI uses `demo`. Interface names are fixed per namespace (namespaces keep
//! them apart), which lets the firewall always be started as `--inside inside --outside outside`.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::net::Ipv4Addr;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use nix::sched::{setns, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Name of the firewall's inside interface (in [`Topology::fw`]).
pub const INSIDE_IF: &str = "inside";
/// Name of the firewall's outside interface (in [`Topology::fw`]).
pub const OUTSIDE_IF: &str = "outside";
/// Netmask length of every host address.
pub const PREFIX_LEN: u8 = 15;

/// Is this process root? End-to-end tests skip (with a message) when it is not.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn io_err(msg: String) -> io::Error {
    io::Error::other(msg)
}

/// Runs a command to completion, turning a non-zero exit into an error carrying its stderr.
pub fn run_checked(cmd: &mut Command) -> io::Result<Output> {
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| io_err(format!("cannot run {cmd:?}: {e}")))?;
    if !out.status.success() {
        return Err(io_err(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out)
}

fn ip(args: &[&str]) -> io::Result<Output> {
    run_checked(Command::new("ip").args(args))
}

/// A named network namespace (`ip netns add`). Dropping it deletes the namespace, which also
/// destroys every interface in it (and so the peers of its veth pairs).
#[derive(Debug)]
pub struct Netns {
    name: String,
    armed: bool,
}

impl Netns {
    /// Creates a namespace; fails if the name is taken.
    pub fn create(name: &str) -> io::Result<Netns> {
        ip(&["netns", "add", name])?;
        let ns = Netns { name: name.to_owned(), armed: true };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Refers to an existing namespace without owning it (dropping does not delete it).
    pub fn existing(name: &str) -> Netns {
        Netns { name: name.to_owned(), armed: false }
    }

    /// Namespace name (as in `ip netns list`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n <ns> args...`.
    pub fn ip(&self, args: &[&str]) -> io::Result<Output> {
        let mut cmd = Command::new("ip");
        cmd.arg("-n").arg(&self.name).args(args);
        run_checked(&mut cmd)
    }

    /// A command that runs `program` inside the namespace (`ip netns exec`, which execs, so the
    /// child's PID is the program's).
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Runs `program args...` in the namespace to completion; non-zero exit is an error.
    pub fn exec(&self, program: &str, args: &[&str]) -> io::Result<Output> {
        run_checked(self.command(program).args(args))
    }

    /// Runs a closure on a thread that has entered this namespace. Sockets it creates belong to
    /// the namespace and stay usable after it returns.
    pub fn run<T, F>(&self, f: F) -> io::Result<T>
    where
        T: Send,
        F: FnOnce() -> T + Send,
    {
        let file = File::open(format!("/run/netns/{}", self.name))?;
        std::thread::scope(|s| {
            s.spawn(move || {
                setns(&file, CloneFlags::CLONE_NEWNET)
                    .map_err(|e| io_err(format!("setns into {}: {e}", self.name)))?;
                Ok(f())
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    /// Keeps the namespace after this guard is dropped; returns its name.
    pub fn persist(mut self) -> String {
        self.armed = false;
        std::mem::take(&mut self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if self.armed {
            let _ = Command::new("ip").args(["netns", "del", &self.name]).stderr(Stdio::null()).status();
        }
    }
}

/// A veth pair with one end in each of two namespaces. Dropping it deletes the pair (deleting
/// either namespace first removes it too; dropping is then a no-op).
#[derive(Debug)]
pub struct VethPair {
    ns_a: String,
    a: String,
    b: String,
    armed: bool,
}

impl VethPair {
    /// Creates `a` in `ns_a` and its peer `b` in `ns_b`, both up.
    pub fn create(ns_a: &Netns, a: &str, ns_b: &Netns, b: &str) -> io::Result<VethPair> {
        for n in [a, b] {
            if n.is_empty() || n.len() > 15 {
                return Err(io_err(format!("interface name {n:?} must be 1..=15 bytes")));
            }
        }
        ns_a.ip(&["link", "add", a, "type", "veth", "peer", "name", b, "netns", ns_b.name()])?;
        let pair = VethPair { ns_a: ns_a.name().to_owned(), a: a.to_owned(), b: b.to_owned(), armed: true };
        ns_a.ip(&["link", "set", a, "up"])?;
        ns_b.ip(&["link", "set", b, "up"])?;
        Ok(pair)
    }

    /// Names of the two ends.
    pub fn names(&self) -> (&str, &str) {
        (&self.a, &self.b)
    }

    fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        if self.armed {
            let _ = Command::new("ip")
                .args(["-n", &self.ns_a, "link", "del", &self.a])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Which side of the firewall a host is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Connected to the firewall's `inside` interface.
    Inside,
    /// Connected to the firewall's `outside` interface.
    Outside,
}

impl Side {
    /// `inside` or `outside`.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Inside => "inside",
            Side::Outside => "outside",
        }
    }
}

/// A host to create.
#[derive(Debug, Clone)]
pub struct HostSpec {
    /// Short name (1..=13 bytes of `[a-z0-9]`), used in namespace and port names.
    pub name: String,
    /// Side of the firewall.
    pub side: Side,
    /// Zone label, for the policy and for humans.
    pub zone: String,
    /// Address in 198.18.0.0/15.
    pub ip: Ipv4Addr,
}

/// A created host: its namespace, address and MAC.
#[derive(Debug)]
pub struct Host {
    /// What was asked for.
    pub spec: HostSpec,
    /// MAC address of its `eth0`.
    pub mac: String,
    netns: Netns,
    _link: VethPair,
}

impl Host {
    /// The host's namespace.
    pub fn netns(&self) -> &Netns {
        &self.netns
    }

    /// Host name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Host address.
    pub fn ip(&self) -> Ipv4Addr {
        self.spec.ip
    }
}

/// Builds a [`Topology`].
#[derive(Debug, Clone, Default)]
pub struct TopologyBuilder {
    tag: Option<String>,
    hosts: Vec<HostSpec>,
    ipv6: bool,
}

impl TopologyBuilder {
    /// Sets the tag used in namespace names (`bh-<tag>-...`); default: random.
    pub fn tag(mut self, tag: &str) -> Self {
        self.tag = Some(tag.to_owned());
        self
    }

    /// Adds a host.
    pub fn host(mut self, name: &str, side: Side, zone: &str, ip: Ipv4Addr) -> Self {
        self.hosts.push(HostSpec { name: name.to_owned(), side, zone: zone.to_owned(), ip });
        self
    }

    /// Adds a host on the inside.
    pub fn inside(self, name: &str, zone: &str, ip: Ipv4Addr) -> Self {
        self.host(name, Side::Inside, zone, ip)
    }

    /// Adds a host on the outside.
    pub fn outside(self, name: &str, zone: &str, ip: Ipv4Addr) -> Self {
        self.host(name, Side::Outside, zone, ip)
    }

    /// Keeps IPv6 enabled in every namespace.
    pub fn ipv6(mut self, on: bool) -> Self {
        self.ipv6 = on;
        self
    }

    /// Creates everything. On any failure, what was already created is removed.
    pub fn build(self) -> io::Result<Topology> {
        let tag = match self.tag {
            Some(t) => t,
            None => random_tag(),
        };
        validate_tag(&tag)?;
        let mut seen = std::collections::HashSet::new();
        for h in &self.hosts {
            validate_host_name(&h.name)?;
            let o = h.ip.octets();
            if o[0] != 198 || (o[1] != 18 && o[1] != 19) {
                return Err(io_err(format!("host {} address {} is outside 198.18.0.0/15", h.name, h.ip)));
            }
            if !seen.insert(h.name.clone()) || !seen.insert(h.ip.to_string()) {
                return Err(io_err(format!("duplicate host name or address: {}", h.name)));
            }
        }
        let prefix = format!("bh-{tag}-");
        if let Some(existing) = list_netns()?.into_iter().find(|n| n.starts_with(&prefix)) {
            return Err(io_err(format!(
                "namespace {existing} already exists: testbed {tag:?} is up (tear it down first)"
            )));
        }

        let ipv6 = self.ipv6;
        let mk = |role: &str| -> io::Result<Netns> {
            let ns = Netns::create(&format!("{prefix}{role}"))?;
            if !ipv6 {
                ns.exec(
                    "sysctl",
                    &["-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"],
                )?;
            }
            Ok(ns)
        };

        // Hosts are dropped before switches, switches before the firewall (field order below).
        let fw = mk("fw")?;
        let sw_in = mk("swi")?;
        let sw_out = mk("swo")?;
        for sw in [&sw_in, &sw_out] {
            sw.ip(&["link", "add", "br0", "type", "bridge", "stp_state", "0", "mcast_snooping", "0"])?;
            sw.ip(&["link", "set", "br0", "up"])?;
        }
        let fw_in = VethPair::create(&fw, INSIDE_IF, &sw_in, "fw")?;
        let fw_out = VethPair::create(&fw, OUTSIDE_IF, &sw_out, "fw")?;
        sw_in.ip(&["link", "set", "fw", "master", "br0"])?;
        sw_out.ip(&["link", "set", "fw", "master", "br0"])?;

        let mut hosts = Vec::with_capacity(self.hosts.len());
        for spec in self.hosts {
            let ns = mk(&spec.name)?;
            let sw = match spec.side {
                Side::Inside => &sw_in,
                Side::Outside => &sw_out,
            };
            let port = format!("h-{}", spec.name);
            let link = VethPair::create(&ns, "eth0", sw, &port)?;
            sw.ip(&["link", "set", &port, "master", "br0"])?;
            let cidr = format!("{}/{PREFIX_LEN}", spec.ip);
            ns.ip(&["addr", "add", &cidr, "dev", "eth0"])?;
            ns.exec("ethtool", &["-K", "eth0", "tx", "off"])
                .map_err(|e| io_err(format!("disabling checksum offload on {}: {e}", spec.name)))?;
            let mac = link_mac(&ns, "eth0")?;
            hosts.push(Host { spec, mac, netns: ns, _link: link });
        }
        Ok(Topology { tag, hosts, links: vec![fw_in, fw_out], sw_in, sw_out, fw })
    }
}

fn link_mac(ns: &Netns, ifname: &str) -> io::Result<String> {
    let out = ns.ip(&["-o", "link", "show", ifname])?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .map(str::to_owned)
        .ok_or_else(|| io_err(format!("no MAC for {ifname} in {}", ns.name())))
}

fn validate_tag(tag: &str) -> io::Result<()> {
    if tag.is_empty() || tag.len() > 12 || !tag.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Err(io_err(format!("tag {tag:?} must be 1..=12 of [a-z0-9]")));
    }
    Ok(())
}

fn validate_host_name(name: &str) -> io::Result<()> {
    // "h-" + name must fit the 15-byte interface name limit.
    if name.is_empty()
        || name.len() > 13
        || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        || ["fw", "swi", "swo"].contains(&name)
    {
        return Err(io_err(format!("host name {name:?} must be 1..=13 of [a-z0-9] and not fw/swi/swo")));
    }
    Ok(())
}

/// A fresh random-ish tag: pid and clock mixed, 8 hex digits.
pub fn random_tag() -> String {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let mut x = nanos ^ (u64::from(std::process::id()) << 32);
    // splitmix64 finaliser: spreads bits so consecutive calls differ everywhere.
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    format!("{:08x}", x as u32)
}

/// Names of all named network namespaces (`ip netns list`).
pub fn list_netns() -> io::Result<Vec<String>> {
    let out = ip(&["netns", "list"])?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

/// The whole testbed. Dropping it removes every namespace (hosts first, the firewall last).
/// Stop processes running inside it first ([`ChildGuard`]s declared after the topology are
/// dropped before it).
#[derive(Debug)]
pub struct Topology {
    tag: String,
    hosts: Vec<Host>,
    links: Vec<VethPair>,
    sw_in: Netns,
    sw_out: Netns,
    fw: Netns,
}

impl Topology {
    /// An empty builder.
    pub fn builder() -> TopologyBuilder {
        TopologyBuilder::default()
    }

    /// The demo zones (see the crate docs for the address plan).
    pub fn demo() -> TopologyBuilder {
        let a = Ipv4Addr::new;
        Topology::builder()
            .inside("corp1", "corp", a(198, 18, 1, 10))
            .inside("corp2", "corp", a(198, 18, 1, 11))
            .inside("dev1", "dev", a(198, 18, 2, 10))
            .inside("ci1", "ci", a(198, 18, 3, 10))
            .outside("web1", "prod-web", a(198, 19, 1, 10))
            .outside("db1", "prod-db", a(198, 19, 2, 10))
            .outside("repo1", "artifacts", a(198, 19, 3, 10))
    }

    /// The tag in every namespace name.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The firewall's namespace (interfaces [`INSIDE_IF`] and [`OUTSIDE_IF`]).
    pub fn fw(&self) -> &Netns {
        &self.fw
    }

    /// The switch namespace of a side.
    pub fn switch(&self, side: Side) -> &Netns {
        match side {
            Side::Inside => &self.sw_in,
            Side::Outside => &self.sw_out,
        }
    }

    /// All hosts, in the order they were added.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// A host by name; panics with the list of names if there is none (a test bug).
    pub fn host(&self, name: &str) -> &Host {
        self.hosts.iter().find(|h| h.spec.name == name).unwrap_or_else(|| {
            let names: Vec<_> = self.hosts.iter().map(|h| h.name()).collect();
            panic!("no host {name:?} in the topology (hosts: {names:?})")
        })
    }

    /// Keeps everything after this value is dropped (for `testbed up`); returns the tag.
    pub fn persist(mut self) -> String {
        for l in &mut self.links {
            l.disarm();
        }
        let hosts = std::mem::take(&mut self.hosts);
        for h in hosts {
            let Host { netns, mut _link, .. } = h;
            _link.disarm();
            netns.persist();
        }
        self.sw_in.armed = false;
        self.sw_out.armed = false;
        self.fw.armed = false;
        std::mem::take(&mut self.tag)
    }

    /// One line per namespace: what `testbed status` prints.
    pub fn describe(&self) -> String {
        let mut s = format!("fw {} inside={INSIDE_IF} outside={OUTSIDE_IF}\n", self.fw.name());
        for h in &self.hosts {
            s.push_str(&format!(
                "host {} side={} zone={} ns={} ip={} mac={}\n",
                h.spec.name,
                h.spec.side.as_str(),
                h.spec.zone,
                h.netns.name(),
                h.spec.ip,
                h.mac
            ));
        }
        s
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        // Explicit order: hosts, then the links, switches and firewall (fields drop after this).
        self.hosts.clear();
        self.links.clear();
    }
}

/// Deletes every namespace of testbed `tag` (for `testbed down` after `up`, or after a crash).
/// Returns the names deleted.
pub fn teardown_tag(tag: &str) -> io::Result<Vec<String>> {
    validate_tag(tag)?;
    let prefix = format!("bh-{tag}-");
    let mut deleted = Vec::new();
    let mut names: Vec<String> = list_netns()?.into_iter().filter(|n| n.starts_with(&prefix)).collect();
    // Hosts first, then switches, firewall last (mirrors Drop).
    names.sort_by_key(|n| {
        let role = &n[prefix.len()..];
        match role {
            "fw" => 2,
            "swi" | "swo" => 1,
            _ => 0,
        }
    });
    for n in names {
        ip(&["netns", "del", &n])?;
        deleted.push(n);
    }
    Ok(deleted)
}

/// PIDs of processes whose network namespace is `ns` (`ip netns pids`).
pub fn netns_pids(ns: &str) -> io::Result<Vec<i32>> {
    let out = ip(&["netns", "pids", ns])?;
    Ok(String::from_utf8_lossy(&out.stdout).split_whitespace().filter_map(|p| p.parse().ok()).collect())
}

#[derive(Debug, Default)]
struct Lines {
    lines: Mutex<Vec<String>>,
    cond: Condvar,
}

/// A child process (usually started with [`Netns::command`]) that is killed (SIGKILL, by PID) and
/// reaped when dropped. Its stdout lines are collected so tests can wait for a readiness line.
#[derive(Debug)]
pub struct ChildGuard {
    child: Option<Child>,
    stdout: Arc<Lines>,
    label: String,
}

impl ChildGuard {
    /// Spawns `cmd` with stdout captured line by line and stderr inherited.
    pub fn spawn(label: &str, mut cmd: Command) -> io::Result<ChildGuard> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| io_err(format!("cannot start {label} ({cmd:?}): {e}")))?;
        let out = child.stdout.take().expect("stdout was piped");
        let lines = Arc::new(Lines::default());
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                sink.lines.lock().expect("lines lock").push(line);
                sink.cond.notify_all();
            }
        });
        Ok(ChildGuard { child: Some(child), stdout: lines, label: label.to_owned() })
    }

    /// PID of the child.
    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    /// Waits until a stdout line starts with `prefix`; returns it, or `None` after `timeout` or
    /// if the child exited first.
    pub fn wait_for_line(&mut self, prefix: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut lines = self.stdout.lines.lock().expect("lines lock");
        loop {
            if let Some(l) = lines.iter().find(|l| l.starts_with(prefix)) {
                return Some(l.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            let step = (deadline - now).min(Duration::from_millis(100));
            lines = self.stdout.cond.wait_timeout(lines, step).expect("lines lock").0;
            drop(lines);
            if let Some(c) = self.child.as_mut() {
                if matches!(c.try_wait(), Ok(Some(_))) {
                    // Give the reader a moment to collect the last lines, then look once more.
                    std::thread::sleep(Duration::from_millis(50));
                    let lines = self.stdout.lines.lock().expect("lines lock");
                    return lines.iter().find(|l| l.starts_with(prefix)).cloned();
                }
            }
            lines = self.stdout.lines.lock().expect("lines lock");
        }
    }

    /// Every stdout line so far.
    pub fn lines(&self) -> Vec<String> {
        self.stdout.lines.lock().expect("lines lock").clone()
    }

    /// Sends `sig` to the child (by PID).
    pub fn signal(&self, sig: Signal) -> io::Result<()> {
        kill(Pid::from_raw(self.pid()), sig)
            .map_err(|e| io_err(format!("kill {} {}: {e}", self.label, self.pid())))
    }

    /// Waits up to `timeout` for the child to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then wait up to `timeout`; SIGKILL if it is still running. Returns the exit
    /// status when the child stopped on SIGTERM.
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let _ = self.signal(Signal::SIGTERM);
        let st = self.wait_timeout(timeout);
        if st.is_none() {
            self.kill_now();
        }
        st
    }

    /// SIGKILL and reap.
    pub fn kill_now(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_validated() {
        assert!(validate_tag("demo").is_ok());
        assert!(validate_tag("").is_err());
        assert!(validate_tag("UPPER").is_err());
        assert!(validate_tag("waytoolongtag1").is_err());
        assert!(validate_tag("a-b").is_err());
    }

    #[test]
    fn host_names_fit_port_names() {
        assert!(validate_host_name("corp1").is_ok());
        assert!(validate_host_name("abcdefghijklmn").is_err(), "14 bytes");
        assert!(validate_host_name("fw").is_err(), "reserved role");
        assert!(validate_host_name("Web").is_err());
    }

    #[test]
    fn random_tags_are_valid_and_vary() {
        let a = random_tag();
        std::thread::sleep(Duration::from_millis(1));
        let b = random_tag();
        assert!(validate_tag(&a).is_ok());
        assert_ne!(a, b);
    }

    #[test]
    fn demo_plan_stays_in_the_benchmark_range_and_sides_split_by_second_octet() {
        let b = Topology::demo();
        assert_eq!(b.hosts.len(), 7);
        for h in &b.hosts {
            let o = h.ip.octets();
            assert_eq!(o[0], 198);
            let want = match h.side {
                Side::Inside => 18,
                Side::Outside => 19,
            };
            assert_eq!(o[1], want, "{}", h.name);
        }
    }

    #[test]
    fn addresses_outside_the_range_are_refused_before_anything_is_created() {
        let err = Topology::builder().inside("a", "z", Ipv4Addr::new(10, 0, 0, 1)).build().unwrap_err();
        assert!(err.to_string().contains("outside 198.18.0.0/15"), "{err}");
    }
}
