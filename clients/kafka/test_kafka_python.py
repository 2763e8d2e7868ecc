"""kafka-python (>= 3, idempotent producer by default) against the broker."""
import socket
import struct
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.record.memory_records import MemoryRecordsBuilder

from kafkautil import create_topic


def test_default_idempotent_producer_produces_and_consumes(broker, unique_name):
    topic = unique_name("kp")
    create_topic(broker, topic, 2)
    p = KafkaProducer(bootstrap_servers=broker.kafka_addr, linger_ms=5)
    assert p.config["enable_idempotence"], "kafka-python should default to an idempotent producer"
    futures = [p.send(topic, key=b"k%d" % i, value=b"v%d" % i, headers=[("n", b"%d" % i)])
               for i in range(300)]
    p.flush(30)
    metas = [f.get(timeout=30) for f in futures]
    assert all(m.offset >= 0 for m in metas)
    pid = p._transaction_manager.producer_id_and_epoch.producer_id
    assert pid >= 0, "InitProducerId gave the producer an id"
    p.close()

    c = KafkaConsumer(topic, bootstrap_servers=broker.kafka_addr, auto_offset_reset="earliest",
                      group_id=unique_name("g"), consumer_timeout_ms=5000)
    got = {}
    deadline = time.time() + 60
    for msg in c:
        got[msg.key] = (msg.value, msg.headers)
        if len(got) == 300 or time.time() > deadline:
            break
    c.close()
    assert len(got) == 300
    for i in range(300):
        assert got[b"k%d" % i] == (b"v%d" % i, [("n", b"%d" % i)])


# --- a retried idempotent batch, sent twice on the wire -------------------------------------
# The batch bytes come from kafka-python's own record builder; only the request envelope
# (Produce v3 and InitProducerId v0, both fixed layouts) is written here.

def _string(s):
    if s is None:
        return struct.pack(">h", -1)
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def _call(sock, api_key, version, cid, body):
    frame = struct.pack(">hhi", api_key, version, cid) + _string("retry-test") + body
    sock.sendall(struct.pack(">i", len(frame)) + frame)
    size = struct.unpack(">i", _recv(sock, 4))[0]
    resp = _recv(sock, size)
    assert struct.unpack(">i", resp[:4])[0] == cid
    return resp[4:]


def _recv(sock, n):
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        assert chunk, "broker closed the connection"
        out += chunk
    return out


def test_retried_idempotent_batch_is_not_duplicated(broker, unique_name):
    topic = unique_name("retry")
    create_topic(broker, topic, 1)
    host, port = broker.kafka_addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        # InitProducerId v0: null transactional id, timeout.
        resp = _call(sock, 22, 0, 1, _string(None) + struct.pack(">i", 60000))
        _throttle, err, pid, epoch = struct.unpack(">ihqh", resp)
        assert err == 0 and pid >= 0

        b = MemoryRecordsBuilder(magic=2, compression_type=0, batch_size=1 << 20,
                                 producer_id=pid, producer_epoch=epoch, base_sequence=0)
        for i in range(5):
            b.append(timestamp=int(time.time() * 1000), key=b"k%d" % i, value=b"v%d" % i)
        b.close()
        records = bytes(b.buffer())

        def produce(cid):
            body = (_string(None) + struct.pack(">hi", -1, 10000) + struct.pack(">i", 1) + _string(topic)
                    + struct.pack(">i", 1) + struct.pack(">i", 0) + struct.pack(">i", len(records)) + records)
            r = _call(sock, 0, 3, cid, body)
            # topics[1] name, partitions[1]: index, error, base_offset, log_append_time
            (n_topics,) = struct.unpack(">i", r[:4])
            (name_len,) = struct.unpack(">h", r[4:6])
            rest = r[6 + name_len:]
            _n, _idx, err, base, _t = struct.unpack(">iihqq", rest[:26])
            return n_topics, err, base

        assert produce(2) == (1, 0, 0)
        assert produce(3) == (1, 0, 0), "the retry gets the original offsets"

    c = KafkaConsumer(bootstrap_servers=broker.kafka_addr, consumer_timeout_ms=3000)
    tp = TopicPartition(topic, 0)
    c.assign([tp])
    c.seek_to_beginning(tp)
    values = [m.value for m in c]
    end = c.end_offsets([tp])[tp]
    c.close()
    assert values == [b"v%d" % i for i in range(5)]
    assert end == 5, "the retried batch was appended once"
