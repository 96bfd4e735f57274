//! The coordinator's durable quorum state on disk: `quorum-state` (epoch and
//! vote, replaced atomically) and `metadata.log` (CRC-framed postcard
//! entries). Every change is fsynced before `apply` returns, because the
//! quorum protocol sends votes and fetch offsets that promise it.
//! Observers (brokers) keep the same state in memory only: they re-fetch the
//! log after a restart.

use crate::io::fs::{self, File, OpenOptions};
use crate::storage::checkpoint::replace_file;
use runnel_model::controller::MetadataDecision;
use runnel_model::quorum::{Entry, QuorumDurable, QuorumPersist};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const STATE_FILE: &str = "quorum-state";
/// One entry per controller decision. (`metadata.log`, from before
/// decisions were atomic, held one entry per record; it is refused, not
/// misread.)
const LOG_FILE: &str = "metadata-2.log";
const OLD_LOG_FILE: &str = "metadata.log";
/// An entry larger than this is corruption, not a record.
const ENTRY_BYTES_MAX: usize = 16 << 20;

pub type MetaEntry = Entry<MetadataDecision>;

pub struct QuorumStore {
    dir: Option<PathBuf>,
    log: Option<File>,
    /// Byte position of each entry in `metadata.log`, plus the end.
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
}

impl QuorumStore {
    pub fn in_memory() -> QuorumStore {
        QuorumStore {
            dir: None,
            log: None,
            positions: vec![0],
            durable: empty_durable(),
            fsync_elections: true,
            synced_entries: 0,
            log_syncs: 0,
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
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(LOG_FILE))?;
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
                        "metadata.log: cut {} bytes of torn or corrupt tail at byte {pos}",
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
        Ok((
            QuorumStore {
                dir: Some(dir.to_path_buf()),
                log: Some(file),
                positions,
                durable,
                fsync_elections: true,
                synced_entries,
                log_syncs: 0,
            },
            report,
        ))
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
                    let offset = *offset as usize;
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
                // The node takes no snapshots yet, and a leader with none
                // never sends one: storing them is the next step (KIP-630).
                QuorumPersist::TakeSnapshot(_) | QuorumPersist::InstallSnapshot(_) => {
                    return Err(io::Error::other("metadata snapshots are not stored yet"));
                }
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

    /// Entries of the log known to be on disk.
    pub fn synced_entries(&self) -> usize {
        self.synced_entries
    }
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
}
