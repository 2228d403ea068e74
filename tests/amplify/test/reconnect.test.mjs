// Server restart: Herald's graceful shutdown closes the socket with 1001 "going
// away" (issue 2 §9); amplify-js then reconnects on its own (after its fixed 5 s
// RECONNECT_DELAY) and re-subscribes with the same subscription id, and events
// flow again on the original subscription without the application doing anything.
// This file runs its own Herald (so restarting it disturbs no other test), with
// a copy of the harness Herald's development CA so NODE_EXTRA_CA_CERTS still applies.
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { HeraldProcess, freePort } from '../herald-process.mjs';
import { API_KEY, amplifyConfig, framesSince, frameMark, nonce, subscribeInbox, waitForFrame, withTimeout } from './helpers.mjs';
import { Amplify } from 'aws-amplify';
import { Hub } from 'aws-amplify/utils';
import { events } from 'aws-amplify/data';

const states = [];
let stopHub;
let herald;
let dataDir;

before(async () => {
  dataDir = mkdtempSync(path.join(os.tmpdir(), 'herald-amplify-restart-'));
  cpSync(process.env.HERALD_TEST_DEV_TLS_DIR, path.join(dataDir, 'dev-tls'), { recursive: true });
  herald = new HeraldProcess({ bin: process.env.HERALD_TEST_BIN, port: await freePort(), apiKey: API_KEY, dataDir });
  process.on('exit', () => herald.killSync());
  await herald.start();
  assert.equal(readFileSync(herald.caPath(), 'utf8'), readFileSync(process.env.NODE_EXTRA_CA_CERTS, 'utf8'), 'Herald reuses the CA in its data dir');
  Amplify.configure(amplifyConfig(`http://127.0.0.1:${herald.port}/event`));
  stopHub = Hub.listen('api', ({ payload }) => {
    if (payload.event === 'ConnectionStateChange') states.push(payload.data.connectionState);
  });
});

after(async () => {
  stopHub?.();
  await events.closeAll().catch(() => {});
  await herald?.stop();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

test('after a Herald restart amplify-js reconnects, re-subscribes and receives again', { timeout: 60_000 }, async (t) => {
  const id = nonce();
  const ch = await withTimeout(events.connect('/default/*'), 10_000, 'connect');
  const s = subscribeInbox(ch, 'subscriber across restart');
  const { subscriptionId } = await withTimeout(s.sub.ready, 10_000, 'subscription ready');
  await events.post('/default/before', { nonce: id, phase: 'before' });
  await s.events.waitFor((e) => e?.nonce === id && e.phase === 'before', { what: 'event before the restart' });

  const mark = frameMark();
  const t0 = Date.now();
  const stopped = herald.stop(10_000);
  const closed = await waitForFrame((f) => f.dir === 'close', { since: mark, what: 'the socket to close on shutdown' });
  assert.match(closed.data, /^code=1001\b/, `graceful shutdown closes with 1001 going away (${closed.data})`);
  const exit = await stopped;
  assert.deepEqual(exit, { code: 0, signal: null }, 'Herald exits by itself on SIGTERM');

  t.diagnostic(`socket closed after ${closed.at - t0} ms, Herald exited after ${Date.now() - t0} ms`);
  await herald.start(); // same port, same data dir
  t.diagnostic(`Herald ready again after ${Date.now() - t0} ms`);
  const resub = await waitForFrame(
    (f) => f.dir === 'in' && f.json?.id === subscriptionId && /^subscribe_/.test(f.json?.type),
    { since: mark, timeoutMs: 40_000, what: 'amplify-js to reconnect and re-subscribe' },
  );
  assert.equal(resub.json.type, 'subscribe_success');
  t.diagnostic(`re-subscribed after ${resub.at - t0} ms`);
  assert.equal(framesSince(mark).filter((f) => f.dir === 'open').length >= 1, true);

  await events.post('/default/after', { nonce: id, phase: 'after' });
  const got = await s.events.waitFor((e) => e?.nonce === id && e.phase === 'after', { what: 'event after the restart' });
  assert.deepEqual(got, { nonce: id, phase: 'after' });
  assert.deepEqual(s.errors.items, [], 'the observer saw no error');
  assert.ok(states.includes('ConnectionDisrupted'), `connection states: ${states.join(' → ')}`);
  assert.equal(states.at(-1), 'Connected', `connection states: ${states.join(' → ')}`);
  await ch.close();
});
