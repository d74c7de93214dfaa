//! `bulkhead replay`: every packet of a capture through the real engine, offline.
//!
//! A network team replays yesterday's traffic against today's pull request: the capture (pcap or
//! pcapng, Ethernet link type) is read packet by packet and each frame goes through a real
//! [`bulkhead_engine::Worker`] — the same conntrack, fragment tracker and verdict code as the
//! AF_XDP loop — judged by the compiled policy. Nothing is sent anywhere.
//!
//! # Contract
//! - **Clock.** Each packet is its own batch and the engine's `now_ns` is the packet's capture
//!   timestamp (nanoseconds since the epoch), so idle timeouts, fragment timeouts and the
//!   half-open timeout behave as they did on the wire. Captures are not always monotonic (merged
//!   captures, multi-queue NICs): the clock never goes backwards, a packet older than its
//!   predecessor is judged at its predecessor's time.
//! - **Per-packet records.** One [`PacketRecord`] per packet, numbered from 1 in capture order:
//!   the verdict, the reason (the drop reason, or why it passed), the policy decision and the
//!   deciding rule's name (from [`bulkhead_engine::Worker::last_decisions`]), and the generation
//!   that judged it. An early fragment the engine holds gets a `held` record; when its first
//!   fragment decides, a second record with the same number and [`Stage::Released`] follows; one
//!   still held at the end of the capture gets a [`Stage::HeldAtEnd`] record.
//! - **Changes.** `--swap N=PATH` and `--quarantine N=TARGET` take effect *before* packet `N`
//!   (`N` >= 1). All changes due before one packet are folded into one new table set, so they
//!   share one new generation (the initial policy is generation 1); swaps apply before
//!   quarantines. A quarantine is operator state, like `bulkhead quarantine add` on the daemon: it
//!   stays in force across later swaps. A target is an address, a CIDR, or an identity name (that
//!   must exist in the policy in force at that point). Every policy is loaded and validated, and
//!   every identity target checked, before the first packet, so a broken `--swap` file or an
//!   unknown identity fails the run before any output.
//! - **Time to contain.** For each quarantine the summary reports the first later packet dropped
//!   as `quarantined` whose source or destination is the target, and the capture time from the
//!   change to that drop.
//! - **Outputs.** `--pass-out` receives every forwarded frame (pass and would-deny, released
//!   fragments included), `--drop-out` every dropped frame and every fragment still held at the
//!   end; both are pcap with nanosecond timestamps carrying the original capture time and length.
//! - **Snapped captures.** A record shorter than its original length (a capture taken with a snap
//!   length, `tcpdump -s 96`) is judged at its wire length with the missing bytes as zeros, so its
//!   IP and L4 lengths hold; the policy reads headers, never payload. Such records are counted
//!   (`snapped` in the summary) and written to the outputs as captured. pcap records are read raw
//!   and validated here, because pcap-file 2.0 refuses an original length past the snap length.
//! - **Damage.** A truncated or corrupt capture is replayed up to the damage, summarised, and
//!   then reported as an error (exit 1), naming the last good packet.
//!
//! pcap-file 2.0 reads pcapng Enhanced Packet Block timestamps as raw units; this module converts
//! them with the interface's `if_tsresol` (default microseconds) and `if_tsoffset`.

use crate::compile::compile;
use crate::diag::Loc;
use crate::load::load_paths;
use crate::model::{Cidr, Policy};
use bulkhead_engine::{CountersSnapshot, DropReason, EngineConfig, Verdict, Worker};
use bulkhead_tables::{prefix_contains, Decision, IdentityId, TableSet};
use bulkhead_wire::{parse, Parsed};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter};
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::{DataLink, TsResolution};
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// Default flow-table capacity of the replay worker (the daemon's default is larger; a capture
/// rarely needs it and the table is allocated up front).
pub const DEFAULT_FLOW_CAPACITY: u32 = 1 << 18;

/// The longest frame a snapped record is padded back to (a 64 KiB IP packet in a QinQ frame).
const MAX_WIRE_FRAME: usize = 65_535 + 22;

/// A record the capture cut short (snap length), as it was on the wire: its captured bytes, then
/// zeros up to its original length, in `buf`. `None` for a whole record.
fn wire_frame<'b>(data: &[u8], orig_len: u32, buf: &'b mut Vec<u8>) -> Option<&'b [u8]> {
    if (orig_len as usize) <= data.len() || data.len() >= MAX_WIRE_FRAME {
        return None;
    }
    buf.clear();
    buf.extend_from_slice(data);
    buf.resize((orig_len as usize).min(MAX_WIRE_FRAME), 0);
    Some(buf)
}

/// Everything that can stop a replay.
#[derive(Debug)]
pub enum ReplayError {
    /// A policy file did not validate (positioned diagnostics, already rendered).
    Policy { what: String, diagnostics: String },
    /// A command-line argument is malformed.
    Arg(String),
    /// The capture cannot be read (after `packets` good packets).
    Capture { path: String, packets: u64, message: String },
    /// A change cannot be applied (e.g. an unknown identity at that point).
    Change { before: u64, message: String },
    /// Writing an output failed.
    Output(String),
    /// Standard output was closed by its reader (e.g. piped into `head`).
    StdoutClosed,
}

impl std::fmt::Display for ReplayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplayError::Policy { what, diagnostics } => write!(f, "{what} is invalid:\n{diagnostics}"),
            ReplayError::Arg(m) | ReplayError::Output(m) => f.write_str(m),
            ReplayError::Capture { path, packets, message } => {
                write!(f, "{path}: cannot read the capture after packet {packets}: {message}")
            }
            ReplayError::Change { before, message } => write!(f, "before packet {before}: {message}"),
            ReplayError::StdoutClosed => f.write_str("standard output was closed"),
        }
    }
}

impl std::error::Error for ReplayError {}

// ---------------------------------------------------------------------------------------------
// Capture input
// ---------------------------------------------------------------------------------------------

/// One packet read from a capture (borrowed from the reader's buffer until the next call).
#[derive(Clone, Copy, Debug)]
pub struct CapturedPacket<'a> {
    /// Capture timestamp, nanoseconds since the epoch.
    pub ts_ns: u64,
    /// Length on the wire (the frame may be shorter if the capture was snapped).
    pub orig_len: u32,
    pub data: &'a [u8],
}

/// Which container a capture uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaptureFormat {
    Pcap,
    PcapNg,
}

/// Timestamp conversion of one pcapng interface.
#[derive(Clone, Copy, Debug)]
struct Iface {
    ethernet: bool,
    linktype: DataLink,
    /// `if_tsresol`: bit 7 clear = 10^-v s per unit, set = 2^-(v & 0x7f).
    tsresol: u8,
    /// `if_tsoffset`, seconds.
    offset_s: u64,
}

impl Iface {
    fn ts_ns(&self, raw: u64) -> u64 {
        let raw = u128::from(raw);
        let v = u32::from(self.tsresol & 0x7f);
        let ns = if self.tsresol & 0x80 == 0 {
            if v <= 9 {
                raw * 10u128.pow(9 - v)
            } else {
                raw / 10u128.pow((v - 9).min(38))
            }
        } else if v < 64 {
            (raw * 1_000_000_000) >> v
        } else {
            0
        };
        let ns = ns + u128::from(self.offset_s) * 1_000_000_000;
        u64::try_from(ns).unwrap_or(u64::MAX)
    }
}

enum Inner<R: Read> {
    Pcap(PcapReader<R>),
    PcapNg { reader: PcapNgReader<R>, ifaces: Vec<Iface> },
}

/// Reads pcap (micro- or nanosecond, either byte order) and pcapng captures of Ethernet frames.
pub struct CaptureReader<R: Read> {
    inner: Inner<R>,
    format: CaptureFormat,
    buf: Vec<u8>,
    last_ts: u64,
}

impl<R: Read> std::fmt::Debug for CaptureReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureReader").field("format", &self.format).field("last_ts", &self.last_ts).finish()
    }
}

const PCAP_MAGICS: [[u8; 4]; 4] =
    [[0xd4, 0xc3, 0xb2, 0xa1], [0xa1, 0xb2, 0xc3, 0xd4], [0x4d, 0x3c, 0xb2, 0xa1], [0xa1, 0xb2, 0x3c, 0x4d]];
const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

impl CaptureReader<BufReader<File>> {
    /// Opens a capture file, detecting pcap or pcapng from its magic number.
    ///
    /// # Errors
    /// The file cannot be read, is neither format, or is not an Ethernet capture.
    pub fn open(path: &Path) -> Result<Self, String> {
        let f = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
        Self::new(BufReader::new(f))
    }
}

impl<R: BufRead> CaptureReader<R> {
    /// Wraps a buffered reader positioned at the start of a capture.
    ///
    /// # Errors
    /// Neither pcap nor pcapng, a bad header, or a link type other than Ethernet.
    pub fn new(mut r: R) -> Result<Self, String> {
        let head = r.fill_buf().map_err(|e| format!("cannot read: {e}"))?;
        if head.len() < 4 {
            return Err("empty or truncated file: expected a pcap or pcapng capture".to_string());
        }
        let magic = [head[0], head[1], head[2], head[3]];
        if PCAP_MAGICS.contains(&magic) {
            let reader = PcapReader::new(r).map_err(|e| format!("bad pcap header: {e}"))?;
            let dl = reader.header().datalink;
            if dl != DataLink::ETHERNET {
                return Err(format!("link type {dl:?} is not supported: expected Ethernet (1)"));
            }
            Ok(Self { inner: Inner::Pcap(reader), format: CaptureFormat::Pcap, buf: Vec::new(), last_ts: 0 })
        } else if magic == PCAPNG_MAGIC {
            let reader = PcapNgReader::new(r).map_err(|e| format!("bad pcapng section header: {e}"))?;
            Ok(Self {
                inner: Inner::PcapNg { reader, ifaces: Vec::new() },
                format: CaptureFormat::PcapNg,
                buf: Vec::new(),
                last_ts: 0,
            })
        } else {
            Err(format!(
                "not a pcap or pcapng capture (magic {:02x}{:02x}{:02x}{:02x})",
                magic[0], magic[1], magic[2], magic[3]
            ))
        }
    }
}

/// A record-level read error in words an operator can act on.
fn record_error(e: pcap_file::PcapError) -> String {
    match e {
        pcap_file::PcapError::IncompleteBuffer => {
            "truncated capture: the file ends inside a record".to_string()
        }
        pcap_file::PcapError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            "truncated capture: the file ends inside a record".to_string()
        }
        pcap_file::PcapError::IoError(io) => format!("read error: {io}"),
        other => format!("corrupt record: {other}"),
    }
}

impl<R: Read> CaptureReader<R> {
    pub fn format(&self) -> CaptureFormat {
        self.format
    }

    /// The next packet, `None` at the end of the capture.
    ///
    /// # Errors
    /// A truncated or corrupt record, or a pcapng packet on a non-Ethernet interface.
    pub fn next_packet(&mut self) -> Option<Result<CapturedPacket<'_>, String>> {
        let (ts_ns, orig_len) = match &mut self.inner {
            // Raw records, validated here: pcap-file 2.0's own check refuses `orig_len > snaplen`,
            // which every capture taken with a snap length (`tcpdump -s 96`) has.
            Inner::Pcap(reader) => {
                let nanos = reader.header().ts_resolution == TsResolution::NanoSecond;
                match reader.next_raw_packet()? {
                    Ok(p) => {
                        let frac_ns = if nanos { Some(p.ts_frac) } else { p.ts_frac.checked_mul(1000) };
                        let Some(frac_ns) = frac_ns.filter(|&f| f < 1_000_000_000) else {
                            return Some(Err(format!(
                                "corrupt record: timestamp fraction {} is out of range",
                                p.ts_frac
                            )));
                        };
                        if p.incl_len > p.orig_len {
                            return Some(Err(format!(
                                "corrupt record: captured length {} exceeds the original length {}",
                                p.incl_len, p.orig_len
                            )));
                        }
                        self.buf.clear();
                        self.buf.extend_from_slice(&p.data);
                        (u64::from(p.ts_sec) * 1_000_000_000 + u64::from(frac_ns), p.orig_len)
                    }
                    Err(e) => return Some(Err(record_error(e))),
                }
            }
            Inner::PcapNg { reader, ifaces } => loop {
                let block = match reader.next_block()? {
                    Ok(b) => b,
                    Err(e) => return Some(Err(record_error(e))),
                };
                let (iface_id, raw_ts, orig_len, data) = match block {
                    Block::SectionHeader(_) => {
                        ifaces.clear();
                        continue;
                    }
                    Block::InterfaceDescription(idb) => {
                        let mut i = Iface {
                            ethernet: idb.linktype == DataLink::ETHERNET,
                            linktype: idb.linktype,
                            tsresol: 6,
                            offset_s: 0,
                        };
                        for o in &idb.options {
                            match o {
                                InterfaceDescriptionOption::IfTsResol(v) => i.tsresol = *v,
                                InterfaceDescriptionOption::IfTsOffset(v) => i.offset_s = *v,
                                _ => {}
                            }
                        }
                        ifaces.push(i);
                        continue;
                    }
                    // pcap-file stores the raw 64-bit timestamp in `as_nanos()` (see module docs).
                    Block::EnhancedPacket(epb) => (
                        epb.interface_id,
                        Some(u64::try_from(epb.timestamp.as_nanos()).unwrap_or(u64::MAX)),
                        epb.original_len,
                        epb.data,
                    ),
                    Block::SimplePacket(spb) => (0, None, spb.original_len, spb.data),
                    Block::Packet(pb) => {
                        (u32::from(pb.interface_id), Some(pb.timestamp), pb.original_len, pb.data)
                    }
                    _ => continue,
                };
                let Some(iface) = ifaces.get(iface_id as usize) else {
                    return Some(Err(format!(
                        "packet on interface {iface_id}, which has no interface description"
                    )));
                };
                if !iface.ethernet {
                    return Some(Err(format!(
                        "packet on interface {iface_id} with link type {:?}: expected Ethernet (1)",
                        iface.linktype
                    )));
                }
                let ts = raw_ts.map_or(self.last_ts, |r| iface.ts_ns(r));
                self.buf.clear();
                self.buf.extend_from_slice(&data);
                break (ts, orig_len);
            },
        };
        self.last_ts = ts_ns;
        Some(Ok(CapturedPacket { ts_ns, orig_len, data: &self.buf }))
    }
}

/// A pcap file (nanosecond timestamps, Ethernet) that replay writes frames into.
pub struct PcapOut {
    path: PathBuf,
    writer: PcapWriter<BufWriter<File>>,
    pub packets: u64,
}

impl std::fmt::Debug for PcapOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcapOut").field("path", &self.path).field("packets", &self.packets).finish()
    }
}

impl PcapOut {
    /// Creates (truncates) `path`.
    ///
    /// # Errors
    /// The file cannot be created.
    pub fn create(path: &Path) -> Result<Self, ReplayError> {
        let f = File::create(path).map_err(|e| ReplayError::Output(format!("{}: {e}", path.display())))?;
        let header = PcapHeader {
            snaplen: 262_144,
            ts_resolution: TsResolution::NanoSecond,
            datalink: DataLink::ETHERNET,
            ..PcapHeader::default()
        };
        let writer = PcapWriter::with_header(BufWriter::new(f), header)
            .map_err(|e| ReplayError::Output(format!("{}: {e}", path.display())))?;
        Ok(Self { path: path.to_path_buf(), writer, packets: 0 })
    }

    /// Appends one frame with its original timestamp and wire length.
    ///
    /// # Errors
    /// The write failed.
    pub fn write(&mut self, ts_ns: u64, orig_len: u32, data: &[u8]) -> Result<(), ReplayError> {
        let orig_len = orig_len.max(data.len() as u32);
        self.writer
            .write_packet(&PcapPacket::new(Duration::from_nanos(ts_ns), orig_len, data))
            .map_err(|e| ReplayError::Output(format!("{}: {e}", self.path.display())))?;
        self.packets += 1;
        Ok(())
    }

    /// Flushes the file.
    ///
    /// # Errors
    /// The flush failed.
    pub fn finish(self) -> Result<u64, ReplayError> {
        let path = self.path.display().to_string();
        self.writer.into_writer().flush().map_err(|e| ReplayError::Output(format!("{path}: {e}")))?;
        Ok(self.packets)
    }
}

// ---------------------------------------------------------------------------------------------
// The plan: initial policy and scheduled changes
// ---------------------------------------------------------------------------------------------

/// What `--quarantine` puts in quarantine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QuarantineTarget {
    /// An address (as a host prefix) or a CIDR.
    Prefix(Cidr),
    /// Every address of a named identity.
    Identity(String),
}

impl std::fmt::Display for QuarantineTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QuarantineTarget::Prefix(c) if c.len == c.max_len() => write!(f, "{}", c.addr),
            QuarantineTarget::Prefix(c) => write!(f, "{}/{}", c.addr, c.len),
            QuarantineTarget::Identity(n) => write!(f, "identity {n}"),
        }
    }
}

impl FromStr for QuarantineTarget {
    type Err = String;

    /// `198.18.1.10`, `2001:db8::1`, `198.18.1.0/24` or an identity name.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty quarantine target: expected an address, a CIDR or an identity name".into());
        }
        if let Ok(a) = s.parse::<IpAddr>() {
            let len = if a.is_ipv4() { 32 } else { 128 };
            return Ok(QuarantineTarget::Prefix(Cidr { addr: a, len }));
        }
        if s.contains('/') {
            // The policy's CIDR parser: the same messages ("did you mean 198.18.1.0/24?").
            return crate::parse::parse_cidr(s).map(QuarantineTarget::Prefix);
        }
        if s.contains(':') || s.chars().all(|c| c.is_ascii_digit() || c == '.') {
            return Err(format!("`{s}` is not a valid IP address"));
        }
        if s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
            return Ok(QuarantineTarget::Identity(s.to_string()));
        }
        Err(format!("`{s}` is not an address, a CIDR or an identity name"))
    }
}

/// Splits `N=VALUE` (`N` >= 1).
///
/// # Errors
/// No `=`, or `N` is not a positive packet number.
pub fn split_at_packet<'a>(flag: &str, s: &'a str) -> Result<(u64, &'a str), String> {
    let (n, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{flag} `{s}`: expected N=VALUE (N: packet number from 1)"))?;
    let n: u64 = n.trim().parse().map_err(|_| format!("{flag} `{s}`: `{n}` is not a packet number"))?;
    if n == 0 {
        return Err(format!("{flag} `{s}`: packets are numbered from 1"));
    }
    if v.is_empty() {
        return Err(format!("{flag} `{s}`: nothing after `=`"));
    }
    Ok((n, v))
}

/// One scheduled change.
#[derive(Clone, Debug)]
pub enum ChangeKind {
    /// Replace the policy (`label` names it in output, usually its path).
    Swap {
        policy: Box<Policy>,
        label: String,
    },
    Quarantine(QuarantineTarget),
}

/// A change that takes effect before packet `before`.
#[derive(Clone, Debug)]
pub struct PlannedChange {
    pub before: u64,
    pub kind: ChangeKind,
}

/// The initial policy and the changes, ready to run.
#[derive(Clone, Debug)]
pub struct ReplayPlan {
    pub policy: Policy,
    pub label: String,
    pub changes: Vec<PlannedChange>,
}

fn load_policy(path: &Path, what: &str) -> Result<Policy, ReplayError> {
    load_paths(&[path.to_path_buf()]).map_err(|d| ReplayError::Policy {
        what: if what.ends_with('=') {
            format!("{what}{}", path.display())
        } else {
            format!("{what} {}", path.display())
        },
        diagnostics: d.to_string(),
    })
}

impl ReplayPlan {
    /// Loads the initial policy and every `--swap` policy (so a broken one fails before any
    /// packet) and parses every `--quarantine`.
    ///
    /// # Errors
    /// Invalid policies or malformed arguments.
    pub fn from_args(policy: &Path, swaps: &[String], quarantines: &[String]) -> Result<Self, ReplayError> {
        let initial = load_policy(policy, "policy")?;
        let mut changes = Vec::new();
        for s in swaps {
            let (n, p) = split_at_packet("--swap", s).map_err(ReplayError::Arg)?;
            let pol = load_policy(Path::new(p), &format!("--swap {n}="))?;
            changes.push(PlannedChange {
                before: n,
                kind: ChangeKind::Swap { policy: Box::new(pol), label: p.to_string() },
            });
        }
        for q in quarantines {
            let (n, t) = split_at_packet("--quarantine", q).map_err(ReplayError::Arg)?;
            let target: QuarantineTarget =
                t.parse().map_err(|e: String| ReplayError::Arg(format!("--quarantine {e}")))?;
            changes.push(PlannedChange { before: n, kind: ChangeKind::Quarantine(target) });
        }
        Ok(Self { policy: initial, label: policy.display().to_string(), changes })
    }
}

// ---------------------------------------------------------------------------------------------
// Records and summary
// ---------------------------------------------------------------------------------------------

/// Where in its life a record reports a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Judged when it arrived.
    Judged,
    /// An early fragment, held earlier, released now for transmission.
    Released,
    /// An early fragment still held when the capture ended (never transmitted).
    HeldAtEnd,
}

/// The replay's account of one packet.
#[derive(Clone, Debug)]
pub struct PacketRecord<'a> {
    /// Packet number in the capture, from 1.
    pub packet: u64,
    pub ts_ns: u64,
    pub orig_len: u32,
    pub data: &'a [u8],
    pub stage: Stage,
    pub verdict: Verdict,
    /// The policy decision behind the verdict, when a policy lookup decided.
    pub decision: Option<Decision>,
    /// The deciding rule's name (`None` for default deny, quarantine, or no policy lookup).
    pub rule: Option<String>,
    /// Generation of the table set in force.
    pub generation: u64,
}

/// A short description of a frame: protocol and endpoints.
pub fn describe(data: &[u8]) -> String {
    fn ep(a: IpAddr, port: Option<u16>) -> String {
        match (a, port) {
            (IpAddr::V4(a), Some(p)) => format!("{a}:{p}"),
            (IpAddr::V6(a), Some(p)) => format!("[{a}]:{p}"),
            (a, None) => a.to_string(),
        }
    }
    match parse(data) {
        Err(m) => format!("malformed ({}, {} bytes)", m.as_str(), data.len()),
        Ok(Parsed::Arp) => "arp".to_string(),
        Ok(Parsed::OtherEthertype(t)) => format!("ethertype 0x{t:04x}"),
        Ok(Parsed::Ip(p)) => {
            let frag = p
                .frag
                .map(|f| format!(" frag id {} off {}{}", f.id, f.offset, if f.more { " +" } else { "" }));
            let first_frag = p.frag.is_none_or(|f| f.offset == 0);
            let body = match p.proto {
                6 | 17 | 132 if first_frag => {
                    let name = match p.proto {
                        6 => "tcp",
                        17 => "udp",
                        _ => "sctp",
                    };
                    let mut s =
                        format!("{name} {} -> {}", ep(p.src, Some(p.sport)), ep(p.dst, Some(p.dport)));
                    if p.proto == 6 {
                        let _ = write!(s, " [{}]", tcp_flags(p.tcp_flags));
                    }
                    s
                }
                1 | 58 if first_frag => format!(
                    "{} {} -> {} type {} code {}",
                    if p.proto == 1 { "icmp" } else { "icmpv6" },
                    ep(p.src, None),
                    ep(p.dst, None),
                    p.icmp_type,
                    p.icmp_code
                ),
                n => format!("proto {n} {} -> {}", ep(p.src, None), ep(p.dst, None)),
            };
            format!("{body}{}", frag.unwrap_or_default())
        }
    }
}

/// tcpdump-style flags: S F R P U E W, and `.` for ACK.
pub fn tcp_flags(f: u8) -> String {
    let mut s = String::new();
    for (bit, c) in
        [(0x02, 'S'), (0x01, 'F'), (0x04, 'R'), (0x08, 'P'), (0x20, 'U'), (0x40, 'E'), (0x80, 'W')]
    {
        if f & bit != 0 {
            s.push(c);
        }
    }
    if f & 0x10 != 0 {
        s.push('.');
    }
    if s.is_empty() {
        s.push_str("none");
    }
    s
}

/// The verdict word: `pass`, `would_deny`, `drop` or `held`.
pub fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "pass",
        Verdict::WouldDeny => "would_deny",
        Verdict::Drop(_) => "drop",
        Verdict::Held => "held",
    }
}

/// The policy decision as a word.
pub fn decision_word(d: Decision) -> &'static str {
    match d {
        Decision::Allow { .. } => "allow",
        Decision::Deny { .. } => "deny",
        Decision::DefaultDeny => "default_deny",
        Decision::Quarantined => "quarantined",
        Decision::QuarantineException => "quarantine_exception",
    }
}

impl PacketRecord<'_> {
    /// Why: the drop reason, or why the packet passed (`allow`, `quarantine_exception`,
    /// `arp`, `ndp`, `icmp_error`, `fragment`, `flow`), or for would-deny what would have denied
    /// it (`default_deny`, `rule_deny`).
    pub fn reason(&self) -> &'static str {
        match (self.stage, self.verdict) {
            (Stage::Released, _) => "released",
            (Stage::HeldAtEnd, _) => "held_at_end",
            (_, Verdict::Held) => "fragment_held",
            (_, Verdict::Drop(r)) => r.as_str(),
            (_, Verdict::WouldDeny) => match self.decision {
                Some(Decision::Deny { .. }) => "rule_deny",
                _ => "default_deny",
            },
            (_, Verdict::Pass) => match self.decision {
                Some(Decision::Allow { .. }) => "allow",
                Some(Decision::QuarantineException) => "quarantine_exception",
                Some(_) => "flow",
                None => match parse(self.data) {
                    Ok(Parsed::Arp) => "arp",
                    Ok(Parsed::OtherEthertype(_)) => "ethertype_allowed",
                    Ok(Parsed::Ip(p)) if p.is_ndp => "ndp",
                    Ok(Parsed::Ip(p)) if p.quoted.is_some() => "icmp_error",
                    Ok(Parsed::Ip(p)) if p.frag.is_some_and(|f| f.offset > 0) => "fragment",
                    _ => "flow",
                },
            },
        }
    }

    /// The rule column: the rule's name, `(default deny)`, `(quarantine)`,
    /// `(quarantine exception)`, or `-`.
    pub fn rule_label(&self) -> String {
        match (self.decision, &self.rule) {
            (Some(Decision::Allow { .. } | Decision::Deny { .. }), Some(n)) => n.clone(),
            (Some(Decision::Allow { tier, rule } | Decision::Deny { tier, rule }), None) => {
                format!("(tier {tier} rule {rule})")
            }
            (Some(Decision::DefaultDeny), _) => "(default deny)".to_string(),
            (Some(Decision::Quarantined), _) => "(quarantine)".to_string(),
            (Some(Decision::QuarantineException), _) => "(quarantine exception)".to_string(),
            (None, _) => "-".to_string(),
        }
    }

    /// One human-readable line: number, verdict, reason, rule, generation, packet.
    pub fn to_text(&self) -> String {
        format!(
            "{:>6}  {:<10}  {:<22}  {:<32}  g{:<3} {}",
            self.packet,
            verdict_word(self.verdict),
            self.reason(),
            self.rule_label(),
            self.generation,
            self.summary()
        )
    }

    /// [`describe`] of the frame as judged: a snapped frame at its wire length.
    fn summary(&self) -> String {
        match wire_frame(self.data, self.orig_len, &mut Vec::new()) {
            Some(whole) => {
                format!("{} (snapped at {} of {} bytes)", describe(whole), self.data.len(), self.orig_len)
            }
            None => describe(self.data),
        }
    }

    /// One JSON object (a line of `--json` output).
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "packet": self.packet,
            "ts_ns": self.ts_ns,
            "verdict": verdict_word(self.verdict),
            "reason": self.reason(),
            "decision": self.decision.map(decision_word),
            "rule": self.rule,
            "generation": self.generation,
            "len": self.data.len(),
            "packet_summary": self.summary(),
        });
        if self.stage != Stage::Judged {
            v["stage"] = json!(match self.stage {
                Stage::Released => "released",
                _ => "held_at_end",
            });
        }
        if let Ok(Parsed::Ip(p)) = parse(self.data) {
            v["src"] = json!(p.src.to_string());
            v["dst"] = json!(p.dst.to_string());
            v["proto"] = json!(p.proto);
            if matches!(p.proto, 6 | 17 | 132) {
                v["sport"] = json!(p.sport);
                v["dport"] = json!(p.dport);
            }
        }
        v
    }
}

/// A change as it was applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedChange {
    pub before: u64,
    /// The generation it produced.
    pub generation: u64,
    /// `swap to PATH`, `quarantine 198.18.1.10`, ...
    pub what: Vec<String>,
}

impl AppliedChange {
    pub fn to_text(&self) -> String {
        format!("-- before packet {}: {} (generation {})", self.before, self.what.join(", "), self.generation)
    }

    pub fn to_json(&self) -> Value {
        json!({"change": {"before_packet": self.before, "generation": self.generation, "what": self.what}})
    }
}

/// Time to contain one quarantine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Containment {
    pub target: String,
    pub applied_before: u64,
    pub applied_ts_ns: u64,
    /// First later packet dropped as `quarantined` with the target as source or destination.
    pub first_drop_packet: Option<u64>,
    pub time_to_contain_ns: Option<u64>,
}

/// Totals of a replay.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub packets: u64,
    pub pass: u64,
    pub would_deny: u64,
    pub dropped: u64,
    /// Early fragments released after being held (counted in `pass` / `would_deny` too).
    pub released: u64,
    /// Early fragments still held at the end.
    pub held_at_end: u64,
    /// Frames the capture cut short (snap length): judged with the missing bytes as zeros.
    pub snapped: u64,
    pub drops: BTreeMap<&'static str, u64>,
    /// Packets per deciding rule label (rules, `(default deny)`, ...).
    pub rules: BTreeMap<String, u64>,
    pub changes: Vec<AppliedChange>,
    /// Changes scheduled past the last packet (never applied).
    pub not_applied: Vec<String>,
    pub containment: Vec<Containment>,
    pub first_ts_ns: u64,
    pub last_ts_ns: u64,
    pub generation: u64,
    /// The worker's own counters at the end.
    pub engine: CountersSnapshot,
}

fn secs(ns: u64) -> String {
    format!("{}.{:09}", ns / 1_000_000_000, ns % 1_000_000_000)
}

impl Summary {
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "summary: {} packets: {} pass, {} would_deny, {} dropped, {} held at end",
            self.packets, self.pass, self.would_deny, self.dropped, self.held_at_end
        );
        if self.packets > 0 {
            let _ =
                writeln!(s, "  capture span: {} s", secs(self.last_ts_ns.saturating_sub(self.first_ts_ns)));
        }
        if self.snapped > 0 {
            let _ = writeln!(
                s,
                "  snapped: {} frames shorter than on the wire (capture snap length), judged with the missing bytes as zeros",
                self.snapped
            );
        }
        if !self.drops.is_empty() {
            let d: Vec<String> = self.drops.iter().map(|(k, v)| format!("{k} {v}")).collect();
            let _ = writeln!(s, "  drops by reason: {}", d.join(", "));
        }
        if !self.rules.is_empty() {
            let r: Vec<String> = self.rules.iter().map(|(k, v)| format!("{k} {v}")).collect();
            let _ = writeln!(s, "  decided by: {}", r.join(", "));
        }
        let e = &self.engine;
        let _ = writeln!(
            s,
            "  flows: {} created, {} active at end, {} expired, {} evicted, {} revoked, {} closed",
            e.flows_created,
            e.flows_active,
            e.flows_expired,
            e.flows_evicted,
            e.flows_revoked,
            e.flows_closed
        );
        let _ = writeln!(s, "  final generation: {}", self.generation);
        for c in &self.changes {
            let _ = writeln!(
                s,
                "  change before packet {}: {} -> generation {}",
                c.before,
                c.what.join(", "),
                c.generation
            );
        }
        for c in &self.containment {
            match (c.first_drop_packet, c.time_to_contain_ns) {
                (Some(p), Some(t)) => {
                    let _ = writeln!(
                        s,
                        "  time to contain {}: {} s (first quarantined drop: packet {p})",
                        c.target,
                        secs(t)
                    );
                }
                _ => {
                    let _ = writeln!(
                        s,
                        "  time to contain {}: no quarantined drop of its traffic after packet {}",
                        c.target, c.applied_before
                    );
                }
            }
        }
        for n in &self.not_applied {
            let _ = writeln!(s, "  not applied (capture too short): {n}");
        }
        s
    }

    pub fn to_json(&self) -> Value {
        let e = &self.engine;
        json!({"summary": {
            "packets": self.packets,
            "pass": self.pass,
            "would_deny": self.would_deny,
            "dropped": self.dropped,
            "released": self.released,
            "held_at_end": self.held_at_end,
            "snapped": self.snapped,
            "drops": self.drops,
            "rules": self.rules,
            "first_ts_ns": self.first_ts_ns,
            "last_ts_ns": self.last_ts_ns,
            "generation": self.generation,
            "changes": self.changes.iter().map(|c| json!({"before_packet": c.before, "generation": c.generation, "what": c.what})).collect::<Vec<_>>(),
            "not_applied": self.not_applied,
            "containment": self.containment.iter().map(|c| json!({
                "target": c.target,
                "applied_before_packet": c.applied_before,
                "first_drop_packet": c.first_drop_packet,
                "time_to_contain_seconds": c.time_to_contain_ns.map(|t| t as f64 / 1e9),
            })).collect::<Vec<_>>(),
            "flows": {
                "created": e.flows_created,
                "active": e.flows_active,
                "expired": e.flows_expired,
                "evicted": e.flows_evicted,
                "revoked": e.flows_revoked,
                "closed": e.flows_closed,
            },
        }})
    }
}

/// What a replay reports as it goes.
#[derive(Debug)]
pub enum Event<'a> {
    Change(&'a AppliedChange),
    Packet(&'a PacketRecord<'a>),
}

// ---------------------------------------------------------------------------------------------
// The replayer
// ---------------------------------------------------------------------------------------------

struct Held {
    packet: u64,
    ts_ns: u64,
    orig_len: u32,
    data: Vec<u8>,
}

/// An active quarantine, resolved against the current table set for time-to-contain matching.
struct Watch {
    index: usize,
    target: QuarantineTarget,
    ids: Vec<IdentityId>,
}

/// Drives one [`Worker`] over a capture. Feed packets with [`Replayer::packet`], then call
/// [`Replayer::finish`].
pub struct Replayer {
    policy: Policy,
    quarantined: Vec<QuarantineTarget>,
    tables: TableSet,
    worker: Worker,
    changes: VecDeque<PlannedChange>,
    packets: u64,
    clock: u64,
    held: Vec<Held>,
    released: Vec<(Vec<u8>, Verdict)>,
    /// Scratch for a snapped frame padded to its wire length.
    padded: Vec<u8>,
    watches: Vec<Watch>,
    summary: Summary,
}

impl std::fmt::Debug for Replayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replayer")
            .field("packets", &self.packets)
            .field("generation", &self.tables.generation)
            .finish()
    }
}

fn compile_with(
    policy: &Policy,
    quarantined: &[QuarantineTarget],
    generation: u64,
    before: u64,
) -> Result<TableSet, ReplayError> {
    let mut p = policy.clone();
    let loc = Loc::file("--quarantine");
    for q in quarantined {
        match q {
            QuarantineTarget::Prefix(c) => {
                if !p.quarantine.addresses.iter().any(|(a, _)| a == c) {
                    p.quarantine.addresses.push((*c, loc.clone()));
                }
            }
            QuarantineTarget::Identity(n) => {
                if p.identity(n).is_none() {
                    return Err(ReplayError::Change {
                        before,
                        message: format!("no identity named `{n}` in the policy in force"),
                    });
                }
                if !p.quarantine.identities.iter().any(|(a, _)| a == n) {
                    p.quarantine.identities.push((n.clone(), loc.clone()));
                }
            }
        }
    }
    compile(&p, generation)
        .map(|c| c.tables)
        .map_err(|d| ReplayError::Change { before, message: format!("the policy does not compile: {d}") })
}

/// Before any packet is read: every quarantined identity must exist in the policy in force when
/// it is quarantined and in every policy swapped in later (the quarantine persists), so that a
/// typo is reported at once rather than after minutes of a large capture.
fn check_identity_targets(policy: &Policy, changes: &[PlannedChange]) -> Result<(), ReplayError> {
    let mut in_force = policy;
    let mut names: Vec<&str> = Vec::new();
    for c in changes {
        match &c.kind {
            ChangeKind::Swap { policy, .. } => in_force = policy,
            ChangeKind::Quarantine(QuarantineTarget::Identity(n)) => names.push(n),
            ChangeKind::Quarantine(QuarantineTarget::Prefix(_)) => continue,
        }
        if let Some(n) = names.iter().find(|n| in_force.identity(n).is_none()) {
            return Err(ReplayError::Change {
                before: c.before,
                message: format!("no identity named `{n}` in the policy in force"),
            });
        }
    }
    Ok(())
}

fn target_ids(tables: &TableSet, t: &QuarantineTarget) -> Vec<IdentityId> {
    match t {
        QuarantineTarget::Identity(n) => (0..tables.identity_names.len() as IdentityId)
            .filter(|&i| i != 0 && tables.identity_name(i) == n)
            .collect(),
        QuarantineTarget::Prefix(_) => Vec::new(),
    }
}

impl Replayer {
    /// Compiles the initial policy as generation 1 and allocates the worker.
    ///
    /// # Errors
    /// The initial policy does not compile.
    pub fn new(plan: ReplayPlan, engine: &EngineConfig) -> Result<Self, ReplayError> {
        let tables = compile_with(&plan.policy, &[], 1, 1)?;
        let mut changes = plan.changes;
        // Stable: at one packet, swaps (given first by `from_args`) keep their order before quarantines.
        changes.sort_by_key(|c| (c.before, matches!(c.kind, ChangeKind::Quarantine(_))));
        check_identity_targets(&plan.policy, &changes)?;
        Ok(Self {
            policy: plan.policy,
            quarantined: Vec::new(),
            tables,
            worker: Worker::new(0, engine),
            changes: changes.into(),
            packets: 0,
            clock: 0,
            held: Vec::new(),
            released: Vec::new(),
            padded: Vec::new(),
            watches: Vec::new(),
            summary: Summary { generation: 1, ..Summary::default() },
        })
    }

    /// The table set in force.
    pub fn tables(&self) -> &TableSet {
        &self.tables
    }

    fn apply_due(&mut self, n: u64, ts_ns: u64, emit: &mut dyn FnMut(Event<'_>)) -> Result<(), ReplayError> {
        let mut what = Vec::new();
        let mut new_targets = Vec::new();
        while self.changes.front().is_some_and(|c| c.before <= n) {
            let Some(c) = self.changes.pop_front() else { break };
            match c.kind {
                ChangeKind::Swap { policy, label } => {
                    self.policy = *policy;
                    what.push(format!("swap to {label}"));
                }
                ChangeKind::Quarantine(t) => {
                    what.push(format!("quarantine {t}"));
                    if !self.quarantined.contains(&t) {
                        self.quarantined.push(t.clone());
                    }
                    new_targets.push(t);
                }
            }
        }
        if what.is_empty() {
            return Ok(());
        }
        let generation = self.tables.generation + 1;
        self.tables = compile_with(&self.policy, &self.quarantined, generation, n)?;
        for w in &mut self.watches {
            w.ids = target_ids(&self.tables, &w.target);
        }
        for t in new_targets {
            let index = self.summary.containment.len();
            self.summary.containment.push(Containment {
                target: t.to_string(),
                applied_before: n,
                applied_ts_ns: ts_ns,
                first_drop_packet: None,
                time_to_contain_ns: None,
            });
            let ids = target_ids(&self.tables, &t);
            self.watches.push(Watch { index, target: t, ids });
        }
        let change = AppliedChange { before: n, generation, what };
        emit(Event::Change(&change));
        self.summary.changes.push(change);
        self.summary.generation = generation;
        Ok(())
    }

    fn count(&mut self, rec: &PacketRecord<'_>) {
        let s = &mut self.summary;
        match rec.verdict {
            Verdict::Pass => s.pass += 1,
            Verdict::WouldDeny => s.would_deny += 1,
            Verdict::Drop(r) => {
                s.dropped += 1;
                *s.drops.entry(r.as_str()).or_default() += 1;
            }
            Verdict::Held => {}
        }
        if rec.stage == Stage::Released {
            s.released += 1;
        }
        if rec.verdict != Verdict::Held && rec.decision.is_some() {
            *s.rules.entry(rec.rule_label()).or_default() += 1;
        }
    }

    fn watch_containment(&mut self, n: u64, ts_ns: u64, data: &[u8]) {
        let Ok(Parsed::Ip(p)) = parse(data) else { return };
        for w in &self.watches {
            let c = &mut self.summary.containment[w.index];
            if c.first_drop_packet.is_some() {
                continue;
            }
            let hit = match &w.target {
                QuarantineTarget::Prefix(cidr) => {
                    prefix_contains(cidr.addr, cidr.len, p.src) || prefix_contains(cidr.addr, cidr.len, p.dst)
                }
                QuarantineTarget::Identity(_) => {
                    w.ids.contains(&self.tables.identities.lookup(p.src))
                        || w.ids.contains(&self.tables.identities.lookup(p.dst))
                }
            };
            if hit {
                c.first_drop_packet = Some(n);
                c.time_to_contain_ns = Some(ts_ns.saturating_sub(c.applied_ts_ns));
            }
        }
    }

    /// Judges the next packet of the capture (numbered in call order from 1), reporting any
    /// change applied before it, its record, and the records of fragments it released.
    ///
    /// # Errors
    /// A scheduled change cannot be applied.
    pub fn packet(
        &mut self,
        ts_ns: u64,
        orig_len: u32,
        data: &[u8],
        emit: &mut dyn FnMut(Event<'_>),
    ) -> Result<(), ReplayError> {
        self.packets += 1;
        let n = self.packets;
        if n == 1 {
            self.summary.first_ts_ns = ts_ns;
        }
        self.clock = self.clock.max(ts_ns);
        self.summary.last_ts_ns = self.clock;
        self.apply_due(n, self.clock, emit)?;

        // A frame the capture cut short (snap length) was whole on the wire: judge it at its wire
        // length, the missing bytes as zeros, so its headers' lengths hold (the policy reads
        // headers, never payload). Outputs keep the captured bytes.
        let mut padded = std::mem::take(&mut self.padded);
        let judged: &[u8] = match wire_frame(data, orig_len, &mut padded) {
            Some(whole) => {
                self.summary.snapped += 1;
                whole
            }
            None => data,
        };
        let mut verdict = [Verdict::Held];
        self.worker.process_batch(self.clock, &self.tables, &[judged], &mut verdict);
        let verdict = verdict[0];
        let decision = self.worker.last_decisions().first().copied().flatten();
        let rule = decision.and_then(|d| self.tables.rule_name(d)).map(str::to_string);
        let rec = PacketRecord {
            packet: n,
            ts_ns,
            orig_len,
            data,
            stage: Stage::Judged,
            verdict,
            decision,
            rule,
            generation: self.tables.generation,
        };
        self.summary.packets += 1;
        self.count(&rec);
        if verdict == Verdict::Drop(DropReason::Quarantined) {
            self.watch_containment(n, ts_ns, judged);
        }
        emit(Event::Packet(&rec));
        if verdict == Verdict::Held {
            // As the engine holds it (padded if snapped): released copies are matched by bytes.
            self.held.push(Held { packet: n, ts_ns, orig_len, data: judged.to_vec() });
        }
        self.padded = padded;

        let mut released = std::mem::take(&mut self.released);
        self.worker.drain_released(|bytes, v| released.push((bytes.to_vec(), v)));
        for (bytes, v) in released.drain(..) {
            // The engine hands back a copy of the held frame: match it to its packet number.
            let (packet, ts, olen) = match self.held.iter().position(|h| h.data == bytes) {
                Some(i) => {
                    let h = self.held.remove(i);
                    (h.packet, h.ts_ns, h.orig_len)
                }
                None => (0, self.clock, bytes.len() as u32),
            };
            let rec = PacketRecord {
                packet,
                ts_ns: ts,
                orig_len: olen,
                data: &bytes,
                stage: Stage::Released,
                verdict: v,
                decision: None,
                rule: None,
                generation: self.tables.generation,
            };
            self.count(&rec);
            emit(Event::Packet(&rec));
        }
        self.released = released;
        Ok(())
    }

    /// Reports fragments still held and changes never reached; returns the totals.
    pub fn finish(mut self, emit: &mut dyn FnMut(Event<'_>)) -> Summary {
        for h in std::mem::take(&mut self.held) {
            let rec = PacketRecord {
                packet: h.packet,
                ts_ns: h.ts_ns,
                orig_len: h.orig_len,
                data: &h.data,
                stage: Stage::HeldAtEnd,
                verdict: Verdict::Held,
                decision: None,
                rule: None,
                generation: self.tables.generation,
            };
            self.summary.held_at_end += 1;
            emit(Event::Packet(&rec));
        }
        for c in &self.changes {
            self.summary.not_applied.push(match &c.kind {
                ChangeKind::Swap { label, .. } => format!("before packet {}: swap to {label}", c.before),
                ChangeKind::Quarantine(t) => format!("before packet {}: quarantine {t}", c.before),
            });
        }
        self.summary.engine = self.worker.counters().snapshot();
        self.summary
    }
}

// ---------------------------------------------------------------------------------------------
// The whole run, as the CLI does it
// ---------------------------------------------------------------------------------------------

/// Options of one run of `bulkhead replay`.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub capture: PathBuf,
    pub json: bool,
    pub pass_out: Option<PathBuf>,
    pub drop_out: Option<PathBuf>,
    pub engine: EngineConfig,
}

/// Where `p` points: the canonical path of an existing file, else the absolute path (so an
/// output that does not exist yet still compares equal to another spelling of itself).
fn resolved(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).or_else(|_| std::path::absolute(p)).unwrap_or_else(|_| p.to_path_buf())
}

/// Refuses a pcap output that is the capture itself (it would be truncated while being read)
/// or the other output (two writers would interleave into a corrupt file).
fn check_outputs(opts: &RunOptions) -> Result<(), ReplayError> {
    let cap = resolved(&opts.capture);
    let outs = [("--pass-out", &opts.pass_out), ("--drop-out", &opts.drop_out)];
    for (flag, out) in outs {
        if let Some(o) = out {
            if resolved(o) == cap {
                return Err(ReplayError::Output(format!(
                    "{flag} {} is the capture being replayed: it would be overwritten; write elsewhere",
                    o.display()
                )));
            }
        }
    }
    if let (Some(a), Some(b)) = (&opts.pass_out, &opts.drop_out) {
        if resolved(a) == resolved(b) {
            return Err(ReplayError::Output(format!(
                "--pass-out and --drop-out are the same file ({}): give each its own",
                a.display()
            )));
        }
    }
    Ok(())
}

/// Replays `opts.capture` under `plan`, writing one line per packet (and per change) and the
/// summary to `out`, and the frames to the pcap outputs.
///
/// # Errors
/// An unreadable capture, an output that cannot be written, or a change that cannot be applied.
/// Lines for the packets before the error have been written.
pub fn run(plan: ReplayPlan, opts: &RunOptions, out: &mut dyn Write) -> Result<Summary, ReplayError> {
    let cap_name = opts.capture.display().to_string();
    check_outputs(opts)?;
    let mut reader = CaptureReader::open(&opts.capture).map_err(|message| ReplayError::Capture {
        path: cap_name.clone(),
        packets: 0,
        message,
    })?;
    let mut pass_out = opts.pass_out.as_deref().map(PcapOut::create).transpose()?;
    let mut drop_out = opts.drop_out.as_deref().map(PcapOut::create).transpose()?;
    let label = plan.label.clone();
    let mut rp = Replayer::new(plan, &opts.engine)?;
    let json = opts.json;
    let w = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::BrokenPipe => ReplayError::StdoutClosed,
        _ => ReplayError::Output(format!("stdout: {e}")),
    };
    if !json {
        writeln!(out, "# replay {cap_name} ({:?}) with {label} (generation 1)", reader.format())
            .map_err(w)?;
        writeln!(out, "# {:>4}  {:<10}  {:<22}  {:<32}  gen  packet", "no.", "verdict", "reason", "rule")
            .map_err(w)?;
    }
    // The first output error, kept until the loop can return it.
    let io_err: std::cell::RefCell<Option<ReplayError>> = std::cell::RefCell::new(None);
    let mut emit = |e: Event<'_>| {
        if io_err.borrow().is_some() {
            return;
        }
        let r = (|| -> Result<(), ReplayError> {
            match e {
                Event::Change(c) => {
                    if json {
                        writeln!(out, "{}", c.to_json()).map_err(w)?;
                    } else {
                        writeln!(out, "{}", c.to_text()).map_err(w)?;
                    }
                }
                Event::Packet(r) => {
                    if json {
                        writeln!(out, "{}", r.to_json()).map_err(w)?;
                    } else {
                        writeln!(out, "{}", r.to_text()).map_err(w)?;
                    }
                    let target = match (r.stage, r.verdict) {
                        (Stage::HeldAtEnd, _) | (_, Verdict::Drop(_)) => drop_out.as_mut(),
                        (_, Verdict::Held) => None,
                        _ => pass_out.as_mut(),
                    };
                    if let Some(t) = target {
                        t.write(r.ts_ns, r.orig_len, r.data)?;
                    }
                }
            }
            Ok(())
        })();
        if let Err(e) = r {
            *io_err.borrow_mut() = Some(e);
        }
    };
    let mut read = 0u64;
    // A truncated or corrupt capture still gets its summary (and complete output files) for the
    // packets before the damage; the error comes last and the exit is non-zero.
    let mut damaged = None;
    while let Some(p) = reader.next_packet() {
        let p = match p {
            Ok(p) => p,
            Err(message) => {
                damaged = Some(ReplayError::Capture { path: cap_name.clone(), packets: read, message });
                break;
            }
        };
        read += 1;
        rp.packet(p.ts_ns, p.orig_len, p.data, &mut emit)?;
        if let Some(e) = io_err.borrow_mut().take() {
            return Err(e);
        }
    }
    let summary = rp.finish(&mut emit);
    if let Some(e) = io_err.into_inner() {
        return Err(e);
    }
    if json {
        writeln!(out, "{}", summary.to_json()).map_err(w)?;
    } else {
        write!(out, "{}", summary.to_text()).map_err(w)?;
    }
    if let Some(p) = pass_out {
        p.finish()?;
    }
    if let Some(p) = drop_out {
        p.finish()?;
    }
    match damaged {
        Some(e) => Err(e),
        None => Ok(summary),
    }
}
