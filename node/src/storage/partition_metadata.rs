//! `partition.metadata` (Kafka's file of that name, KIP-516): the id of the
//! topic a partition directory belongs to. A topic deleted and created again
//! under the same name has a new id, so a directory left by the old one (the
//! node was down when it was deleted, or the deletion raced the creation)
//! is recognised and emptied instead of serving the old records as the new
//! topic's.

use crate::io::fs;
use std::io;
use std::path::Path;

const FILE: &str = "partition.metadata";

/// Makes `dir` the directory of topic `topic_id`: an existing one recorded
/// for another id is removed first; one without the file (new, or written
/// before ids were recorded) is adopted. Id 0 (a topic created before ids
/// were recorded) checks nothing. Not fsynced: creating thousands of
/// partitions must not cost thousands of fsyncs; a power loss that undoes
/// the file leaves a directory that is adopted again.
pub fn claim(dir: &Path, topic_id: u128) -> io::Result<()> {
    if topic_id == 0 {
        return Ok(());
    }
    let path = dir.join(FILE);
    match read_bounded(&path) {
        Ok(bytes) => match parse(&String::from_utf8_lossy(&bytes)) {
            Some(id) if id == topic_id => return Ok(()),
            Some(_) => {
                tracing::info!(
                    "{}: left by an earlier topic of the same name; emptying it",
                    dir.display()
                );
                remove(dir)?;
            }
            // Unreadable (a power loss can leave the name without its
            // bytes, the file not being fsynced): adopted, never a reason
            // to delete what may be this topic's acknowledged records.
            None => {}
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    fs::create_dir_all(dir)?;
    let text = format!("version: 0\ntopic_id: {topic_id:032x}\n");
    // Written in place, not through a renamed temporary file: the file is
    // new here (an old one was removed with its directory), so there is no
    // old content to tear, and a torn or missing new one is adopted (above).
    fs::write(&path, text.as_bytes())?;
    // The simulated filesystem has no write-back: an unsynced write stays
    // pending until a crash, and every file length or read checks each
    // pending write against every pending rename, so a 300-partition create
    // cost minutes of simulation. The OS writes this file back within
    // seconds; the simulation makes it durable at once.
    if crate::io::SIMULATED {
        crate::io::sync_data(&fs::File::open(&path)?)?;
    }
    Ok(())
}

/// Deletes a partition directory so that a crash part way can never leave
/// a directory of old segments under the partition's own name (which the
/// next topic of that name would adopt): renamed first, in one step, to
/// `<name>.deleting`, then removed; `LogDirs::open` finishes what a crash
/// interrupted.
pub fn remove(dir: &Path) -> io::Result<()> {
    let mut doomed = dir.as_os_str().to_owned();
    doomed.push(DELETING_SUFFIX);
    let doomed = std::path::PathBuf::from(doomed);
    match fs::rename(dir, &doomed) {
        Ok(()) => fs::remove_dir_all(&doomed),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// The suffix of a partition directory being deleted.
pub const DELETING_SUFFIX: &str = ".deleting";

/// The most of the file read: ours is under 64 bytes; a longer one is not
/// ours, and is read no further (then it does not parse, and is adopted).
const FILE_BYTES_MAX: u64 = 4096;

fn read_bounded(path: &Path) -> io::Result<Vec<u8>> {
    crate::storage::checkpoint::read_bounded(path, FILE_BYTES_MAX)
}

/// The id, only from a whole line of 32 hex digits ended by its newline:
/// the file is written in place and not fsynced, and one torn inside the id
/// must not read as another topic's (that would empty a live topic's
/// directory); it reads as nothing, and is adopted.
fn parse(text: &str) -> Option<u128> {
    let line = text
        .split_inclusive('\n')
        .find_map(|l| l.strip_prefix("topic_id:"))?;
    let hex = line.strip_suffix('\n')?.trim();
    if hex.len() != 32 {
        return None;
    }
    u128::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_torn_inside_the_id_reads_as_no_id() {
        let whole = format!("version: 0\ntopic_id: {:032x}\n", 0xabcdu128);
        assert_eq!(parse(&whole), Some(0xabcd));
        for cut in 0..whole.len() {
            assert_eq!(parse(&whole[..cut]), None, "torn at {cut}");
        }
    }

    #[test]
    fn a_directory_of_an_earlier_topic_is_emptied_and_a_matching_one_kept() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("t-0");
        claim(&dir, 7).unwrap();
        std::fs::write(dir.join("00000000000000000000.log"), b"old").unwrap();
        claim(&dir, 7).unwrap();
        assert!(
            dir.join("00000000000000000000.log").exists(),
            "same topic: kept"
        );
        claim(&dir, 8).unwrap();
        assert!(
            !dir.join("00000000000000000000.log").exists(),
            "another topic: emptied"
        );
        assert_eq!(
            parse(&std::fs::read_to_string(dir.join(FILE)).unwrap()),
            Some(8)
        );
        // A directory from before ids were recorded is adopted as it is.
        let old = root.path().join("t-1");
        std::fs::create_dir_all(&old).unwrap();
        std::fs::write(old.join("00000000000000000000.log"), b"x").unwrap();
        claim(&old, 9).unwrap();
        assert!(old.join("00000000000000000000.log").exists());
        // So is one whose file a power loss emptied: never a reason to
        // delete records.
        std::fs::write(old.join(FILE), b"").unwrap();
        claim(&old, 9).unwrap();
        assert!(old.join("00000000000000000000.log").exists());
        assert_eq!(
            parse(&std::fs::read_to_string(old.join(FILE)).unwrap()),
            Some(9)
        );
        // A huge file is read only to its bound, and adopted.
        std::fs::write(old.join(FILE), vec![b'x'; 1 << 20]).unwrap();
        claim(&old, 9).unwrap();
        assert!(old.join("00000000000000000000.log").exists());
        // Removal leaves nothing under the partition's name.
        remove(&old).unwrap();
        assert!(!old.exists());
        assert!(!root.path().join("t-1.deleting").exists());
    }
}
