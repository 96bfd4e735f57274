//! The node's only doors to the outside world: sockets and files. Built
//! normally they are tokio's and std's; with the `sim` feature they are
//! turmoil's simulated network and filesystem (only fsynced bytes survive a
//! simulated power loss), so the deterministic simulation in `sim/` runs
//! this very node code. Time comes from `tokio::time`, which turmoil drives.

#[cfg(not(feature = "sim"))]
pub use std::fs;
// turmoil's simulated File implements std's positional-I/O trait itself.
pub use std::os::unix::fs::FileExt;
#[cfg(not(feature = "sim"))]
pub use tokio::net::{TcpListener, TcpStream};

#[cfg(feature = "sim")]
pub use turmoil::fs::shim::std::fs;
#[cfg(feature = "sim")]
pub use turmoil::net::{TcpListener, TcpStream};

/// fsyncs (of files and directories) this process has made: every one
/// goes through [`sync_all`], [`sync_data`] or [`sync_dir`], so that the
/// cost of an operation in fsyncs can be measured (`runnel quorum status`).
static FSYNCS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many fsyncs this process has made so far.
pub fn fsyncs() -> u64 {
    FSYNCS.load(std::sync::atomic::Ordering::Relaxed)
}

fn count_fsync() {
    FSYNCS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// `File::sync_all`, counted.
pub fn sync_all(file: &fs::File) -> std::io::Result<()> {
    count_fsync();
    file.sync_all()
}

/// `File::sync_data` (fdatasync), counted.
pub fn sync_data(file: &fs::File) -> std::io::Result<()> {
    count_fsync();
    file.sync_data()
}

/// Makes a directory's entries (new, renamed, removed files) durable.
pub fn sync_dir(dir: &std::path::Path) -> std::io::Result<()> {
    count_fsync();
    #[cfg(not(feature = "sim"))]
    return fs::File::open(dir)?.sync_all();
    #[cfg(feature = "sim")]
    return fs::sync_dir(dir);
}

/// Whether this build runs inside the simulation (no sendfile, no threads).
pub const SIMULATED: bool = cfg!(feature = "sim");

/// Why [`read_exact_within`] did not fill its buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadStop {
    /// The peer closed the connection (or it failed).
    Closed,
    /// Nothing complete arrived within the bound: the peer is idle, gone,
    /// or trickling bytes too slowly to be served.
    Idle,
}

/// Fills `buf` from `stream` within `within`: the one place a connection's
/// reads are bounded in time (Kafka's `connections.max.idle.ms`, the first
/// bytes of any connection).
pub async fn read_exact_within(
    stream: &mut TcpStream,
    buf: &mut [u8],
    within: std::time::Duration,
) -> Result<(), ReadStop> {
    use tokio::io::AsyncReadExt;
    match tokio::time::timeout(within, stream.read_exact(buf)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(_)) => Err(ReadStop::Closed),
        Err(_) => Err(ReadStop::Idle),
    }
}
