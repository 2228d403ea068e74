// After a Herald restart, amplify-js reconnects and re-subscribes by itself; with
// IAM it signs the connect and every re-subscribe afresh, and Herald verifies
// them again. A subscription made with a Lambda token on the same socket is
// re-authorized too (the webhook is asked again after the restart).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { IAM_ALL, eventsConfig, staticCredentialsOptions, startAuthWorld } from './auth-world.mjs';
import { frameMark, nonce, subscribeInbox, uniqueSegment, waitForFrame, withTimeout } from './helpers.mjs';
import { Amplify } from 'aws-amplify';
import { events } from 'aws-amplify/data';

const T = 10_000;
let world;

before(async () => {
  world = await startAuthWorld();
  Amplify.configure(eventsConfig(world.httpEndpoint, 'iam'), staticCredentialsOptions(() => IAM_ALL));
});

after(async () => {
  await events.closeAll().catch(() => {});
  await world?.stop();
});

test('iam and lambda subscriptions survive a Herald restart', { timeout: 60_000 }, async () => {
  const id = nonce();
  const seg = uniqueSegment('auth-restart');
  const ch = await withTimeout(events.connect(`/default/${seg}`), T, 'connect with IAM');
  const iam = subscribeInbox(ch, 'IAM subscriber');
  const lambda = subscribeInbox(ch, 'Lambda subscriber', { authMode: 'lambda', authToken: 'allow-amplify-restart' });
  const [{ subscriptionId: iamId }, { subscriptionId: lambdaId }] = await withTimeout(
    Promise.all([iam.sub.ready, lambda.sub.ready]),
    T,
    'both subscriptions ready',
  );

  const mark = frameMark();
  const lambdaCallsBefore = world.hookCalls.filter((c) => c.authorizationToken === 'allow-amplify-restart').length;
  await world.herald.stop(10_000);
  await world.herald.start(); // same port, same config
  for (const sid of [iamId, lambdaId]) {
    const resub = await waitForFrame((f) => f.dir === 'in' && f.json?.id === sid && /^subscribe_/.test(f.json?.type), {
      since: mark,
      timeoutMs: 40_000,
      what: `re-subscribe of ${sid}`,
    });
    assert.equal(resub.json.type, 'subscribe_success', JSON.stringify(resub.json));
  }
  const lambdaCallsAfter = world.hookCalls.filter((c) => c.authorizationToken === 'allow-amplify-restart').length;
  assert.ok(lambdaCallsAfter > lambdaCallsBefore, 'the webhook was asked again after the restart');

  await withTimeout(events.post(`/default/${seg}`, { nonce: id }), T, 'IAM post after the restart');
  for (const s of [iam, lambda]) {
    assert.deepEqual(await s.events.waitFor((e) => e?.nonce === id, { timeoutMs: T, what: 'event after the restart' }), { nonce: id });
    assert.deepEqual(s.errors.items, []);
  }
  await ch.close();
});
