//! Process-wide resource limits the node sizes itself by: the file
//! descriptors it may hold. Log segments, their indexes, internal links and
//! client connections all spend descriptors; running out means a partition
//! that cannot open its log or a listener that cannot accept, so clients
//! are given a bounded share (`max.connections`) and the rest is the logs'.

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
