//! Atomic checkpoint files: write a temp file, fsync it, rename it over the
//! old one, fsync the directory. A crash leaves either the old or the new
//! content, never a mix.

use crate::io::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// Reads a small file whole, at most `max_bytes`: a file of that size or
/// more is not one we wrote, and reads as empty (its parse then fails and
/// the caller falls back) instead of being allocated whole.
pub fn read_bounded(path: &Path, max_bytes: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    fs::File::open(path)?
        .take(max_bytes)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 >= max_bytes {
        bytes.clear();
    }
    Ok(bytes)
}

pub fn write_atomically(path: &Path, content: &[u8]) -> io::Result<()> {
    replace_file(path, content, true)
}

/// [`write_atomically`] with the fsyncs optional: without them the new
/// content is visible at once but a power loss may undo it. Only the seeded
/// `vote-before-fsync` bug writes that way.
pub fn replace_file(path: &Path, content: &[u8], fsync: bool) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(content)?;
        if fsync {
            crate::io::sync_all(&f)?;
        }
    }
    fs::rename(&tmp, path)?;
    if let (true, Some(dir)) = (fsync, path.parent()) {
        crate::io::sync_dir(dir)?;
    }
    Ok(())
}

/// Kafka's leader-epoch checkpoint format: version, count, `epoch offset` lines.
pub fn encode_epochs(epochs: &[(u32, u64)]) -> Vec<u8> {
    let mut s = format!("0\n{}\n", epochs.len());
    for (epoch, offset) in epochs {
        s.push_str(&format!("{epoch} {offset}\n"));
    }
    s.into_bytes()
}

/// Parses [`encode_epochs`]' format; `None` if the file is damaged.
pub fn decode_epochs(bytes: &[u8]) -> Option<Vec<(u32, u64)>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut lines = text.lines();
    if lines.next()? != "0" {
        return None;
    }
    let count: usize = lines.next()?.trim().parse().ok()?;
    let mut out = Vec::with_capacity(count.min(1 << 16));
    for _ in 0..count {
        let mut parts = lines.next()?.split_whitespace();
        let epoch = parts.next()?.parse().ok()?;
        let offset = parts.next()?.parse().ok()?;
        out.push((epoch, offset));
    }
    let sorted = out.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1);
    sorted.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_round_trip_and_damage_is_detected() {
        let epochs = vec![(1, 0), (3, 10)];
        assert_eq!(decode_epochs(&encode_epochs(&epochs)), Some(epochs));
        assert_eq!(decode_epochs(b"0\n2\n1 0\n"), None);
        assert_eq!(decode_epochs(b"0\n2\n3 0\n1 5\n"), None);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp");
        write_atomically(&path, b"a").unwrap();
        write_atomically(&path, b"b").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"b");
    }
}
