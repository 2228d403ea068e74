// Keep-alive (spec §2.2): Herald sends `ka` every keepalive_interval_ms and puts
// connection_timeout_ms in connection_ack; amplify-js drops a socket on which
// nothing arrived for connectionTimeoutMs (checked on a fixed 5 s heartbeat).
// The harness runs Herald with a 1 s ka interval and a 3 s connection timeout,
// so an idle socket survives amplify's check only because of Herald's `ka`s.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { HTTP_ENDPOINT, amplifyConfig, frameMark, framesSince, nonce, subscribeInbox, waitForFrame, withTimeout } from './helpers.mjs';
import { Amplify } from 'aws-amplify';
import { Hub } from 'aws-amplify/utils';
import { events } from 'aws-amplify/data';

const KA_MS = Number(process.env.HERALD_TEST_KEEPALIVE_INTERVAL_MS);
const TIMEOUT_MS = Number(process.env.HERALD_TEST_CONNECTION_TIMEOUT_MS);
const AMPLIFY_HEARTBEAT_MS = 5000; // DEFAULT_KEEP_ALIVE_HEARTBEAT_TIMEOUT in amplify-js

const states = [];
let stopHub;

before(() => {
  Amplify.configure(amplifyConfig(HTTP_ENDPOINT));
  stopHub = Hub.listen('api', ({ payload }) => {
    if (payload.event === 'ConnectionStateChange') states.push(payload.data.connectionState);
  });
});

after(async () => {
  stopHub?.();
  await events.closeAll();
});

test('an idle socket outlives connectionTimeoutMs thanks to Herald ka frames', { timeout: 30_000 }, async () => {
  assert.ok(KA_MS > 0 && TIMEOUT_MS > KA_MS, 'harness passes the keep-alive settings');
  const mark = frameMark();
  const ch = await withTimeout(events.connect('/default/*'), 10_000, 'connect');
  const s = subscribeInbox(ch, 'idle subscriber');
  await withTimeout(s.sub.ready, 10_000, 'subscription ready');

  const ack = await waitForFrame((f) => f.dir === 'in' && f.json?.type === 'connection_ack', { since: mark });
  assert.equal(ack.json.connectionTimeoutMs, TIMEOUT_MS, 'connection_ack carries connection_timeout_ms, top level');

  // Stay idle through two of amplify's heartbeat checks, each of which would drop a
  // socket silent for TIMEOUT_MS. Awaiting ka frames paces the wait; count enough
  // of them to cover the two checks.
  const needed = Math.ceil((2 * AMPLIFY_HEARTBEAT_MS + 500) / KA_MS);
  const kaCount = () => framesSince(mark).filter((f) => f.dir === 'in' && f.json?.type === 'ka').length;
  for (let i = 1; i <= needed; i++) {
    await waitForFrame((f) => f.dir === 'in' && f.json?.type === 'ka' && kaCount() >= i, {
      since: mark,
      timeoutMs: KA_MS * 3,
      what: `ka #${i} (expected every ${KA_MS} ms)`,
    });
  }
  const kas = framesSince(mark).filter((f) => f.dir === 'in' && f.json?.type === 'ka');
  assert.deepEqual(kas[0].json, { type: 'ka' });
  const gaps = kas.slice(1).map((f, i) => f.at - kas[i].at);
  assert.ok(Math.max(...gaps) < KA_MS * 2.5, `ka gaps ${gaps.join(', ')} ms`);

  // The socket is the same one and still delivers.
  assert.equal(framesSince(mark).filter((f) => f.dir === 'open').length, 1, 'no reconnect');
  assert.equal(framesSince(mark).filter((f) => f.dir === 'close').length, 0, 'socket not closed');
  assert.ok(!states.includes('ConnectionDisrupted'), `connection states: ${states.join(' → ')}`);
  const id = nonce();
  await events.post('/default/ka', { nonce: id });
  await s.events.waitFor((e) => e?.nonce === id, { timeoutMs: 10_000, what: 'event after idling' });
  await ch.close();
});
