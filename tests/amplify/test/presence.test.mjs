// Presence (docs/extensions.md#presence) next to the unmodified Amplify client. This file starts
// its own Herald with a `room` namespace that has presence, its notices published on
// `/ops/presence`. Amplify cannot ask for presence events, so it must never see a join or leave
// on its own subscriptions; a plain `ws` client that asks does, and a backend subscribed with
// Amplify to the notice channel hears who connected and left.
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import WS from 'ws';

import { HeraldProcess, freePort } from '../herald-process.mjs';
import { API_KEY, Inbox, amplifyConfig, nonce, subscribeInbox, uniqueSegment, withTimeout } from './helpers.mjs';
import { Amplify } from 'aws-amplify';
import { events } from 'aws-amplify/data';

const T = 10_000;
const TEST = { timeout: 40_000 };

let herald;
let dataDir;

before(async () => {
  dataDir = mkdtempSync(path.join(os.tmpdir(), 'herald-amplify-presence-'));
  cpSync(process.env.HERALD_TEST_DEV_TLS_DIR, path.join(dataDir, 'dev-tls'), { recursive: true });
  const configPath = path.join(dataDir, 'herald.toml');
  writeFileSync(
    configPath,
    `# Written by tests/amplify/test/presence.test.mjs
[[namespaces]]
name = "room"
presence = { channel = "/ops/presence" }

[[namespaces]]
name = "ops"
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
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

/** A raw AppSync WebSocket client (not Amplify), with an inbox of every message. */
async function rawClient() {
  const host = `127.0.0.1:${herald.port}`;
  const header = Buffer.from(JSON.stringify({ host, 'x-api-key': API_KEY })).toString('base64url');
  const ws = new WS(`ws://${host}/event/realtime`, ['aws-appsync-event-ws', `header-${header}`]);
  const inbox = new Inbox('raw client messages');
  ws.on('message', (data) => inbox.push(JSON.parse(data.toString())));
  await withTimeout(new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject)), T, 'raw client open');
  ws.send(JSON.stringify({ type: 'connection_init' }));
  await inbox.waitFor((m) => m.type === 'connection_ack', { timeoutMs: T, what: 'connection_ack' });
  return { ws, inbox, send: (m) => ws.send(JSON.stringify(m)) };
}

const presenceOf = (m) => (m.type === 'data' && m.presence ? JSON.parse(m.event) : null);

test('an Amplify subscriber on a presence namespace sees published events only, while a client that asks sees joins', TEST, async () => {
  const id = nonce();
  const channel = `/room/${uniqueSegment('lobby')}`;
  const ch = await withTimeout(events.connect(channel), T, 'events.connect');
  const s = subscribeInbox(ch, `${channel} Amplify subscriber`);
  await withTimeout(s.sub.ready, T, 'subscription ready');

  const raw = await rawClient();
  raw.send({ type: 'subscribe', id: 'w', channel, presence: { events: true, info: { name: 'Raw' } }, authorization: { 'x-api-key': API_KEY, host: `127.0.0.1:${herald.port}` } });
  await raw.inbox.waitFor((m) => m.type === 'subscribe_success', { timeoutMs: T, what: 'raw subscribe_success' });
  const ownJoin = await raw.inbox.waitFor((m) => presenceOf(m)?.presence === 'join', { timeoutMs: T, what: 'its own join' });
  assert.equal(presenceOf(ownJoin).member.info.name, 'Raw');

  // Both are members: Amplify's connection (it subscribed) and the raw client.
  raw.send({ type: 'presence', id: 'p1', channel });
  const read = await raw.inbox.waitFor((m) => m.type === 'presence_result', { timeoutMs: T, what: 'presence_result' });
  assert.equal(read.count, 2, JSON.stringify(read));

  // The raw client leaves; then a published event. Amplify's callback got nothing in between.
  raw.ws.close();
  await withTimeout(events.post(channel, { nonce: id, n: 1 }), T, 'events.post');
  const first = await s.events.waitFor((e) => e?.nonce === id, { timeoutMs: T, what: 'the published event' });
  assert.deepEqual(first, { nonce: id, n: 1 });
  assert.equal(s.events.items.length, 1, `Amplify saw only the published event: ${JSON.stringify(s.events.items)}`);
  s.sub.unsubscribe();
});

test('a backend subscribed with Amplify to the notice channel hears connect, join, leave and disconnect', TEST, async () => {
  const notices = await withTimeout(events.connect('/ops/presence'), T, 'events.connect /ops/presence');
  const backend = subscribeInbox(notices, '/ops/presence backend');
  await withTimeout(backend.sub.ready, T, 'backend ready');

  const channel = `/room/${uniqueSegment('desk')}`;
  const raw = await rawClient();
  raw.send({ type: 'subscribe', id: 's', channel, presence: { info: { name: 'Desk' } }, authorization: { 'x-api-key': API_KEY, host: `127.0.0.1:${herald.port}` } });
  await raw.inbox.waitFor((m) => m.type === 'subscribe_success', { timeoutMs: T, what: 'subscribe_success' });
  const join = await backend.events.waitFor((n) => n?.type === 'join' && n.channel === channel, { timeoutMs: T, what: 'the join notice' });
  const who = join.member.connectionId;
  assert.equal(join.member.info.name, 'Desk');
  assert.ok(backend.events.items.some((n) => n?.type === 'connect' && n.member.connectionId === who), 'connect came first');
  raw.ws.close();
  await backend.events.waitFor((n) => n?.type === 'leave' && n.member.connectionId === who, { timeoutMs: T, what: 'the leave notice' });
  await backend.events.waitFor((n) => n?.type === 'disconnect' && n.member.connectionId === who, { timeoutMs: T, what: 'the disconnect notice' });
  backend.sub.unsubscribe();
});
