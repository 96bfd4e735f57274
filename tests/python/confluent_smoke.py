"""confluent-kafka (librdkafka) against Runnel: admin, produce with acks=all
and delivery reports, consume by assignment from the beginning."""
import sys
from confluent_kafka import Consumer, Producer, TopicPartition, OFFSET_BEGINNING
from confluent_kafka.admin import AdminClient, NewTopic

bootstrap, topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])

admin = AdminClient({"bootstrap.servers": bootstrap})
futures = admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=3, config={"segment.bytes": "1073741824"})])
futures[topic].result(timeout=30)
from confluent_kafka.admin import ConfigResource
configs = admin.describe_configs([ConfigResource("topic", topic)])
for res, f in configs.items():
    entries = f.result(timeout=10)
    # Every topic config, as Kafka lists them; the one set at creation is
    # the topic's own (DYNAMIC_TOPIC_CONFIG), the others defaults.
    own = {k: v.value for k, v in entries.items() if v.source == 1}
    assert own == {"segment.bytes": "1073741824"}, own
    assert entries["cleanup.policy"].value == "delete", entries
    # Synonyms, highest precedence first: the topic's own key, then Kafka's
    # default under the broker key that carries it.
    synonyms = list(entries["segment.bytes"].synonyms.values())
    assert [(e.name, e.value) for e in synonyms] == [
        ("segment.bytes", "1073741824"), ("log.segment.bytes", "1073741824")], synonyms
    retention = [(e.name, e.value) for e in entries["retention.ms"].synonyms.values()]
    assert retention == [("log.retention.hours", "168")], retention
    assert len(entries) >= 20, sorted(entries)
# IncrementalAlterConfigs APPEND and SUBTRACT on a list config (KIP-339).
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry
def incremental(op, value):
    entry = ConfigEntry("leader.replication.throttled.replicas", value, incremental_operation=op)
    resource = ConfigResource("topic", topic, incremental_configs=[entry])
    for f in admin.incremental_alter_configs([resource]).values():
        f.result(timeout=30)
def throttled():
    for f in admin.describe_configs([ConfigResource("topic", topic)]).values():
        return f.result(timeout=10)["leader.replication.throttled.replicas"].value
incremental(AlterConfigOpType.APPEND, "0:1,1:2")
incremental(AlterConfigOpType.APPEND, "1:2")
assert throttled() == "0:1,1:2", throttled()
incremental(AlterConfigOpType.SUBTRACT, "0:1")
assert throttled() == "1:2", throttled()
md = admin.list_topics(timeout=10)
assert topic in md.topics, md.topics
assert len(md.topics[topic].partitions) == 3
assert len(md.brokers) == 3, md.brokers

acked = []
def report(err, msg):
    assert err is None, err
    acked.append((msg.partition(), msg.offset(), msg.value().decode()))

p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
for i in range(count):
    p.produce(topic, key=f"k{i}", value=f"v{i}", on_delivery=report)
    if i % 1000 == 0:
        p.poll(0)
assert p.flush(60) == 0, "undelivered messages"
assert len(acked) == count, len(acked)

# An idempotent producer (InitProducerId, sequence numbers checked by the leader).
p2 = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
for i in range(count, count + 1000):
    p2.produce(topic, key=f"k{i}", value=f"v{i}", on_delivery=report)
assert p2.flush(60) == 0, "undelivered idempotent messages"
count += 1000
assert len(acked) == count, len(acked)

c = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False})
c.assign([TopicPartition(topic, i, OFFSET_BEGINNING) for i in range(3)])
seen = {}
idle = 0
while idle < (100 if len(seen) < count else 5):
    m = c.poll(0.2)
    if m is None:
        idle += 1
        continue
    assert m.error() is None, m.error()
    idle = 0
    key = (m.partition(), m.offset())
    assert key not in seen, f"offset {key} twice"
    seen[key] = m.value().decode()
c.close()
# Every acknowledged message is there at its acknowledged offset. The plain
# (non-idempotent) producer may have left a retried copy elsewhere (Kafka's
# at-least-once); the idempotent producer's messages appear exactly once.
missing = [(pa, o, v) for pa, o, v in acked if seen.get((pa, o)) != v]
assert not missing, f"acknowledged but not read back: {missing[:5]}"
idempotent_values = [v for v in seen.values() if int(v[1:]) >= count - 1000]
assert len(idempotent_values) == len(set(idempotent_values)) == 1000, "idempotent producer's messages exactly once"
# DeleteRecords (AdminClient.delete_records): partition 0 loses its first
# half; the low watermark comes back, ListOffsets' earliest moves with it,
# and an offset above the high watermark is refused.
from confluent_kafka import KafkaException
from confluent_kafka.admin import OffsetSpec
ends = {pa: max(o for q, o in seen if q == pa) + 1 for pa in range(3)}
cut = ends[0] // 2
result = admin.delete_records([TopicPartition(topic, 0, cut)], request_timeout=30)
for tp, f in result.items():
    assert f.result().low_watermark == cut, (tp, f.result().low_watermark)
earliest = admin.list_offsets({TopicPartition(topic, 0): OffsetSpec.earliest()})
for tp, f in earliest.items():
    assert f.result().offset == cut, f.result().offset
try:
    for f in admin.delete_records([TopicPartition(topic, 1, ends[1] + 10)]).values():
        f.result()
    raise AssertionError("deleting above the high watermark was accepted")
except KafkaException as e:
    assert "OFFSET_OUT_OF_RANGE" in str(e) or "out of range" in str(e).lower(), e
# message.timestamp.type=LogAppendTime: the broker's time replaces the
# producer's, in the delivery report (ProduceResponse log_append_time_ms)
# and for consumers (the batch marked LogAppendTime).
import time
from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME
lat = topic + "-lat"
admin.create_topics([NewTopic(lat, num_partitions=1, replication_factor=3,
                              config={"message.timestamp.type": "LogAppendTime"})])[lat].result(timeout=30)
stamps = []
p3 = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
before = int(time.time() * 1000)
p3.produce(lat, value=b"x", timestamp=1000, on_delivery=lambda err, msg: stamps.append((err, msg.timestamp())))
assert p3.flush(30) == 0, "undelivered"
after = int(time.time() * 1000)
(err, (ttype, stamped)), = stamps
assert err is None and ttype == TIMESTAMP_LOG_APPEND_TIME and before - 1000 <= stamped <= after + 1000, stamps
c2 = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused2", "enable.auto.commit": False})
c2.assign([TopicPartition(lat, 0, OFFSET_BEGINNING)])
m = None
for _ in range(100):
    m = c2.poll(0.2)
    if m is not None:
        break
assert m is not None and m.error() is None, m
assert m.timestamp() == (TIMESTAMP_LOG_APPEND_TIME, stamped), (m.timestamp(), stamped)
c2.close()
extra = len(seen) - len(acked)
if extra:
    print(f"note: {extra} retried copies from the non-idempotent producer")
print(f"ok: {count} produced with acks=all and consumed")
