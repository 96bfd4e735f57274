//! A small Kafka client for Runnel's command-line tools (topics, console
//! producer and consumer): one connection per broker, bootstrap from a list,
//! metadata refresh when a leader moves. It speaks the same wire protocol as
//! any Kafka client and so exercises the front end like one.

use crate::io::TcpStream;
use anyhow::{anyhow, bail, Context, Result};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, BrokerId, ListOffsetsRequest, MetadataRequest, MetadataResponse, RequestHeader,
    ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const RESPONSE_BYTES_MAX: usize = 256 << 20;

pub struct Connection {
    stream: TcpStream,
    correlation_id: i32,
    pub address: String,
}

impl Connection {
    pub async fn connect(address: &str) -> Result<Connection> {
        let stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(address))
            .await
            .map_err(|_| anyhow!("{address}: connection timed out"))?
            .with_context(|| format!("cannot connect to {address}"))?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            stream,
            correlation_id: 0,
            address: address.to_string(),
        })
    }

    /// Writes one request frame (with the next correlation id).
    async fn send<R: Request>(&mut self, request: &R, version: i16) -> Result<()> {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("runnel-cli")));
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        header.encode(&mut buf, R::header_version(version))?;
        request.encode(&mut buf, version)?;
        let size = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&size.to_be_bytes());
        self.stream.write_all(&buf).await?;
        Ok(())
    }

    /// Sends one request and reads its response, within
    /// [`REQUEST_TIMEOUT`]: a server that takes the connection and never
    /// answers (a paused process) fails the call instead of hanging the
    /// tool; the caller drops the connection and may try another server.
    pub async fn call<R: Request>(&mut self, request: &R, version: i16) -> Result<R::Response> {
        self.call_within(request, version, REQUEST_TIMEOUT).await
    }

    /// [`Connection::call`] within `timeout`.
    pub async fn call_within<R: Request>(
        &mut self,
        request: &R,
        version: i16,
        timeout: Duration,
    ) -> Result<R::Response> {
        let address = self.address.clone();
        tokio::time::timeout(timeout, self.call_unbounded(request, version))
            .await
            .map_err(|_| anyhow!("{address}: no answer within {} s", timeout.as_secs()))?
    }

    async fn call_unbounded<R: Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> Result<R::Response> {
        self.send(request, version).await?;
        let size = self.stream.read_i32().await? as usize;
        if size > RESPONSE_BYTES_MAX {
            bail!("{}: response of {size} bytes", self.address);
        }
        let mut body = vec![0u8; size];
        self.stream.read_exact(&mut body).await?;
        let mut body = Bytes::from(body);
        let header = ResponseHeader::decode(&mut body, R::Response::header_version(version))?;
        if header.correlation_id != self.correlation_id {
            bail!(
                "{}: answer to request {} while waiting for {}",
                self.address,
                header.correlation_id,
                self.correlation_id
            );
        }
        R::Response::decode(&mut body, version)
    }
}

/// Connections to a cluster, found from bootstrap servers.
pub struct Client {
    bootstrap: Vec<String>,
    brokers: BTreeMap<i32, String>,
    connections: BTreeMap<String, Connection>,
    pub metadata: MetadataResponse,
}

pub const METADATA_VERSION: i16 = 12;

/// How long a tool waits for any answer: above the 30 s that admin
/// requests give the server (Kafka's `request.timeout.ms`), so a slow
/// decision is not cut short.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(45);
/// Metadata is answered from memory: a server silent this long is not
/// going to answer, and the next one is asked.
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

impl Client {
    /// `servers` is Kafka's `host:port,host:port`.
    pub async fn connect(servers: &str) -> Result<Client> {
        let bootstrap: Vec<String> = servers
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        if bootstrap.is_empty() {
            bail!("--bootstrap-server is empty");
        }
        let mut client = Client {
            bootstrap,
            brokers: BTreeMap::new(),
            connections: BTreeMap::new(),
            metadata: MetadataResponse::default(),
        };
        client.refresh(None).await?;
        Ok(client)
    }

    /// Refreshes metadata (all topics, or the named ones) from any reachable server.
    pub async fn refresh(&mut self, topics: Option<&[String]>) -> Result<&MetadataResponse> {
        let request = MetadataRequest::default()
            .with_topics(topics.map(|ts| {
                ts.iter()
                    .map(|t| {
                        MetadataRequestTopic::default()
                            .with_name(Some(TopicName(StrBytes::from_string(t.clone()))))
                    })
                    .collect()
            }))
            .with_allow_auto_topic_creation(false);
        let mut candidates: Vec<String> = self.brokers.values().cloned().collect();
        candidates.extend(self.bootstrap.iter().cloned());
        let mut last = None;
        for address in candidates {
            let answer = self
                .call_at_within(&address, &request, METADATA_VERSION, METADATA_TIMEOUT)
                .await;
            match answer {
                Ok(m) => {
                    self.brokers = m
                        .brokers
                        .iter()
                        .map(|b| (b.node_id.0, format!("{}:{}", b.host, b.port)))
                        .collect();
                    self.metadata = m;
                    return Ok(&self.metadata);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow!("no server reachable")))
    }

    pub async fn call_at<R: Request>(
        &mut self,
        address: &str,
        request: &R,
        version: i16,
    ) -> Result<R::Response> {
        self.call_at_within(address, request, version, REQUEST_TIMEOUT)
            .await
    }

    /// [`Client::call_at`] within `timeout` (a connection that fails or
    /// times out is dropped).
    pub async fn call_at_within<R: Request>(
        &mut self,
        address: &str,
        request: &R,
        version: i16,
        timeout: Duration,
    ) -> Result<R::Response> {
        if !self.connections.contains_key(address) {
            let c = Connection::connect(address).await?;
            self.connections.insert(address.to_string(), c);
        }
        let c = self.connections.get_mut(address).expect("just inserted");
        let result = c.call_within(request, version, timeout).await;
        if result.is_err() {
            self.connections.remove(address);
        }
        result
    }

    /// Sends to any broker (admin requests: every broker forwards them).
    pub async fn call_any<R: Request>(&mut self, request: &R, version: i16) -> Result<R::Response> {
        // The servers the user named first: another broker from Metadata
        // may be one that is paused or partitioned away, which costs the
        // whole REQUEST_TIMEOUT (a flaky test found it: addresses sorted
        // put such a broker first whenever its port sorted lower).
        let mut candidates: Vec<String> = self.bootstrap.clone();
        let mut others: Vec<String> = self.brokers.values().cloned().collect();
        others.sort();
        candidates.extend(others.into_iter().filter(|a| !self.bootstrap.contains(a)));
        let mut last = None;
        for address in candidates {
            match self.call_at(&address, request, version).await {
                Ok(r) => return Ok(r),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow!("no server reachable")))
    }

    /// Asks for a topic with auto-creation on (what Kafka's producers do).
    pub async fn auto_create(&mut self, topic: &str) {
        let request = MetadataRequest::default()
            .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(
                TopicName(StrBytes::from_string(topic.to_string())),
            ))]))
            .with_allow_auto_topic_creation(true);
        let _ = self.call_any(&request, METADATA_VERSION).await;
    }

    /// Sends a request that has no response (produce with acks=0).
    pub async fn send_only<R: Request>(
        &mut self,
        address: &str,
        request: &R,
        version: i16,
    ) -> Result<()> {
        if !self.connections.contains_key(address) {
            let c = Connection::connect(address).await?;
            self.connections.insert(address.to_string(), c);
        }
        let c = self.connections.get_mut(address).expect("just inserted");
        if let Err(e) = c.send(request, version).await {
            self.connections.remove(address);
            return Err(e);
        }
        Ok(())
    }

    /// The leader's address for a partition, from the last metadata.
    pub fn leader(&self, topic: &str, partition: i32) -> Option<String> {
        let t = self
            .metadata
            .topics
            .iter()
            .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))?;
        let p = t
            .partitions
            .iter()
            .find(|p| p.partition_index == partition)?;
        self.brokers.get(&p.leader_id.0).cloned()
    }

    /// ListOffsets at the partition's leader (one attempt): -2 earliest,
    /// -1 latest (the high watermark), else the first offset at or after a
    /// timestamp.
    pub async fn list_offset(
        &mut self,
        topic: &str,
        partition: i32,
        timestamp: i64,
    ) -> Result<i64> {
        let leader = self
            .leader(topic, partition)
            .ok_or_else(|| anyhow!("{topic}-{partition}: no leader known"))?;
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(partition)
                    .with_timestamp(timestamp)])]);
        let r = self.call_at(&leader, &request, 5).await?;
        let pr = r
            .topics
            .first()
            .and_then(|t| t.partitions.first())
            .ok_or_else(|| anyhow!("{topic}-{partition}: empty ListOffsets answer"))?;
        match pr.error_code {
            0 => Ok(pr.offset),
            e => bail!("{topic}-{partition}: ListOffsets error {e}"),
        }
    }

    pub fn partitions(&self, topic: &str) -> Option<Vec<i32>> {
        let t = self
            .metadata
            .topics
            .iter()
            .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))?;
        (t.error_code == 0).then(|| t.partitions.iter().map(|p| p.partition_index).collect())
    }
}

/// Encodes records as one uncompressed v2 batch.
pub fn encode_batch(
    records: &[(Option<Bytes>, Option<Bytes>)],
    timestamp_ms: i64,
) -> Result<Bytes> {
    encode_producer_batch(records, timestamp_ms, (-1, -1, -1))
}

/// Encodes records as one batch of an idempotent producer
/// (`(producer id, epoch, first sequence)`).
pub fn encode_producer_batch(
    records: &[(Option<Bytes>, Option<Bytes>)],
    timestamp_ms: i64,
    producer: (i64, i16, i32),
) -> Result<Bytes> {
    let (producer_id, producer_epoch, first_sequence) = producer;
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // Consecutive from the first (-1 when not idempotent): the
            // encoder starts a new batch wherever offset - sequence changes,
            // and a partition's records must be one batch.
            sequence: first_sequence.wrapping_add(i as i32),
            timestamp: timestamp_ms,
            key: key.clone(),
            value: value.clone(),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )?;
    Ok(buf.freeze())
}

/// Decodes whole batches (a fetch response's records) into records.
/// Decoded records take ~160 bytes each however small on the wire (and a
/// compressed batch holds more than its bytes), so the budget is generous;
/// it exists to stop a count in the input from reserving gigabytes.
const RECORDS_DECODE_BYTES_MIN: usize = 256 << 20;

pub fn decode_records(bytes: Bytes) -> Result<Vec<Record>> {
    let budget = bytes.len().saturating_mul(64).max(RECORDS_DECODE_BYTES_MIN);
    let mut buf = bytes;
    let (decoded, _) = kafka_protocol::protocol::types::with_decode_budget(budget, || {
        let mut out = Vec::new();
        while buf.remaining() >= 12 {
            let set = RecordBatchDecoder::decode(&mut buf)?;
            out.extend(set.records);
        }
        Ok::<_, anyhow::Error>(out)
    });
    decoded
}

pub fn api_name(key: ApiKey) -> String {
    format!("{key:?}")
}
