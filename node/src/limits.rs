//! Process-wide resource limits the node sizes itself by: the file
//! descriptors it may hold. Log segments, their indexes, internal links and
//! client connections all spend descriptors; running out means a partition
//! that cannot open its log or a listener that cannot accept, so clients
//! are given a bounded share (`max.connections`) and the rest is the logs'.

/// glibc's allocator serves blocks above `M_MMAP_THRESHOLD` (128 KiB at
/// first) with a fresh `mmap` each and gives them back on free, so every
/// batch-sized buffer (a 1 MiB follower read, a request body) costs page
/// faults and the kernel zeroing its pages: 15 % of an RF 3 node's CPU in
/// the 1 KiB profile (specs/performance.md). Serving blocks up to 64 MiB
/// from the heap and keeping up to 256 MiB of freed heap lets them be
/// reused (RF 3 produce, 1 KiB: 214-240 k -> 258-262 k msg/s). Called
/// once, before any thread starts.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu", not(feature = "sim")))]
    // SAFETY: mallopt only sets allocator parameters; no thread runs yet.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES);
    }
}

/// Blocks up to this come from the heap (see [`tune_allocator`]).
#[cfg(all(target_os = "linux", target_env = "gnu", not(feature = "sim")))]
const MMAP_THRESHOLD_BYTES: i32 = 64 << 20;
/// Freed heap kept before it is given back to the kernel.
#[cfg(all(target_os = "linux", target_env = "gnu", not(feature = "sim")))]
const TRIM_THRESHOLD_BYTES: i32 = 256 << 20;

/// Raises the soft limit on open files to the hard limit, as most servers
/// do at startup (the soft limit of 1,024 many systems start with is far
/// below what a broker with thousands of segments needs). Returns the soft
/// limit in force afterwards.
pub fn raise_open_files_limit() -> u64 {
    #[cfg(not(feature = "sim"))]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit write/read only the struct passed.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                return 1024;
            }
            if limit.rlim_cur < limit.rlim_max {
                let raised = libc::rlimit {
                    rlim_cur: limit.rlim_max,
                    rlim_max: limit.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    limit = raised;
                }
            }
        }
        limit.rlim_cur
    }
    #[cfg(feature = "sim")]
    {
        SIMULATED_OPEN_FILES
    }
}

#[cfg(feature = "sim")]
const SIMULATED_OPEN_FILES: u64 = 65_536;

/// The open-files soft limit now in force.
pub fn open_files_limit() -> u64 {
    #[cfg(not(feature = "sim"))]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes only the struct passed.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return 1024;
        }
        limit.rlim_cur
    }
    #[cfg(feature = "sim")]
    {
        SIMULATED_OPEN_FILES
    }
}

/// Runnel's default for Kafka's `max.connections` (Kafka's is unbounded):
/// half the open-files limit, so client connections can never take the
/// descriptors the logs and internal links need.
pub fn default_max_connections() -> usize {
    (open_files_limit() / 2).clamp(16, i32::MAX as u64) as usize
}
