//! The fuzz targets' bodies and their input formats (the targets in
//! `fuzz_targets/` are one line each; `examples/gen_seeds.rs` writes seed
//! inputs in the same formats). Every target calls the node's real code:
//! nothing here re-implements a decoder, it only frames input for one.
//!
//! What each target must never do, whatever the bytes: panic (debug
//! assertions and overflow checks are on in fuzz builds), hang, or allocate
//! without bound (libFuzzer's -rss_limit_mb / -malloc_limit_mb).

use std::alloc::{GlobalAlloc, Layout, System};

/// No single allocation may exceed this: an input of a few KB that makes
/// the node ask for more is a bug (a size or count taken from the input
/// without a bound), even where the pages would never be touched (which
/// libFuzzer's `-rss_limit_mb` alone would miss without a sanitizer's
/// malloc hooks). Above it the allocation fails, which aborts with
/// "memory allocation of N bytes failed" (a crash to libFuzzer), unless
/// the caller handles the failure (`try_reserve`).
pub const ALLOCATION_BYTES_MAX: usize = 256 << 20;

/// The system allocator, refusing allocations above [`ALLOCATION_BYTES_MAX`].
pub struct BoundedAllocator;

// SAFETY: forwards to `System`, only refusing (null) some requests, which
// the `GlobalAlloc` contract allows.
unsafe impl GlobalAlloc for BoundedAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > ALLOCATION_BYTES_MAX {
            return std::ptr::null_mut();
        }
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > ALLOCATION_BYTES_MAX {
            return std::ptr::null_mut();
        }
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > ALLOCATION_BYTES_MAX {
            return std::ptr::null_mut();
        }
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: BoundedAllocator = BoundedAllocator;

/// Reads fields off the front of the fuzzer's bytes; past the end every
/// field reads as zero and every slice as empty, so any input is a valid
/// (if short) structure.
pub struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data }
    }

    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    pub fn u64(&mut self) -> u64 {
        (u64::from(self.u32()) << 32) | u64::from(self.u32())
    }

    /// Up to `len` bytes (fewer at the end of the input).
    pub fn bytes(&mut self, len: usize) -> &'a [u8] {
        let (taken, rest) = self.data.split_at(len.min(self.data.len()));
        self.data = rest;
        taken
    }

    pub fn rest(&mut self) -> &'a [u8] {
        self.bytes(usize::MAX)
    }
}

/// Writes the formats [`Reader`] reads (for seed inputs).
#[derive(Default)]
pub struct Writer(pub Vec<u8>);

impl Writer {
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
}

/// Sets the CRC-32C of a v2 batch (of bytes 21.., stored at 17..21).
pub fn fix_crc(batch: &mut [u8]) {
    if batch.len() >= 21 {
        let crc = crc32c::crc32c(&batch[21..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
    }
}

/// Sets the batch length field (bytes 8..12) to what the bytes hold.
pub fn fix_length(batch: &mut [u8]) {
    if batch.len() >= 12 {
        if let Ok(len) = i32::try_from(batch.len() - 12) {
            batch[8..12].copy_from_slice(&len.to_be_bytes());
        }
    }
}

/// `kafka_request`: `runnel::kafka::server::decode_request`, the node's
/// whole request decode (header, API key and version check against
/// `versions::SUPPORTED`, body under the memory budget).
pub mod kafka_request {
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::messages::{ApiKey, RequestHeader};
    use kafka_protocol::protocol::{Encodable, StrBytes};
    use runnel::kafka::server::{decode_request, Decoded};
    use runnel::kafka::versions::SUPPORTED;

    /// Every (API key, version) the node serves, in `SUPPORTED` order.
    pub fn served() -> Vec<(ApiKey, i16)> {
        SUPPORTED
            .iter()
            .flat_map(|&(key, min, max)| (min..=max).map(move |v| (key, v)))
            .collect()
    }

    /// A valid request header for `(key, version)`.
    pub fn header(key: ApiKey, version: i16, correlation_id: i32) -> BytesMut {
        let mut buf = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("fuzz")))
            .encode(&mut buf, key.request_header_version(version))
            .expect("a header encodes");
        buf
    }

    /// Input: `[selector][body...]`. The whole input is decoded as a frame
    /// as it is; then `body` behind a valid header for the served
    /// `(key, version)` that `selector` picks (modulo their number), so the
    /// body decoder of every served API key and version is reached.
    pub fn run(data: &[u8]) {
        decode_and_reencode(Bytes::copy_from_slice(data));
        let Some((&selector, body)) = data.split_first() else {
            return;
        };
        let served = served();
        let (key, version) = served[selector as usize % served.len()];
        let mut frame = header(key, version, 7);
        frame.extend_from_slice(body);
        decode_and_reencode(frame.freeze());
    }

    /// Whatever decodes must encode again at its version without a panic
    /// (an `Err` is allowed: some values have no encoding at some versions).
    fn decode_and_reencode(frame: Bytes) {
        if let Ok(Decoded::Request {
            header,
            api_key,
            version,
            body,
        }) = decode_request(frame)
        {
            let mut out = BytesMut::new();
            let _ = header.encode(&mut out, api_key.request_header_version(version));
            let _ = body.encode(&mut out, version);
        }
    }
}

/// `internal_frame`: `runnel::wire::FrameDecoder` as a link uses it
/// (handshake, proof, then peer messages), peer messages alone, and the
/// metadata-log entry decoder (`quorum_store::decode_entry`).
pub mod internal_frame {
    use super::Reader;
    use runnel::runtime::messages::PeerMessage;
    use runnel::runtime::quorum_store::{decode_entry, encode_entry};
    use runnel::runtime::transport::INTERNAL_FRAME_BYTES_MAX;
    use runnel::wire::{self, FrameDecoder, Handshake, Proof, HANDSHAKE_BYTES_MAX};

    /// Chunk sizes the socket delivers: from a 16-bit seed, each between 1
    /// and 2^(seed & 15) bytes (a small xorshift picks them).
    struct Chunks {
        state: u32,
        max: usize,
    }

    impl Chunks {
        fn new(seed: u16) -> Self {
            Chunks {
                state: u32::from(seed) | 0x1_0000,
                max: 1 << (seed & 15),
            }
        }
        fn next(&mut self) -> usize {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 17;
            self.state ^= self.state << 5;
            1 + self.state as usize % self.max
        }
    }

    /// Feeds `stream` in chunks, taking every whole message after each.
    /// `link`: the first two frames are the handshake and the proof (under
    /// `HANDSHAKE_BYTES_MAX`), as on a new connection; else peer messages
    /// from the first frame on. Stops at the first error, as a link does.
    fn decode_stream(stream: &[u8], seed: u16, link: bool) {
        let mut chunks = Chunks::new(seed);
        let mut decoder = match link {
            true => FrameDecoder::new(HANDSHAKE_BYTES_MAX),
            false => FrameDecoder::new(INTERNAL_FRAME_BYTES_MAX),
        };
        let mut stage = if link { 0 } else { 2 };
        let mut at = 0;
        while at < stream.len() {
            let end = stream.len().min(at + chunks.next());
            decoder.push(&stream[at..end]);
            at = end;
            loop {
                let step = match stage {
                    0 => decoder.next_message::<Handshake>().map(|m| {
                        m.map(|h| {
                            let _ = wire::encode(&h);
                        })
                    }),
                    1 => decoder.next_message::<Proof>().map(|m| {
                        m.map(|p| {
                            let _ = wire::encode(&p);
                        })
                    }),
                    _ => decoder.next_message::<PeerMessage>().map(|m| {
                        m.map(|message| {
                            let _ = message.kind();
                            let _ = wire::encode(&message);
                        })
                    }),
                };
                match step {
                    Ok(Some(())) => {
                        stage += 1;
                        if stage == 2 {
                            decoder.set_frame_bytes_max(INTERNAL_FRAME_BYTES_MAX);
                        }
                        stage = stage.min(2);
                    }
                    Ok(None) => break,
                    Err(_) => return,
                }
            }
        }
    }

    /// Input: `[seed: u16][mode][bytes...]`. Mode bit 0: the bytes are a
    /// link's stream (handshake, proof, peer messages) or peer messages
    /// only. Then, whatever the mode, the bytes as `metadata-2.log` (entries
    /// decoded one after another, as `QuorumStore::open` does), and as one
    /// entry body behind a correct length and CRC, so postcard's decoder of
    /// `MetaEntry` is reached. Decoded entries are encoded again.
    pub fn run(data: &[u8]) {
        let mut r = Reader::new(data);
        let seed = r.u16();
        let mode = r.u8();
        let bytes = r.rest();
        decode_stream(bytes, seed, mode & 1 == 0);
        let mut at = 0;
        while at < bytes.len() {
            match decode_entry(&bytes[at..]) {
                Some((entry, used)) => {
                    let _ = encode_entry(&entry);
                    at += used;
                }
                None => break,
            }
        }
        let mut framed = Vec::with_capacity(bytes.len() + 8);
        framed.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        framed.extend_from_slice(&crc32c::crc32c(bytes).to_be_bytes());
        framed.extend_from_slice(bytes);
        if let Some((entry, _)) = decode_entry(&framed) {
            let _ = encode_entry(&entry);
        }
    }
}

/// `batch_check`: `runnel::kafka::batch_check::check`, the produce path's
/// validator (Kafka's LogValidator).
pub mod batch_check {
    use super::{fix_crc, fix_length, Reader};
    use bytes::Bytes;
    use runnel::kafka::batch_check::{check, BatchLimits};

    /// The broker's clock in every run (seeds use timestamps near it).
    pub const NOW_MS: i64 = 1_700_000_000_000;

    pub fn limits(zstd_allowed: bool) -> BatchLimits {
        BatchLimits {
            max_batch_bytes: 1 << 20,
            now_ms: NOW_MS,
            before_max_ms: 7 * 24 * 3_600_000,
            after_max_ms: 3_600_000,
            zstd_allowed,
            log_append_time: false,
            compacted: false,
        }
    }

    /// Input: `[mode][rest...]`. The whole input is checked as it is. Then
    /// by `mode`: bit 2 clear allows zstd;
    /// - `mode & 3 == 0`: `rest` is a batch; its CRC is set right;
    /// - `mode & 3 == 2`: its length field too (so bytes inserted or cut
    ///   in the records still reach the record walk);
    /// - otherwise `rest` is a recipe: a valid batch is built by
    ///   `runnel::client::encode_producer_batch` from it (see [`recipe`]),
    ///   mutated as the recipe's tail says, and its CRC set right.
    pub fn run(data: &[u8]) {
        let _ = check(data, &limits(true));
        let Some((&mode, rest)) = data.split_first() else {
            return;
        };
        let limits = limits(mode & 4 == 0);
        let batch = match mode & 3 {
            0 => {
                let mut b = rest.to_vec();
                fix_crc(&mut b);
                b
            }
            2 => {
                let mut b = rest.to_vec();
                fix_length(&mut b);
                fix_crc(&mut b);
                b
            }
            _ => match recipe(rest) {
                Some(b) => b,
                None => return,
            },
        };
        let _ = check(&batch, &limits);
    }

    /// A recipe: `[records: u8][producer: u8][timestamp offset: u32]`, then
    /// per record `[key len: u8][key][value len: u8][value]` (length 255:
    /// null), then mutations `[position: u16][xor: u8]...` applied to the
    /// encoded batch before its CRC is set right.
    pub fn recipe(rest: &[u8]) -> Option<Vec<u8>> {
        let mut r = Reader::new(rest);
        let count = 1 + r.u8() as usize % 16;
        let producer = match r.u8() {
            0 => (-1, -1, -1),
            p => (i64::from(p) * 1000, i16::from(p & 7), i32::from(p) * 3),
        };
        let timestamp = NOW_MS + i64::from(r.u32() as i32);
        let field = |r: &mut Reader| match r.u8() {
            255 => None,
            len => Some(Bytes::copy_from_slice(r.bytes(len as usize))),
        };
        let records: Vec<_> = (0..count).map(|_| (field(&mut r), field(&mut r))).collect();
        let mut batch = runnel::client::encode_producer_batch(&records, timestamp, producer)
            .ok()?
            .to_vec();
        let mutations = r.rest();
        for m in mutations.chunks_exact(3) {
            let at = u16::from_be_bytes([m[0], m[1]]) as usize % batch.len();
            batch[at] ^= m[2];
        }
        fix_crc(&mut batch);
        Some(batch)
    }
}

/// `segment_recovery`: `DiskLog::open` (the recovery scan of every
/// segment, index and time-index loading or rebuilding, the epoch
/// checkpoint) on a log directory written from the input, then reads of the
/// whole log, a timestamp lookup and an append on what it recovered.
pub mod segment_recovery {
    use super::Reader;
    use runnel::storage::batch;
    use runnel::storage::disk_log::{BatchBytes, DiskLog, LogConfig};
    use runnel_model::log::PartitionLog;
    use std::path::{Path, PathBuf};

    /// One segment: (base offset, `.log`, `.index` (None: absent), `.timeindex`).
    pub type SegmentFiles = (u64, Vec<u8>, Option<Vec<u8>>, Option<Vec<u8>>);

    /// A log directory as the input describes it.
    #[derive(Clone, Debug, Default)]
    pub struct LogDir {
        pub segments: Vec<SegmentFiles>,
        pub recovery_point: Option<u64>,
        pub epoch_checkpoint: Option<Vec<u8>>,
        /// 0..3: which `LogConfig` (see [`config`]).
        pub config: u8,
        /// Open the log once more after the append.
        pub reopen: bool,
        /// The timestamp looked up after recovery.
        pub timestamp: u64,
    }

    const FLAG_RECOVERY_POINT: u8 = 1 << 2;
    const FLAG_CHECKPOINT: u8 = 1 << 3;
    const FLAG_INDEXES: u8 = 1 << 6;
    const FLAG_REOPEN: u8 = 1 << 7;

    /// Input: `[flags][recovery point: u64 if flagged][checkpoint len: u16,
    /// bytes, if flagged]`, then per segment (1 + flags & 3, at most 3)
    /// `[base offset: u64][log len: u32][index len: u16][timeindex len:
    /// u16][log][index][timeindex]` (index files absent unless flagged),
    /// then `[timestamp: u64]`. Flags bits 4-5 pick the `LogConfig`.
    pub fn parse(data: &[u8]) -> LogDir {
        let mut r = Reader::new(data);
        let flags = r.u8();
        let mut dir = LogDir {
            config: (flags >> 4) & 3,
            reopen: flags & FLAG_REOPEN != 0,
            ..LogDir::default()
        };
        if flags & FLAG_RECOVERY_POINT != 0 {
            dir.recovery_point = Some(r.u64());
        }
        if flags & FLAG_CHECKPOINT != 0 {
            let len = r.u16() as usize;
            dir.epoch_checkpoint = Some(r.bytes(len).to_vec());
        }
        let count = 1 + (flags & 3).min(2) as usize;
        for _ in 0..count {
            let base = r.u64();
            let (log_len, index_len, time_len) = (r.u32(), r.u16(), r.u16());
            let log = r.bytes(log_len as usize).to_vec();
            let (index, timeindex) = match flags & FLAG_INDEXES != 0 {
                true => (
                    Some(r.bytes(index_len as usize).to_vec()),
                    Some(r.bytes(time_len as usize).to_vec()),
                ),
                false => (None, None),
            };
            dir.segments.push((base, log, index, timeindex));
        }
        dir.timestamp = r.u64();
        dir
    }

    /// The input that [`parse`] reads as `dir`.
    pub fn unparse(dir: &LogDir) -> Vec<u8> {
        let mut w = super::Writer::default();
        let indexes = dir.segments.iter().any(|s| s.2.is_some() || s.3.is_some());
        let flags = (dir.segments.len().clamp(1, 3) as u8 - 1)
            | if dir.recovery_point.is_some() {
                FLAG_RECOVERY_POINT
            } else {
                0
            }
            | if dir.epoch_checkpoint.is_some() {
                FLAG_CHECKPOINT
            } else {
                0
            }
            | (dir.config & 3) << 4
            | if indexes { FLAG_INDEXES } else { 0 }
            | if dir.reopen { FLAG_REOPEN } else { 0 };
        w.u8(flags);
        if let Some(p) = dir.recovery_point {
            w.u64(p);
        }
        if let Some(c) = &dir.epoch_checkpoint {
            w.u16(c.len() as u16).bytes(c);
        }
        for (base, log, index, time) in dir.segments.iter().take(3) {
            let index = index.clone().unwrap_or_default();
            let time = time.clone().unwrap_or_default();
            w.u64(*base)
                .u32(log.len() as u32)
                .u16(index.len() as u16)
                .u16(time.len() as u16)
                .bytes(log);
            if indexes {
                w.bytes(&index).bytes(&time);
            }
        }
        w.u64(dir.timestamp);
        w.0
    }

    pub fn config(choice: u8) -> LogConfig {
        match choice & 3 {
            0 => LogConfig::default(),
            1 => LogConfig {
                segment_bytes: 200,
                index_interval_bytes: 1,
                roll_ms: Some(1),
                // Few descriptors: the files close and reopen as it runs.
                files: runnel::storage::file_cache::FileBudget::new(8),
            },
            2 => LogConfig {
                segment_bytes: 4096,
                index_interval_bytes: 100,
                roll_ms: None,
                files: runnel::storage::file_cache::FileBudget::new(8),
            },
            _ => LogConfig {
                segment_bytes: 1 << 20,
                index_interval_bytes: 4096,
                roll_ms: Some(3_600_000),
                ..LogConfig::default()
            },
        }
    }

    fn segment_file(dir: &Path, base: u64, ext: &str) -> PathBuf {
        dir.join(format!("{base:020}.{ext}"))
    }

    /// Writes `log` as a partition directory at `path` (which must not
    /// exist yet).
    pub fn write(path: &Path, log: &LogDir) -> std::io::Result<()> {
        std::fs::create_dir_all(path)?;
        for (base, bytes, index, time) in &log.segments {
            std::fs::write(segment_file(path, *base, "log"), bytes)?;
            if let Some(index) = index {
                std::fs::write(segment_file(path, *base, "index"), index)?;
            }
            if let Some(time) = time {
                std::fs::write(segment_file(path, *base, "timeindex"), time)?;
            }
        }
        if let Some(p) = log.recovery_point {
            std::fs::write(path.join("recovery-point"), p.to_string())?;
        }
        if let Some(c) = &log.epoch_checkpoint {
            std::fs::write(path.join("leader-epoch-checkpoint"), c)?;
        }
        Ok(())
    }

    /// Reads a partition directory back into a [`LogDir`] (for seeds).
    pub fn read(path: &Path) -> std::io::Result<LogDir> {
        let mut bases: Vec<u64> = std::fs::read_dir(path)?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|n| n.strip_suffix(".log")?.parse().ok())
            .collect();
        bases.sort_unstable();
        let mut log = LogDir::default();
        for base in bases {
            log.segments.push((
                base,
                std::fs::read(segment_file(path, base, "log"))?,
                std::fs::read(segment_file(path, base, "index")).ok(),
                std::fs::read(segment_file(path, base, "timeindex")).ok(),
            ));
        }
        log.recovery_point = std::fs::read_to_string(path.join("recovery-point"))
            .ok()
            .and_then(|s| s.trim().parse().ok());
        log.epoch_checkpoint = std::fs::read(path.join("leader-epoch-checkpoint")).ok();
        Ok(log)
    }

    /// A fresh scratch directory for this process: on tmpfs (`/dev/shm`)
    /// where there is one, since `DiskLog::open` fsyncs (set
    /// `RUNNEL_FUZZ_TMP` to choose another place).
    pub fn scratch() -> PathBuf {
        let base = std::env::var_os("RUNNEL_FUZZ_TMP")
            .map(PathBuf::from)
            .or_else(|| {
                let shm = Path::new("/dev/shm");
                shm.is_dir().then(|| shm.to_path_buf())
            })
            .unwrap_or_else(std::env::temp_dir);
        base.join(format!("runnel-fuzz-{}", std::process::id()))
    }

    pub fn run(data: &[u8]) {
        let log = parse(data);
        let root = scratch();
        let _ = std::fs::remove_dir_all(&root);
        let path = root.join("topic-0");
        write(&path, &log).expect("the scratch directory is writable");
        exercise(&path, &log);
        let _ = std::fs::remove_dir_all(&root);
    }

    /// Opens the log (recovery), reads all of it, looks a timestamp up,
    /// appends one batch; optionally opens it once more.
    pub fn exercise(path: &Path, log: &LogDir) {
        let config = config(log.config);
        let Ok((mut disk, _report)) = DiskLog::open(path, config.clone()) else {
            return;
        };
        let (start, end) = (disk.start_offset(), disk.end_offset());
        let mut from = start;
        for _ in 0..10_000 {
            if from >= end {
                break;
            }
            let Ok(read) = disk.read(from, u64::MAX, 64 << 10) else {
                break;
            };
            let Ok(batches) = read.batches() else {
                break;
            };
            match batches.last() {
                Some((h, _)) if h.end_offset() > from => from = h.end_offset(),
                _ => break,
            }
        }
        let _ = disk.locate(start, end, 1 << 20);
        let _ = disk.offset_for_timestamp(log.timestamp as i64);
        let _ = disk.epoch_of_offset(start);
        let _ = disk.end_offset_for_epoch(disk.latest_epoch().unwrap_or(0));
        let epoch = disk.latest_epoch().unwrap_or(0);
        let batch = batch::build(3, b"fuzz", log.timestamp as i64);
        let _ = disk.append_as_leader(BatchBytes(batch.into()), epoch);
        let _ = disk.flush();
        let _ = disk.read(start, u64::MAX, 1 << 20);
        drop(disk);
        if log.reopen {
            let _ = DiskLog::open(path, config);
        }
    }
}
