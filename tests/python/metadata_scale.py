"""Big admin operations through confluent-kafka's AdminClient, as a user
would run them (timeouts of 300 s), each followed by a producer that sends
one record to every partition the moment the call returns.

  metadata_scale.py create BOOTSTRAP TOPIC PARTITIONS [REPLICATION_FACTOR]
  metadata_scale.py grow BOOTSTRAP TOPIC FROM TO
      prints "DONE <seconds>" after the admin call and every delivery.

  metadata_scale.py create_retrying BOOTSTRAP TOPIC PARTITIONS
      creates; on an error the create is retried (up to 5 times) and
      TOPIC_ALREADY_EXISTS on a retry counts as created (the first attempt
      carried it out). Prints "ANSWER <error or OK>" for each attempt, then
      "CREATED" or "NOT_CREATED". No producer.

Exits non-zero with a message on any violated expectation."""
import sys
import time

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic

TIMEOUT_S = 300


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def admin(bootstrap):
    return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": TIMEOUT_S * 1000})


def produce_everywhere(bootstrap, topic, partitions):
    """One record to each partition, right away; every one must be delivered."""
    delivered, failed = [], []
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                  "message.timeout.ms": 120_000})
    # The broker this producer asks may apply the decision a moment after
    # the one that answered the admin call (as in Kafka, whose brokers
    # follow the metadata log at their own pace): librdkafka refuses a
    # partition its metadata does not show yet ("Unknown partition"), so
    # wait, bounded, until it shows them all.
    deadline = time.monotonic() + 60
    while True:
        shown = p.list_topics(topic, timeout=10).topics.get(topic)
        count = len(shown.partitions) if shown and shown.error is None else 0
        if count >= partitions:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"{topic}: metadata shows {count} of {partitions} partitions")
        time.sleep(0.05)
    for i in range(partitions):
        p.produce(topic, value=str(i).encode(), partition=i,
                  on_delivery=lambda err, msg: (failed if err else delivered).append((msg.partition(), err)))
        p.poll(0)
    left = p.flush(150)
    if left or failed or len(delivered) != partitions:
        raise SystemExit(f"{topic}: {len(delivered)} of {partitions} delivered, {left} left, "
                         f"failures {failed[:5]}")


def create(bootstrap, topic, partitions, replication_factor=3):
    started = time.monotonic()
    a = admin(bootstrap)  # kept alive: a dropped AdminClient fails its futures
    futures = a.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=replication_factor)],
        operation_timeout=TIMEOUT_S, request_timeout=TIMEOUT_S)
    futures[topic].result(timeout=TIMEOUT_S)
    created = time.monotonic() - started
    produce_everywhere(bootstrap, topic, partitions)
    print(f"DONE {created:.2f}", flush=True)


def grow(bootstrap, topic, start, to):
    a = admin(bootstrap)
    a.create_topics([NewTopic(topic, num_partitions=start, replication_factor=3)],
                    operation_timeout=TIMEOUT_S)[topic].result(timeout=TIMEOUT_S)
    started = time.monotonic()
    a.create_partitions([NewPartitions(topic, to)], operation_timeout=TIMEOUT_S,
                        request_timeout=TIMEOUT_S)[topic].result(timeout=TIMEOUT_S)
    grown = time.monotonic() - started
    produce_everywhere(bootstrap, topic, to)
    print(f"DONE {grown:.2f}", flush=True)


def create_retrying(bootstrap, topic, partitions):
    a = admin(bootstrap)
    for attempt in range(5):
        print("SENT", flush=True)
        try:
            a.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=3)],
                            operation_timeout=60, request_timeout=60)[topic].result(timeout=90)
            print("ANSWER OK", flush=True)
            print("CREATED", flush=True)
            return
        except KafkaException as e:
            err = e.args[0]
            print(f"ANSWER {err.name()}", flush=True)
            if attempt > 0 and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                print("CREATED", flush=True)
                return
            time.sleep(1)
    print("NOT_CREATED", flush=True)


def main():
    cmd, bootstrap, topic, *rest = sys.argv[1:]
    if cmd == "create":
        create(bootstrap, topic, int(rest[0]), int(rest[1]) if len(rest) > 1 else 3)
    elif cmd == "grow":
        grow(bootstrap, topic, int(rest[0]), int(rest[1]))
    elif cmd == "create_retrying":
        create_retrying(bootstrap, topic, int(rest[0]))
    else:
        raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
