"""Consumer groups with the clients people use, against Runnel.

  groups_compat.py each BOOTSTRAP TOPIC
      confluent-kafka and kafka-python (its default idempotent producer)
      produce; one group per client (confluent-kafka, kafka-python, aiokafka,
      kcat -G) reads every message exactly once and commits; the admin
      clients list and describe the groups and their offsets; two members of
      one group split the partitions.

  groups_compat.py concurrent BOOTSTRAP TOPIC COUNT
      a producer runs while three members of one group (confluent-kafka,
      kafka-python, aiokafka) join at once; prints KILL after a few seconds
      (the Rust test then kill -9s a node). A message counts as consumed
      only once its offset commit succeeded (a failed commit seeks back), so
      every message must be counted exactly once in the group.

Exits non-zero with a message on any violated expectation."""
import asyncio
import subprocess
import sys
import threading
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

DEADLINE_S = 120


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def create_topic(bootstrap, topic):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=3)])[topic].result(timeout=30)
    return admin


def produce_confluent(bootstrap, topic, values, pace_s=0.0):
    acked = []
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 5})
    for v in values:
        p.produce(topic, key=v, value=v, on_delivery=lambda err, msg: acked.append(msg.value().decode()) if err is None else log("delivery failed", err))
        p.poll(0)
        if pace_s:
            time.sleep(pace_s)
    assert p.flush(60) == 0, "confluent producer: messages left unsent"
    assert sorted(acked) == sorted(values), "confluent producer: not every message acknowledged"


def produce_kafka_python(bootstrap, topic, values):
    from kafka import KafkaProducer
    p = KafkaProducer(bootstrap_servers=bootstrap)  # idempotent by default in kafka-python 3
    futures = [p.send(topic, key=v.encode(), value=v.encode()) for v in values]
    for f in futures:
        f.get(timeout=60)
    p.close()


def consume_confluent(bootstrap, topic, group, expected):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    got = []
    deadline = time.time() + DEADLINE_S
    while len(got) < expected and time.time() < deadline:
        m = c.poll(1.0)
        if m is None or m.error():
            continue
        got.append(m.value().decode())
    c.commit(asynchronous=False)
    committed = c.committed([TopicPartition(topic, p) for p in range(3)], timeout=10)
    c.close()
    return got, sum(tp.offset for tp in committed)


def consume_kafka_python(bootstrap, topic, group, expected):
    from kafka import KafkaConsumer
    c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest", enable_auto_commit=False)
    got = []
    deadline = time.time() + DEADLINE_S
    while len(got) < expected and time.time() < deadline:
        for records in c.poll(timeout_ms=1000).values():
            got.extend(r.value.decode() for r in records)
    c.commit()
    c.close()
    return got


def consume_aiokafka(bootstrap, topic, group, expected):
    from aiokafka import AIOKafkaConsumer

    async def run():
        c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest", enable_auto_commit=False)
        await c.start()
        got = []
        try:
            deadline = time.time() + DEADLINE_S
            while len(got) < expected and time.time() < deadline:
                for records in (await c.getmany(timeout_ms=1000)).values():
                    got.extend(r.value.decode() for r in records)
            await c.commit()
        finally:
            await c.stop()
        return got

    return asyncio.run(run())


def consume_kcat(bootstrap, topic, group, expected):
    out = subprocess.run(
        ["kcat", "-b", bootstrap, "-G", group, "-X", "auto.offset.reset=earliest", "-e", "-q", "-f", "%s\n", topic],
        capture_output=True, timeout=DEADLINE_S, text=True)
    return [l for l in out.stdout.splitlines() if l]


def exactly_once(name, got, values):
    dup = len(got) - len(set(got))
    assert dup == 0, f"{name}: {dup} messages read twice"
    missing = set(values) - set(got)
    assert not missing, f"{name}: {len(missing)} messages missing, e.g. {sorted(missing)[:5]}"
    log(f"{name}: {len(got)} messages, each once")


def each(bootstrap, topic):
    create_topic(bootstrap, topic)
    values = [f"c{i}" for i in range(300)]
    produce_confluent(bootstrap, topic, values)
    kp = [f"k{i}" for i in range(100)]
    produce_kafka_python(bootstrap, topic, kp)
    values += kp
    got, committed_total = consume_confluent(bootstrap, topic, "g-confluent", len(values))
    exactly_once("confluent-kafka", got, values)
    assert committed_total == len(values), f"confluent committed {committed_total}"
    exactly_once("kafka-python", consume_kafka_python(bootstrap, topic, "g-kafka-python", len(values)), values)
    exactly_once("aiokafka", consume_aiokafka(bootstrap, topic, "g-aiokafka", len(values)), values)
    exactly_once("kcat -G", consume_kcat(bootstrap, topic, "g-kcat", len(values)), values)

    # Admin views of the groups.
    admin = AdminClient({"bootstrap.servers": bootstrap})
    listed = admin.list_consumer_groups().result(timeout=30)
    ids = {g.group_id for g in listed.valid}
    for g in ["g-confluent", "g-kafka-python", "g-aiokafka", "g-kcat"]:
        assert g in ids, f"list_consumer_groups: {g} missing from {ids}"
    described = admin.describe_consumer_groups(["g-confluent"])["g-confluent"].result(timeout=30)
    assert str(described.state).endswith("EMPTY"), described.state
    from kafka import KafkaAdminClient
    ka = KafkaAdminClient(bootstrap_servers=bootstrap)
    assert "g-kafka-python" in {g["group_id"] if isinstance(g, dict) else g[0] for g in ka.list_groups()}
    offsets = ka.list_group_offsets("g-kafka-python")["g-kafka-python"]
    assert sum(o.offset for tp, o in offsets.items() if tp.topic == topic) == len(values), offsets
    ka.close()

    # CreatePartitions through the admin client.
    from confluent_kafka.admin import NewPartitions
    admin.create_partitions([NewPartitions(topic, 4)])[topic].result(timeout=30)
    deadline = time.time() + 20
    while len(admin.list_topics(topic, timeout=10).topics[topic].partitions) != 4:
        assert time.time() < deadline, "the topic did not grow to 4 partitions"
        time.sleep(0.2)

    # Two members of one group split the partitions.
    consumers = [Consumer({"bootstrap.servers": bootstrap, "group.id": "g-split", "auto.offset.reset": "earliest"}) for _ in range(2)]
    for c in consumers:
        c.subscribe([topic])
    deadline = time.time() + 60
    while time.time() < deadline:
        for c in consumers:
            c.poll(0.2)
        owned = [{tp.partition for tp in c.assignment()} for c in consumers]
        if all(owned) and sum(len(o) for o in owned) == 4:
            break
    assert all(owned), f"each member owns partitions: {owned}"
    assert not (owned[0] & owned[1]), f"no partition owned twice: {owned}"
    assert owned[0] | owned[1] == {0, 1, 2, 3}, f"every partition owned: {owned}"
    for c in consumers:
        c.close()
    log("split:", owned)
    print("OK")


class Tally:
    """Messages counted after a successful commit, shared by the members."""

    def __init__(self, expected):
        self.lock = threading.Lock()
        self.expected = expected
        self.counted = {}
        self.by_member = {}
        self.commit_errors = 0

    def add(self, member, value):
        with self.lock:
            self.counted[value] = self.counted.get(value, 0) + 1
            self.by_member[member] = self.by_member.get(member, 0) + 1

    def done(self):
        with self.lock:
            return set(self.counted) >= self.expected


def member_confluent(bootstrap, topic, group, tally, deadline):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "session.timeout.ms": 6000})
    c.subscribe([topic])
    while not tally.done() and time.time() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        try:
            c.commit(offsets=[TopicPartition(m.topic(), m.partition(), m.offset() + 1)], asynchronous=False)
            tally.add("confluent", m.value().decode())
        except KafkaException:
            tally.commit_errors += 1
            try:
                c.seek(TopicPartition(m.topic(), m.partition(), m.offset()))
            except KafkaException:
                pass
    c.close()


def member_kafka_python(bootstrap, topic, group, tally, deadline):
    from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition as KTP
    c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
                      enable_auto_commit=False, session_timeout_ms=6000, heartbeat_interval_ms=1000)
    while not tally.done() and time.time() < deadline:
        for tp, records in c.poll(timeout_ms=500).items():
            for r in records:
                try:
                    c.commit({KTP(tp.topic, tp.partition): OffsetAndMetadata(r.offset + 1, "", -1)})
                    tally.add("kafka-python", r.value.decode())
                except Exception:
                    tally.commit_errors += 1
                    try:
                        c.seek(tp, r.offset)
                    except Exception:
                        pass
                    break
    c.close()


def member_aiokafka(bootstrap, topic, group, tally, deadline):
    from aiokafka import AIOKafkaConsumer, TopicPartition as ATP

    async def run():
        c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
                             enable_auto_commit=False, session_timeout_ms=6000, heartbeat_interval_ms=1000)
        await c.start()
        try:
            while not tally.done() and time.time() < deadline:
                for tp, records in (await c.getmany(timeout_ms=500)).items():
                    for r in records:
                        try:
                            await c.commit({ATP(tp.topic, tp.partition): r.offset + 1})
                            tally.add("aiokafka", r.value.decode())
                        except Exception:
                            tally.commit_errors += 1
                            try:
                                c.seek(tp, r.offset)
                            except Exception:
                                pass
                            break
        finally:
            await c.stop()

    asyncio.run(run())


def concurrent(bootstrap, topic, count):
    create_topic(bootstrap, topic)
    values = [f"m{i}" for i in range(count)]
    tally = Tally(set(values))
    deadline = time.time() + DEADLINE_S
    members = [threading.Thread(target=f, args=(bootstrap, topic, "g-mix", tally, deadline), daemon=True)
               for f in (member_confluent, member_kafka_python, member_aiokafka)]
    producer = threading.Thread(target=produce_confluent, args=(bootstrap, topic, values, 8.0 / count), daemon=True)
    for t in members:
        t.start()
    producer.start()
    time.sleep(3)
    print("KILL", flush=True)
    producer.join(DEADLINE_S)
    for t in members:
        t.join(max(1, deadline - time.time() + 5))
    missing = tally.expected - set(tally.counted)
    twice = {v: n for v, n in tally.counted.items() if n > 1}
    log(f"concurrent: counted {sum(tally.counted.values())} of {count}; by member {tally.by_member}; "
        f"commit errors {tally.commit_errors}; twice {len(twice)}")
    assert not missing, f"{len(missing)} messages never consumed, e.g. {sorted(missing)[:5]}"
    assert not twice, f"messages consumed twice after successful commits: {sorted(twice)[:5]}"
    assert len(tally.by_member) >= 2, f"the work was shared: {tally.by_member}"
    print("OK")


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "each":
        each(sys.argv[2], sys.argv[3])
    elif mode == "concurrent":
        concurrent(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        sys.exit(f"unknown mode {mode}")
