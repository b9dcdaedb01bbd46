//! What the process asks of the operating system at startup.

/// Makes a write past the file-size limit (`RLIMIT_FSIZE`, e.g. set by
/// systemd's `LimitFSIZE=` or a shell's `ulimit -f`) fail with `EFBIG`
/// instead of killing the process with SIGXFSZ. SQLite then reports the
/// failed write, the data worker counts it as a full disk, leaves the batch
/// unacked in the stream, and stores it once there is room again.
///
/// Call it once, early in `main`. The ignored disposition is inherited by
/// child processes.
pub fn ignore_sigxfsz() {
    #[allow(unsafe_code)]
    // SAFETY: setting a signal's disposition to SIG_IGN installs no handler
    // code, so nothing can run in signal context; `signal` is async-signal
    // safe and only changes process-wide state that nothing else in
    // packgate relies on. Its only failure (EINVAL) is impossible for
    // SIGXFSZ, and would leave the default, which is no worse.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sigxfsz_is_ignored_afterwards() {
        super::ignore_sigxfsz();
        let mut old = std::mem::MaybeUninit::<libc::sigaction>::zeroed();
        #[allow(unsafe_code)]
        // SAFETY: querying (null new action) into a zeroed sigaction.
        let (rc, handler) = unsafe {
            let rc = libc::sigaction(libc::SIGXFSZ, std::ptr::null(), old.as_mut_ptr());
            (rc, old.assume_init().sa_sigaction)
        };
        assert_eq!(rc, 0);
        assert_eq!(handler, libc::SIG_IGN);
    }
}
