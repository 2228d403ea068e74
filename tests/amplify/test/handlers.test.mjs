// Namespace handlers (docs/handlers.md) seen through the unmodified Amplify client.
// This file starts its own Herald with a `--config` naming:
//   - `js`:        a JavaScript onPublish that transforms (adds `handled`), filters
//                  (`drop: true`), fails single events (`fail: true` → `{id, error}`) and
//                  refuses a whole publish (`moderate` → util.error(…, 'ModerationError')),
//                  and an onSubscribe that refuses `/js/members/…` with util.unauthorized()
//                  (API-key mode: ctx.identity is null) and `/js/closed/…` with util.error;
//   - `hook`:      onPublish and onSubscribe over HTTP (REQUEST_RESPONSE) to a loopback
//                  Node server in this file, which transforms, drops, fails and refuses;
//   - `hookevent`: onPublish over HTTP with invoke_type EVENT: the server holds every
//                  request until the test has seen the events delivered unchanged.
// Amplify is configured with an API key only (apiKey mode). Every step awaits what it
// expects; to prove an event never arrives, a later marker event is awaited and the
// subscriber must have nothing else before it.
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { HeraldProcess, freePort } from '../herald-process.mjs';
import {
  API_KEY,
  Inbox,
  amplifyConfig,
  assertPostError,
  frameMark,
  nonce,
  subscribeInbox,
  uniqueSegment,
  waitForFrame,
  withTimeout,
} from './helpers.mjs';
import { Amplify } from 'aws-amplify';
import { events } from 'aws-amplify/data';

const T = 10_000; // failure bound for one awaited step
const TEST = { timeout: 40_000 };

// The JavaScript handler (a TOML literal string: no ''' and no escapes inside).
const JS_HANDLER = `
import { util } from '@aws-appsync/utils';

export function onPublish(ctx) {
  const moderated = ctx.events.find((e) => e.payload && e.payload.moderate);
  if (moderated) util.error('moderated: ' + moderated.payload.moderate, 'ModerationError');
  return ctx.events
    .filter((e) => !(e.payload && e.payload.drop === true))
    .map((e) => (e.payload && e.payload.fail)
      ? { id: e.id, error: 'refused event ' + e.payload.n }
      : { id: e.id, payload: { ...e.payload, handled: {
          channel: ctx.info.channel.path,
          namespace: ctx.info.channelNamespace.name,
          operation: ctx.info.operation,
          identity: ctx.identity,
        } } });
}

export function onSubscribe(ctx) {
  const room = ctx.info.channel.segments[1];
  if (room === 'members' && ctx.identity === null) util.unauthorized();
  if (room === 'closed') util.error('room ' + ctx.info.channel.path + ' is closed', 'RoomClosed');
}
`;

// ---------------------------------------------------------------------------
// The HTTP handler server: /rr answers at once (REQUEST_RESPONSE), /event holds
// each request until the test releases it (EVENT).
// ---------------------------------------------------------------------------
const rrCalls = new Inbox('REQUEST_RESPONSE handler calls'); // { ctx, headers }
const eventCalls = new Inbox('EVENT handler calls'); // { ctx, headers, release(answer), answered }

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/** The REQUEST_RESPONSE handler's decision, as an HTTP handler in any language would make it. */
function answerRequestResponse(ctx) {
  if (ctx.info.operation === 'SUBSCRIBE') {
    return ctx.info.channel.segments[1] === 'closed' ? { error: `hook refuses ${ctx.info.channel.path}` } : null;
  }
  const reject = ctx.events.find((e) => e.payload?.reject);
  if (reject) return { error: `hook rejects: ${reject.payload.reject}` };
  return {
    events: ctx.events
      .filter((e) => e.payload?.drop !== true)
      .map(({ id, payload }) =>
        String(payload?.text ?? '').includes('spam')
          ? { id, error: 'spam is not allowed' }
          : { id, payload: { ...payload, text: String(payload?.text ?? '').toUpperCase(), checked: true } },
      ),
  };
}

let hookServer;
let hookUrl;

async function startHookServer() {
  hookServer = http.createServer(async (req, res) => {
    const ctx = JSON.parse(await readBody(req));
    const send = (answer) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(answer));
    };
    if (req.url === '/rr') {
      rrCalls.push({ ctx, headers: req.headers });
      send(answerRequestResponse(ctx));
    } else if (req.url === '/event') {
      const call = { ctx, headers: req.headers, answered: false };
      call.release = (answer) => {
        if (!call.answered) {
          call.answered = true;
          send(answer);
        }
      };
      eventCalls.push(call);
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise((resolve, reject) => {
    hookServer.on('error', reject);
    hookServer.listen(0, '127.0.0.1', resolve);
  });
  hookUrl = `http://127.0.0.1:${hookServer.address().port}`;
}

// ---------------------------------------------------------------------------
// Herald with the handler namespaces
// ---------------------------------------------------------------------------
let herald;
let dataDir;

before(async () => {
  await startHookServer();
  dataDir = mkdtempSync(path.join(os.tmpdir(), 'herald-amplify-handlers-'));
  // Reuse the harness Herald's development CA, which NODE_EXTRA_CA_CERTS already trusts.
  cpSync(process.env.HERALD_TEST_DEV_TLS_DIR, path.join(dataDir, 'dev-tls'), { recursive: true });
  const configPath = path.join(dataDir, 'herald.toml');
  writeFileSync(
    configPath,
    `# Written by tests/amplify/test/handlers.test.mjs
[[namespaces]]
name = "js"
[namespaces.handlers]
code = '''${JS_HANDLER}'''

[[namespaces]]
name = "hook"
[namespaces.handlers]
on_publish = { http = "${hookUrl}/rr", invoke_type = "REQUEST_RESPONSE" }
on_subscribe = { http = "${hookUrl}/rr" }

[[namespaces]]
name = "hookevent"
[namespaces.handlers]
on_publish = { http = "${hookUrl}/event", invoke_type = "EVENT", timeout_ms = 30000 }
`,
  );
  herald = new HeraldProcess({ bin: process.env.HERALD_TEST_BIN, port: await freePort(), apiKey: API_KEY, dataDir, configPath });
  process.on('exit', () => herald.killSync());
  await herald.start();
  Amplify.configure(amplifyConfig(`http://127.0.0.1:${herald.port}/event`));
});

after(async () => {
  await events.closeAll().catch(() => {});
  for (const call of eventCalls.items) call.release(null);
  await herald?.stop();
  hookServer?.close();
  hookServer?.closeAllConnections?.();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------
// Frame helpers: amplify-js gives each publish/subscribe a uuid; find it from the
// frame it sent, then the reply with that id.
// ---------------------------------------------------------------------------
async function publishReply(mark, id, what) {
  const out = await waitForFrame((f) => f.dir === 'out' && f.json?.type === 'publish' && f.json.events?.some((e) => e.includes(id)), {
    since: mark,
    what: `the publish frame of ${what}`,
  });
  return waitForFrame((f) => f.dir === 'in' && f.json?.id === out.json.id && /^publish_/.test(f.json.type), {
    since: mark,
    what: `the reply to ${what}`,
  });
}

async function subscribeReply(mark, channel, what) {
  const out = await waitForFrame((f) => f.dir === 'out' && f.json?.type === 'subscribe' && f.json.channel === channel, {
    since: mark,
    what: `the subscribe frame of ${what}`,
  });
  return waitForFrame((f) => f.dir === 'in' && f.json?.id === out.json.id && /^subscribe_/.test(f.json.type), {
    since: mark,
    what: `the reply to ${what}`,
  });
}

/** Events of this test (by nonce) the subscriber got, in order. */
const mine = (inbox, id) => inbox.items.filter((e) => e?.nonce === id);

// ---------------------------------------------------------------------------
// JavaScript handler
// ---------------------------------------------------------------------------
test('JavaScript onPublish: the subscriber gets transformed events, never dropped or failed ones; events.post returns the failed one', TEST, async () => {
  const id = nonce();
  const seg = uniqueSegment('js');
  const ch = await withTimeout(events.connect(`/js/${seg}/*`), T, 'events.connect');
  const s = subscribeInbox(ch, `/js/${seg}/* subscriber`);
  await withTimeout(s.sub.ready, T, 'subscription ready');
  const handled = (channel) => ({ channel, namespace: 'js', operation: 'PUBLISH', identity: null });

  // HTTP: keep, drop, fail, keep.
  const failed = await withTimeout(
    events.post(`/js/${seg}/a`, [
      { nonce: id, n: 1, text: 'kept' },
      { nonce: id, n: 2, drop: true },
      { nonce: id, n: 3, fail: true },
      { nonce: id, n: 4, list: [1, null, 'x'] },
    ]),
    T,
    'events.post of 4 events',
  );
  assert.ok(Array.isArray(failed) && failed.length === 1, `events.post returns exactly the failed event: ${JSON.stringify(failed)}`);
  assert.equal(failed[0].index, 2);
  assert.equal(failed[0].code, 'EventHandlerError');
  assert.equal(failed[0].message, 'refused event 3');
  assert.equal(typeof failed[0].identifier, 'string');

  const got1 = await s.events.waitFor((e) => e?.nonce === id && e.n === 1, { timeoutMs: T, what: 'event 1' });
  assert.deepEqual(got1, { nonce: id, n: 1, text: 'kept', handled: handled(`/js/${seg}/a`) });
  const got4 = await s.events.waitFor((e) => e?.nonce === id && e.n === 4, { timeoutMs: T, what: 'event 4' });
  assert.deepEqual(got4, { nonce: id, n: 4, list: [1, null, 'x'], handled: handled(`/js/${seg}/a`) });

  // Socket: drop, fail, keep. publish resolves; the reply lists the failed event.
  const pub = await withTimeout(events.connect(`/js/${seg}/b`), T, 'publisher connect');
  const mark = frameMark();
  const result = await withTimeout(
    pub.publish([
      { nonce: id, n: 5, drop: true },
      { nonce: id, n: 6, fail: true },
      { nonce: id, n: 7 },
    ]),
    T,
    'channel.publish of 3 events',
  );
  assert.equal(result, undefined, 'channel.publish resolves (publish_success)');
  const reply = await publishReply(mark, id, 'the socket publish');
  assert.equal(reply.json.type, 'publish_success');
  assert.deepEqual(
    reply.json.failed.map((f) => [f.index, f.code, f.message]),
    [[1, 'EventHandlerError', 'refused event 6']],
    `failed list of ${reply.data}`,
  );
  assert.deepEqual(reply.json.successful.map((f) => f.index).sort(), [0, 2], `dropped and delivered are successful: ${reply.data}`);
  const got7 = await s.events.waitFor((e) => e?.nonce === id && e.n === 7, { timeoutMs: T, what: 'event 7' });
  assert.deepEqual(got7, { nonce: id, n: 7, handled: handled(`/js/${seg}/b`) });

  // A later marker: once it is in, nothing dropped or failed can still be on its way.
  await withTimeout(events.post(`/js/${seg}/c`, { nonce: id, n: 8, marker: true }), T, 'marker post');
  await s.events.waitFor((e) => e?.nonce === id && e.n === 8, { timeoutMs: T, what: 'the marker' });
  assert.deepEqual(mine(s.events, id).map((e) => e.n), [1, 4, 7, 8], 'dropped (2, 5) and failed (3, 6) events never arrive');
  assert.deepEqual(s.errors.items, []);
  await pub.close();
  await ch.close();
});

test('JavaScript onPublish: util.error rejects events.post (403) and channel.publish with the handler errorType and message', TEST, async () => {
  const id = nonce();
  const seg = uniqueSegment('jsmod');
  const ch = await withTimeout(events.connect(`/js/${seg}`), T, 'events.connect');
  const s = subscribeInbox(ch, `/js/${seg} subscriber`);
  await withTimeout(s.sub.ready, T, 'subscription ready');

  // The whole request is refused, including the harmless event beside the marked one.
  await assert.rejects(
    withTimeout(events.post(`/js/${seg}`, [{ nonce: id, n: 1 }, { nonce: id, n: 2, moderate: 'no shouting' }]), T, 'moderated post settles'),
    (err) => {
      const e = assertPostError(err, { status: 403, errorType: 'ModerationError' });
      assert.equal(e.message, 'moderated: no shouting');
      return true;
    },
  );

  const mark = frameMark();
  await assert.rejects(
    withTimeout(ch.publish([{ nonce: id, n: 3 }, { nonce: id, n: 4, moderate: 'no spam' }]), T, 'moderated publish settles'),
    /Publish errors: ModerationError/,
  );
  const reply = await publishReply(mark, id, 'the moderated socket publish');
  assert.equal(reply.json.type, 'publish_error');
  assert.equal(reply.json.errors?.[0]?.errorType, 'ModerationError', reply.data);
  assert.equal(reply.json.errors?.[0]?.message, 'moderated: no spam', reply.data);

  // Nothing of either refused publish was delivered; the socket still works.
  await withTimeout(ch.publish({ nonce: id, n: 5, marker: true }), T, 'marker publish');
  await s.events.waitFor((e) => e?.nonce === id && e.n === 5, { timeoutMs: T, what: 'the marker' });
  assert.deepEqual(mine(s.events, id).map((e) => e.n), [5], 'no event of a refused publish is delivered');
  await ch.close();
});

test('JavaScript onSubscribe: util.unauthorized and util.error surface as subscription errors; other subscriptions live on', TEST, async () => {
  const id = nonce();
  const seg = uniqueSegment('jssub');
  const open = await withTimeout(events.connect(`/js/${seg}`), T, 'events.connect');
  const ok = subscribeInbox(open, 'allowed subscriber');
  await withTimeout(ok.sub.ready, T, 'allowed subscription ready');

  // util.unauthorized() (ctx.identity is null with an API key) → Unauthorized.
  const membersChannel = `/js/members/${seg}/*`;
  const members = await withTimeout(events.connect(membersChannel), T, 'connect members');
  let mark = frameMark();
  const denied = subscribeInbox(members, 'members subscriber');
  await assert.rejects(withTimeout(denied.sub.ready, T, 'denied subscription settles'), /Unauthorized/);
  const deniedErr = await denied.errors.waitFor(() => true, { timeoutMs: T, what: 'observer.error' });
  assert.match(JSON.stringify(deniedErr), /Unauthorized/);
  let reply = await subscribeReply(mark, membersChannel, 'the members subscribe');
  assert.equal(reply.json.type, 'subscribe_error');
  assert.equal(reply.json.errors?.[0]?.errorType, 'Unauthorized', reply.data);

  // util.error(message, type) in onSubscribe → that type and message.
  const closedChannel = `/js/closed/${seg}`;
  const closed = await withTimeout(events.connect(closedChannel), T, 'connect closed');
  mark = frameMark();
  const refused = subscribeInbox(closed, 'closed-room subscriber');
  await assert.rejects(withTimeout(refused.sub.ready, T, 'refused subscription settles'), (err) => {
    assert.match(String(err?.message ?? err), /RoomClosed: room \/js\/closed\/.* is closed/);
    return true;
  });
  reply = await subscribeReply(mark, closedChannel, 'the closed-room subscribe');
  assert.equal(reply.json.type, 'subscribe_error');
  assert.equal(reply.json.errors?.[0]?.errorType, 'RoomClosed', reply.data);
  assert.equal(reply.json.errors?.[0]?.message, `room ${closedChannel} is closed`, reply.data);

  // Publishing to the refused channels is still allowed (onSubscribe only guards subscribe),
  // and nothing reaches the refused subscriptions; the allowed one on the same socket still delivers.
  await withTimeout(events.post(`/js/members/${seg}/x`, { nonce: id, n: 1 }), T, 'post to members');
  await withTimeout(events.post(closedChannel, { nonce: id, n: 2 }), T, 'post to closed');
  await withTimeout(events.post(`/js/${seg}`, { nonce: id, n: 3 }), T, 'post to the open channel');
  await ok.events.waitFor((e) => e?.nonce === id && e.n === 3, { timeoutMs: T, what: 'event on the allowed subscription' });
  assert.deepEqual(denied.events.items, []);
  assert.deepEqual(refused.events.items, []);
  await members.close();
  await closed.close();
  await open.close();
});

// ---------------------------------------------------------------------------
// HTTP handler, REQUEST_RESPONSE
// ---------------------------------------------------------------------------
test('HTTP handler (REQUEST_RESPONSE): transformed events delivered, dropped ones not, failed ones returned by events.post', TEST, async () => {
  const id = nonce();
  const seg = uniqueSegment('hook');
  const ch = await withTimeout(events.connect(`/hook/${seg}/*`), T, 'events.connect');
  const s = subscribeInbox(ch, `/hook/${seg}/* subscriber`);
  await withTimeout(s.sub.ready, T, 'subscription ready (the hook allowed it)');
  const subCall = await rrCalls.waitFor((c) => c.ctx.info.operation === 'SUBSCRIBE' && c.ctx.info.channel.path === `/hook/${seg}/*`, {
    timeoutMs: T,
    what: 'the onSubscribe call',
  });
  assert.equal(subCall.ctx.events, null);
  assert.equal(subCall.ctx.identity, null);

  const failed = await withTimeout(
    events.post(`/hook/${seg}/a`, [
      { nonce: id, n: 1, text: 'hello' },
      { nonce: id, n: 2, text: 'buy spam now' },
      { nonce: id, n: 3, text: 'gone', drop: true },
    ]),
    T,
    'events.post of 3 events',
  );
  assert.ok(Array.isArray(failed) && failed.length === 1, `events.post returns the failed event: ${JSON.stringify(failed)}`);
  assert.deepEqual([failed[0].index, failed[0].code, failed[0].message], [1, 'EventHandlerError', 'spam is not allowed']);

  // The handler got AppSync's context for the publish.
  const call = await rrCalls.waitFor((c) => c.ctx.info.operation === 'PUBLISH' && c.ctx.events?.some((e) => e.payload?.nonce === id), {
    timeoutMs: T,
    what: 'the onPublish call',
  });
  assert.equal(call.headers['content-type'], 'application/json');
  assert.equal(call.ctx.identity, null);
  assert.deepEqual(call.ctx.info.channel, { path: `/hook/${seg}/a`, segments: ['hook', seg, 'a'] });
  assert.deepEqual(call.ctx.info.channelNamespace, { name: 'hook' });
  assert.deepEqual(call.ctx.events.map((e) => e.payload.n), [1, 2, 3]);
  assert.ok(call.ctx.events.every((e) => typeof e.id === 'string' && e.id.length > 0), 'each event has an id');
  assert.ok(!('x-api-key' in (call.ctx.request?.headers ?? {})), `the API key is not passed to handlers: ${JSON.stringify(call.ctx.request)}`);

  const got1 = await s.events.waitFor((e) => e?.nonce === id && e.n === 1, { timeoutMs: T, what: 'event 1' });
  assert.deepEqual(got1, { nonce: id, n: 1, text: 'HELLO', checked: true });

  // Over the socket too.
  const pub = await withTimeout(events.connect(`/hook/${seg}/b`), T, 'publisher connect');
  await withTimeout(pub.publish([{ nonce: id, n: 4, text: 'gone', drop: true }, { nonce: id, n: 5, text: 'socket' }]), T, 'channel.publish');
  const got5 = await s.events.waitFor((e) => e?.nonce === id && e.n === 5, { timeoutMs: T, what: 'event 5' });
  assert.deepEqual(got5, { nonce: id, n: 5, text: 'SOCKET', checked: true });

  await withTimeout(events.post(`/hook/${seg}/c`, { nonce: id, n: 6, text: 'marker' }), T, 'marker post');
  await s.events.waitFor((e) => e?.nonce === id && e.n === 6, { timeoutMs: T, what: 'the marker' });
  assert.deepEqual(mine(s.events, id).map((e) => e.n), [1, 5, 6], 'dropped (3, 4) and failed (2) events never arrive');
  await pub.close();
  await ch.close();
});

test('HTTP handler (REQUEST_RESPONSE): {"error"} refuses a publish (403 / publish_error) and a subscription (subscribe_error)', TEST, async () => {
  const id = nonce();
  const seg = uniqueSegment('hookerr');
  const ch = await withTimeout(events.connect(`/hook/${seg}`), T, 'events.connect');
  const s = subscribeInbox(ch, `/hook/${seg} subscriber`);
  await withTimeout(s.sub.ready, T, 'subscription ready');

  await assert.rejects(
    withTimeout(events.post(`/hook/${seg}`, [{ nonce: id, n: 1 }, { nonce: id, n: 2, reject: 'not today' }]), T, 'refused post settles'),
    (err) => {
      const e = assertPostError(err, { status: 403, errorType: 'HandlerError' });
      assert.equal(e.message, 'hook rejects: not today');
      return true;
    },
  );
  let mark = frameMark();
  await assert.rejects(withTimeout(ch.publish({ nonce: id, n: 3, reject: 'nor now' }), T, 'refused publish settles'), /Publish errors: HandlerError/);
  const pubReply = await publishReply(mark, id, 'the refused socket publish');
  assert.equal(pubReply.json.type, 'publish_error');
  assert.equal(pubReply.json.errors?.[0]?.message, 'hook rejects: nor now', pubReply.data);

  const closedChannel = `/hook/closed/${seg}`;
  const closed = await withTimeout(events.connect(closedChannel), T, 'connect closed');
  mark = frameMark();
  const refused = subscribeInbox(closed, 'refused subscriber');
  await assert.rejects(withTimeout(refused.sub.ready, T, 'refused subscription settles'), /hook refuses \/hook\/closed\//);
  const subReply = await subscribeReply(mark, closedChannel, 'the refused subscribe');
  assert.equal(subReply.json.type, 'subscribe_error');
  assert.equal(subReply.json.errors?.[0]?.errorType, 'HandlerError', subReply.data);
  assert.equal(subReply.json.errors?.[0]?.message, `hook refuses ${closedChannel}`, subReply.data);

  await withTimeout(ch.publish({ nonce: id, n: 4, text: 'marker' }), T, 'marker publish');
  const marker = await s.events.waitFor((e) => e?.nonce === id && e.n === 4, { timeoutMs: T, what: 'the marker' });
  assert.deepEqual(marker, { nonce: id, n: 4, text: 'MARKER', checked: true });
  assert.deepEqual(mine(s.events, id).map((e) => e.n), [4], 'nothing of a refused publish is delivered');
  await closed.close();
  await ch.close();
});

// ---------------------------------------------------------------------------
// HTTP handler, EVENT (fire and forget)
// ---------------------------------------------------------------------------
test('HTTP handler (EVENT): events are delivered unchanged without waiting for the handler, which receives the context', TEST, async () => {
  const id = nonce();
  const seg = uniqueSegment('hookev');
  const ch = await withTimeout(events.connect(`/hookevent/${seg}/*`), T, 'events.connect');
  const s = subscribeInbox(ch, `/hookevent/${seg}/* subscriber`);
  await withTimeout(s.sub.ready, T, 'subscription ready');

  // The handler server does not answer until released below: events.post resolving and
  // the delivery both happen while Herald's call to the handler is still open.
  const httpEvents = [{ nonce: id, n: 1, text: 'as is', drop: true }, { nonce: id, n: 2, text: 'buy spam' }];
  const failed = await withTimeout(events.post(`/hookevent/${seg}/a`, httpEvents), 5000, 'events.post does not wait for the EVENT handler');
  assert.equal(failed, undefined, 'no failed events');
  for (const ev of httpEvents) {
    assert.deepEqual(await s.events.waitFor((e) => e?.nonce === id && e.n === ev.n, { timeoutMs: T, what: `event ${ev.n}` }), ev, 'unchanged');
  }
  const call = await eventCalls.waitFor((c) => c.ctx.events?.some((e) => e.payload?.nonce === id && e.payload.n === 1), {
    timeoutMs: T,
    what: 'the EVENT call for the post',
  });
  assert.equal(call.answered, false, 'Herald did not wait for the answer');
  assert.equal(call.ctx.identity, null);
  assert.equal(call.ctx.info.operation, 'PUBLISH');
  assert.deepEqual(call.ctx.info.channel, { path: `/hookevent/${seg}/a`, segments: ['hookevent', seg, 'a'] });
  assert.deepEqual(call.ctx.info.channelNamespace, { name: 'hookevent' });
  assert.deepEqual(call.ctx.events.map((e) => e.payload), httpEvents);
  // An answer that would transform or fail events has no effect in EVENT mode.
  call.release({ events: call.ctx.events.map((e) => ({ id: e.id, error: 'ignored' })) });

  const pub = await withTimeout(events.connect(`/hookevent/${seg}/b`), T, 'publisher connect');
  const socketEvent = { nonce: id, n: 3, text: 'via socket', list: [1, 2] };
  await withTimeout(pub.publish(socketEvent), 5000, 'channel.publish does not wait for the EVENT handler');
  assert.deepEqual(await s.events.waitFor((e) => e?.nonce === id && e.n === 3, { timeoutMs: T, what: 'event 3' }), socketEvent);
  const call2 = await eventCalls.waitFor((c) => c.ctx.events?.some((e) => e.payload?.nonce === id && e.payload.n === 3), {
    timeoutMs: T,
    what: 'the EVENT call for the socket publish',
  });
  assert.equal(call2.answered, false, 'Herald did not wait for the answer');
  assert.deepEqual(call2.ctx.info.channel.path, `/hookevent/${seg}/b`);
  assert.deepEqual(call2.ctx.events.map((e) => e.payload), [socketEvent]);
  call2.release({ events: call2.ctx.events.map((e) => ({ id: e.id, payload: { hijacked: true } })) });

  await withTimeout(events.post(`/hookevent/${seg}/c`, { nonce: id, n: 4 }), 5000, 'marker post');
  await s.events.waitFor((e) => e?.nonce === id && e.n === 4, { timeoutMs: T, what: 'the marker' });
  assert.deepEqual(mine(s.events, id).map((e) => e.n), [1, 2, 3, 4], 'each event once, unchanged, nothing extra');
  assert.deepEqual(s.events.items.filter((e) => e?.hijacked), []);
  for (const c of eventCalls.items) c.release(null);
  await pub.close();
  await ch.close();
});
