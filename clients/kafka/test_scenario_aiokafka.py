"""The cross-client scenario (scenario.py) with aiokafka (pure-Python asyncio protocol code):
AIOKafkaAdminClient, keyed produce with headers, a two-member consumer group, committed offsets
and resume, group description, topic deletion, and the admin operations aiokafka offers
(it has no DeleteGroups). Each test runs its own event loop (asyncio.run)."""
import asyncio
import contextlib
import inspect
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic, RecordsToDelete
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError, for_code

import scenario as sc
from scenario import Seen

TIMEOUT = 20


def run(coro, timeout=45):
    """Runs one test's coroutine; a client retrying against a failing broker is cut off."""
    async def bounded():
        try:
            return await asyncio.wait_for(coro, timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"the test did not finish within {timeout}s (a client call hung)") from None
    return asyncio.run(bounded())


@contextlib.asynccontextmanager
async def admin_client(broker):
    a = AIOKafkaAdminClient(bootstrap_servers=broker.kafka_addr, client_id="aio-admin")
    await a.start()
    try:
        yield a
    finally:
        await a.close()


def raise_errors(response, what):
    """aiokafka's admin returns raw responses: any per-topic error code becomes an exception."""
    obj = response.to_object()
    entries = [e for v in obj.values() if isinstance(v, list) for e in v if isinstance(e, dict)]
    assert entries, f"{what}: no per-topic results in {obj}"
    for entry in entries:
        code = entry.get("error_code", 0)
        if code:
            raise for_code(code)(f"{what}: {entry}")
    return obj


async def create(admin, topic, partitions=sc.PARTITIONS, configs=None):
    r = await admin.create_topics([NewTopic(topic, partitions, 1, topic_configs=configs or {})])
    return raise_errors(r, f"create {topic}")


async def produce(broker, topic, start, count):
    """Produces records start..start+count; returns {i: partition} from the record metadata."""
    p = AIOKafkaProducer(bootstrap_servers=broker.kafka_addr, linger_ms=5)
    await p.start()
    try:
        futs = {i: await p.send(topic, key=sc.key(i), value=sc.value(i), headers=sc.headers(i))
                for i in range(start, start + count)}
        await p.flush()
        return {i: (await f).partition for i, f in futs.items()}
    finally:
        await p.stop()


async def wait_until(cond, what, timeout=TIMEOUT, state=None, check=None):
    deadline = time.time() + timeout
    while True:
        if check is not None:
            check()
        done = cond()
        if inspect.isawaitable(done):
            done = await done
        if done:
            return
        if time.time() > deadline:
            extra = f": {state()}" if state is not None else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{extra}")
        await asyncio.sleep(0.05)


class Member:
    """A group member: a task of the event loop that commits each record before the next."""

    def __init__(self, broker, group, topic, name):
        self.name = name
        self.c = AIOKafkaConsumer(topic, bootstrap_servers=broker.kafka_addr, group_id=group, client_id=name,
                                  enable_auto_commit=False, auto_offset_reset="earliest",
                                  session_timeout_ms=6000, heartbeat_interval_ms=300,
                                  metadata_max_age_ms=2000)
        self.seen = []
        self.task = None

    async def start(self):
        await self.c.start()
        self.task = asyncio.create_task(self._run())
        return self

    async def _run(self):
        while True:
            batches = await self.c.getmany(timeout_ms=200, max_records=1)
            for tp, recs in batches.items():
                for r in recs:
                    self.seen.append(Seen(self.name, r.partition, r.offset, r.key, r.value,
                                          [(k, v) for k, v in r.headers]))
                    await self.c.commit({tp: r.offset + 1})

    def check(self):
        if self.task is not None and self.task.done() and not self.task.cancelled():
            raise AssertionError(f"member {self.name} failed: {self.task.exception()!r}") \
                from self.task.exception()

    def assigned(self):
        return {tp.partition for tp in self.c.assignment()}

    async def close(self):
        self.check()
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self.c.stop()


def state_of(members):
    return lambda: {m.name: (sorted(m.assigned()), len(m.seen)) for m in members}


def check_all(members):
    return lambda: [m.check() for m in members]


async def end_offsets(broker, topic, partitions=sc.PARTITIONS):
    c = AIOKafkaConsumer(bootstrap_servers=broker.kafka_addr)
    await c.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        return {tp.partition: off for tp, off in (await c.end_offsets(tps)).items()}
    finally:
        await c.stop()


def test_admin_topic_lifecycle(broker, unique_name):
    async def go():
        topic = unique_name("aio-admin")
        async with admin_client(broker) as a:
            await create(a, topic)
            try:
                await create(a, topic, 1)
                raise AssertionError("creating an existing topic succeeded")
            except TopicAlreadyExistsError:
                pass
            assert topic in await a.list_topics()
            [d] = await a.describe_topics([topic])
            assert (d["topic"], d["error_code"], d["is_internal"]) == (topic, 0, False), d
            assert sorted(p["partition"] for p in d["partitions"]) == list(range(sc.PARTITIONS))
            assert all(p["error_code"] == 0 and p["leader"] >= 0 for p in d["partitions"])
            raise_errors(await a.delete_topics([topic]), f"delete {topic}")
            await wait_until(lambda: topic_gone(a, topic), "the topic to disappear")
    run(go())


async def topic_gone(a, topic):
    return topic not in await a.list_topics()


def test_group_scenario(broker, unique_name):
    async def go():
        topic, group = unique_name("aio-grp"), unique_name("g")
        async with admin_client(broker) as admin:
            await create(admin, topic)
            produced = await produce(broker, topic, 0, sc.FIRST)

            a = await Member(broker, group, topic, "a").start()
            b = await Member(broker, group, topic, "b").start()
            members = [a, b]

            def split():
                sa, sb = a.assigned(), b.assigned()
                return bool(sa) and bool(sb) and not (sa & sb) and (sa | sb) == set(range(sc.PARTITIONS))

            await wait_until(lambda: split() and len(a.seen) + len(b.seen) >= sc.FIRST,
                             "two members to split the partitions and consume the first records",
                             state=state_of(members), check=check_all(members))
            sc.check_exactly_once(a.seen + b.seen, 0, sc.FIRST)

            produced.update(await produce(broker, topic, sc.FIRST, sc.SECOND))
            sc.check_partitions_used(produced)
            total = sc.FIRST + sc.SECOND
            await wait_until(lambda: len(a.seen) + len(b.seen) >= total, "the second records",
                             state=state_of(members), check=check_all(members))
            second = [s for s in a.seen + b.seen if sc.index(s.value) >= sc.FIRST]
            assert {s.member for s in second} == {"a", "b"}, "both members got records once split"
            seen = a.seen + b.seen
            sc.check_exactly_once(seen, 0, total)
            sc.check_order_and_keys(seen, produced)

            ends = await end_offsets(broker, topic)
            assert sum(ends.values()) == total
            committed = {p: await a.c.committed(TopicPartition(topic, p)) for p in range(sc.PARTITIONS)}
            assert committed == ends
            await a.close()
            await b.close()

            produced.update(await produce(broker, topic, total, sc.AFTER_RESTART))
            c = await Member(broker, group, topic, "c").start()
            await wait_until(lambda: len(c.seen) >= sc.AFTER_RESTART, "the records produced after the restart",
                             state=state_of([c]), check=check_all([c]))
            await asyncio.sleep(1.0)  # anything re-delivered would come with the first fetches
            sc.check_exactly_once(c.seen, total, sc.AFTER_RESTART)
            sc.check_order_and_keys(c.seen, produced)

            listed = await admin.list_consumer_groups()
            assert group in [g[0] for g in listed], listed
            [resp] = await admin.describe_consumer_groups([group])
            [d] = resp.to_object()["groups"]
            assert (d["error_code"], d["state"], d["protocol_type"]) == (0, "Stable", "consumer"), d
            assert [m["client_id"] for m in d["members"]] == ["c"]
            host = d["members"][0]["client_host"]
            offsets = await admin.list_consumer_group_offsets(group)
            assert {tp.partition: om.offset for tp, om in offsets.items() if tp.topic == topic} == \
                await end_offsets(broker, topic)
            await c.close()

            async def empty():
                [r] = await admin.describe_consumer_groups([group])
                return r.to_object()["groups"][0]["state"] == "Empty"
            await wait_until(empty, "the group to be Empty once its last member left")

            raise_errors(await admin.delete_topics([topic]), f"delete {topic}")
            await wait_until(lambda: topic_gone(admin, topic), "the topic to disappear")

        sc.check_headers(a.seen + b.seen + c.seen)
        assert host == "/127.0.0.1", f"DescribeGroups client_host {host!r}: Kafka reports the member's address"
    run(go())


async def read_all(broker, topic, partition, count):
    c = AIOKafkaConsumer(bootstrap_servers=broker.kafka_addr, enable_auto_commit=False)
    await c.start()
    try:
        tp = TopicPartition(topic, partition)
        c.assign([tp])
        await c.seek_to_beginning(tp)
        out = []
        deadline = time.time() + TIMEOUT
        while len(out) < count and time.time() < deadline:
            for recs in (await c.getmany(timeout_ms=100)).values():
                out.extend(recs)
        return out
    finally:
        await c.stop()


def test_duplicate_header_keys_kept(broker, unique_name):
    async def go():
        topic = unique_name("aio-hdr")
        async with admin_client(broker) as a:
            await create(a, topic, 1)
        await produce(broker, topic, 0, 5)
        got = await read_all(broker, topic, 0, 5)
        assert [[(k, v) for k, v in r.headers] for r in got] == [sc.headers(i) for i in range(5)]
    run(go())


def test_create_partitions(broker, unique_name):
    async def go():
        topic = unique_name("aio-cp")
        async with admin_client(broker) as a:
            await create(a, topic)
            await a.create_partitions({topic: NewPartitions(5)})

            async def five():
                [d] = await a.describe_topics([topic])
                return len(d["partitions"]) == 5
            await wait_until(five, "metadata to show 5 partitions")
        p = AIOKafkaProducer(bootstrap_servers=broker.kafka_addr)
        await p.start()
        try:
            assert (await p.send_and_wait(topic, b"in-4", partition=4)).partition == 4
        finally:
            await p.stop()
        assert [r.value for r in await read_all(broker, topic, 4, 1)] == [b"in-4"]
    run(go())


async def topic_config(a, topic):
    [resp] = await a.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    [res] = resp.to_object()["resources"]
    assert res["error_code"] == 0, res
    return {c["config_names"]: c for c in res["config_entries"]}


def test_describe_topic_config(broker, unique_name):
    async def go():
        topic = unique_name("aio-dc")
        async with admin_client(broker) as a:
            await create(a, topic, 1, configs={"retention.ms": "3600000", "cleanup.policy": "delete"})
            cfg = await topic_config(a, topic)
            assert cfg["retention.ms"]["config_value"] == "3600000", cfg["retention.ms"]
            assert cfg["cleanup.policy"]["config_value"] == "delete"
    run(go())


def test_alter_topic_config(broker, unique_name):
    async def go():
        topic = unique_name("aio-ac")
        async with admin_client(broker) as a:
            await create(a, topic, 1, configs={"retention.ms": "3600000"})
            [resp] = await a.alter_configs([ConfigResource(
                ConfigResourceType.TOPIC, topic, configs={"retention.ms": "7200000", "max.message.bytes": "500000"})])
            for res in resp.to_object()["resources"]:
                assert res["error_code"] == 0, res
            cfg = await topic_config(a, topic)
            assert cfg["retention.ms"]["config_value"] == "7200000"
            assert cfg["max.message.bytes"]["config_value"] == "500000"
    run(go())


def test_delete_records(broker, unique_name):
    async def go():
        topic = unique_name("aio-dr")
        async with admin_client(broker) as a:
            await create(a, topic, 1)
            await produce(broker, topic, 0, 10)
            tp = TopicPartition(topic, 0)
            r = await a.delete_records({tp: RecordsToDelete(before_offset=4)})
            assert r[tp] == 4, r
        c = AIOKafkaConsumer(bootstrap_servers=broker.kafka_addr)
        await c.start()
        try:
            assert (await c.beginning_offsets([tp]))[tp] == 4
        finally:
            await c.stop()
        assert [m.offset for m in await read_all(broker, topic, 0, 6)] == list(range(4, 10))
    run(go())


def test_list_offsets_by_timestamp(broker, unique_name):
    async def go():
        topic = unique_name("aio-ts")
        async with admin_client(broker) as a:
            await create(a, topic, 1)
        base = 1_700_000_000_000
        p = AIOKafkaProducer(bootstrap_servers=broker.kafka_addr, linger_ms=5)
        await p.start()
        try:
            for i in range(10):
                await p.send(topic, b"v%d" % i, timestamp_ms=base + i * 1000)
            await p.flush()
        finally:
            await p.stop()
        tp = TopicPartition(topic, 0)
        c = AIOKafkaConsumer(bootstrap_servers=broker.kafka_addr)
        await c.start()
        try:
            for ts, want in [(base, 0), (base + 1, 1), (base + 9000, 9)]:
                r = (await c.offsets_for_times({tp: ts}))[tp]
                assert r is not None and (r.offset, r.timestamp) == (want, base + want * 1000), (ts, r)
            assert (await c.offsets_for_times({tp: base + 60_000}))[tp] is None
            assert (await c.beginning_offsets([tp]))[tp] == 0
            assert (await c.end_offsets([tp]))[tp] == 10
        finally:
            await c.stop()
    run(go())

