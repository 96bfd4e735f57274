//! Log files opened on demand, under a budget of descriptors.
//!
//! A broker hosts thousands of replicas, each with segments of three files;
//! keeping every one open would need ~9 descriptors per replica and runs a
//! node out of them (`EMFILE`) long before it runs out of anything else.
//! As RocksDB's `max_open_files`, a [`FileBudget`] keeps at most `capacity`
//! of the files it hands out open, closing the least recently used when a
//! new one opens; a [`CachedFile`] reopens itself on its next use. An idle
//! replica so holds no descriptor at all, and the node's descriptor use is
//! bounded whatever the number of partitions.
//!
//! A file in use stays usable while evicted: [`CachedFile::get`] returns a
//! shared handle (`Arc<File>`), and the descriptor closes when the last user
//! drops it. So a `sendfile` in flight or a flush off the event loop never
//! loses its file, and the budget is exceeded only by such in-flight users.
//! Closing a file loses nothing: written bytes are in the page cache, and an
//! fsync through a later descriptor syncs them (the inode's dirty pages, not
//! the descriptor's).

use crate::io::fs::{File, OpenOptions};
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

/// The fewest files a budget keeps open: a log needs its active segment's
/// three files at once (roll, checkpoint), and a budget below that would
/// reopen on every call.
pub const CAPACITY_MIN: usize = 8;

/// A shared limit on the log files open at once (see the module docs).
/// Clones share the budget.
#[derive(Clone)]
pub struct FileBudget {
    cache: Arc<Cache>,
}

struct Cache {
    capacity: usize,
    lru: Mutex<Lru>,
    next_id: AtomicU64,
    /// Files opened (first or again) and closed to make room, since start.
    opens: AtomicU64,
    evictions: AtomicU64,
}

/// Least recently used first: `order` by a use counter, `ticks` the
/// counter each open file was last used at.
#[derive(Default)]
struct Lru {
    tick: u64,
    order: BTreeMap<u64, (u64, Weak<Slot>)>,
    ticks: HashMap<u64, u64>,
}

impl Lru {
    fn touch(&mut self, id: u64, slot: Weak<Slot>) {
        self.tick += 1;
        if let Some(old) = self.ticks.insert(id, self.tick) {
            self.order.remove(&old);
        }
        self.order.insert(self.tick, (id, slot));
    }

    fn remove(&mut self, id: u64) {
        if let Some(old) = self.ticks.remove(&id) {
            self.order.remove(&old);
        }
    }

    /// Takes the least recently used out while more than `capacity` are open.
    fn overflow(&mut self, capacity: usize) -> Vec<Weak<Slot>> {
        let mut out = Vec::new();
        // Bounded: each round removes one entry.
        while self.order.len() > capacity {
            let (_, (id, slot)) = self.order.pop_first().expect("longer than capacity");
            self.ticks.remove(&id);
            out.push(slot);
        }
        out
    }
}

impl FileBudget {
    /// A budget of at most `capacity` open files (at least [`CAPACITY_MIN`]).
    pub fn new(capacity: usize) -> FileBudget {
        FileBudget {
            cache: Arc::new(Cache {
                capacity: capacity.max(CAPACITY_MIN),
                lru: Mutex::new(Lru::default()),
                next_id: AtomicU64::new(0),
                opens: AtomicU64::new(0),
                evictions: AtomicU64::new(0),
            }),
        }
    }

    /// The process's budget: one quarter of the open-files limit (client
    /// connections get half, `max.connections`; the rest is links, the
    /// metadata log and descriptors in flight). Every node in the process
    /// shares it (`runnel dev` runs three). In the simulation every call
    /// makes a new one, so that simulated hosts share nothing, and a small
    /// one, so that the simulated crashes meet logs whose files were closed
    /// and reopened.
    pub fn process_wide() -> FileBudget {
        if crate::io::SIMULATED {
            return FileBudget::new(SIMULATED_CAPACITY);
        }
        static PROCESS: OnceLock<FileBudget> = OnceLock::new();
        PROCESS
            .get_or_init(|| FileBudget::new(default_capacity()))
            .clone()
    }

    pub fn capacity(&self) -> usize {
        self.cache.capacity
    }

    /// Files open now (not counting handles in flight after eviction).
    pub fn open_count(&self) -> usize {
        self.cache.lock().order.len()
    }

    /// Opens since start (first opens and reopens after eviction).
    pub fn opens(&self) -> u64 {
        self.cache.opens.load(Ordering::Relaxed)
    }

    /// Files closed to keep within the budget since start.
    pub fn evictions(&self) -> u64 {
        self.cache.evictions.load(Ordering::Relaxed)
    }

    /// Hands `file`, just opened at `path`, to the budget.
    pub fn adopt(&self, path: PathBuf, file: File) -> CachedFile {
        let cached = self.closed(path);
        *cached.slot.lock() = Some(Arc::new(file));
        self.cache.admit(&cached.slot);
        cached
    }

    /// A file at `path` that opens on its first use.
    pub fn closed(&self, path: PathBuf) -> CachedFile {
        CachedFile {
            slot: Arc::new(Slot {
                id: self.cache.next_id.fetch_add(1, Ordering::Relaxed),
                path,
                file: Mutex::new(None),
                cache: self.cache.clone(),
            }),
        }
    }
}

/// A simulated host's budget: a few partitions' active segments.
const SIMULATED_CAPACITY: usize = 2 * CAPACITY_MIN;

/// [`FileBudget::process_wide`]'s capacity.
pub fn default_capacity() -> usize {
    (crate::limits::open_files_limit() / 4).clamp(CAPACITY_MIN as u64, i32::MAX as u64) as usize
}

impl Cache {
    fn lock(&self) -> MutexGuard<'_, Lru> {
        // A panic elsewhere leaves the LRU consistent (each method finishes
        // its edit before anything can panic): go on with it.
        self.lru.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn admit(&self, slot: &Arc<Slot>) {
        self.opens.fetch_add(1, Ordering::Relaxed);
        let evicted = {
            let mut lru = self.lock();
            lru.touch(slot.id, Arc::downgrade(slot));
            lru.overflow(self.capacity)
        };
        // Closed outside the LRU's lock: a slot dropped here locks it.
        for weak in evicted {
            if let Some(other) = weak.upgrade() {
                other.lock().take();
                self.evictions.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl std::fmt::Debug for FileBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileBudget")
            .field("capacity", &self.cache.capacity)
            .finish_non_exhaustive()
    }
}

/// Budgets are equal when they are the same budget.
impl PartialEq for FileBudget {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.cache, &other.cache)
    }
}

impl Eq for FileBudget {}

struct Slot {
    id: u64,
    path: PathBuf,
    file: Mutex<Option<Arc<File>>>,
    cache: Arc<Cache>,
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, Option<Arc<File>>> {
        self.file.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.cache.lock().remove(self.id);
    }
}

/// One log file under a [`FileBudget`]: open while recently used.
pub struct CachedFile {
    slot: Arc<Slot>,
}

impl CachedFile {
    /// The open file, opened again (read-write, never created or cut) if
    /// the budget closed it. An error is the open's: a file that vanished
    /// (`ENOENT`), or no descriptor left (`EMFILE`).
    pub fn get(&self) -> io::Result<Arc<File>> {
        let mut file = self.slot.lock();
        if let Some(f) = file.as_ref() {
            let f = f.clone();
            drop(file);
            self.slot
                .cache
                .lock()
                .touch(self.slot.id, Arc::downgrade(&self.slot));
            return Ok(f);
        }
        let f = Arc::new(
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(&self.slot.path)?,
        );
        *file = Some(f.clone());
        drop(file);
        self.slot.cache.admit(&self.slot);
        Ok(f)
    }

    pub fn path(&self) -> &Path {
        &self.slot.path
    }

    /// Is the file open now (for tests and figures)?
    pub fn is_open(&self) -> bool {
        self.slot.lock().is_some()
    }
}

impl std::fmt::Debug for CachedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CachedFile({})", self.slot.path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::FileExt;

    fn create(dir: &Path, name: &str) -> (PathBuf, File) {
        let path = dir.join(name);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        (path, file)
    }

    #[test]
    fn at_most_capacity_files_stay_open_and_evicted_ones_reopen_with_their_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let budget = FileBudget::new(CAPACITY_MIN);
        let files: Vec<CachedFile> = (0..CAPACITY_MIN * 3)
            .map(|i| {
                let (path, file) = create(dir.path(), &format!("{i}.log"));
                file.write_all_at(&[i as u8; 3], 0).unwrap();
                budget.adopt(path, file)
            })
            .collect();
        assert_eq!(budget.open_count(), CAPACITY_MIN);
        assert_eq!(files.iter().filter(|f| f.is_open()).count(), CAPACITY_MIN);
        assert!(!files[0].is_open(), "the least recently used went first");
        for (i, f) in files.iter().enumerate() {
            let mut buf = [0u8; 3];
            f.get().unwrap().read_exact_at(&mut buf, 0).unwrap();
            assert_eq!(buf, [i as u8; 3]);
            assert!(budget.open_count() <= CAPACITY_MIN);
        }
        assert_eq!(budget.evictions() as usize, CAPACITY_MIN * 5);
    }

    #[test]
    fn a_handle_in_use_outlives_its_eviction_and_a_dropped_file_leaves_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let budget = FileBudget::new(CAPACITY_MIN);
        let (path, file) = create(dir.path(), "held.log");
        let held = budget.adopt(path, file);
        let handle = held.get().unwrap();
        let mut others: Vec<CachedFile> = (0..CAPACITY_MIN)
            .map(|i| {
                let (p, f) = create(dir.path(), &format!("{i}.log"));
                budget.adopt(p, f)
            })
            .collect();
        assert!(!held.is_open());
        handle.write_all_at(b"still mine", 0).unwrap();
        let mut buf = [0u8; 10];
        held.get().unwrap().read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"still mine");
        // Open now: others[1..] and `held` (its reopen closed others[0]).
        others.truncate(2);
        assert_eq!(budget.open_count(), 2);
        drop(held);
        assert_eq!(budget.open_count(), 1);
    }

    #[test]
    fn a_vanished_file_is_an_error_not_a_new_empty_file() {
        let dir = tempfile::tempdir().unwrap();
        let budget = FileBudget::new(CAPACITY_MIN);
        let gone = budget.closed(dir.path().join("gone.log"));
        assert_eq!(gone.get().unwrap_err().kind(), io::ErrorKind::NotFound);
        assert!(!dir.path().join("gone.log").exists());
    }
}
