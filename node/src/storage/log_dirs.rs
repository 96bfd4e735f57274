//! The broker's log directories (`log.dirs`): each holds `meta.properties`
//! (node id and cluster id, checked at start so a disk from another broker
//! or cluster is never served by mistake), partition directories named
//! `<topic>-<partition>`, and `replication-offset-checkpoint` (the high
//! watermarks, Kafka's format). A new partition goes to the directory with
//! the fewest partitions.

use crate::io::fs;
use crate::storage::checkpoint::write_atomically;
use runnel_model::core::{NodeId, Offset};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const META: &str = "meta.properties";
const HIGH_WATERMARKS: &str = "replication-offset-checkpoint";

/// Why the log directories cannot be used.
#[derive(Debug, PartialEq, Eq)]
pub enum LogDirError {
    Io {
        dir: PathBuf,
        error: String,
    },
    /// `meta.properties` names another node or cluster.
    Mismatch {
        dir: PathBuf,
        key: &'static str,
        found: String,
        expected: String,
    },
    Malformed {
        file: PathBuf,
        reason: String,
    },
}

impl std::fmt::Display for LogDirError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LogDirError::Io { dir, error } => write!(f, "log dir {}: {error}", dir.display()),
            LogDirError::Mismatch {
                dir,
                key,
                found,
                expected,
            } => write!(
                f,
                "log dir {} belongs to {key}={found}, but this node has {key}={expected}; \
                 refusing to use it (point log.dirs elsewhere or remove the directory)",
                dir.display()
            ),
            LogDirError::Malformed { file, reason } => write!(f, "{}: {reason}", file.display()),
        }
    }
}

pub struct LogDirs {
    dirs: Vec<PathBuf>,
    /// Where each partition lives.
    partitions: BTreeMap<(String, u32), PathBuf>,
    /// How many of `partitions` each of `dirs` holds (same order): placing
    /// a new partition counted them by walking every path, which made a
    /// 10,000-partition create quadratic (seconds of one event loop).
    per_dir: Vec<usize>,
}

fn io(dir: &Path) -> impl Fn(std::io::Error) -> LogDirError + '_ {
    move |e| LogDirError::Io {
        dir: dir.to_path_buf(),
        error: e.to_string(),
    }
}

/// Parses `<topic>-<partition>` (topics may contain '-').
pub fn parse_partition_dir(name: &str) -> Option<(String, u32)> {
    let (topic, partition) = name.rsplit_once('-')?;
    (!topic.is_empty())
        .then(|| Some((topic.to_string(), partition.parse().ok()?)))
        .flatten()
}

impl LogDirs {
    pub fn open(
        dirs: &[PathBuf],
        node_id: NodeId,
        cluster_id: &str,
    ) -> Result<LogDirs, LogDirError> {
        assert!(!dirs.is_empty(), "at least one log dir");
        let mut partitions = BTreeMap::new();
        for dir in dirs {
            fs::create_dir_all(dir).map_err(io(dir))?;
            check_meta(dir, node_id, cluster_id)?;
            for entry in fs::read_dir(dir).map_err(io(dir))? {
                let entry = entry.map_err(io(dir))?;
                let Ok(name) = entry.file_name().into_string() else {
                    continue;
                };
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    if name.ends_with(super::partition_metadata::DELETING_SUFFIX) {
                        // A deletion a crash interrupted (`partition_metadata::remove`).
                        let _ = fs::remove_dir_all(entry.path());
                        continue;
                    }
                    if let Some(key) = parse_partition_dir(&name) {
                        partitions.insert(key, entry.path());
                    }
                }
            }
        }
        let per_dir = dirs
            .iter()
            .map(|d| {
                partitions
                    .values()
                    .filter(|p| p.parent() == Some(d.as_path()))
                    .count()
            })
            .collect();
        Ok(LogDirs {
            dirs: dirs.to_vec(),
            partitions,
            per_dir,
        })
    }

    /// The directory of a partition, placing a new one on the log dir with
    /// the fewest partitions.
    pub fn partition_dir(&mut self, topic: &str, partition: u32) -> PathBuf {
        let key = (topic.to_string(), partition);
        if let Some(p) = self.partitions.get(&key) {
            return p.clone();
        }
        let (i, _) = self
            .per_dir
            .iter()
            .enumerate()
            .min_by_key(|(_, n)| **n)
            .expect("a log dir");
        self.per_dir[i] += 1;
        let path = self.dirs[i].join(format!("{topic}-{partition}"));
        self.partitions.insert(key, path.clone());
        path
    }

    pub fn partitions(&self) -> impl Iterator<Item = (&(String, u32), &PathBuf)> {
        self.partitions.iter()
    }

    /// Writes the high watermarks of the partitions living in each dir.
    pub fn write_high_watermarks(
        &self,
        hws: &BTreeMap<(String, u32), Offset>,
    ) -> Result<(), LogDirError> {
        for dir in &self.dirs {
            let here: Vec<_> = hws
                .iter()
                .filter(|(k, _)| {
                    self.partitions.get(*k).and_then(|p| p.parent()) == Some(dir.as_path())
                })
                .collect();
            let mut text = format!("0\n{}\n", here.len());
            for ((topic, partition), hw) in here {
                text.push_str(&format!("{topic} {partition} {hw}\n"));
            }
            write_atomically(&dir.join(HIGH_WATERMARKS), text.as_bytes()).map_err(io(dir))?;
        }
        Ok(())
    }

    /// Reads every dir's high-watermark checkpoint (missing = empty).
    pub fn read_high_watermarks(&self) -> Result<BTreeMap<(String, u32), Offset>, LogDirError> {
        let mut out = BTreeMap::new();
        for dir in &self.dirs {
            let file = dir.join(HIGH_WATERMARKS);
            let Ok(text) = fs::read_to_string(&file) else {
                continue;
            };
            let malformed = |reason: &str| LogDirError::Malformed {
                file: file.clone(),
                reason: reason.into(),
            };
            let mut lines = text.lines();
            if lines.next() != Some("0") {
                return Err(malformed("unknown version"));
            }
            let count: usize = lines
                .next()
                .and_then(|l| l.parse().ok())
                .ok_or_else(|| malformed("bad count"))?;
            for _ in 0..count {
                let line = lines
                    .next()
                    .ok_or_else(|| malformed("fewer entries than counted"))?;
                let mut parts = line.split(' ');
                let (Some(t), Some(p), Some(h)) = (parts.next(), parts.next(), parts.next()) else {
                    return Err(malformed("bad entry"));
                };
                let p = p.parse().map_err(|_| malformed("bad partition"))?;
                let h = h.parse().map_err(|_| malformed("bad offset"))?;
                out.insert((t.to_string(), p), h);
            }
        }
        Ok(out)
    }
}

fn check_meta(dir: &Path, node_id: NodeId, cluster_id: &str) -> Result<(), LogDirError> {
    let file = dir.join(META);
    let Ok(text) = fs::read_to_string(&file) else {
        let content = format!("#\nversion=1\nnode.id={node_id}\ncluster.id={cluster_id}\n");
        return write_atomically(&file, content.as_bytes()).map_err(io(dir));
    };
    let props: BTreeMap<&str, &str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    for (key, expected) in [
        ("node.id", node_id.to_string()),
        ("cluster.id", cluster_id.to_string()),
    ] {
        let found = props.get(key).or(if key == "node.id" {
            props.get("broker.id")
        } else {
            None
        });
        match found {
            Some(found) if *found == expected => {}
            Some(found) => {
                return Err(LogDirError::Mismatch {
                    dir: dir.to_path_buf(),
                    key,
                    found: found.to_string(),
                    expected,
                })
            }
            None => {
                return Err(LogDirError::Malformed {
                    file: file.clone(),
                    reason: format!("no {key}"),
                })
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_properties_guard_against_another_node_or_cluster() {
        let d = tempfile::tempdir().unwrap();
        let dirs = vec![d.path().join("a")];
        LogDirs::open(&dirs, 1, "c1").unwrap();
        LogDirs::open(&dirs, 1, "c1").expect("same node and cluster");
        let err = LogDirs::open(&dirs, 2, "c1").err().unwrap();
        assert!(
            matches!(err, LogDirError::Mismatch { key: "node.id", .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("node.id=1"));
        let err = LogDirs::open(&dirs, 1, "other").err().unwrap();
        assert!(matches!(
            err,
            LogDirError::Mismatch {
                key: "cluster.id",
                ..
            }
        ));
    }

    #[test]
    fn new_partitions_go_to_the_emptiest_dir_and_hws_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let dirs = vec![d.path().join("a"), d.path().join("b")];
        let mut ld = LogDirs::open(&dirs, 0, "c").unwrap();
        let p0 = ld.partition_dir("my-topic", 0);
        let p1 = ld.partition_dir("my-topic", 1);
        assert_ne!(p0.parent(), p1.parent(), "spread over both dirs");
        assert_eq!(ld.partition_dir("my-topic", 0), p0);
        fs::create_dir_all(&p0).unwrap();
        fs::create_dir_all(&p1).unwrap();
        let hws = BTreeMap::from([
            (("my-topic".to_string(), 0), 5),
            (("my-topic".to_string(), 1), 7),
        ]);
        ld.write_high_watermarks(&hws).unwrap();
        let reopened = LogDirs::open(&dirs, 0, "c").unwrap();
        assert_eq!(reopened.partitions().count(), 2);
        assert_eq!(reopened.read_high_watermarks().unwrap(), hws);
        assert_eq!(parse_partition_dir("a-b-12"), Some(("a-b".into(), 12)));
        assert_eq!(parse_partition_dir("-1"), None);
    }
}
