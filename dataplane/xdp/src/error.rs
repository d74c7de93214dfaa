//! Errors of the AF_XDP runtime, worded for the operator who has to act on them.

use std::fmt;
use std::io;

/// Everything that can stop the dataplane from starting or keep a worker from running.
#[derive(Debug)]
pub enum XdpError {
    /// The named interface does not exist in this network namespace.
    NoSuchInterface { ifname: String },
    /// An interface name that cannot be an interface name (empty, too long, NUL byte).
    BadInterfaceName { ifname: String },
    /// The caller lacks the privileges XDP and AF_XDP need (CAP_NET_ADMIN, CAP_BPF, CAP_SYS_ADMIN).
    NoPrivilege { what: String, source: io::Error },
    /// Another program (not ours) is attached to the interface's XDP hook.
    InterfaceInUse { ifname: String, prog_id: u32, prog_name: String },
    /// The queue does not exist on the interface (more workers than the device has queues).
    NoSuchQueue { ifname: String, queue: u32, queues: u32 },
    /// The same interface was given for both sides.
    SameInterface { ifname: String },
    /// A configuration value out of range.
    BadConfig { what: String },
    /// Any other system call failure, with the step that failed.
    Sys { what: String, source: io::Error },
}

impl XdpError {
    /// Maps an errno from a privileged operation: EPERM/EACCES become [`XdpError::NoPrivilege`].
    pub(crate) fn sys(what: impl Into<String>, source: io::Error) -> Self {
        let what = what.into();
        match source.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => XdpError::NoPrivilege { what, source },
            _ => XdpError::Sys { what, source },
        }
    }

    /// Builds from a negative errno as libbpf returns it.
    pub(crate) fn from_neg(what: impl Into<String>, ret: i32) -> Self {
        Self::sys(what, io::Error::from_raw_os_error(-ret))
    }
}

impl fmt::Display for XdpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            XdpError::NoSuchInterface { ifname } => {
                write!(f, "interface {ifname:?} does not exist in this network namespace")
            }
            XdpError::BadInterfaceName { ifname } => {
                write!(f, "{ifname:?} is not a valid interface name (1 to 15 bytes, no NUL)")
            }
            XdpError::NoPrivilege { what, source } => write!(
                f,
                "not permitted to {what} ({source}); run as root or grant CAP_NET_ADMIN, CAP_BPF \
                 and CAP_SYS_ADMIN"
            ),
            XdpError::InterfaceInUse { ifname, prog_id, prog_name } => write!(
                f,
                "interface {ifname:?} already has an XDP program attached (id {prog_id}, name \
                 {prog_name:?}) that is not Bulkhead's stale program; remove it (ip link set dev \
                 {ifname} xdp off) or stop the process that owns it"
            ),
            XdpError::NoSuchQueue { ifname, queue, queues } => write!(
                f,
                "interface {ifname:?} has {queues} receive queue(s); queue {queue} does not exist \
                 (use at most {queues} workers)"
            ),
            XdpError::SameInterface { ifname } => {
                write!(f, "inside and outside are both {ifname:?}; a bump in the wire needs two interfaces")
            }
            XdpError::BadConfig { what } => write!(f, "invalid AF_XDP configuration: {what}"),
            XdpError::Sys { what, source } => write!(f, "failed to {what}: {source}"),
        }
    }
}

impl std::error::Error for XdpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            XdpError::NoPrivilege { source, .. } | XdpError::Sys { source, .. } => Some(source),
            _ => None,
        }
    }
}
