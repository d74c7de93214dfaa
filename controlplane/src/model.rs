//! The parsed policy model: what the operator wrote, validated, with source positions.
//!
//! This is the input of the compiler ([`crate::compile`]) and of the naive reference evaluator
//! ([`crate::reference`]), which interprets these types directly so the two can be checked
//! against each other. See `docs/policy.md` for the language.

use crate::diag::Loc;
use bulkhead_tables::{Action, Mode};
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

/// An IPv4 or IPv6 prefix with its host bits cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    pub addr: IpAddr,
    pub len: u8,
}

impl Cidr {
    /// Builds a prefix; `None` when `len` is too long or host bits are set.
    pub fn new(addr: IpAddr, len: u8) -> Option<Self> {
        let c = Self { addr, len };
        (len <= c.max_len() && c.masked() == addr).then_some(c)
    }

    pub fn max_len(&self) -> u8 {
        if self.addr.is_ipv4() {
            32
        } else {
            128
        }
    }

    /// `addr` with the bits past `len` cleared.
    pub fn masked(&self) -> IpAddr {
        mask_addr(self.addr, self.len)
    }

    pub fn contains(&self, a: IpAddr) -> bool {
        bulkhead_tables::prefix_contains(self.addr, self.len, a)
    }

    /// True when `other` lies entirely inside `self` (same family, not shorter).
    pub fn covers(&self, other: &Cidr) -> bool {
        other.len >= self.len && self.contains(other.addr)
    }

    /// Inclusive IPv4 range, if IPv4.
    pub fn v4_range(&self) -> Option<(u32, u32)> {
        match self.addr {
            IpAddr::V4(a) => {
                let lo = u32::from(a);
                let host = if self.len == 0 {
                    u32::MAX
                } else {
                    (1u32 << (32 - u32::from(self.len))).wrapping_sub(1)
                };
                Some((lo, lo | host))
            }
            IpAddr::V6(_) => None,
        }
    }

    /// The last address of the prefix.
    pub fn last(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => {
                let host = if self.len == 0 {
                    u32::MAX
                } else {
                    (1u32 << (32 - u32::from(self.len))).wrapping_sub(1)
                };
                IpAddr::V4(Ipv4Addr::from(u32::from(a) | host))
            }
            IpAddr::V6(a) => {
                let host = if self.len == 0 {
                    u128::MAX
                } else {
                    (1u128 << (128 - u32::from(self.len))).wrapping_sub(1)
                };
                IpAddr::V6(Ipv6Addr::from(u128::from(a) | host))
            }
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// `a` with every bit past `len` cleared.
pub fn mask_addr(a: IpAddr, len: u8) -> IpAddr {
    match a {
        IpAddr::V4(v) => {
            let len = u32::from(len.min(32));
            let m = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            IpAddr::V4(Ipv4Addr::from(u32::from(v) & m))
        }
        IpAddr::V6(v) => {
            let len = u32::from(len.min(128));
            let m = if len == 0 { 0 } else { u128::MAX << (128 - len) };
            IpAddr::V6(Ipv6Addr::from(u128::from(v) & m))
        }
    }
}

/// A named workload identity: labels and the addresses that carry it.
#[derive(Clone, Debug)]
pub struct Identity {
    pub name: String,
    pub loc: Loc,
    pub labels: BTreeMap<String, String>,
    pub addresses: Vec<(Cidr, Loc)>,
}

impl Identity {
    /// Its segment: the value of the `zone` label.
    pub fn zone(&self) -> Option<&str> {
        self.labels.get("zone").map(String::as_str)
    }
}

/// A `matchExpressions` operator.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Expr {
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

impl Expr {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Expr::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Expr::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Expr::Exists(k) => labels.contains_key(k),
            Expr::DoesNotExist(k) => !labels.contains_key(k),
        }
    }
}

/// One entry of a rule's `from` or `to` list. Entries of one list are OR-ed.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Selector {
    /// Every known identity whose labels match all `labels` and all `exprs`; `{}` = every known
    /// identity, never `world`.
    Labels { labels: BTreeMap<String, String>, exprs: Vec<Expr> },
    /// One identity by name.
    Identity(String),
    /// Every address in `cidr` and in none of `except`, whatever identity it has.
    Cidr { cidr: Cidr, except: Vec<Cidr> },
    /// Every address no identity covers.
    World,
}

impl Selector {
    pub fn matches_labels(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Selector::Labels { labels: want, exprs } => {
                want.iter().all(|(k, v)| labels.get(k) == Some(v)) && exprs.iter().all(|e| e.matches(labels))
            }
            Selector::Identity(n) => n == name,
            Selector::Cidr { .. } | Selector::World => false,
        }
    }

    pub fn cidr_matches(&self, a: IpAddr) -> bool {
        match self {
            Selector::Cidr { cidr, except } => cidr.contains(a) && !except.iter().any(|e| e.contains(a)),
            _ => false,
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::Labels { labels, exprs } => {
                let mut parts: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                for e in exprs {
                    parts.push(match e {
                        Expr::In(k, v) => format!("{k} in ({})", v.join(",")),
                        Expr::NotIn(k, v) => format!("{k} notin ({})", v.join(",")),
                        Expr::Exists(k) => k.clone(),
                        Expr::DoesNotExist(k) => format!("!{k}"),
                    });
                }
                if parts.is_empty() {
                    write!(f, "{{}} (every identity)")
                } else {
                    write!(f, "{{{}}}", parts.join(", "))
                }
            }
            Selector::Identity(n) => write!(f, "identity {n}"),
            Selector::Cidr { cidr, except } if except.is_empty() => write!(f, "cidr {cidr}"),
            Selector::Cidr { cidr, except } => {
                let ex: Vec<String> = except.iter().map(ToString::to_string).collect();
                write!(f, "cidr {cidr} except {}", ex.join(","))
            }
            Selector::World => write!(f, "world"),
        }
    }
}

/// A selector with the position it was written at.
#[derive(Clone, Debug)]
pub struct SelectorAt {
    pub sel: Selector,
    pub loc: Loc,
}

/// Protocol and port (or ICMP type / code) match, in classifier terms: for ICMP and ICMPv6,
/// `sport` holds the type range and `dport` the code range (as in `FlowQuery`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortMatch {
    /// IP protocol number; `None` = any protocol.
    pub proto: Option<u8>,
    pub sport: (u16, u16),
    pub dport: (u16, u16),
}

pub const ANY_PORT: (u16, u16) = (0, u16::MAX);

impl PortMatch {
    pub const ANY: PortMatch = PortMatch { proto: None, sport: ANY_PORT, dport: ANY_PORT };

    pub fn matches(&self, proto: u8, sport: u16, dport: u16) -> bool {
        self.proto.is_none_or(|p| p == proto)
            && (self.sport.0..=self.sport.1).contains(&sport)
            && (self.dport.0..=self.dport.1).contains(&dport)
    }
}

impl fmt::Display for PortMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let range = |r: (u16, u16)| if r.0 == r.1 { r.0.to_string() } else { format!("{}-{}", r.0, r.1) };
        match self.proto {
            None => write!(f, "any"),
            Some(p @ (1 | 58)) => {
                write!(f, "{}", proto_name(p))?;
                if self.sport != ANY_PORT {
                    write!(f, " type {}", range(self.sport))?;
                }
                if self.dport != ANY_PORT {
                    write!(f, " code {}", range(self.dport))?;
                }
                Ok(())
            }
            Some(p) => {
                write!(f, "{}", proto_name(p))?;
                if self.sport != ANY_PORT {
                    write!(f, " sport {}", range(self.sport))?;
                }
                if self.dport != ANY_PORT {
                    write!(f, "/{}", range(self.dport))?;
                }
                Ok(())
            }
        }
    }
}

/// `tcp`, `udp`, ... or the number.
pub fn proto_name(p: u8) -> String {
    match p {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        58 => "icmpv6".into(),
        132 => "sctp".into(),
        n => n.to_string(),
    }
}

/// Parses a protocol name or number: `Some(None)` = any.
pub fn parse_proto(s: &str) -> Option<Option<u8>> {
    match s.to_ascii_lowercase().as_str() {
        "any" | "all" => Some(None),
        "tcp" => Some(Some(6)),
        "udp" => Some(Some(17)),
        "sctp" => Some(Some(132)),
        "icmp" => Some(Some(1)),
        "icmpv6" | "ipv6-icmp" => Some(Some(58)),
        other => crate::yaml::parse_uint(other).and_then(|n| u8::try_from(n).ok()).map(Some),
    }
}

/// Protocols whose `port` fields mean something.
pub fn has_ports(p: u8) -> bool {
    matches!(p, 6 | 17 | 132)
}

/// An identity rule (from a `Policy` object). `name` is `policy/rule`.
#[derive(Clone, Debug)]
pub struct Rule {
    pub name: String,
    pub loc: Loc,
    pub from: Vec<SelectorAt>,
    pub to: Vec<SelectorAt>,
    /// Empty = any protocol, any port.
    pub ports: Vec<PortMatch>,
    pub action: Action,
    pub mode: Option<Mode>,
}

impl Rule {
    pub fn port_matches(&self, proto: u8, sport: u16, dport: u16) -> bool {
        self.ports.is_empty() || self.ports.iter().any(|p| p.matches(proto, sport, dport))
    }
}

/// One line of an ordered ACL tier: an IPv4 5-tuple match.
#[derive(Clone, Debug)]
pub struct AclRule {
    pub name: String,
    pub loc: Loc,
    pub src: (u32, u32),
    pub dst: (u32, u32),
    /// (value, mask), as in ClassBench: matches when `proto & mask == value & mask`.
    pub proto: (u8, u8),
    pub sport: (u16, u16),
    pub dport: (u16, u16),
    pub action: Action,
    pub mode: Option<Mode>,
}

impl AclRule {
    pub fn matches(&self, src: u32, dst: u32, proto: u8, sport: u16, dport: u16) -> bool {
        (self.src.0..=self.src.1).contains(&src)
            && (self.dst.0..=self.dst.1).contains(&dst)
            && (proto & self.proto.1) == (self.proto.0 & self.proto.1)
            && (self.sport.0..=self.sport.1).contains(&sport)
            && (self.dport.0..=self.dport.1).contains(&dport)
    }
}

/// An ordered, first-match ACL tier.
#[derive(Clone, Debug)]
pub struct AclTier {
    pub name: String,
    pub loc: Loc,
    pub rules: Vec<AclRule>,
    /// The ClassBench file the rules came from, if any.
    pub source: Option<PathBuf>,
}

/// Per-segment settings.
#[derive(Clone, Debug)]
pub struct SegmentSettings {
    pub mode: Option<Mode>,
    pub loc: Loc,
}

/// The `Settings` object (at most one per policy).
#[derive(Clone, Debug, Default)]
pub struct Settings {
    pub mode: Mode,
    pub segments: BTreeMap<String, SegmentSettings>,
    pub dataplane: bulkhead_tables::DataplaneConfig,
    pub loc: Option<Loc>,
}

/// Traffic a quarantined workload may still exchange with `peer`.
#[derive(Clone, Debug)]
pub struct QuarantineExceptionSpec {
    pub name: String,
    pub loc: Loc,
    pub peer: Cidr,
    /// Empty = any protocol and port.
    pub ports: Vec<PortMatch>,
}

/// Everything in quarantine, merged from all `Quarantine` objects.
#[derive(Clone, Debug, Default)]
pub struct QuarantineSpec {
    pub identities: Vec<(String, Loc)>,
    pub addresses: Vec<(Cidr, Loc)>,
    pub exceptions: Vec<QuarantineExceptionSpec>,
}

/// A whole validated policy (possibly from many files).
#[derive(Clone, Debug, Default)]
pub struct Policy {
    pub identities: Vec<Identity>,
    /// Identity rules in load order (files sorted by path, documents and rules in file order).
    pub rules: Vec<Rule>,
    pub acl_tiers: Vec<AclTier>,
    pub settings: Settings,
    pub quarantine: QuarantineSpec,
}

impl Policy {
    pub fn identity(&self, name: &str) -> Option<&Identity> {
        self.identities.iter().find(|i| i.name == name)
    }
}

pub fn action_name(a: Action) -> &'static str {
    match a {
        Action::Allow => "allow",
        Action::Deny => "deny",
    }
}

pub fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Enforce => "enforce",
        Mode::Monitor => "monitor",
    }
}
