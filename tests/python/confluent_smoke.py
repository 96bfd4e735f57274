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
extra = len(seen) - len(acked)
if extra:
    print(f"note: {extra} retried copies from the non-idempotent producer")
print(f"ok: {count} produced with acks=all and consumed")
