// Data-source handlers (docs/handlers.md#data-source-handlers) seen through the unmodified
// Amplify client. This file starts dynalite (a DynamoDB-compatible server, from
// tests/dynamodb: `npm ci` there first), a loopback EventBridge endpoint, and its own Herald
// whose `--config` declares them as data sources and names:
//   - `chat`:  AWS's "Saving events to DynamoDB before broadcasting" example (every published
//              message stored in messages_table), as docs/handlers.md shows it;
//   - `room`:  onPublish enriches each event from the `rooms` table; onSubscribe refuses a
//              channel that has no row in it (util.unauthorized());
//   - `fwd`:   onPublish forwards every event to EventBridge (PutEvents), as docs/handlers.md shows;
//   - `stored`: docs/handlers.md's PostgreSQL example (every published message stored in a table of
//              a database this file creates with psql, and drops);
//   - `member`: onPublish enriches each event from a MariaDB table, onSubscribe refuses a channel
//              with no row there (a database created with the mariadb client, and dropped).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';

import { HeraldProcess, freePort } from '../herald-process.mjs';
import { API_KEY, Inbox, amplifyConfig, nonce, subscribeInbox, uniqueSegment, withTimeout } from './helpers.mjs';
import { Amplify } from 'aws-amplify';
import { events } from 'aws-amplify/data';

const T = 10_000;
const TEST = { timeout: 40_000 };
const here = path.dirname(fileURLToPath(import.meta.url));
const DYNALITE = path.resolve(here, '../../dynamodb/node_modules/dynalite/index.js');

/** The fenced block after `<!-- test: name -->` in docs/handlers.md. */
function docBlock(name) {
  const doc = readFileSync(path.resolve(here, '../../../docs/handlers.md'), 'utf8');
  const after = doc.slice(doc.indexOf(`<!-- test: ${name} -->`));
  const start = after.indexOf('\n', after.indexOf('```')) + 1;
  return after.slice(start, after.indexOf('```', start));
}

const ROOM_HANDLER = `
import { util } from '@aws-appsync/utils'
import * as ddb from '@aws-appsync/utils/dynamodb'

export const onPublish = {
  request(ctx) {
    return ddb.get({ key: { path: ctx.info.channel.path } })
  },
  response(ctx) {
    if (ctx.error) util.error(ctx.error.message, ctx.error.type)
    return ctx.events.map(({ id, payload }) => ({ id, payload: { ...payload, topic: ctx.result?.topic ?? null } }))
  },
}

export const onSubscribe = {
  request(ctx) {
    return ddb.get({ key: { path: ctx.info.channel.path } })
  },
  response(ctx) {
    if (!ctx.result) util.unauthorized()
  },
}
`;

// --- dynalite and a DynamoDB client for the test's own checks ------------------------------
let dynamo;
let ddbUrl;

async function ddb(op, body) {
  const res = await fetch(ddbUrl, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-amz-json-1.0',
      'x-amz-target': `DynamoDB_20120810.${op}`,
      'x-amz-date': '20260101T000000Z',
      // dynalite checks that a signature is there, not its value.
      authorization: 'AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=00',
    },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  assert.ok(res.ok, `${op}: ${res.status} ${text}`);
  return JSON.parse(text);
}

async function createTable(name, hash, range) {
  const KeySchema = [{ AttributeName: hash, KeyType: 'HASH' }];
  const AttributeDefinitions = [{ AttributeName: hash, AttributeType: 'S' }];
  if (range) {
    KeySchema.push({ AttributeName: range, KeyType: 'RANGE' });
    AttributeDefinitions.push({ AttributeName: range, AttributeType: 'S' });
  }
  await ddb('CreateTable', {
    TableName: name, KeySchema, AttributeDefinitions,
    ProvisionedThroughput: { ReadCapacityUnits: 5, WriteCapacityUnits: 5 },
  });
  for (;;) {
    const d = await ddb('DescribeTable', { TableName: name });
    if (d.Table.TableStatus === 'ACTIVE') return;
    await new Promise((r) => setTimeout(r, 10));
  }
}

// --- SQL databases, through the databases' own command-line clients -------------------------
const SQL_DB = `herald_amplify_${process.pid}`;
const psql = (sql, db = 'postgres') =>
  execFileSync('psql', ['-h', '127.0.0.1', '-U', 'postgres', '-d', db, '-v', 'ON_ERROR_STOP=1', '-At', '-c', sql], { encoding: 'utf8' });
const mariadb = (sql, db = 'mysql') =>
  execFileSync('mariadb', ['-h', '127.0.0.1', '-u', 'root', '-N', '-B', db, '-e', sql], { encoding: 'utf8' });

const MEMBER_HANDLER = `
import { util } from '@aws-appsync/utils'
import { select, createMySQLStatement, toJsonObject } from '@aws-appsync/utils/rds'

const lookup = (ctx) => createMySQLStatement(select({
  table: 'channels', columns: ['topic'], where: { path: { eq: ctx.info.channel.path } }, limit: 1,
}))

export const onPublish = {
  request: lookup,
  response(ctx) {
    if (ctx.error) util.error(ctx.error.message, ctx.error.type)
    const [row] = toJsonObject(ctx.result)[0]
    return ctx.events.map(({ id, payload }) => ({ id, payload: { ...payload, topic: row?.topic ?? null } }))
  },
}

export const onSubscribe = {
  request: lookup,
  response(ctx) {
    if (ctx.error) util.error(ctx.error.message, ctx.error.type)
    if (toJsonObject(ctx.result)[0].length === 0) util.unauthorized()
  },
}
`;

// --- EventBridge endpoint -------------------------------------------------------------------
const putEvents = new Inbox('PutEvents calls'); // { headers, body }
let busServer;

async function startBus() {
  busServer = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      putEvents.push({ headers: req.headers, body });
      res.writeHead(200, { 'content-type': 'application/x-amz-json-1.1' });
      res.end(JSON.stringify({ Entries: body.Entries.map((_, i) => ({ EventId: `ev-${i}` })), FailedEntryCount: 0 }));
    });
  });
  await new Promise((resolve) => busServer.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${busServer.address().port}`;
}

// --- Herald ---------------------------------------------------------------------------------
let herald;
let dataDir;

before(async () => {
  assert.ok(existsSync(DYNALITE), 'dynalite is not installed: run `npm ci` in tests/dynamodb');
  const { default: dynalite } = await import(DYNALITE);
  dynamo = dynalite({ createTableMs: 0, deleteTableMs: 0 });
  const ddbPort = await freePort();
  await new Promise((resolve) => dynamo.listen(ddbPort, '127.0.0.1', resolve));
  ddbUrl = `http://127.0.0.1:${ddbPort}`;
  await createTable('messages_table', 'channel', 'id');
  await createTable('rooms', 'path');
  const busUrl = await startBus();
  psql(`CREATE DATABASE ${SQL_DB}`);
  psql('CREATE TABLE messages (channel text NOT NULL, id text NOT NULL, body jsonb NOT NULL, sender text, PRIMARY KEY (channel, id))', SQL_DB);
  mariadb(`CREATE DATABASE ${SQL_DB}`);
  mariadb('CREATE TABLE channels (path varchar(200) PRIMARY KEY, topic varchar(100))', SQL_DB);

  dataDir = mkdtempSync(path.join(os.tmpdir(), 'herald-amplify-data-sources-'));
  cpSync(process.env.HERALD_TEST_DEV_TLS_DIR, path.join(dataDir, 'dev-tls'), { recursive: true });
  const configPath = path.join(dataDir, 'herald.toml');
  const aws = `region = "us-east-1"\naccess_key_id = "AKIDEXAMPLE"\nsecret_access_key = "not-a-real-secret"`;
  writeFileSync(
    configPath,
    `# Written by tests/amplify/test/data-sources.test.mjs
[[data_sources]]
name = "messages"
type = "AMAZON_DYNAMODB"
table = "messages_table"
endpoint = "${ddbUrl}"
${aws}

[[data_sources]]
name = "rooms"
type = "AMAZON_DYNAMODB"
table = "rooms"
endpoint = "${ddbUrl}"
${aws}

[[data_sources]]
name = "bus"
type = "AMAZON_EVENTBRIDGE"
endpoint = "${busUrl}"
${aws}

[[data_sources]]
name = "pg"
type = "RELATIONAL_DATABASE"
database_url = "postgres://postgres@127.0.0.1:5432/${SQL_DB}"

[[data_sources]]
name = "maria"
type = "RELATIONAL_DATABASE"
database_url = "mysql://root@127.0.0.1:3306/${SQL_DB}"

[[namespaces]]
name = "stored"
[namespaces.handlers]
data_source = "pg"
code = '''${docBlock('sql-postgres')}'''

[[namespaces]]
name = "member"
[namespaces.handlers]
data_source = "maria"
code = '''${MEMBER_HANDLER}'''

[[namespaces]]
name = "chat"
[namespaces.handlers]
data_source = "messages"
code = '''${docBlock('dynamodb')}'''

[[namespaces]]
name = "room"
[namespaces.handlers]
data_source = "rooms"
code = '''${ROOM_HANDLER}'''

[[namespaces]]
name = "fwd"
[namespaces.handlers]
data_source = "bus"
code = '''${docBlock('eventbridge')}'''
`,
  );
  herald = new HeraldProcess({ bin: process.env.HERALD_TEST_BIN, port: await freePort(), apiKey: API_KEY, dataDir, configPath });
  process.on('exit', () => herald.killSync());
  await herald.start();
  Amplify.configure(amplifyConfig(`http://127.0.0.1:${herald.port}/event`));
});

after(async () => {
  await events.closeAll().catch(() => {});
  await herald?.stop();
  busServer?.close();
  busServer?.closeAllConnections?.();
  await new Promise((resolve) => (dynamo ? dynamo.close(resolve) : resolve()));
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  try { psql(`DROP DATABASE IF EXISTS ${SQL_DB} WITH (FORCE)`); } catch {}
  try { mariadb(`DROP DATABASE IF EXISTS ${SQL_DB}`); } catch {}
});

test('every published chat message is stored in DynamoDB before it is broadcast (the AWS example, as docs/handlers.md shows it)', TEST, async () => {
  const id = nonce();
  const seg = uniqueSegment('room');
  const ch = await withTimeout(events.connect(`/chat/${seg}`), T, 'events.connect');
  const s = subscribeInbox(ch, `/chat/${seg} subscriber`);
  await withTimeout(s.sub.ready, T, 'subscription ready');

  await withTimeout(events.post(`/chat/${seg}`, [{ nonce: id, text: 'over HTTP' }]), T, 'events.post');
  await withTimeout(ch.publish({ nonce: id, text: 'over the socket' }), T, 'channel.publish');
  await s.events.waitFor((e) => e?.nonce === id && e.text === 'over HTTP', { timeoutMs: T, what: 'the HTTP message' });
  await s.events.waitFor((e) => e?.nonce === id && e.text === 'over the socket', { timeoutMs: T, what: 'the socket message' });

  const stored = await ddb('Query', {
    TableName: 'messages_table',
    KeyConditionExpression: '#c = :c',
    ExpressionAttributeNames: { '#c': 'channel' },
    ExpressionAttributeValues: { ':c': { S: `/chat/${seg}` } },
  });
  assert.deepEqual(stored.Items.map((i) => i.text.S).sort(), ['over HTTP', 'over the socket']);
  assert.ok(stored.Items.every((i) => i.nonce.S === id && typeof i.id.S === 'string'));
  await ch.close();
});

test('an event is enriched from a table, and a subscribe is refused by a table lookup', TEST, async () => {
  const id = nonce();
  const seg = uniqueSegment('r');
  await ddb('PutItem', { TableName: 'rooms', Item: { path: { S: `/room/${seg}` }, topic: { S: 'gardening' } } });

  const ch = await withTimeout(events.connect(`/room/${seg}`), T, 'events.connect');
  const s = subscribeInbox(ch, `/room/${seg} subscriber`);
  await withTimeout(s.sub.ready, T, 'the subscription to a listed room');
  await withTimeout(events.post(`/room/${seg}`, { nonce: id, text: 'hi' }), T, 'events.post');
  const got = await s.events.waitFor((e) => e?.nonce === id, { timeoutMs: T, what: 'the enriched event' });
  assert.deepEqual(got, { nonce: id, text: 'hi', topic: 'gardening' });

  const unlisted = await withTimeout(events.connect(`/room/${seg}-unlisted`), T, 'connect unlisted');
  const denied = subscribeInbox(unlisted, 'unlisted subscriber');
  await assert.rejects(withTimeout(denied.sub.ready, T, 'denied subscription settles'), /Unauthorized/);
  await ch.close();
  await unlisted.close();
});

test('events are forwarded to EventBridge with PutEvents, signed, then broadcast', TEST, async () => {
  const id = nonce();
  const seg = uniqueSegment('f');
  const ch = await withTimeout(events.connect(`/fwd/${seg}`), T, 'events.connect');
  const s = subscribeInbox(ch, `/fwd/${seg} subscriber`);
  await withTimeout(s.sub.ready, T, 'subscription ready');
  await withTimeout(events.post(`/fwd/${seg}`, { nonce: id, n: 1 }), T, 'events.post');
  await s.events.waitFor((e) => e?.nonce === id, { timeoutMs: T, what: 'the forwarded event' });
  const call = await putEvents.waitFor((c) => JSON.stringify(c.body).includes(id), { timeoutMs: T, what: 'the PutEvents call' });
  assert.equal(call.headers['x-amz-target'], 'AWSEvents.PutEvents');
  assert.match(call.headers.authorization, /^AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE\/\d{8}\/us-east-1\/events\/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=[0-9a-f]{64}$/);
  assert.deepEqual(
    call.body.Entries.map((e) => ({ ...e, Detail: JSON.parse(e.Detail) })),
    [{ Source: 'chat', DetailType: 'message', Detail: { channel: `/fwd/${seg}`, payload: { nonce: id, n: 1 } } }],
  );
  await ch.close();
});

test('every published message is stored in PostgreSQL before it is broadcast (docs/handlers.md)', TEST, async () => {
  const id = nonce();
  const seg = uniqueSegment('s');
  const ch = await withTimeout(events.connect(`/stored/${seg}`), T, 'events.connect');
  const s = subscribeInbox(ch, `/stored/${seg} subscriber`);
  await withTimeout(s.sub.ready, T, 'subscription ready');
  await withTimeout(events.post(`/stored/${seg}`, [{ nonce: id, text: "it's over HTTP" }, { nonce: id, text: 'second' }]), T, 'events.post');
  await withTimeout(ch.publish({ nonce: id, text: 'over the socket' }), T, 'channel.publish');
  for (const text of ["it's over HTTP", 'second', 'over the socket']) {
    await s.events.waitFor((e) => e?.nonce === id && e.text === text, { timeoutMs: T, what: text });
  }
  const rows = psql(`SELECT body->>'text' FROM messages WHERE channel = '/stored/${seg}' ORDER BY 1`, SQL_DB);
  assert.deepEqual(rows.trim().split('\n'), ["it's over HTTP", 'over the socket', 'second']);
  await ch.close();
});

test('an event is enriched from a MariaDB table, and a subscribe is refused by a lookup there', TEST, async () => {
  const id = nonce();
  const seg = uniqueSegment('m');
  mariadb(`INSERT INTO channels VALUES ('/member/${seg}', 'gardening')`, SQL_DB);
  const ch = await withTimeout(events.connect(`/member/${seg}`), T, 'events.connect');
  const s = subscribeInbox(ch, `/member/${seg} subscriber`);
  await withTimeout(s.sub.ready, T, 'the subscription to a listed channel');
  await withTimeout(events.post(`/member/${seg}`, { nonce: id, text: 'hi' }), T, 'events.post');
  const got = await s.events.waitFor((e) => e?.nonce === id, { timeoutMs: T, what: 'the enriched event' });
  assert.deepEqual(got, { nonce: id, text: 'hi', topic: 'gardening' });

  const unlisted = await withTimeout(events.connect(`/member/${seg}-unlisted`), T, 'connect unlisted');
  const denied = subscribeInbox(unlisted, 'unlisted subscriber');
  await assert.rejects(withTimeout(denied.sub.ready, T, 'denied subscription settles'), /Unauthorized/);
  await ch.close();
  await unlisted.close();
});
