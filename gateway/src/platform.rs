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

/// Bytes free for an unprivileged writer on the filesystem holding `path`.
// The field types differ between targets (u32 on 32-bit ARM).
#[allow(clippy::useless_conversion)]
pub fn free_bytes(path: &std::path::Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    #[allow(unsafe_code)]
    // SAFETY: `c_path` is a valid NUL-terminated string and `stat` points to
    // writable memory the size of a `statvfs`, which the call fills on
    // success; it is read only then.
    let stat = unsafe {
        if libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        stat.assume_init()
    };
    Ok(u64::from(stat.f_bavail).saturating_mul(u64::from(stat.f_frsize)))
}

/// Bytes held by the files under `dir` (0 when it does not exist).
pub fn bytes_under(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => bytes_under(&entry.path()),
            Ok(kind) if kind.is_file() => entry.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
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

    #[test]
    fn free_bytes_and_bytes_under_read_a_real_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("a"), [0u8; 1000]).unwrap();
        std::fs::write(dir.path().join("sub/b"), [0u8; 24]).unwrap();
        assert_eq!(super::bytes_under(dir.path()), 1024);
        assert_eq!(super::bytes_under(&dir.path().join("missing")), 0);
        assert!(super::free_bytes(dir.path()).unwrap() > 0);
        assert!(super::free_bytes(&dir.path().join("missing")).is_err());
    }
}
