//! The coordinator's durable quorum state on disk: `quorum-state` (epoch and
//! vote, replaced atomically), `metadata-snapshot` (the latest snapshot,
//! KIP-630: CRC-framed postcard, replaced atomically) and the log of the
//! entries after it (CRC-framed postcard entries): `metadata-2.log` while
//! the log starts at 0, `metadata-2-<base>.log` once a snapshot moved its
//! start to `base`. The log after a new snapshot (the tail of this node's
//! log, or nothing for the leader's snapshot) is written first as a new
//! file named by the snapshot's end, then the snapshot is made durable,
//! then the old file goes. So a crash anywhere leaves a snapshot and the
//! one log file that goes with it (a file past the snapshot is a stray of
//! a move that never happened, and goes), and opening finishes the move. Elections are fsynced
//! before `apply` returns, appends by the turn's [`QuorumStore::sync`],
//! because the quorum protocol sends votes and fetch offsets that promise
//! them. Observers (brokers) keep the same state in memory only: they
//! re-fetch the log after a restart.

use crate::io::fs::{self, File, OpenOptions};
use crate::storage::checkpoint::replace_file;
use runnel_model::controller::MetadataDecision;
use runnel_model::core::Offset;
use runnel_model::quorum::{Entry, QuorumDurable, QuorumPersist, QuorumSnapshot};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const STATE_FILE: &str = "quorum-state";
/// One entry per controller decision. (`metadata.log`, from before
/// decisions were atomic, held one entry per record; it is refused, not
/// misread.)
const LOG_FILE: &str = "metadata-2.log";
const OLD_LOG_FILE: &str = "metadata.log";
const SNAPSHOT_FILE: &str = "metadata-snapshot";
/// An entry larger than this is corruption, not a record.
const ENTRY_BYTES_MAX: usize = 16 << 20;
/// A snapshot larger than this is not taken (and one on disk is corrupt):
/// it must fit one peer frame (`INTERNAL_FRAME_BYTES_MAX`, 256 MiB) with
/// room to spare; a 10,000-partition image takes a few MiB.
pub const SNAPSHOT_BYTES_MAX: usize = 128 << 20;

/// The log file whose first entry is at `base`.
fn log_file(base: Offset) -> String {
    match base {
        0 => LOG_FILE.to_string(),
        b => format!("metadata-2-{b}.log"),
    }
}

/// The base of a log file's name, if it is one.
fn log_file_base(name: &str) -> Option<Offset> {
    if name == LOG_FILE {
        return Some(0);
    }
    name.strip_prefix("metadata-2-")?
        .strip_suffix(".log")?
        .parse()
        .ok()
        .filter(|&b| b > 0)
}

pub type MetaEntry = Entry<MetadataDecision>;

pub struct QuorumStore {
    dir: Option<PathBuf>,
    log: Option<File>,
    /// The offset of the log file's first entry (the snapshot's end).
    log_base: Offset,
    /// Byte position of each entry in the log file, plus the end.
    positions: Vec<u64>,
    pub durable: QuorumDurable<MetadataDecision>,
    /// False only under the seeded `vote-before-fsync` bug: the epoch and
    /// vote are written but not fsynced (left to the OS's write-back).
    pub fsync_elections: bool,
    /// Entries of `metadata-2.log` known to be on disk (fsynced); appends
    /// are written at once and synced together by [`QuorumStore::sync`].
    synced_entries: usize,
    /// fsyncs of the metadata log so far (the benchmark reports them).
    pub log_syncs: u64,
    /// In memory: the encoded bytes appended since the log start (about:
    /// what a snapshot trigger needs).
    memory_bytes: u64,
}

impl QuorumStore {
    pub fn in_memory() -> QuorumStore {
        QuorumStore {
            dir: None,
            log: None,
            log_base: 0,
            positions: vec![0],
            durable: empty_durable(),
            fsync_elections: true,
            synced_entries: 0,
            log_syncs: 0,
            memory_bytes: 0,
        }
    }

    /// Opens (or creates) the store; a torn or corrupt tail of the log is cut
    /// (it was never acknowledged: appends are fsynced before any answer).
    pub fn open(dir: &Path) -> io::Result<(QuorumStore, Option<String>)> {
        fs::create_dir_all(dir)?;
        if fs::metadata(dir.join(OLD_LOG_FILE)).is_ok() {
            return Err(io::Error::other(format!(
                "{}: written by an earlier Runnel (one entry per record); this one writes one \
                 entry per decision. Move the directory aside to start a new cluster.",
                dir.join(OLD_LOG_FILE).display()
            )));
        }
        let mut durable = empty_durable();
        if let Ok(text) = fs::read_to_string(dir.join(STATE_FILE)) {
            let mut lines = text.lines();
            durable.epoch = lines
                .next()
                .and_then(|l| l.trim().parse().ok())
                .unwrap_or(0);
            durable.voted_for = lines.next().and_then(|l| l.trim().parse().ok());
        }
        durable.snapshot = read_snapshot(&dir.join(SNAPSHOT_FILE))?;
        let log_start = durable.log_start();
        // The newest log file not past the snapshot (a crash may have left
        // an older one, or not yet the one at the snapshot's end).
        let mut bases: Vec<Offset> = fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| log_file_base(&e.file_name().to_string_lossy()))
            .collect();
        bases.sort_unstable();
        // Past the snapshot: written for a snapshot that never became
        // durable.
        for stray in bases.iter().filter(|&&b| b > log_start) {
            fs::remove_file(dir.join(log_file(*stray)))?;
        }
        bases.retain(|&b| b <= log_start);
        let base = bases.last().copied().unwrap_or(0);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(log_file(base)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let mut positions = vec![0u64];
        let mut pos = 0usize;
        let mut report = None;
        while pos < bytes.len() {
            match decode_entry(&bytes[pos..]) {
                Some((entry, used)) => {
                    durable.log.push(entry);
                    pos += used;
                    positions.push(pos as u64);
                }
                None => {
                    report = Some(format!(
                        "{}: cut {} bytes of torn or corrupt tail at byte {pos}",
                        log_file(base),
                        bytes.len() - pos
                    ));
                    file.set_len(pos as u64)?;
                    crate::io::sync_all(&file)?;
                    break;
                }
            }
        }
        file.seek(SeekFrom::End(0))?;
        let synced_entries = durable.log.len();
        let mut store = QuorumStore {
            dir: Some(dir.to_path_buf()),
            log: Some(file),
            log_base: base,
            positions,
            durable,
            fsync_elections: true,
            synced_entries,
            log_syncs: 0,
            memory_bytes: 0,
        };
        if base < log_start {
            // A crash came between the snapshot and its log file: the
            // entries it covers go now.
            let covered = ((log_start - base) as usize).min(store.durable.log.len());
            store.durable.log.drain(..covered);
            let tail = store.durable.log.clone();
            store.start_log_at(log_start, &tail)?;
        }
        for old in bases.iter().filter(|&&b| b < store.log_base) {
            match fs::remove_file(dir.join(log_file(*old))) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok((store, report))
    }

    /// Makes `entries` the whole log, its first at `base`: written to a new
    /// file and fsynced (with its directory entry) before the old file goes.
    fn start_log_at(&mut self, base: Offset, entries: &[MetaEntry]) -> io::Result<()> {
        let positions = self.write_log_file(base, entries)?;
        self.switch_log_file(base, positions)
    }

    /// Writes `entries` as the log file of `base`, fsynced with its
    /// directory entry; returns their positions. The store still uses the
    /// old file.
    fn write_log_file(&mut self, base: Offset, entries: &[MetaEntry]) -> io::Result<Vec<u64>> {
        let mut bytes = Vec::new();
        let mut positions = vec![0u64];
        for e in entries {
            bytes.extend_from_slice(&encode_entry(e));
            positions.push(bytes.len() as u64);
        }
        if let Some(dir) = &self.dir {
            replace_file(&dir.join(log_file(base)), &bytes, true)?;
            self.log_syncs += 1;
        }
        Ok(positions)
    }

    /// Uses the log file of `base` (written by `write_log_file`) from now
    /// on, and removes the old one.
    fn switch_log_file(&mut self, base: Offset, positions: Vec<u64>) -> io::Result<()> {
        let old_base = std::mem::replace(&mut self.log_base, base);
        let Some(dir) = self.dir.clone() else {
            return Ok(());
        };
        let path = dir.join(log_file(base));
        let old = (old_base != base).then(|| dir.join(log_file(old_base)));
        let mut file = OpenOptions::new().read(true).write(true).open(&path)?;
        file.seek(SeekFrom::End(0))?;
        self.log = Some(file);
        self.synced_entries = positions.len() - 1;
        self.positions = positions;
        if let Some(old) = old {
            fs::remove_file(old)?;
        }
        Ok(())
    }

    /// Writes a change and applies it in memory. An election (epoch and
    /// vote) is fsynced at once; appended entries are written now and made
    /// durable by the next [`QuorumStore::sync`], which the node calls once
    /// per turn before any message leaves: every append of a turn shares
    /// one fsync (group commit), and no promise leaves before its state is
    /// on disk.
    pub fn apply(&mut self, change: &QuorumPersist<MetadataDecision>) -> io::Result<()> {
        if let (Some(dir), Some(file)) = (&self.dir, &mut self.log) {
            match change {
                QuorumPersist::Election { epoch, voted_for } => {
                    let vote = voted_for.map(|v| v.to_string()).unwrap_or_default();
                    replace_file(
                        &dir.join(STATE_FILE),
                        format!("{epoch}\n{vote}\n").as_bytes(),
                        self.fsync_elections,
                    )?;
                }
                QuorumPersist::Append { offset, entries } => {
                    assert!(*offset >= self.log_base, "an append below the log start");
                    let offset = (*offset - self.log_base) as usize;
                    assert!(
                        offset < self.positions.len(),
                        "append past the end of the log"
                    );
                    let start = self.positions[offset];
                    file.set_len(start)?;
                    file.seek(SeekFrom::Start(start))?;
                    self.positions.truncate(offset + 1);
                    let mut buf = Vec::new();
                    let mut end = start;
                    for e in entries {
                        let framed = encode_entry(e);
                        if framed.len() - 8 > ENTRY_BYTES_MAX {
                            // Recovery would take it for a torn tail and cut
                            // it with everything after: never write it.
                            return Err(io::Error::other(format!(
                                "a metadata entry of {} bytes exceeds {ENTRY_BYTES_MAX}",
                                framed.len() - 8
                            )));
                        }
                        end += framed.len() as u64;
                        buf.extend_from_slice(&framed);
                        self.positions.push(end);
                    }
                    file.write_all(&buf)?;
                    // A truncation un-syncs what it cut (and what replaces it).
                    self.synced_entries = self.synced_entries.min(offset);
                }
                QuorumPersist::TakeSnapshot(_) | QuorumPersist::InstallSnapshot(_) => {}
            }
        }
        if let QuorumPersist::TakeSnapshot(s) | QuorumPersist::InstallSnapshot(s) = change {
            return self.apply_snapshot(change, s);
        }
        if let QuorumPersist::Append { entries, .. } = change {
            if self.dir.is_none() {
                let bytes: usize = entries.iter().map(|e| encode_entry(e).len()).sum();
                self.memory_bytes += bytes as u64;
            }
        }
        self.durable.apply(change);
        if self.dir.is_none() {
            // In memory (observers): nothing to sync.
            self.synced_entries = self.durable.log.len();
        }
        debug_assert!(self.dir.is_none() || self.positions.len() == self.durable.log.len() + 1);
        Ok(())
    }

    /// Makes every written entry durable with one fsync (if any is not).
    pub fn sync(&mut self) -> io::Result<()> {
        if self.synced_entries == self.durable.log.len() {
            return Ok(());
        }
        if let Some(file) = &self.log {
            crate::io::sync_data(file)?;
            self.log_syncs += 1;
        }
        self.synced_entries = self.durable.log.len();
        Ok(())
    }

    /// A snapshot: the log that goes with it first (the entries after it:
    /// nothing for the leader's), then the snapshot, then the old log
    /// goes. A crash between the first two leaves a stray file past the
    /// old snapshot, removed on open, never the new snapshot with the old
    /// log's tail (which for the leader's snapshot is a history the leader
    /// told this node to throw away).
    fn apply_snapshot(
        &mut self,
        change: &QuorumPersist<MetadataDecision>,
        snapshot: &QuorumSnapshot<MetadataDecision>,
    ) -> io::Result<()> {
        let tail: Vec<MetaEntry> = match change {
            QuorumPersist::TakeSnapshot(_) => {
                let start = self.durable.log_start();
                let covered = snapshot.end_offset.saturating_sub(start) as usize;
                self.durable.log.iter().skip(covered).cloned().collect()
            }
            _ => Vec::new(),
        };
        let positions = self.write_log_file(snapshot.end_offset, &tail)?;
        if let Some(dir) = &self.dir {
            let bytes = encode_snapshot(snapshot)?;
            replace_file(&dir.join(SNAPSHOT_FILE), &bytes, true)?;
        }
        self.durable.apply(change);
        self.switch_log_file(snapshot.end_offset, positions)?;
        if self.dir.is_none() {
            self.synced_entries = self.durable.log.len();
        }
        debug_assert!(self.dir.is_none() || self.positions.len() == self.durable.log.len() + 1);
        Ok(())
    }

    /// The bytes of the log after the snapshot (on disk: the log file's;
    /// in memory: every append's, a count that only grows, for triggers
    /// that measure growth).
    pub fn log_bytes(&self) -> u64 {
        match self.dir {
            Some(_) => self.positions.last().copied().unwrap_or(0),
            None => self.memory_bytes,
        }
    }

    /// The offset below which every entry is on disk (the snapshot's too).
    pub fn synced_end_offset(&self) -> Offset {
        self.durable.log_start() + self.synced_entries as Offset
    }
}

fn encode_snapshot(snapshot: &QuorumSnapshot<MetadataDecision>) -> io::Result<Vec<u8>> {
    let body = postcard::to_stdvec(snapshot).map_err(io::Error::other)?;
    if body.len() > SNAPSHOT_BYTES_MAX {
        return Err(io::Error::other(format!(
            "a metadata snapshot of {} bytes exceeds {SNAPSHOT_BYTES_MAX}",
            body.len()
        )));
    }
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// The snapshot in `path`, if there is one. A damaged one is an error: the
/// entries it covers are gone from the log, so starting without it would
/// start from a wrong state.
fn read_snapshot(path: &Path) -> io::Result<Option<QuorumSnapshot<MetadataDecision>>> {
    let damaged = || io::Error::other(format!("{}: damaged", path.display()));
    // The size first: a file is read whole only within the bound.
    match fs::metadata(path) {
        Ok(m) if m.len() > (SNAPSHOT_BYTES_MAX + 8) as u64 => return Err(damaged()),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    }
    let bytes = fs::read(path)?;
    let len =
        u32::from_be_bytes(bytes.get(0..4).ok_or_else(damaged)?.try_into().expect("4")) as usize;
    let crc = u32::from_be_bytes(bytes.get(4..8).ok_or_else(damaged)?.try_into().expect("4"));
    if len > SNAPSHOT_BYTES_MAX || bytes.len() != 8 + len || crc32c::crc32c(&bytes[8..]) != crc {
        return Err(damaged());
    }
    postcard::from_bytes(&bytes[8..])
        .map(Some)
        .map_err(|_| damaged())
}

fn empty_durable() -> QuorumDurable<MetadataDecision> {
    QuorumDurable {
        epoch: 0,
        voted_for: None,
        snapshot: None,
        log: Vec::new(),
    }
}

/// One `metadata-2.log` entry: length, CRC-32C of the body, postcard body.
pub fn encode_entry(entry: &MetaEntry) -> Vec<u8> {
    let body = postcard::to_stdvec(entry).expect("metadata entries serialize");
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// The entry at the start of `bytes` and the bytes it takes; `None` if it
/// is torn or corrupt (public for the fuzz targets, `fuzz/`).
pub fn decode_entry(bytes: &[u8]) -> Option<(MetaEntry, usize)> {
    let len = u32::from_be_bytes(bytes.get(0..4)?.try_into().ok()?) as usize;
    let crc = u32::from_be_bytes(bytes.get(4..8)?.try_into().ok()?);
    if len > ENTRY_BYTES_MAX {
        return None;
    }
    let body = bytes.get(8..8 + len)?;
    if crc32c::crc32c(body) != crc {
        return None;
    }
    Some((postcard::from_bytes(body).ok()?, 8 + len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use runnel_model::controller::MetadataRecord;
    use runnel_model::quorum::Payload;

    fn entry(epoch: u32, broker: u32) -> MetaEntry {
        Entry {
            epoch,
            payload: Payload::Record(MetadataDecision {
                request: None,
                records: vec![MetadataRecord::UnfenceBroker { broker, epoch: 1 }],
            }),
        }
    }

    #[test]
    fn state_survives_reopen_truncation_and_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = QuorumStore::open(dir.path()).unwrap();
        s.apply(&QuorumPersist::Election {
            epoch: 3,
            voted_for: Some(2),
        })
        .unwrap();
        s.apply(&QuorumPersist::Append {
            offset: 0,
            entries: vec![entry(3, 1), entry(3, 2), entry(3, 3)],
        })
        .unwrap();
        s.apply(&QuorumPersist::Append {
            offset: 1,
            entries: vec![entry(4, 9)],
        })
        .unwrap();
        drop(s);
        let (s, report) = QuorumStore::open(dir.path()).unwrap();
        assert!(report.is_none());
        assert_eq!(s.durable.epoch, 3);
        assert_eq!(s.durable.voted_for, Some(2));
        assert_eq!(s.durable.log, vec![entry(3, 1), entry(4, 9)]);
        drop(s);
        let path = dir.path().join(LOG_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&[0, 0, 0, 9, 1, 2]);
        std::fs::write(&path, &bytes).unwrap();
        let (s, report) = QuorumStore::open(dir.path()).unwrap();
        assert!(report.unwrap().contains("torn"));
        assert_eq!(s.durable.log.len(), 2);
    }

    fn snapshot(end_offset: Offset, broker: u32) -> QuorumSnapshot<MetadataDecision> {
        QuorumSnapshot {
            end_offset,
            last_epoch: 3,
            records: vec![MetadataDecision {
                request: None,
                records: vec![MetadataRecord::UnfenceBroker { broker, epoch: 1 }],
            }],
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .filter(|n| n.starts_with("metadata"))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_snapshot_replaces_the_prefix_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = QuorumStore::open(dir.path()).unwrap();
        let five: Vec<_> = (1..=5).map(|b| entry(3, b)).collect();
        s.apply(&QuorumPersist::Append {
            offset: 0,
            entries: five.clone(),
        })
        .unwrap();
        s.sync().unwrap();
        s.apply(&QuorumPersist::TakeSnapshot(snapshot(3, 99)))
            .unwrap();
        assert_eq!(s.synced_end_offset(), 5);
        s.apply(&QuorumPersist::Append {
            offset: 5,
            entries: vec![entry(4, 6)],
        })
        .unwrap();
        s.sync().unwrap();
        drop(s);
        assert_eq!(
            names(dir.path()),
            vec!["metadata-2-3.log", "metadata-snapshot"]
        );
        let (s, report) = QuorumStore::open(dir.path()).unwrap();
        assert!(report.is_none());
        assert_eq!(s.durable.snapshot, Some(snapshot(3, 99)));
        assert_eq!(
            s.durable.log,
            vec![five[3].clone(), five[4].clone(), entry(4, 6)]
        );
        assert_eq!(s.synced_end_offset(), 6);
    }

    /// A crash after the snapshot was durable and before its log file was:
    /// opening drops the covered entries and finishes the move.
    #[test]
    fn a_crash_between_the_snapshot_and_its_log_file_is_finished_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = QuorumStore::open(dir.path()).unwrap();
        let five: Vec<_> = (1..=5).map(|b| entry(3, b)).collect();
        s.apply(&QuorumPersist::Append {
            offset: 0,
            entries: five.clone(),
        })
        .unwrap();
        s.sync().unwrap();
        drop(s);
        let bytes = encode_snapshot(&snapshot(3, 99)).unwrap();
        replace_file(&dir.path().join(SNAPSHOT_FILE), &bytes, true).unwrap();
        let (mut s, _) = QuorumStore::open(dir.path()).unwrap();
        assert_eq!(s.durable.log, vec![five[3].clone(), five[4].clone()]);
        assert_eq!(
            names(dir.path()),
            vec!["metadata-2-3.log", "metadata-snapshot"]
        );
        // Appends go on at the right offsets.
        s.apply(&QuorumPersist::Append {
            offset: 4,
            entries: vec![entry(5, 7)],
        })
        .unwrap();
        s.sync().unwrap();
        drop(s);
        let (s, _) = QuorumStore::open(dir.path()).unwrap();
        assert_eq!(s.durable.log, vec![five[3].clone(), entry(5, 7)]);
    }

    /// A crash after the new log file was written and before the snapshot
    /// was: the file is a stray, removed on open; the old state stands.
    #[test]
    fn a_log_file_written_for_a_snapshot_that_never_landed_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = QuorumStore::open(dir.path()).unwrap();
        let five: Vec<_> = (1..=5).map(|b| entry(3, b)).collect();
        s.apply(&QuorumPersist::Append {
            offset: 0,
            entries: five.clone(),
        })
        .unwrap();
        s.sync().unwrap();
        // What an install at 9 writes first.
        s.write_log_file(9, &[]).unwrap();
        drop(s);
        let (s, _) = QuorumStore::open(dir.path()).unwrap();
        assert_eq!(s.durable.snapshot, None);
        assert_eq!(s.durable.log, five);
        assert_eq!(names(dir.path()), vec!["metadata-2.log"]);
    }

    #[test]
    fn an_installed_snapshot_replaces_the_whole_log_and_a_damaged_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = QuorumStore::open(dir.path()).unwrap();
        s.apply(&QuorumPersist::Append {
            offset: 0,
            entries: vec![entry(1, 1), entry(1, 2)],
        })
        .unwrap();
        s.apply(&QuorumPersist::InstallSnapshot(snapshot(10, 5)))
            .unwrap();
        assert!(s.durable.log.is_empty());
        s.apply(&QuorumPersist::Append {
            offset: 10,
            entries: vec![entry(6, 11)],
        })
        .unwrap();
        s.sync().unwrap();
        drop(s);
        let (s, _) = QuorumStore::open(dir.path()).unwrap();
        assert_eq!(s.durable.log_start(), 10);
        assert_eq!(s.durable.log, vec![entry(6, 11)]);
        drop(s);
        let path = dir.path().join(SNAPSHOT_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let err = QuorumStore::open(dir.path()).err().expect("refused");
        assert!(err.to_string().contains("damaged"), "{err}");
    }
}
