// AWS_IAM with the Amplify client and static credentials (a credentials provider
// returning fixed keys, as in tests or server-side apps). amplify-js signs the
// synthetic POST /event of spec §4.2 for socket operations and the real request
// for events.post; Herald checks them against its access-key table. Run against
// both endpoint forms, since the signed host differs (127.0.0.1:PORT, localhost:PORT).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { IAM_ALL, IAM_READER, IAM_SESSION, eventsConfig, roundTrip, staticCredentialsOptions, startAuthWorld } from './auth-world.mjs';
import { assertPostError, subscribeInbox, uniqueSegment, withTimeout } from './helpers.mjs';
import { Amplify } from 'aws-amplify';
import { events } from 'aws-amplify/data';

const T = 10_000;
let world;
let credentials = IAM_ALL;

before(async () => {
  world = await startAuthWorld();
});

after(async () => {
  await events.closeAll().catch(() => {});
  await world?.stop();
});

function configure(endpoint) {
  Amplify.configure(
    eventsConfig(endpoint, 'iam'),
    // Read at every signing, so a test can switch keys without reconfiguring.
    staticCredentialsOptions(() => credentials),
  );
}

for (const form of ['http', 'https']) {
  test(`iam (${form} endpoint): connect, subscribe, channel.publish and events.post with static credentials`, { timeout: 30_000 }, async () => {
    await events.closeAll();
    credentials = IAM_ALL;
    configure(form === 'http' ? world.httpEndpoint : world.httpsEndpoint);
    const r = await roundTrip({ events, label: `iam-${form}` });
    assert.deepEqual(r.got, r.socketEvent);
    assert.deepEqual(r.gotHttp, r.httpEvent);
    assert.deepEqual(r.errors, []);
    // The namespace that takes only IAM for publishing.
    const seg = uniqueSegment(`iam-split-${form}`);
    const ch = await withTimeout(events.connect(`/split/${seg}`), T, 'connect split');
    await withTimeout(ch.publish({ ok: true }), T, 'IAM publish on split resolves');
    assert.equal(await withTimeout(events.post(`/split/${seg}`, { ok: true }), T, 'IAM post on split resolves'), undefined);
    // ...but not for subscribing.
    const s = subscribeInbox(ch, 'IAM subscriber on split');
    await assert.rejects(withTimeout(s.sub.ready, T, 'IAM subscribe on split settles'), /Unauthorized/);
    await ch.close();
  });
}

test('iam: socket publish of events with every kind of JSON escaping verifies', { timeout: 30_000 }, async () => {
  await events.closeAll();
  credentials = IAM_ALL;
  configure(world.httpEndpoint);
  // Herald rebuilds the body amplify-js signed (JSON.stringify of channel and event strings).
  const payloads = [
    { s: '\u0001\u001f\b\f\n\r\t "quoted" \\ back / slash \u007f é \u2028\u2029 😀 </script>' },
    'just a string with \\ and "',
    [1, -0.5, 1e21, null, true, {}],
  ];
  const seg = uniqueSegment('iam-escapes');
  const ch = await withTimeout(events.connect(`/default/${seg}`), T, 'connect');
  const s = subscribeInbox(ch, 'escapes subscriber');
  await withTimeout(s.sub.ready, T, 'subscription ready');
  await withTimeout(ch.publish(payloads), T, 'IAM publish of tricky events resolves');
  for (const p of payloads) {
    const got = await s.events.waitFor((e) => JSON.stringify(e) === JSON.stringify(p), { timeoutMs: T, what: JSON.stringify(p) });
    assert.deepEqual(got, p);
  }
  await ch.close();
});

test('iam: temporary credentials with a session token', { timeout: 30_000 }, async () => {
  await events.closeAll();
  credentials = IAM_SESSION;
  configure(world.httpsEndpoint);
  const r = await roundTrip({ events, label: 'iam-session' });
  assert.deepEqual(r.got, r.socketEvent);
  assert.deepEqual(r.gotHttp, r.httpEvent);
  // Without the token the same key is refused.
  credentials = { accessKeyId: IAM_SESSION.accessKeyId, secretAccessKey: IAM_SESSION.secretAccessKey };
  await assert.rejects(withTimeout(events.post('/default/x', { x: 1 }), T, 'post without the session token settles'), (err) => {
    assertPostError(err, { status: 401, errorType: 'UnauthorizedException' });
    return true;
  });
});

test('iam: a key without EventPublish may subscribe but not publish; a wrong secret is refused', { timeout: 30_000 }, async () => {
  await events.closeAll();
  credentials = IAM_READER;
  configure(world.httpEndpoint);
  const seg = uniqueSegment('iam-reader');
  const ch = await withTimeout(events.connect(`/default/${seg}`), T, 'reader connects');
  const s = subscribeInbox(ch, 'reader subscriber');
  await withTimeout(s.sub.ready, T, 'reader may subscribe');
  await assert.rejects(withTimeout(ch.publish({ x: 1 }), T, 'reader publish settles'), /Unauthorized/);
  await assert.rejects(withTimeout(events.post(`/default/${seg}`, { x: 1 }), T, 'reader post settles'), (err) => {
    assertPostError(err, { status: 401, errorType: 'UnauthorizedException' });
    return true;
  });
  credentials = { accessKeyId: IAM_ALL.accessKeyId, secretAccessKey: 'not-the-secret' };
  const bad = subscribeInbox(ch, 'wrong-secret subscriber');
  await assert.rejects(withTimeout(bad.sub.ready, T, 'wrong-secret subscribe settles'), /Unauthorized/);
  await assert.rejects(withTimeout(events.post(`/default/${seg}`, { x: 1 }), T, 'wrong-secret post settles'), (err) => {
    assertPostError(err, { status: 401, errorType: 'UnauthorizedException' });
    return true;
  });
  await ch.close();
});
