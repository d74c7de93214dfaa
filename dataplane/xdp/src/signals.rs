//! Signal flags for the process that runs the dataplane, without `unsafe` at the call site.
//!
//! The control plane (which forbids unsafe code) and `xdp-passall` both need "SIGINT/SIGTERM set
//! a stop flag" and "SIGHUP sets a reload flag". The handlers only store to static atomics, which
//! is async-signal-safe; the worker loop polls the stop flag at least every `idle_poll_ms`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

static STOP: AtomicBool = AtomicBool::new(false);
static RELOAD: AtomicBool = AtomicBool::new(false);
static INSTALL_STOP: Once = Once::new();
static INSTALL_RELOAD: Once = Once::new();

extern "C" fn on_stop(_sig: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

extern "C" fn on_reload(_sig: libc::c_int) {
    RELOAD.store(true, Ordering::Relaxed);
}

fn install(sig: libc::c_int, handler: extern "C" fn(libc::c_int)) {
    // SAFETY: sigaction is plain old data; zero is a valid initial value (empty mask, no flags).
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    act.sa_sigaction = handler as *const () as libc::sighandler_t;
    act.sa_flags = libc::SA_RESTART;
    // SAFETY: `act` is valid for the call and the handler only stores to an atomic.
    unsafe {
        libc::sigemptyset(&mut act.sa_mask);
        libc::sigaction(sig, &act, std::ptr::null_mut());
    }
}

/// Installs SIGINT and SIGTERM handlers (once) and returns the flag they set.
pub fn stop_flag() -> &'static AtomicBool {
    INSTALL_STOP.call_once(|| {
        install(libc::SIGINT, on_stop);
        install(libc::SIGTERM, on_stop);
    });
    &STOP
}

/// Installs a SIGHUP handler (once) and returns the flag it sets; clear it after reloading
/// (`swap(false, ..)`).
pub fn reload_flag() -> &'static AtomicBool {
    INSTALL_RELOAD.call_once(|| install(libc::SIGHUP, on_reload));
    &RELOAD
}
