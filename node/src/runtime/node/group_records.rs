//! The bytes of the coordinator's records in `__consumer_offsets`, in
//! Kafka's own layout, so that the topic compacts as Kafka's does and
//! Kafka's tools read it: keys are Kafka's OffsetCommitKey (version 1:
//! group, topic, partition) and GroupMetadataKey (version 2: group); values
//! OffsetCommitValue version 3 (offset, leader epoch, metadata, commit
//! time) and GroupMetadataValue version 3 (Runnel keeps only the generation
//! durable: no protocol, leader or members; members rejoin after a
//! failover). Which records a coordinator record becomes, and how a group
//! replays them, is the model's (`runnel_model::group::offsets_topic`).
//!
//! Logs written before this layout keyed every record by the group id
//! alone, with a postcard `GroupRecord` as the value; such a record (its
//! key is not a well-formed versioned key) still replays, and the cleaner
//! keeps it as if it had no key (compacting group-keyed records would keep
//! one commit per group).
//!
//! Every read is bounded by the bytes given: nothing in a log is trusted.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use runnel_model::group::offsets_topic::{OffsetsEntry, OffsetsKey, OffsetsValue};
use runnel_model::group::{CommittedOffset, GroupRecord};

const OFFSET_KEY_VERSION: i16 = 1;
const METADATA_KEY_VERSION: i16 = 2;
const OFFSET_VALUE_VERSION: i16 = 3;
const METADATA_VALUE_VERSION: i16 = 3;

/// A record of the offsets topic, as read back.
#[derive(Debug, PartialEq)]
pub enum Decoded {
    Entry(OffsetsEntry),
    /// A record of the layout before (key: the group id).
    Legacy(String, GroupRecord),
}

fn put_string(out: &mut BytesMut, s: &str) -> Result<(), String> {
    let len = i16::try_from(s.len()).map_err(|_| format!("a {}-byte string", s.len()))?;
    out.put_i16(len);
    out.put_slice(s.as_bytes());
    Ok(())
}

/// The key's bytes; an error for a name longer than Kafka's strings hold.
pub fn encode_key(key: &OffsetsKey) -> Result<Bytes, String> {
    let mut out = BytesMut::new();
    match key {
        OffsetsKey::Offset {
            group,
            topic,
            partition,
        } => {
            out.put_i16(OFFSET_KEY_VERSION);
            put_string(&mut out, group)?;
            put_string(&mut out, topic)?;
            let partition = i32::try_from(*partition).map_err(|_| "a partition past i32")?;
            out.put_i32(partition);
        }
        OffsetsKey::Metadata { group } => {
            out.put_i16(METADATA_KEY_VERSION);
            put_string(&mut out, group)?;
        }
    }
    Ok(out.freeze())
}

/// The value's bytes (`None` for a tombstone).
pub fn encode_value(value: &OffsetsValue, now_ms: i64) -> Result<Bytes, String> {
    let mut out = BytesMut::new();
    match value {
        OffsetsValue::Offset {
            offset,
            commit_timestamp_ms,
        } => {
            out.put_i16(OFFSET_VALUE_VERSION);
            out.put_i64(offset.offset);
            out.put_i32(offset.leader_epoch);
            put_string(&mut out, &offset.metadata)?;
            out.put_i64(*commit_timestamp_ms as i64);
        }
        OffsetsValue::Metadata { generation } => {
            out.put_i16(METADATA_VALUE_VERSION);
            put_string(&mut out, "")?; // protocol type
            out.put_i32(*generation);
            out.put_i16(-1); // protocol: null
            out.put_i16(-1); // leader: null
            out.put_i64(now_ms); // current state timestamp
            out.put_i32(0); // members
        }
    }
    Ok(out.freeze())
}

/// A bounded reader: every take checks what is left first.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn need(&self, n: usize) -> Result<(), String> {
        match self.0.remaining() >= n {
            true => Ok(()),
            false => Err(format!("{} bytes left, {n} needed", self.0.remaining())),
        }
    }
    fn i16(&mut self) -> Result<i16, String> {
        self.need(2)?;
        Ok(self.0.get_i16())
    }
    fn i32(&mut self) -> Result<i32, String> {
        self.need(4)?;
        Ok(self.0.get_i32())
    }
    fn i64(&mut self) -> Result<i64, String> {
        self.need(8)?;
        Ok(self.0.get_i64())
    }
    fn string(&mut self) -> Result<String, String> {
        let len = self.i16()?;
        let len = usize::try_from(len).map_err(|_| format!("a string of length {len}"))?;
        self.need(len)?;
        let s = std::str::from_utf8(&self.0[..len]).map_err(|e| e.to_string())?;
        let s = s.to_string();
        self.0.advance(len);
        Ok(s)
    }
    fn done(&self) -> Result<(), String> {
        match self.0.is_empty() {
            true => Ok(()),
            false => Err(format!("{} bytes past the end", self.0.len())),
        }
    }
}

/// The key, if it is a well-formed key of this layout (None: a legacy key).
pub fn decode_key(bytes: &[u8]) -> Option<OffsetsKey> {
    let mut r = Reader(bytes);
    let key = match r.i16().ok()? {
        0 | OFFSET_KEY_VERSION => OffsetsKey::Offset {
            group: r.string().ok()?,
            topic: r.string().ok()?,
            partition: u32::try_from(r.i32().ok()?).ok()?,
        },
        METADATA_KEY_VERSION => OffsetsKey::Metadata {
            group: r.string().ok()?,
        },
        _ => return None,
    };
    r.done().ok()?;
    Some(key)
}

/// Whether the cleaner may compact a record with this key: only keys of
/// this layout (a legacy record is kept as if keyless).
pub fn compactable_key(bytes: &[u8]) -> bool {
    decode_key(bytes).is_some()
}

fn decode_value(key: &OffsetsKey, bytes: &[u8]) -> Result<OffsetsValue, String> {
    let mut r = Reader(bytes);
    let version = r.i16()?;
    match key {
        OffsetsKey::Offset { .. } => {
            if version != OFFSET_VALUE_VERSION {
                return Err(format!("an offset value of version {version}"));
            }
            let offset = r.i64()?;
            let leader_epoch = r.i32()?;
            let metadata = r.string()?;
            let commit_timestamp_ms = u64::try_from(r.i64()?).unwrap_or(0);
            r.done()?;
            Ok(OffsetsValue::Offset {
                offset: CommittedOffset {
                    offset,
                    leader_epoch,
                    metadata,
                },
                commit_timestamp_ms,
            })
        }
        // Every version begins with the protocol type and the generation;
        // the rest (members, not durable here) is not read.
        OffsetsKey::Metadata { .. } => {
            if !(0..=METADATA_VALUE_VERSION).contains(&version) {
                return Err(format!("a group value of version {version}"));
            }
            r.string()?;
            Ok(OffsetsValue::Metadata {
                generation: r.i32()?,
            })
        }
    }
}

/// A record of the layout before: a group id (not one that begins as a
/// versioned key does: that is a damaged key of this layout) and a
/// postcard record that fills the value exactly.
fn decode_legacy(key: &[u8], value: Option<&[u8]>) -> Result<Decoded, String> {
    if matches!(key, [0, 0..=2, ..]) {
        return Err("a damaged key".into());
    }
    let group = std::str::from_utf8(key).map_err(|e| format!("a legacy key: {e}"))?;
    let value = value.ok_or("a legacy record without a value")?;
    let (record, rest) =
        postcard::take_from_bytes::<GroupRecord>(value).map_err(|e| e.to_string())?;
    if !rest.is_empty() {
        return Err(format!("{} bytes past a legacy record", rest.len()));
    }
    Ok(Decoded::Legacy(group.to_string(), record))
}

/// A record read back from the log.
pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<Decoded, String> {
    let Some(k) = decode_key(key) else {
        return decode_legacy(key, value);
    };
    let value = value.map(|v| decode_value(&k, v)).transpose()?;
    Ok(Decoded::Entry(OffsetsEntry { key: k, value }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use runnel_model::group::offsets_topic::entries;

    fn round_trip(e: &OffsetsEntry) -> Decoded {
        let key = encode_key(&e.key).unwrap();
        let value = e.value.as_ref().map(|v| encode_value(v, 7).unwrap());
        decode(&key, value.as_deref()).unwrap()
    }

    #[test]
    fn every_entry_a_coordinator_writes_reads_back() {
        let records = [
            GroupRecord::Offsets {
                generation: 3,
                offsets: vec![(
                    ("t".into(), 2),
                    CommittedOffset {
                        offset: 42,
                        leader_epoch: 5,
                        metadata: "m".into(),
                    },
                )],
                commit_timestamp_ms: 1_000,
            },
            GroupRecord::Generation { generation: 9 },
            GroupRecord::GroupDeleted {
                partitions: vec![("t".into(), 2), ("u".into(), 0)],
            },
        ];
        for r in &records {
            for e in entries("g", r) {
                assert_eq!(round_trip(&e), Decoded::Entry(e));
            }
        }
    }

    #[test]
    fn the_key_layout_is_kafkas() {
        let key = OffsetsKey::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: 1,
        };
        let want: &[u8] = &[0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 1];
        assert_eq!(&encode_key(&key).unwrap()[..], want);
        let key = OffsetsKey::Metadata { group: "g".into() };
        assert_eq!(&encode_key(&key).unwrap()[..], &[0, 2, 0, 1, b'g']);
    }

    #[test]
    fn legacy_records_still_read_and_are_not_compacted() {
        let r = GroupRecord::Generation { generation: 4 };
        let value = postcard::to_allocvec(&r).unwrap();
        assert_eq!(
            decode(b"my-group", Some(&value)).unwrap(),
            Decoded::Legacy("my-group".into(), r)
        );
        assert!(!compactable_key(b"my-group"));
    }

    #[test]
    fn damaged_records_are_errors_not_panics() {
        let key = encode_key(&OffsetsKey::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: 0,
        })
        .unwrap();
        let value = encode_value(
            &OffsetsValue::Offset {
                offset: CommittedOffset::bare(1),
                commit_timestamp_ms: 0,
            },
            0,
        )
        .unwrap();
        // Every truncation of the value, and a string length past the end.
        for cut in 0..value.len() {
            assert!(decode(&key, Some(&value[..cut])).is_err(), "cut at {cut}");
        }
        let mut long = value.to_vec();
        long[14] = 0x7f;
        assert!(decode(&key, Some(&long)).is_err());
        // A truncated key is not this layout's, and then not legacy either.
        assert!(decode(&key[..key.len() - 1], Some(&value)).is_err());
        let too_long = "x".repeat(40_000);
        assert!(encode_key(&OffsetsKey::Metadata { group: too_long }).is_err());
    }
}
