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

/// Makes a directory's entries (new, renamed, removed files) durable.
pub fn sync_dir(dir: &std::path::Path) -> std::io::Result<()> {
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
