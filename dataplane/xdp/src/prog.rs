//! The XDP program that steers frames into Bulkhead's AF_XDP sockets, and its lifecycle.
//!
//! # Why a hand-assembled program
//!
//! libxdp's default program sits behind its multi-program dispatcher, which needs BTF and a bpffs
//! it cannot always have (it does not load in our CI sandbox). Bulkhead needs exactly one thing
//! from XDP: every frame of a queue goes to the AF_XDP socket bound to that queue. That is five
//! eBPF instructions:
//!
//! ```text
//! r2 = *(u32 *)(r1 + 16)        ; ctx->rx_queue_index
//! r1 = map[xsks]                ; the XSKMAP created for this interface
//! r3 = XDP_DROP                 ; action when no socket is bound to the queue
//! call bpf_redirect_map
//! exit
//! ```
//!
//! The fallback action is `XDP_DROP`, so a queue without a worker fails closed: a frame is never
//! silently handed to the firewall host's own stack instead of being judged.
//!
//! # Lifecycle
//!
//! * The program is named [`PROG_NAME`] so that it can be recognised among all programs on the
//!   machine (bpf prog info carries the name).
//! * It is attached with a **bpf_link** owned by this process. The kernel detaches a link's program
//!   when the last file descriptor on the link closes, which includes the process being killed
//!   with SIGKILL: a crash cannot leave the interface black-holed. Clean stop and `Drop` detach
//!   explicitly as well.
//! * Kernels or drivers without XDP links fall back to a netlink attachment, which outlives the
//!   process. For that case (and for anything else that left our program behind) every start first
//!   looks at the interface: a program named [`PROG_NAME`] that no live process owns is removed
//!   ([`remove_stale`]); a program with another name is someone else's and start-up stops with
//!   [`XdpError::InterfaceInUse`]; our program held by a live link (another Bulkhead is running on
//!   the interface) is reported the same way.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::str::FromStr;

use libbpf_sys as bpf;

use crate::error::XdpError;

/// Name of the XDP program Bulkhead loads on each of its interfaces.
pub const PROG_NAME: &str = "bulkhead_xsk";

/// Where in the kernel the XDP program runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XdpMode {
    /// In the driver (`xdpdrv`): the fast path, needs driver support (veth has it).
    #[default]
    Native,
    /// In the generic network stack (`xdpgeneric`): works on any device, slower.
    Generic,
}

impl XdpMode {
    /// The `XDP_FLAGS_*` bit that selects this mode.
    pub fn flags(self) -> u32 {
        match self {
            XdpMode::Native => bpf::XDP_FLAGS_DRV_MODE,
            XdpMode::Generic => bpf::XDP_FLAGS_SKB_MODE,
        }
    }
}

impl FromStr for XdpMode {
    type Err = XdpError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "native" | "drv" | "driver" => Ok(XdpMode::Native),
            "generic" | "skb" => Ok(XdpMode::Generic),
            other => {
                Err(XdpError::BadConfig { what: format!("XDP mode {other:?} (expected native or generic)") })
            }
        }
    }
}

impl std::fmt::Display for XdpMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
        })
    }
}

/// An XDP program found on an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachedProgram {
    /// Kernel program id.
    pub id: u32,
    /// Program name from bpf prog info (empty when the kernel could not tell).
    pub name: String,
    /// The hook it is attached to.
    pub mode: XdpMode,
}

/// Resolves an interface name in the calling thread's network namespace.
pub fn ifindex(ifname: &str) -> Result<u32, XdpError> {
    if ifname.is_empty() || ifname.len() > 15 || ifname.contains('\0') {
        return Err(XdpError::BadInterfaceName { ifname: ifname.to_owned() });
    }
    let c = CString::new(ifname).map_err(|_| XdpError::BadInterfaceName { ifname: ifname.to_owned() })?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(XdpError::NoSuchInterface { ifname: ifname.to_owned() });
    }
    Ok(idx)
}

/// Number of receive queues (rx + combined channels) of an interface, via `ETHTOOL_GCHANNELS`.
///
/// Asked through an ioctl rather than sysfs because sysfs shows the namespace it was mounted in,
/// not the calling thread's. Returns 1 when the driver does not report channels.
pub fn rx_queue_count(ifname: &str) -> Result<u32, XdpError> {
    #[repr(C)]
    #[derive(Default)]
    struct EthtoolChannels {
        cmd: u32,
        max_rx: u32,
        max_tx: u32,
        max_other: u32,
        max_combined: u32,
        rx_count: u32,
        tx_count: u32,
        other_count: u32,
        combined_count: u32,
    }
    const ETHTOOL_GCHANNELS: u32 = 0x3c;
    ifindex(ifname)?;
    let mut ch = EthtoolChannels { cmd: ETHTOOL_GCHANNELS, ..Default::default() };
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(ifname.bytes()) {
        *dst = src as libc::c_char;
    }
    ifr.ifr_ifru.ifru_data = (&raw mut ch).cast();
    // SAFETY: plain socket(2) call; the result is checked.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(XdpError::sys("open a control socket", io::Error::last_os_error()));
    }
    // SAFETY: `sock` was just returned by socket(2) and is owned by nothing else.
    let sock = unsafe { OwnedFd::from_raw_fd(sock) };
    // SAFETY: SIOCETHTOOL reads `ifr` and writes through `ifru_data` into `ch`, both of which live
    // on this stack frame for the duration of the call and have the layout the kernel expects.
    let ret = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL, &mut ifr) };
    if ret < 0 {
        let err = io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::EOPNOTSUPP) => Ok(1),
            _ => Err(XdpError::sys(format!("read the channel count of {ifname}"), err)),
        };
    }
    Ok((ch.rx_count + ch.combined_count).max(1))
}

/// The programs attached to an interface's XDP hooks (native and generic can both be in use).
pub fn attached_programs(ifname: &str) -> Result<Vec<AttachedProgram>, XdpError> {
    let idx = ifindex(ifname)?;
    // SAFETY: bpf_xdp_query_opts is plain old data; zero is its documented initial state.
    let mut opts: bpf::bpf_xdp_query_opts = unsafe { std::mem::zeroed() };
    opts.sz = std::mem::size_of::<bpf::bpf_xdp_query_opts>() as _;
    // SAFETY: `opts` is a valid, correctly sized options struct that outlives the call.
    let ret = unsafe { bpf::bpf_xdp_query(idx as i32, 0, &mut opts) };
    if ret < 0 {
        return Err(XdpError::from_neg(format!("query the XDP program of {ifname}"), ret));
    }
    let mut out = Vec::new();
    for (id, mode) in [(opts.drv_prog_id, XdpMode::Native), (opts.skb_prog_id, XdpMode::Generic)] {
        if id != 0 {
            out.push(AttachedProgram { id, name: prog_name_by_id(id).unwrap_or_default(), mode });
        }
    }
    Ok(out)
}

/// Name of a loaded program, from its kernel id.
fn prog_name_by_id(id: u32) -> Option<String> {
    // SAFETY: plain bpf(2) wrapper; the returned fd is checked and then owned.
    let fd = unsafe { bpf::bpf_prog_get_fd_by_id(id) };
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` was just returned by the kernel and is owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    prog_info(fd.as_raw_fd()).map(|(_, name)| name)
}

/// Id and name of the program behind `fd`.
fn prog_info(fd: RawFd) -> Option<(u32, String)> {
    // SAFETY: bpf_prog_info is plain old data; zero means "fill nothing extra".
    let mut info: bpf::bpf_prog_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<bpf::bpf_prog_info>() as u32;
    // SAFETY: `info` and `len` are valid for writes and `len` holds the buffer size.
    let ret = unsafe { bpf::bpf_prog_get_info_by_fd(fd, &mut info, &mut len) };
    if ret < 0 {
        return None;
    }
    let name: Vec<u8> = info.name.iter().take_while(|c| **c != 0).map(|c| *c as u8).collect();
    Some((info.id, String::from_utf8_lossy(&name).into_owned()))
}

/// Removes Bulkhead's own program left behind on `ifname` by a process that no longer runs.
///
/// Returns the ids removed. A foreign program, or ours held by a live link, is an
/// [`XdpError::InterfaceInUse`].
pub fn remove_stale(ifname: &str) -> Result<Vec<u32>, XdpError> {
    let idx = ifindex(ifname)?;
    let mut removed = Vec::new();
    for p in attached_programs(ifname)? {
        if p.name != PROG_NAME {
            return Err(XdpError::InterfaceInUse {
                ifname: ifname.to_owned(),
                prog_id: p.id,
                prog_name: p.name,
            });
        }
        // SAFETY: plain bpf(2) wrapper; the returned fd is checked and then owned.
        let fd = unsafe { bpf::bpf_prog_get_fd_by_id(p.id) };
        if fd < 0 {
            // Gone between the query and now: nothing to remove.
            continue;
        }
        // SAFETY: `fd` was just returned by the kernel and is owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let opts = bpf::bpf_xdp_attach_opts {
            sz: std::mem::size_of::<bpf::bpf_xdp_attach_opts>() as _,
            old_prog_fd: fd.as_raw_fd(),
            __bindgen_padding_0: [0; 4],
        };
        // SAFETY: `opts` is valid for the call; detaching only replaces the program we named
        // (XDP_FLAGS_REPLACE is implied by old_prog_fd), so a racing attach is never removed.
        let ret = unsafe { bpf::bpf_xdp_detach(idx as i32, p.mode.flags(), &opts) };
        match ret {
            0 => removed.push(p.id),
            r if -r == libc::EBUSY => {
                // Held by a bpf_link: the process that created it is alive.
                return Err(XdpError::InterfaceInUse {
                    ifname: ifname.to_owned(),
                    prog_id: p.id,
                    prog_name: format!("{} (owned by a running Bulkhead)", p.name),
                });
            }
            r => {
                return Err(XdpError::from_neg(
                    format!("detach the stale XDP program {} from {ifname}", p.id),
                    r,
                ))
            }
        }
    }
    Ok(removed)
}

/// One eBPF instruction, laid out like the kernel's `struct bpf_insn`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct Insn {
    code: u8,
    /// dst_reg in the low nibble, src_reg in the high nibble.
    regs: u8,
    off: i16,
    imm: i32,
}

const _: () = assert!(std::mem::size_of::<Insn>() == std::mem::size_of::<bpf::bpf_insn>());

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn { code, regs: (src << 4) | (dst & 0x0f), off, imm }
}

const XDP_DROP: i32 = 1;
/// The kernel-internal "operation not supported" errno libbpf can pass through.
const ENOTSUPP: i32 = 524;
/// Offset of `rx_queue_index` in `struct xdp_md`.
const XDP_MD_RX_QUEUE_INDEX: i16 = 16;

/// The redirect program, referring to the XSKMAP `map_fd`.
fn program(map_fd: RawFd) -> [Insn; 6] {
    const BPF_LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
    const BPF_LD_IMM64: u8 = 0x18; // BPF_LD | BPF_DW | BPF_IMM
    const BPF_MOV64_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
    const BPF_CALL: u8 = 0x85; // BPF_JMP | BPF_CALL
    const BPF_EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT
    [
        insn(BPF_LDX_MEM_W, 2, 1, XDP_MD_RX_QUEUE_INDEX, 0),
        insn(BPF_LD_IMM64, 1, bpf::BPF_PSEUDO_MAP_FD as u8, 0, map_fd),
        insn(0, 0, 0, 0, 0),
        insn(BPF_MOV64_K, 3, 0, 0, XDP_DROP),
        insn(BPF_CALL, 0, 0, 0, bpf::BPF_FUNC_redirect_map as i32),
        insn(BPF_EXIT, 0, 0, 0, 0),
    ]
}

/// How the program is attached to the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachMethod {
    /// bpf_link: detached by the kernel when the owning process exits, however it exits.
    Link,
    /// Legacy netlink attachment: stays until someone detaches it.
    Netlink,
}

#[derive(Debug)]
enum Attachment {
    /// Owned by a bpf_link: detached when the fd closes, also when the process dies.
    Link(OwnedFd),
    /// Legacy netlink attachment: must be detached explicitly.
    Netlink,
    Detached,
}

/// Bulkhead's XDP program and XSKMAP, attached to one interface. Dropping it detaches the program.
#[derive(Debug)]
pub struct XdpProgram {
    ifname: String,
    ifindex: u32,
    mode: XdpMode,
    queues: u32,
    prog: OwnedFd,
    map: OwnedFd,
    prog_id: u32,
    attachment: Attachment,
}

impl XdpProgram {
    /// Removes a stale Bulkhead program from `ifname`, then loads and attaches a fresh one with an
    /// XSKMAP of `queues` entries (keyed by receive queue index).
    pub fn attach(ifname: &str, mode: XdpMode, queues: u32) -> Result<Self, XdpError> {
        Self::attach_with(ifname, mode, queues, AttachMethod::Link, PROG_NAME)
    }

    /// [`XdpProgram::attach`] with an explicit attachment method and program name. A netlink
    /// attachment survives the process (that is what stale-program recovery is for); other names
    /// than [`PROG_NAME`] make the program look foreign. Both exist for tests and old kernels.
    #[doc(hidden)]
    pub fn attach_with(
        ifname: &str,
        mode: XdpMode,
        queues: u32,
        method: AttachMethod,
        name: &str,
    ) -> Result<Self, XdpError> {
        if queues == 0 {
            return Err(XdpError::BadConfig { what: "at least one queue is needed".into() });
        }
        let idx = ifindex(ifname)?;
        remove_stale(ifname)?;

        let map_name = CString::new("bulkhead_xsks").expect("static name has no NUL");
        // SAFETY: the name outlives the call and a null opts pointer means defaults.
        let map = unsafe {
            bpf::bpf_map_create(bpf::BPF_MAP_TYPE_XSKMAP, map_name.as_ptr(), 4, 4, queues, std::ptr::null())
        };
        if map < 0 {
            return Err(XdpError::from_neg(format!("create the XSKMAP for {ifname}"), map));
        }
        // SAFETY: `map` is a fresh fd returned by the kernel, owned by nothing else.
        let map = unsafe { OwnedFd::from_raw_fd(map) };

        let prog = load_program(map.as_raw_fd(), ifname, name)?;
        let prog_id = prog_info(prog.as_raw_fd()).map_or(0, |(id, _)| id);

        let first = match method {
            AttachMethod::Link => attach_link(prog.as_raw_fd(), idx, mode),
            AttachMethod::Netlink => {
                attach_netlink(prog.as_raw_fd(), idx, mode).map(|()| Attachment::Netlink)
            }
        };
        let attachment = first
            .or_else(|link_err| {
                // Only fall back when links are unsupported; real failures surface as they are.
                match link_err.raw_os_error() {
                    Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) | Some(ENOTSUPP) => {
                        attach_netlink(prog.as_raw_fd(), idx, mode).map(|()| Attachment::Netlink)
                    }
                    _ => Err(link_err),
                }
            })
            .map_err(|e| match e.raw_os_error() {
                Some(libc::EBUSY) | Some(libc::EEXIST) => match attached_programs(ifname) {
                    Ok(progs) if !progs.is_empty() => XdpError::InterfaceInUse {
                        ifname: ifname.to_owned(),
                        prog_id: progs[0].id,
                        prog_name: progs[0].name.clone(),
                    },
                    _ => XdpError::sys(format!("attach the XDP program to {ifname} ({mode})"), e),
                },
                _ => XdpError::sys(format!("attach the XDP program to {ifname} ({mode})"), e),
            })?;

        Ok(XdpProgram {
            ifname: ifname.to_owned(),
            ifindex: idx,
            mode,
            queues,
            prog,
            map,
            prog_id,
            attachment,
        })
    }

    /// Steers receive queue `queue` to the AF_XDP socket `xsk_fd`.
    pub fn register(&self, queue: u32, xsk_fd: RawFd) -> Result<(), XdpError> {
        if queue >= self.queues {
            return Err(XdpError::NoSuchQueue { ifname: self.ifname.clone(), queue, queues: self.queues });
        }
        let value: u32 = xsk_fd as u32;
        // SAFETY: key and value point at u32s matching the map's key and value sizes.
        let ret = unsafe {
            bpf::bpf_map_update_elem(
                self.map.as_raw_fd(),
                (&raw const queue).cast(),
                (&raw const value).cast(),
                0,
            )
        };
        if ret < 0 {
            return Err(XdpError::from_neg(
                format!("insert the socket of {} queue {queue} into the XSKMAP", self.ifname),
                ret,
            ));
        }
        Ok(())
    }

    /// Stops steering `queue` (frames on it are then dropped by the program).
    pub fn unregister(&self, queue: u32) {
        // SAFETY: the key points at a u32 matching the map's key size. Failure (no entry) is fine.
        unsafe {
            bpf::bpf_map_delete_elem(self.map.as_raw_fd(), (&raw const queue).cast());
        }
    }

    /// Kernel id of the loaded program.
    pub fn prog_id(&self) -> u32 {
        self.prog_id
    }

    /// Interface the program is attached to.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// Hook the program is attached to.
    pub fn mode(&self) -> XdpMode {
        self.mode
    }

    /// Detaches now, reporting failure (dropping detaches too, silently).
    pub fn detach(mut self) -> Result<(), XdpError> {
        self.detach_inner()
    }

    fn detach_inner(&mut self) -> Result<(), XdpError> {
        match std::mem::replace(&mut self.attachment, Attachment::Detached) {
            Attachment::Detached => Ok(()),
            Attachment::Link(fd) => {
                // SAFETY: `fd` is our live link fd; detaching it removes the program from the hook.
                let ret = unsafe { bpf::bpf_link_detach(fd.as_raw_fd()) };
                drop(fd); // closing the last link fd detaches as well
                if ret < 0 && -ret != libc::ENOLINK && -ret != libc::EINVAL {
                    return Err(XdpError::from_neg(
                        format!("detach the XDP program from {}", self.ifname),
                        ret,
                    ));
                }
                Ok(())
            }
            Attachment::Netlink => {
                let opts = bpf::bpf_xdp_attach_opts {
                    sz: std::mem::size_of::<bpf::bpf_xdp_attach_opts>() as _,
                    old_prog_fd: self.prog.as_raw_fd(),
                    __bindgen_padding_0: [0; 4],
                };
                // SAFETY: `opts` is valid for the call and names our program, so only ours is removed.
                let ret = unsafe { bpf::bpf_xdp_detach(self.ifindex as i32, self.mode.flags(), &opts) };
                if ret < 0 && -ret != libc::ENODEV {
                    return Err(XdpError::from_neg(
                        format!("detach the XDP program from {}", self.ifname),
                        ret,
                    ));
                }
                Ok(())
            }
        }
    }
}

impl Drop for XdpProgram {
    fn drop(&mut self) {
        let _ = self.detach_inner();
    }
}

fn load_program(map_fd: RawFd, ifname: &str, name: &str) -> Result<OwnedFd, XdpError> {
    let insns = program(map_fd);
    let name =
        CString::new(name).map_err(|_| XdpError::BadConfig { what: "program name contains NUL".into() })?;
    let license = CString::new("Dual MIT/GPL").expect("static license has no NUL");
    let mut log = vec![0u8; 64 * 1024];
    // SAFETY: bpf_prog_load_opts is plain old data; zero is its documented initial state.
    let mut opts: bpf::bpf_prog_load_opts = unsafe { std::mem::zeroed() };
    opts.sz = std::mem::size_of::<bpf::bpf_prog_load_opts>() as _;
    opts.expected_attach_type = bpf::BPF_XDP;
    opts.log_buf = log.as_mut_ptr().cast();
    opts.log_size = log.len() as u32;
    // Verifier log only on failure: libbpf retries with log_level 1 when a buffer is given.
    opts.log_level = 0;
    // SAFETY: the instructions, name, license, log buffer and opts all outlive the call, and
    // `Insn` has the layout of `struct bpf_insn` (checked at compile time above).
    let fd = unsafe {
        bpf::bpf_prog_load(
            bpf::BPF_PROG_TYPE_XDP,
            name.as_ptr(),
            license.as_ptr(),
            insns.as_ptr().cast(),
            insns.len() as _,
            &mut opts,
        )
    };
    if fd < 0 {
        let text =
            String::from_utf8_lossy(&log[..log.iter().position(|b| *b == 0).unwrap_or(0)]).into_owned();
        let err = io::Error::from_raw_os_error(-fd);
        if text.is_empty() {
            return Err(XdpError::sys(format!("load the XDP program for {ifname}"), err));
        }
        return Err(XdpError::sys(
            format!("load the XDP program for {ifname} (verifier: {})", text.trim()),
            err,
        ));
    }
    // SAFETY: `fd` is a fresh fd returned by the kernel, owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn attach_link(prog_fd: RawFd, ifindex: u32, mode: XdpMode) -> Result<Attachment, io::Error> {
    // SAFETY: bpf_link_create_opts is plain old data; zero is its documented initial state.
    let mut opts: bpf::bpf_link_create_opts = unsafe { std::mem::zeroed() };
    opts.sz = std::mem::size_of::<bpf::bpf_link_create_opts>() as _;
    opts.flags = mode.flags();
    // SAFETY: `opts` is valid for the call; the result is checked.
    let fd = unsafe { bpf::bpf_link_create(prog_fd, ifindex as i32, bpf::BPF_XDP, &opts) };
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(-fd));
    }
    // SAFETY: `fd` is a fresh link fd returned by the kernel, owned by nothing else.
    Ok(Attachment::Link(unsafe { OwnedFd::from_raw_fd(fd) }))
}

fn attach_netlink(prog_fd: RawFd, ifindex: u32, mode: XdpMode) -> Result<(), io::Error> {
    // SAFETY: a null opts pointer means defaults; UPDATE_IF_NOEXIST refuses to replace anything.
    let ret = unsafe {
        bpf::bpf_xdp_attach(
            ifindex as i32,
            prog_fd,
            mode.flags() | bpf::XDP_FLAGS_UPDATE_IF_NOEXIST,
            std::ptr::null(),
        )
    };
    if ret < 0 {
        return Err(io::Error::from_raw_os_error(-ret));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_parses_operator_spellings() {
        assert_eq!("native".parse::<XdpMode>().unwrap(), XdpMode::Native);
        assert_eq!("generic".parse::<XdpMode>().unwrap(), XdpMode::Generic);
        assert_eq!("skb".parse::<XdpMode>().unwrap(), XdpMode::Generic);
        let err = "offload".parse::<XdpMode>().unwrap_err();
        assert!(err.to_string().contains("offload"));
    }

    #[test]
    fn program_encodes_the_redirect_call() {
        let p = program(7);
        assert_eq!(p[0].regs, 0x12, "r2 = *(u32 *)(r1 + 16)");
        assert_eq!(p[0].off, 16);
        assert_eq!(p[1].regs, 0x11, "pseudo map fd into r1");
        assert_eq!(p[1].imm, 7);
        assert_eq!(p[3].imm, XDP_DROP, "unbound queues fail closed");
        assert_eq!(p[4].imm, 51, "bpf_redirect_map");
        assert_eq!(p[5].code, 0x95);
    }

    #[test]
    fn interface_names_are_checked_before_any_syscall() {
        assert!(matches!(ifindex(""), Err(XdpError::BadInterfaceName { .. })));
        assert!(matches!(ifindex("a-name-longer-than-15"), Err(XdpError::BadInterfaceName { .. })));
        assert!(matches!(ifindex("bh-nonexistent0"), Err(XdpError::NoSuchInterface { .. })));
    }
}
