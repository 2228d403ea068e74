// AWS_LAMBDA with the Amplify client: `authMode: 'lambda'` with an `authToken`
// on events.connect and events.post. Herald asks the loopback authorizer webhook
// once per operation, with AppSync's request shape.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { eventsConfig, roundTrip, startAuthWorld } from './auth-world.mjs';
import { assertPostError, frameMark, framesSince, subscribeInbox, uniqueSegment, waitForFrame, withTimeout } from './helpers.mjs';
import { Amplify } from 'aws-amplify';
import { events } from 'aws-amplify/data';

const T = 10_000;
let world;

before(async () => {
  world = await startAuthWorld();
  Amplify.configure(eventsConfig(world.httpEndpoint, 'lambda'));
});

after(async () => {
  await events.closeAll().catch(() => {});
  await world?.stop();
});

test('lambda: connect, subscribe, channel.publish and events.post with authToken', { timeout: 30_000 }, async () => {
  const authToken = 'allow-amplify-dan';
  const r = await roundTrip({
    events,
    label: 'lambda',
    connectOptions: { authMode: 'lambda', authToken },
    postOptions: { authMode: 'lambda', authToken },
  });
  assert.deepEqual(r.got, r.socketEvent);
  assert.deepEqual(r.gotHttp, r.httpEvent);
  assert.deepEqual(r.errors, []);
  const mine = world.hookCalls.filter((c) => c.authorizationToken === authToken);
  const ops = mine.map((c) => c.requestContext.operation);
  assert.ok(ops.includes('EVENT_CONNECT'), `operations asked: ${ops}`);
  assert.ok(ops.includes('EVENT_SUBSCRIBE'), `operations asked: ${ops}`);
  assert.equal(ops.filter((o) => o === 'EVENT_PUBLISH').length, 2, `socket and HTTP publish: ${ops}`);
  const sub = mine.find((c) => c.requestContext.operation === 'EVENT_SUBSCRIBE');
  assert.equal(sub.requestContext.channelNamespaceName, 'default');
  assert.match(sub.requestContext.channel, /^\/default\/lambda-.*\/\*$/);
});

test('lambda: the authorizer refusing publish or everything surfaces as Unauthorized', { timeout: 30_000 }, async () => {
  const seg = uniqueSegment('lambda-ro');
  const ro = { authMode: 'lambda', authToken: 'readonly-amplify-erin' };
  const ch = await withTimeout(events.connect(`/default/${seg}`, ro), T, 'connect read-only');
  const s = subscribeInbox(ch, 'read-only subscriber');
  await withTimeout(s.sub.ready, T, 'read-only token may subscribe');
  await assert.rejects(withTimeout(ch.publish({ x: 1 }), T, 'read-only publish settles'), /Unauthorized/);
  await assert.rejects(withTimeout(events.post(`/default/${seg}`, { x: 1 }, ro), T, 'read-only post settles'), (err) => {
    assertPostError(err, { status: 401, errorType: 'UnauthorizedException' });
    return true;
  });
  const deny = { authMode: 'lambda', authToken: 'deny-amplify-erin' };
  const denied = subscribeInbox(ch, 'denied subscriber', deny);
  await assert.rejects(withTimeout(denied.sub.ready, T, 'denied subscribe settles'), /Unauthorized/);
  await ch.close();
});

test('lambda: a connection the authorizer denies rejects events.connect, without retrying', { timeout: 30_000 }, async () => {
  await events.closeAll();
  const mark = frameMark();
  await assert.rejects(
    withTimeout(events.connect('/default/denied', { authMode: 'lambda', authToken: 'deny-amplify-frank' }), 20_000, 'denied connect settles'),
    /UnauthorizedException/,
  );
  const refusal = await waitForFrame((f) => f.dir === 'in' && f.json?.type === 'connection_error', { since: mark });
  assert.equal(refusal.json.errors?.[0]?.errorType, 'UnauthorizedException');
  assert.equal(framesSince(mark).filter((f) => f.dir === 'open').length, 1, 'no retry');
  const asked = world.hookCalls.filter((c) => c.authorizationToken === 'deny-amplify-frank');
  assert.deepEqual(asked.map((c) => c.requestContext.operation), ['EVENT_CONNECT']);
});
