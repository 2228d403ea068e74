// One amplify-js socket, a different authorization mode per operation: the socket
// connects with the API key, then each subscription and publish names its own
// `authMode` (and token), as AppSync allows (spec §4).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { IAM_ALL, eventsConfig, startAuthWorld } from './auth-world.mjs';
import { API_KEY, frameMark, framesSince, nonce, subscribeInbox, uniqueSegment, withTimeout } from './helpers.mjs';
import { Amplify } from 'aws-amplify';
import { events } from 'aws-amplify/data';

const T = 10_000;
let world;

before(async () => {
  world = await startAuthWorld();
  const oidc = world.oidcToken('amplify-mixed');
  Amplify.configure(eventsConfig(world.httpEndpoint, 'apiKey', { apiKey: API_KEY }), {
    Auth: {
      tokenProvider: { getTokens: async () => ({ accessToken: { payload: {}, toString: () => oidc } }) },
      credentialsProvider: {
        getCredentialsAndIdentityId: async () => ({ credentials: { ...IAM_ALL } }),
        clearCredentialsAndIdentityId: () => {},
      },
    },
  });
});

after(async () => {
  await events.closeAll().catch(() => {});
  await world?.stop();
});

test('one socket: subscriptions with oidc, userPool, lambda and iam, publishes with iam and lambda', { timeout: 30_000 }, async () => {
  const mark = frameMark();
  const seg = uniqueSegment('mixed');
  const ch = await withTimeout(events.connect(`/default/${seg}/*`), T, 'connect with the API key');
  const modes = {
    oidc: { authMode: 'oidc' },
    userPool: { authMode: 'userPool', authToken: world.cognitoToken('amplify-mixed') },
    lambda: { authMode: 'lambda', authToken: 'allow-amplify-mixed' },
    iam: { authMode: 'iam' },
  };
  const subs = Object.entries(modes).map(([mode, options]) => ({ mode, ...subscribeInbox(ch, `${mode} subscriber`, options) }));
  await withTimeout(Promise.all(subs.map((s) => s.sub.ready)), T, 'every subscription ready');
  // Each subscribe frame carried its own credential: no API key among them.
  const subscribes = framesSince(mark).filter((f) => f.dir === 'out' && f.json?.type === 'subscribe');
  assert.equal(subscribes.length, 4);
  assert.ok(subscribes.every((f) => !('x-api-key' in f.json.authorization)), 'no subscribe used the API key');
  assert.equal(framesSince(mark).filter((f) => f.dir === 'open').length, 1, 'all on one socket');

  const id = nonce();
  const pub = await withTimeout(events.connect(`/default/${seg}/pub`), T, 'publisher channel');
  await withTimeout(pub.publish({ nonce: id, by: 'iam' }, { authMode: 'iam' }), T, 'IAM publish on the API-key socket');
  await withTimeout(
    pub.publish({ nonce: id, by: 'lambda' }, { authMode: 'lambda', authToken: 'allow-amplify-mixed' }),
    T,
    'Lambda publish on the API-key socket',
  );
  await withTimeout(events.post(`/default/${seg}/x`, { nonce: id, by: 'apiKey' }), T, 'events.post with the API key');
  for (const s of subs) {
    for (const by of ['iam', 'lambda', 'apiKey']) {
      await s.events.waitFor((e) => e?.nonce === id && e.by === by, { timeoutMs: T, what: `${s.mode} subscriber gets the ${by} event` });
    }
    assert.deepEqual(s.errors.items, []);
  }
  await pub.close();
  await ch.close();
});
