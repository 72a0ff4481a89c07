// scripts/registry-interop.sh, JavaScript leg: @kafkajs/confluent-schema-registry
// (Avro through avsc, JSON Schema through ajv) and kafkajs against one
// `sluice serve`: registers schemas, produces records in Confluent's wire
// format (magic byte 0, schema id, payload) and consumes and decodes them
// with a registry client that has never seen the schemas (so it fetches
// them by id), checks compatibility on registration, and looks up ids.
// Usage: node registry.js BROKER REGISTRY_URL PREFIX
// Prints "ok   ..." or "FAIL: ..." per check; exits 1 if any failed.
'use strict'
process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1'
const assert = require('node:assert/strict')
const { Kafka, logLevel } = require('kafkajs')
const { SchemaRegistry, SchemaType } = require('@kafkajs/confluent-schema-registry')

const [broker, registryURL, prefix] = process.argv.slice(2)
if (!prefix) {
  console.error('usage: node registry.js BROKER REGISTRY_URL PREFIX')
  process.exit(2)
}
let failed = 0
async function check (desc, fn) {
  try {
    const detail = await fn()
    console.log(`ok   ${desc}${detail ? ': ' + detail : ''}`)
    return true
  } catch (e) {
    failed++
    console.log(`FAIL: ${desc}: ${e && e.stack ? e.stack.split('\n').slice(0, 3).join(' | ') : e}`)
    return false
  }
}
// refused(p, status): p rejects with an HTTP error of that status.
async function refused (p, status) {
  try {
    await p
  } catch (e) {
    assert.equal(e.status, status, `want HTTP ${status}, got ${e.status}: ${e.message}`)
    return e.message
  }
  throw new Error(`accepted; want HTTP ${status}`)
}

const avroSubject = `${prefix}-avro-value`
const jsonSubject = `${prefix}-json-value`
const topic = `${prefix}-records`
const avroV1 = {
  type: 'record',
  name: 'Payment',
  namespace: 'sluice.interop',
  fields: [
    { name: 'id', type: 'string' },
    { name: 'amount', type: 'double' },
    { name: 'tags', type: { type: 'array', items: 'string' } }
  ]
}
// v2 adds a field with a default: BACKWARD compatible (v2 reads v1's data).
const avroV2 = { ...avroV1, fields: [...avroV1.fields, { name: 'currency', type: 'string', default: 'EUR' }] }
// Adds a field without a default: v3 cannot read v2's data.
const avroBad = { ...avroV1, fields: [...avroV2.fields, { name: 'merchant', type: 'string' }] }
const jsonV1 = {
  $schema: 'http://json-schema.org/draft-07/schema#',
  title: 'Event',
  type: 'object',
  properties: { name: { type: 'string' }, count: { type: 'integer' } },
  required: ['name', 'count'],
  additionalProperties: false
}
// v2 drops a required property: every v1 document is still valid.
const jsonV2 = { ...jsonV1, required: ['name'] }
// count's type changes from integer to string: v1's documents are not valid.
const jsonBad = { ...jsonV1, properties: { name: { type: 'string' }, count: { type: 'string' } } }

const avroRecords = [
  { id: 'p-1', amount: 12.5, tags: ['a', 'b'] },
  { id: 'p-2', amount: -0.25, tags: [] },
  { id: 'p-3', amount: 1e9, tags: ['ünïcödé'] }
]
const avroV2Records = [{ id: 'p-4', amount: 3, tags: ['v2'], currency: 'USD' }]
const jsonRecords = [{ name: 'start', count: 1 }, { name: 'stop', count: 2 }]

async function main () {
  const registry = new SchemaRegistry({ host: registryURL, clientId: 'sluice-registry-interop' })
  const ids = {}

  await check(`register an Avro schema in ${avroSubject}`, async () => {
    ids.avro1 = (await registry.register({ type: SchemaType.AVRO, schema: JSON.stringify(avroV1) }, { subject: avroSubject })).id
    assert.ok(Number.isInteger(ids.avro1) && ids.avro1 > 0, `id ${ids.avro1}`)
    return `id ${ids.avro1}`
  })
  await check(`register a JSON schema in ${jsonSubject}`, async () => {
    ids.json1 = (await registry.register({ type: SchemaType.JSON, schema: JSON.stringify(jsonV1) }, { subject: jsonSubject })).id
    assert.ok(Number.isInteger(ids.json1) && ids.json1 > 0 && ids.json1 !== ids.avro1, `id ${ids.json1}`)
    return `id ${ids.json1}`
  })
  await check('registering the same Avro schema again answers the same id', async () => {
    const { id } = await registry.register({ type: SchemaType.AVRO, schema: JSON.stringify(avroV1) }, { subject: avroSubject })
    assert.equal(id, ids.avro1)
  })
  await check(`register a BACKWARD-compatible Avro v2 (a field with a default) in ${avroSubject}`, async () => {
    ids.avro2 = (await registry.register({ type: SchemaType.AVRO, schema: JSON.stringify(avroV2) }, { subject: avroSubject })).id
    assert.ok(ids.avro2 > 0 && ids.avro2 !== ids.avro1, `id ${ids.avro2}`)
    return `id ${ids.avro2}`
  })
  await check('an incompatible Avro schema (a field without a default) is refused with 409', () =>
    refused(registry.register({ type: SchemaType.AVRO, schema: JSON.stringify(avroBad) }, { subject: avroSubject }), 409))
  await check(`register a BACKWARD-compatible JSON v2 (a required property dropped) in ${jsonSubject}`, async () => {
    ids.json2 = (await registry.register({ type: SchemaType.JSON, schema: JSON.stringify(jsonV2) }, { subject: jsonSubject })).id
    assert.ok(ids.json2 > 0 && ![ids.avro1, ids.avro2, ids.json1].includes(ids.json2), `id ${ids.json2}`)
    return `id ${ids.json2}`
  })
  await check('an incompatible JSON schema (a property\'s type changed) is refused with 409', () =>
    refused(registry.register({ type: SchemaType.JSON, schema: JSON.stringify(jsonBad) }, { subject: jsonSubject }), 409))

  // Lookups.
  await check('getLatestSchemaId answers v2\'s ids', async () => {
    assert.equal(await registry.getLatestSchemaId(avroSubject), ids.avro2)
    assert.equal(await registry.getLatestSchemaId(jsonSubject), ids.json2)
  })
  await check('getRegistryId(subject, 1) and (subject, "latest")', async () => {
    assert.equal(await registry.getRegistryId(avroSubject, 1), ids.avro1)
    assert.equal(await registry.getRegistryId(avroSubject, 2), ids.avro2)
    assert.equal(await registry.getRegistryId(jsonSubject, 'latest'), ids.json2)
  })
  await check('getRegistryIdBySchema finds v1 by its content', async () => {
    assert.equal(await registry.getRegistryIdBySchema(avroSubject, { type: SchemaType.AVRO, schema: JSON.stringify(avroV1) }), ids.avro1)
    assert.equal(await registry.getRegistryIdBySchema(jsonSubject, { type: SchemaType.JSON, schema: JSON.stringify(jsonV1) }), ids.json1)
  })
  // The client turns the 404 into a ConfluentSchemaRegistryError that keeps
  // only the message (Confluent's: "Schema not found", code 40403).
  await check('getRegistryIdBySchema of an unregistered schema is refused as "Schema not found"', async () => {
    await assert.rejects(
      registry.getRegistryIdBySchema(avroSubject, { type: SchemaType.AVRO, schema: JSON.stringify(avroBad) }),
      e => e.name === 'ConfluentSchemaRegistryError' && /Schema not found/.test(e.message))
  })
  await check('a fresh client gets the schemas by id', async () => {
    const fresh = new SchemaRegistry({ host: registryURL })
    const a = await fresh.getSchema(ids.avro1)
    assert.equal(a.name, 'sluice.interop.Payment')
    const j = await fresh.getSchema(ids.json2)
    assert.ok(j.isValid({ name: 'x' }), 'JSON v2 from the registry rejects {name: "x"}')
  })
  await check('encoding a record the schema rejects fails in the client', async () => {
    await assert.rejects(registry.encode(ids.json1, { name: 'x' }))
  })

  // Records in Confluent's wire format through the broker.
  const want = []
  const encodeAll = async (id, records, kind) => {
    for (const r of records) {
      const buf = await registry.encode(id, r)
      assert.equal(buf[0], 0, 'magic byte')
      assert.equal(buf.readInt32BE(1), id, 'schema id in the record')
      want.push({ kind, id, value: r, buf })
    }
  }
  const encoded = await check('encode records with Avro v1, Avro v2 and JSON v1', async () => {
    await encodeAll(ids.avro1, avroRecords, 'avro1')
    await encodeAll(ids.avro2, avroV2Records, 'avro2')
    await encodeAll(ids.json1, jsonRecords, 'json1')
    return `${want.length} records`
  })
  if (!encoded) return

  const kafka = new Kafka({ clientId: 'sluice-registry-interop', brokers: [broker], logLevel: logLevel.ERROR, retry: { retries: 5 } })
  const admin = kafka.admin()
  const producer = kafka.producer({ allowAutoTopicCreation: false })
  const consumer = kafka.consumer({ groupId: `${prefix}-group`, sessionTimeout: 10000, rebalanceTimeout: 10000 })
  try {
    const produced = await check(`kafkajs produces ${want.length} records to ${topic}`, async () => {
      await admin.connect()
      await admin.createTopics({ topics: [{ topic, numPartitions: 2 }], waitForLeaders: true })
      await producer.connect()
      const res = await producer.send({
        topic,
        acks: -1,
        messages: want.map((w, i) => ({ key: `k-${i}`, value: w.buf, partition: i % 2, headers: { kind: w.kind } }))
      })
      assert.equal(res.length, 2, `answers for ${res.length} partitions`)
    })
    if (!produced) return
    await check('kafkajs consumes them back and a fresh registry client decodes each (schema by id)', async () => {
      const decoder = new SchemaRegistry({ host: registryURL })
      const got = new Map()
      let done
      const all = new Promise((resolve, reject) => { done = { resolve, reject } })
      await consumer.connect()
      await consumer.subscribe({ topic, fromBeginning: true })
      await consumer.run({
        eachMessage: async ({ message }) => {
          try {
            got.set(message.key.toString(), { value: await decoder.decode(message.value), kind: message.headers.kind.toString(), raw: message.value })
            if (got.size === want.length) done.resolve()
          } catch (e) { done.reject(e) }
        }
      })
      let timer
      await Promise.race([all, new Promise((resolve, reject) => { timer = setTimeout(() => reject(new Error(`read ${got.size} of ${want.length} records in 30s`)), 30000) })])
      clearTimeout(timer)
      want.forEach((w, i) => {
        const g = got.get(`k-${i}`)
        assert.ok(g, `record k-${i} missing`)
        assert.ok(Buffer.compare(g.raw, w.buf) === 0, `k-${i}: bytes differ`)
        assert.equal(g.kind, w.kind)
        assert.deepEqual({ ...g.value }, w.value, `k-${i} decoded`)
      })
      return `${got.size} records, ${new Set(want.map(w => w.id)).size} schema ids`
    })
    await check('Avro v1 records decode with v2 as the reader schema (the default filled in)', async () => {
      const buf = want.find(w => w.kind === 'avro1').buf
      const v = await registry.decode(buf, { [SchemaType.AVRO]: { readerSchema: avroV2 } })
      assert.equal(v.currency, 'EUR')
      assert.equal(v.id, avroRecords[0].id)
    })
  } finally {
    await consumer.disconnect().catch(() => {})
    await producer.disconnect().catch(() => {})
    await admin.disconnect().catch(() => {})
  }
}

main().then(
  () => {
    if (failed) {
      console.log(`FAIL: ${failed} JavaScript registry checks failed`)
      process.exit(1)
    }
  },
  e => {
    console.log(`FAIL: ${e && e.stack ? e.stack : e}`)
    process.exit(1)
  }
)
