//! Child-process plumbing shared by the Postgres and anvil launchers.

use std::{
    net::TcpListener,
    os::unix::process::CommandExt,
    process::{Child, Command},
    time::{Duration, Instant},
};

/// A free TCP port on 127.0.0.1 (bound and released; good enough for tests).
pub fn free_port() -> crate::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(crate::io("bind a free port"))?;
    Ok(listener.local_addr().map_err(crate::io("read the bound port"))?.port())
}

/// Makes the child receive `signal` when the parent dies, whatever the cause.
pub(crate) fn die_with_parent(command: &mut Command, signal: libc::c_int) {
    // SAFETY: prctl is async-signal-safe and touches only the child's state.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Sends `signal` to the child and waits up to `timeout` for it to exit, then kills it.
pub(crate) fn stop_child(child: &mut Child, signal: libc::c_int, timeout: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as libc::pid_t, signal);
    }
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Whether a process with this pid exists.
pub(crate) fn pid_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// Asks the kernel to send this process SIGTERM when its parent dies (so a
/// `make dev` killed with SIGKILL still stops the node, which then stops its
/// own children). Call from the main thread.
pub fn terminate_with_parent() {
    // SAFETY: prctl on the calling process; getppid has no preconditions.
    unsafe {
        let parent = libc::getppid();
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong, 0, 0, 0);
        // The parent may have died before the call took effect.
        if libc::getppid() != parent {
            libc::raise(libc::SIGTERM);
        }
    }
}
