// The cross-client scenario (clients/kafka/scenario.py) with KafkaJS, a pure-JavaScript client.
// Run by clients/kafka/test_scenario_kafkajs.py, one test at a time (--test-name-pattern), against
// the broker of that pytest session:
//   KAFKA_BROKER  host:port of the broker (required)
//   KAFKAJS_DIR   the kafkajs package directory to test (default: the pinned one in node_modules)
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { randomUUID } from 'node:crypto'

const require = createRequire(import.meta.url)
const kafkajs = require(process.env.KAFKAJS_DIR || 'kafkajs')
const { Kafka, logLevel, AssignerProtocol, ConfigResourceTypes } = kafkajs
const BROKER = process.env.KAFKA_BROKER
if (!BROKER) throw new Error('KAFKA_BROKER (host:port of the broker) is not set')
console.log(`kafkajs ${require((process.env.KAFKAJS_DIR || 'kafkajs') + '/package.json').version}`)

// The same records and checks as scenario.py.
const PARTITIONS = 3
const FIRST = 60
const SECOND = 30
const AFTER_RESTART = 15
const KEYS = 30
const TIMEOUT = 20000

const key = i => `key-${String(i % KEYS).padStart(2, '0')}`
const value = i => `v${String(i).padStart(5, '0')}`
const headersOf = i => [['seq', `${i}`], ['dup', `first-${i}`], ['dup', `second-${i}`]]
const index = v => parseInt(v.slice(1), 10)
const unique = prefix => `${prefix}-${randomUUID().replace(/-/g, '').slice(0, 10)}`
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

function kafka(clientId) {
  return new Kafka({
    clientId,
    brokers: [BROKER],
    logLevel: logLevel.NOTHING,
    retry: { retries: 3, initialRetryTime: 100 },
  })
}

async function withAdmin(fn) {
  const admin = kafka('kjs-admin').admin()
  await admin.connect()
  try {
    return await fn(admin)
  } finally {
    await admin.disconnect()
  }
}

async function create(admin, topic, numPartitions = PARTITIONS, configEntries = []) {
  const created = await admin.createTopics({
    topics: [{ topic, numPartitions, replicationFactor: 1, configEntries }],
    waitForLeaders: true,
  })
  assert.equal(created, true, `createTopics(${topic}) reported that the topic existed`)
}

async function waitUntil(cond, what, { timeout = TIMEOUT, state } = {}) {
  const deadline = Date.now() + timeout
  for (;;) {
    if (await cond()) return
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeout} ms waiting for ${what}${state ? ': ' + JSON.stringify(state()) : ''}`)
    }
    await sleep(50)
  }
}

// Produces records start..start+count one by one (so each one's partition is known, and per-key
// order is the send order); returns a Map i -> partition.
async function produce(topic, start, count) {
  const producer = kafka('kjs-producer').producer()
  await producer.connect()
  const partition = new Map()
  try {
    for (let i = start; i < start + count; i++) {
      const headers = { seq: `${i}`, dup: [`first-${i}`, `second-${i}`] }
      const [meta] = await producer.send({ topic, messages: [{ key: key(i), value: value(i), headers }] })
      assert.equal(meta.errorCode, 0)
      partition.set(i, meta.partition)
    }
  } finally {
    await producer.disconnect()
  }
  return partition
}

// KafkaJS gives headers as an object, a repeated key's values as an array: back to wire order.
function headerPairs(headers) {
  const out = []
  for (const [k, v] of Object.entries(headers || {})) {
    for (const one of Array.isArray(v) ? v : [v]) out.push([k, one.toString()])
  }
  return out
}

// A group member that commits each record before the next (autoCommit off). Fetches wait at
// most 200 ms, so that a rebalance or a disconnect does not wait for a long poll.
class Member {
  constructor(group, topic, name) {
    Object.assign(this, { group, topic, name, seen: [], partitions: [], error: null })
    this.consumer = kafka(name).consumer({
      groupId: group, sessionTimeout: 6000, heartbeatInterval: 300, metadataMaxAge: 2000, maxWaitTimeInMs: 200,
      retry: { retries: 3, initialRetryTime: 100 },
    })
    this.consumer.on(this.consumer.events.GROUP_JOIN, e => {
      this.partitions = e.payload.memberAssignment[topic] || []
    })
    this.consumer.on(this.consumer.events.CRASH, e => { this.error = e.payload.error })
  }

  async start() {
    await this.consumer.connect()
    await this.consumer.subscribe({ topics: [this.topic], fromBeginning: true })
    await this.consumer.run({
      autoCommit: false,
      eachMessage: async ({ topic, partition, message }) => {
        this.seen.push({
          member: this.name, partition, offset: Number(message.offset),
          key: message.key.toString(), value: message.value.toString(), headers: headerPairs(message.headers),
        })
        await this.consumer.commitOffsets([{ topic, partition, offset: String(Number(message.offset) + 1) }])
      },
    })
    return this
  }

  assigned() {
    if (this.error) throw new Error(`member ${this.name} crashed: ${this.error}`)
    return new Set(this.partitions)
  }

  async close() {
    await this.consumer.disconnect()
  }
}

const stateOf = members => () => Object.fromEntries(members.map(m => [m.name, [[...m.assigned()], m.seen.length]]))

function checkExactlyOnce(seen, start, count) {
  const got = seen.map(s => index(s.value)).sort((a, b) => a - b)
  const want = Array.from({ length: count }, (_, k) => start + k)
  assert.deepEqual(got, want, 'every record exactly once across the members')
}

function checkOrderAndKeys(seen, produced) {
  const byPartition = new Map()
  for (const s of seen) {
    if (!byPartition.has(s.partition)) byPartition.set(s.partition, [])
    byPartition.get(s.partition).push(s)
  }
  for (const [p, recs] of byPartition) {
    for (const m of new Set(recs.map(r => r.member))) {
      const offs = recs.filter(r => r.member === m).map(r => r.offset)
      assert.deepEqual(offs, [...offs].sort((a, b) => a - b), `member ${m} saw partition ${p} in offset order`)
    }
    const idx = [...recs].sort((a, b) => a.offset - b.offset).map(r => index(r.value))
    assert.deepEqual(idx, [...idx].sort((a, b) => a - b), `partition ${p}: offset order is produce order`)
  }
  for (const s of seen) {
    const i = index(s.value)
    assert.equal(s.key, key(i), `record ${i}: key`)
    assert.equal(s.partition, produced.get(i), `record ${i}: consumed from the partition it was produced to`)
  }
}

function checkHeaders(seen) {
  const bad = seen.filter(s => JSON.stringify(s.headers) !== JSON.stringify(headersOf(index(s.value))))
  assert.equal(bad.length, 0, bad.length
    ? `${bad.length} of ${seen.length} records lost their headers; first: record ${index(bad[0].value)} has ` +
      `${JSON.stringify(bad[0].headers)}, want ${JSON.stringify(headersOf(index(bad[0].value)))}`
    : '')
}

async function endOffsets(admin, topic) {
  const offs = await admin.fetchTopicOffsets(topic)
  return Object.fromEntries(offs.map(o => [o.partition, Number(o.high)]))
}

async function groupOffsets(admin, group, topic) {
  const [t] = await admin.fetchOffsets({ groupId: group, topics: [topic] })
  return Object.fromEntries(t.partitions.map(p => [p.partition, Number(p.offset)]))
}

async function readAll(topic, partition, count) {
  const consumer = kafka('kjs-reader').consumer({ groupId: unique('reader'), metadataMaxAge: 2000, maxWaitTimeInMs: 200 })
  await consumer.connect()
  const out = []
  try {
    await consumer.subscribe({ topics: [topic], fromBeginning: true })
    await consumer.run({
      autoCommit: false,
      eachMessage: async ({ partition: p, message }) => { if (p === partition) out.push(message) },
    })
    await waitUntil(() => out.length >= count, `${count} records from ${topic}/${partition}`)
  } finally {
    await consumer.disconnect()
  }
  return out
}

test('admin topic lifecycle', { timeout: 30000 }, async () => {
  const topic = unique('kjs-admin')
  await withAdmin(async admin => {
    await create(admin, topic)
    const again = await admin.createTopics({ topics: [{ topic, numPartitions: 1, replicationFactor: 1 }] })
    assert.equal(again, false, 'createTopics of an existing topic reports false (TOPIC_ALREADY_EXISTS)')
    assert.ok((await admin.listTopics()).includes(topic))
    const { topics: [md] } = await admin.fetchTopicMetadata({ topics: [topic] })
    assert.equal(md.name, topic)
    assert.deepEqual(md.partitions.map(p => p.partitionId).sort(), [0, 1, 2])
    assert.ok(md.partitions.every(p => p.partitionErrorCode === 0 && p.leader >= 0), JSON.stringify(md))
    const all = await admin.fetchTopicMetadata()
    assert.ok(all.topics.some(t => t.name === topic))
    await admin.deleteTopics({ topics: [topic] })
    await waitUntil(async () => !(await admin.listTopics()).includes(topic), 'the topic to disappear')
  })
})

test('group scenario', { timeout: 60000 }, async () => {
  const topic = unique('kjs-grp')
  const group = unique('g')
  await withAdmin(async admin => {
    await create(admin, topic)
    const produced = await produce(topic, 0, FIRST)

    const a = await new Member(group, topic, 'a').start()
    const b = await new Member(group, topic, 'b').start()
    const split = () => {
      const sa = a.assigned()
      const sb = b.assigned()
      const union = new Set([...sa, ...sb])
      return sa.size > 0 && sb.size > 0 && sa.size + sb.size === union.size && union.size === PARTITIONS
    }
    await waitUntil(() => split() && a.seen.length + b.seen.length >= FIRST,
      'two members to split the partitions and consume the first records', { state: stateOf([a, b]) })
    checkExactlyOnce([...a.seen, ...b.seen], 0, FIRST)

    for (const [i, p] of await produce(topic, FIRST, SECOND)) produced.set(i, p)
    assert.deepEqual(new Set(produced.values()), new Set([0, 1, 2]), `the ${KEYS} keys use all partitions`)
    const total = FIRST + SECOND
    await waitUntil(() => a.seen.length + b.seen.length >= total, 'the second records', { state: stateOf([a, b]) })
    const second = [...a.seen, ...b.seen].filter(s => index(s.value) >= FIRST)
    assert.deepEqual(new Set(second.map(s => s.member)), new Set(['a', 'b']), 'both members got records once split')
    checkExactlyOnce([...a.seen, ...b.seen], 0, total)
    checkOrderAndKeys([...a.seen, ...b.seen], produced)

    const ends = await endOffsets(admin, topic)
    assert.equal(Object.values(ends).reduce((x, y) => x + y, 0), total)
    assert.deepEqual(await groupOffsets(admin, group, topic), ends, 'committed offsets are the partition ends')
    await a.close()
    await b.close()

    for (const [i, p] of await produce(topic, total, AFTER_RESTART)) produced.set(i, p)
    const c = await new Member(group, topic, 'c').start()
    await waitUntil(() => c.seen.length >= AFTER_RESTART, 'the records produced after the restart',
      { state: stateOf([c]) })
    await sleep(1000) // anything re-delivered would come with the first fetches
    checkExactlyOnce(c.seen, total, AFTER_RESTART)
    checkOrderAndKeys(c.seen, produced)

    const { groups } = await admin.listGroups()
    assert.ok(groups.some(g => g.groupId === group), JSON.stringify(groups))
    const { groups: [d] } = await admin.describeGroups([group])
    assert.deepEqual([d.errorCode, d.state, d.protocolType], [0, 'Stable', 'consumer'])
    assert.deepEqual(d.members.map(m => m.clientId), ['c'])
    const host = d.members[0].clientHost
    const { assignment } = AssignerProtocol.MemberAssignment.decode(d.members[0].memberAssignment)
    assert.deepEqual(Object.keys(assignment), [topic])
    assert.deepEqual([...assignment[topic]].sort(), [0, 1, 2])
    assert.deepEqual(await groupOffsets(admin, group, topic), await endOffsets(admin, topic))
    await c.close()
    await waitUntil(async () => (await admin.describeGroups([group])).groups[0].state === 'Empty',
      'the group to be Empty once its last member left')

    await admin.deleteTopics({ topics: [topic] })
    await waitUntil(async () => !(await admin.listTopics()).includes(topic), 'the topic to disappear')

    // Last, so that a header or client_host bug does not hide the group checks above.
    checkHeaders([...a.seen, ...b.seen, ...c.seen])
    assert.equal(host, '/127.0.0.1', "DescribeGroups client_host: Kafka reports the member's address")
  })
})

test('duplicate header keys kept', { timeout: 30000 }, async () => {
  const topic = unique('kjs-hdr')
  await withAdmin(admin => create(admin, topic, 1))
  await produce(topic, 0, 5)
  const got = await readAll(topic, 0, 5)
  assert.deepEqual(got.map(m => headerPairs(m.headers)), [0, 1, 2, 3, 4].map(headersOf))
})

test('create partitions', { timeout: 30000 }, async () => {
  const topic = unique('kjs-cp')
  await withAdmin(async admin => {
    await create(admin, topic)
    await admin.createPartitions({ topicPartitions: [{ topic, count: 5 }] })
    await waitUntil(async () => {
      const { topics: [md] } = await admin.fetchTopicMetadata({ topics: [topic] })
      return md.partitions.length === 5
    }, 'metadata to show 5 partitions')
  })
  const producer = kafka('kjs-producer').producer()
  await producer.connect()
  try {
    const [meta] = await producer.send({ topic, messages: [{ value: 'in-4', partition: 4 }] })
    assert.equal(meta.partition, 4)
  } finally {
    await producer.disconnect()
  }
  assert.deepEqual((await readAll(topic, 4, 1)).map(m => m.value.toString()), ['in-4'])
})

async function topicConfig(admin, topic) {
  const { resources: [r] } = await admin.describeConfigs({
    resources: [{ type: ConfigResourceTypes.TOPIC, name: topic }], includeSynonyms: false,
  })
  assert.equal(r.errorCode, 0, JSON.stringify(r))
  return Object.fromEntries(r.configEntries.map(e => [e.configName, e]))
}

test('describe topic config', { timeout: 30000 }, async () => {
  const topic = unique('kjs-dc')
  await withAdmin(async admin => {
    await create(admin, topic, 1, [{ name: 'retention.ms', value: '3600000' }, { name: 'cleanup.policy', value: 'delete' }])
    const cfg = await topicConfig(admin, topic)
    assert.equal(cfg['retention.ms']?.configValue, '3600000', JSON.stringify(cfg['retention.ms']))
    assert.equal(cfg['retention.ms'].isDefault, false)
    assert.equal(cfg['cleanup.policy']?.configValue, 'delete')
  })
})

test('alter topic config', { timeout: 30000 }, async () => {
  const topic = unique('kjs-ac')
  await withAdmin(async admin => {
    await create(admin, topic, 1, [{ name: 'retention.ms', value: '3600000' }])
    await admin.alterConfigs({
      validateOnly: false,
      resources: [{
        type: ConfigResourceTypes.TOPIC, name: topic,
        configEntries: [{ name: 'retention.ms', value: '7200000' }, { name: 'max.message.bytes', value: '500000' }],
      }],
    })
    const cfg = await topicConfig(admin, topic)
    assert.equal(cfg['retention.ms'].configValue, '7200000')
    assert.equal(cfg['max.message.bytes'].configValue, '500000')
  })
})

test('delete records', { timeout: 30000 }, async () => {
  const topic = unique('kjs-dr')
  await withAdmin(async admin => {
    await create(admin, topic, 1)
    await produce(topic, 0, 10)
    // deleteTopicRecords finds leaders in the admin's cached metadata only: load the topic's.
    await admin.fetchTopicMetadata({ topics: [topic] })
    try {
      await admin.deleteTopicRecords({ topic, partitions: [{ partition: 0, offset: '4' }] })
    } catch (e) {
      e.message += ` (${JSON.stringify(e.partitions ?? e.cause ?? null)})`
      throw e
    }
    const [o] = await admin.fetchTopicOffsets(topic)
    assert.deepEqual([Number(o.low), Number(o.high)], [4, 10])
  })
  assert.deepEqual((await readAll(topic, 0, 6)).map(m => Number(m.offset)), [4, 5, 6, 7, 8, 9])
})

test('offsets by timestamp', { timeout: 30000 }, async () => {
  const topic = unique('kjs-ts')
  const base = 1_700_000_000_000
  await withAdmin(async admin => {
    await create(admin, topic, 1)
    const producer = kafka('kjs-producer').producer()
    await producer.connect()
    try {
      await producer.send({
        topic, messages: Array.from({ length: 10 }, (_, i) => ({ value: `v${i}`, timestamp: String(base + i * 1000) })),
      })
    } finally {
      await producer.disconnect()
    }
    for (const [ts, want] of [[base, 0], [base + 1, 1], [base + 9000, 9], [base + 60000, 10]]) {
      // KafkaJS answers the high watermark where Kafka has no offset (a timestamp after the last record).
      const [r] = await admin.fetchTopicOffsetsByTimestamp(topic, ts)
      assert.equal(Number(r.offset), want, `timestamp ${ts}`)
    }
  })
})

test('delete group', { timeout: 30000 }, async () => {
  const topic = unique('kjs-dg')
  const group = unique('g')
  await withAdmin(async admin => {
    await create(admin, topic, 1)
    await produce(topic, 0, 3)
    const m = await new Member(group, topic, 'dg').start()
    await waitUntil(() => m.seen.length >= 3, 'three records')
    await m.close()
    assert.ok((await admin.listGroups()).groups.some(g => g.groupId === group))
    const res = await admin.deleteGroups([group])
    assert.deepEqual(res.map(r => [r.groupId, r.errorCode]), [[group, 0]])
    assert.ok(!(await admin.listGroups()).groups.some(g => g.groupId === group))
    assert.deepEqual(await groupOffsets(admin, group, topic), { 0: -1 })
  })
})
