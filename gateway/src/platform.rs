//! What the process asks of the operating system: signal dispositions,
//! the room on a filesystem.

use std::path::{Path, PathBuf};

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

/// The most malloc arenas glibc may create in this process.
///
/// glibc gives each thread that allocates its own arena (up to 8 per
/// core); the workers' tasks hop between runtime and blocking threads, so
/// memory freed in one arena is reused only by the thread that owns it,
/// which raises the resident size and its creep over hours; with two it
/// sat lower and grew more slowly in a two-hour soak (`packgate bench
/// --soak`, figures in the README). Two keep the allocator's locks
/// uncontended for a gateway whose work is I/O.
pub const MALLOC_ARENAS: i32 = 2;

/// Caps glibc's malloc arenas at [`MALLOC_ARENAS`] unless the operator
/// chose otherwise (`MALLOC_ARENA_MAX` in the environment wins). Call it
/// once, first in `main`, before any thread starts. Elsewhere than glibc,
/// nothing to do.
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        #[allow(unsafe_code)]
        // SAFETY: mallopt only changes the allocator's tuning; called
        // before any other thread exists, it races with nothing. A refusal
        // (return 0) leaves glibc's default, which is no worse.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
        }
    }
}

/// The size of a filesystem and the room left on it, bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSpace {
    /// The whole filesystem.
    pub total_bytes: u64,
    /// What an unprivileged process may still write.
    pub available_bytes: u64,
}

/// The nearest directory of `path` that exists (itself, or an ancestor):
/// `data_dir` is created at first start.
fn existing_ancestor(path: &Path) -> PathBuf {
    let mut at = path;
    loop {
        if at.exists() {
            return at.to_owned();
        }
        match at.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => at = parent,
            _ => return PathBuf::from("."),
        }
    }
}

/// The size and free space of the filesystem that holds `path` (or would,
/// once created).
pub fn disk_space(path: &Path) -> std::io::Result<DiskSpace> {
    use std::os::unix::ffi::OsStrExt as _;
    let dir = existing_ancestor(path);
    let c_path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    #[allow(unsafe_code)]
    // SAFETY: `c_path` is a valid NUL-terminated string and `stat` points to
    // writable memory of the right type; statvfs writes nothing else.
    let (rc, stat) = unsafe {
        let rc = libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr());
        (rc, stat.assume_init())
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // The field types are 32 bits wide on some 32-bit targets.
    #[allow(clippy::useless_conversion)]
    let (block, blocks, available) = (
        u64::from(stat.f_frsize),
        u64::from(stat.f_blocks),
        u64::from(stat.f_bavail),
    );
    Ok(DiskSpace {
        total_bytes: blocks.saturating_mul(block),
        available_bytes: available.saturating_mul(block),
    })
}

/// Bytes of the files under `dir` (none when it does not exist).
pub fn bytes_under(dir: &Path) -> u64 {
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
        .fold(0, u64::saturating_add)
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
    fn disk_space_and_bytes_under_read_a_real_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("a"), [0u8; 1000]).unwrap();
        std::fs::write(dir.path().join("sub/b"), [0u8; 24]).unwrap();
        assert_eq!(super::bytes_under(dir.path()), 1024);
        assert_eq!(super::bytes_under(&dir.path().join("missing")), 0);
        // A directory not yet created: its nearest existing ancestor's.
        let space = super::disk_space(&dir.path().join("not/yet")).unwrap();
        assert!(space.total_bytes > 0);
        assert!(space.available_bytes <= space.total_bytes);
    }
}
