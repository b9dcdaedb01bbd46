//! CPU time and memory of a process, from /proc (Linux).

/// Resource use of one process.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessUsage {
    /// User plus system CPU time, seconds.
    pub cpu_s: f64,
    /// Resident memory now, bytes.
    pub rss_bytes: u64,
    /// Highest resident memory so far, bytes.
    pub peak_rss_bytes: u64,
}

/// Bytes process `pid` (`None`: this process) caused to be written to
/// storage (`write_bytes` of `/proc/PID/io`); `None` where the kernel does
/// not account it or the process is gone.
pub fn storage_written_bytes(pid: Option<u32>) -> Option<u64> {
    let dir = pid.map_or_else(|| "/proc/self".to_owned(), |p| format!("/proc/{p}"));
    std::fs::read_to_string(format!("{dir}/io"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|n| n.trim().parse().ok())
}

/// Reads the usage of process `pid` (`None`: this process). Missing
/// fields (not Linux, process gone) read as zero.
pub fn usage(pid: Option<u32>) -> ProcessUsage {
    let dir = pid.map_or_else(|| "/proc/self".to_owned(), |p| format!("/proc/{p}"));
    let status = std::fs::read_to_string(format!("{dir}/status")).unwrap_or_default();
    let kib = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    let stat = std::fs::read_to_string(format!("{dir}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line.
    let cpu_ticks: u64 = stat
        .rsplit_once(')')
        .map(|(_, rest)| {
            rest.split_whitespace()
                .skip(11)
                .take(2)
                .filter_map(|f| f.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    ProcessUsage {
        cpu_s: precise_cpu_s(pid).unwrap_or(cpu_ticks as f64 / clock_ticks_per_s()),
        rss_bytes: kib("VmRSS:"),
        peak_rss_bytes: kib("VmHWM:"),
    }
}

/// Bytes this process's heap holds in live allocations (glibc's arenas in
/// use plus its mmapped blocks), apart from what the allocator keeps free:
/// a growing resident size over a flat heap is the allocator holding on,
/// not a leak. `None` where the allocator is not glibc's.
pub fn heap_in_use_bytes() -> Option<u64> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // `mallinfo` rather than `mallinfo2`: the box's glibc (2.31) lacks
        // the latter; its int fields wrap only past 2 GiB.
        // SAFETY: mallinfo reads the allocator's counters under its own
        // lock and returns them by value.
        #[allow(unsafe_code, deprecated)]
        let info = unsafe { libc::mallinfo() };
        let arena_in_use = u64::from(info.uordblks as u32);
        let mmapped = u64::from(info.hblkhd as u32);
        Some(arena_in_use + mmapped)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}

/// CPU time of process `pid` (`None`: this process) to the microsecond,
/// where `/proc/PID/stat` counts whole clock ticks (10 ms): a gateway
/// using a twentieth of a percent of a core runs only five ticks in a
/// 100-second window. This process's time comes from `getrusage`
/// (threads that have ended included); another's is the sum of its
/// threads' time on a CPU (`/proc/PID/task/*/schedstat`), which leaves
/// out threads that have ended. `None` where neither can be read.
fn precise_cpu_s(pid: Option<u32>) -> Option<f64> {
    match pid {
        None => {
            let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
            // SAFETY: getrusage fills the struct it is given, which lives
            // until the call returns; on failure it is left unread.
            #[allow(unsafe_code)]
            let (rc, usage) = unsafe {
                let rc = libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
                (rc, usage.assume_init())
            };
            (rc == 0).then(|| {
                let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
                seconds(usage.ru_utime) + seconds(usage.ru_stime)
            })
        }
        Some(pid) => {
            let threads = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
            let mut on_cpu_ns: u64 = 0;
            for thread in threads.flatten() {
                let schedstat = std::fs::read_to_string(thread.path().join("schedstat"));
                on_cpu_ns += schedstat
                    .ok()
                    .and_then(|text| text.split_whitespace().next()?.parse::<u64>().ok())
                    .unwrap_or(0);
            }
            Some(on_cpu_ns as f64 / 1e9)
        }
    }
}

fn clock_ticks_per_s() -> f64 {
    // SAFETY: sysconf takes an integer and touches no memory of ours.
    #[allow(unsafe_code)]
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_uses_memory() {
        let u = usage(None);
        assert!(u.rss_bytes > 0);
        assert!(u.peak_rss_bytes >= u.rss_bytes);
    }

    #[test]
    fn cpu_time_is_counted_finer_than_a_clock_tick() {
        // Spin until a few milliseconds of CPU show: less than one tick.
        let start = usage(None).cpu_s;
        let mut spins = 0u64;
        while usage(None).cpu_s - start < 0.003 {
            spins = std::hint::black_box(spins + 1);
        }
        let spent = usage(None).cpu_s - start;
        assert!(spent < 0.010, "{spent} s: counted in whole ticks");
        // Another process's time, summed over its threads, is as fine.
        let mut child = std::process::Command::new("sh")
            .args([
                "-c",
                "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; sleep 5",
            ])
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(500));
        let theirs = precise_cpu_s(Some(child.id())).unwrap();
        let _ = child.kill();
        let _ = child.wait();
        // Not a whole number of 10 ms ticks.
        let ticks = theirs * 100.0;
        assert!(
            theirs > 0.0 && (ticks - ticks.round()).abs() > 1e-6,
            "{theirs}"
        );
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn the_heap_counts_a_live_allocation_and_forgets_it_when_freed() {
        // The heap is the whole process's, and other tests allocate and
        // free meanwhile: a few tries, each seen whole, must show it.
        const BLOCK: usize = 64 * 1024 * 1024;
        let mut seen = Vec::new();
        for _ in 0..5 {
            let before = heap_in_use_bytes().unwrap();
            let block = vec![7u8; BLOCK];
            let during = heap_in_use_bytes().unwrap();
            drop(std::hint::black_box(block));
            let after = heap_in_use_bytes().unwrap();
            let block_bytes = BLOCK as u64;
            if during >= before + block_bytes && after < during - block_bytes / 2 {
                return;
            }
            seen.push((before, during, after));
        }
        panic!("the 64 MiB block never showed in the heap: {seen:?}");
    }
}
