"""Every record of every topic on a broker, raw (key, value, headers as bytes decoded latin-1),
one JSON line each: what a secret search over Kafka has to look through. Uses the official
Confluent client, as a consumer of Freshet's topics would.

usage: dump_topics.py BROKERS [USER PASSWORD]   (SCRAM-SHA-512 when given)
"""
import json
import sys

from confluent_kafka import Consumer, KafkaError, TopicPartition

brokers = sys.argv[1]
config = {
    "bootstrap.servers": brokers,
    "group.id": "secret-search",
    "enable.auto.commit": False,
    "auto.offset.reset": "earliest",
    "enable.partition.eof": True,
}
if len(sys.argv) > 2:
    config.update({"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-512",
                   "sasl.username": sys.argv[2], "sasl.password": sys.argv[3]})
consumer = Consumer(config)
metadata = consumer.list_topics(timeout=30)
partitions = []
for name, topic in metadata.topics.items():
    for p in topic.partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(name, p), timeout=30)
        if high > low:
            partitions.append((TopicPartition(name, p, low), high))
print(json.dumps({"topics": sorted(metadata.topics)}))
consumer.assign([tp for tp, _ in partitions])
remaining = {(tp.topic, tp.partition): high for tp, high in partitions}


def text(b):
    return None if b is None else b.decode("latin-1")


while remaining:
    msg = consumer.poll(30)
    if msg is None:
        sys.exit(f"no record within 30s; still waiting for {sorted(remaining)}")
    if msg.error():
        if msg.error().code() == KafkaError._PARTITION_EOF:
            remaining.pop((msg.topic(), msg.partition()), None)
            continue
        sys.exit(str(msg.error()))
    headers = [(k, text(v)) for k, v in (msg.headers() or [])]
    print(json.dumps({"topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset(),
                      "key": text(msg.key()), "value": text(msg.value()), "headers": headers}))
    if msg.offset() + 1 >= remaining.get((msg.topic(), msg.partition()), 0):
        remaining.pop((msg.topic(), msg.partition()), None)
consumer.close()
