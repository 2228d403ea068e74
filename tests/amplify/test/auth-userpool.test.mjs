// AMAZON_COGNITO_USER_POOLS with the Amplify client: `defaultAuthMode: 'userPool'`
// and a token provider handing out a Cognito-style access token (client id in
// `client_id`, `token_use: access`), over the https endpoint. Herald's Cognito
// provider points its `issuer` at the loopback IdP instead of cognito-idp.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { eventsConfig, roundTrip, startAuthWorld, tokenProviderOptions } from './auth-world.mjs';
import { assertPostError, subscribeInbox, uniqueSegment, withTimeout } from './helpers.mjs';
import { Amplify } from 'aws-amplify';
import { events } from 'aws-amplify/data';

const T = 10_000;
let world;
let token;

before(async () => {
  world = await startAuthWorld();
  token = world.cognitoToken('amplify-carol');
  Amplify.configure(eventsConfig(world.httpsEndpoint, 'userPool'), tokenProviderOptions(() => token));
});

after(async () => {
  await events.closeAll().catch(() => {});
  await world?.stop();
});

test('userPool: connect, subscribe, channel.publish and events.post with the token provider', { timeout: 30_000 }, async () => {
  const r = await roundTrip({ events, label: 'userpool' });
  assert.deepEqual(r.got, r.socketEvent);
  assert.deepEqual(r.gotHttp, r.httpEvent);
  assert.deepEqual(r.errors, []);
});

test('userPool: a token for another app client, and an OIDC token, are refused', { timeout: 30_000 }, async () => {
  const ch = await withTimeout(events.connect(`/default/${uniqueSegment('userpool-bad')}`), T, 'connect');
  const otherClient = world.cognitoToken('amplify-carol', { client_id: 'someotherapp' });
  const refreshToken = world.cognitoToken('amplify-carol', { token_use: 'refresh' });
  for (const bad of [otherClient, refreshToken]) {
    const s = subscribeInbox(ch, 'refused subscriber', { authToken: bad });
    await assert.rejects(withTimeout(s.sub.ready, T, 'refused subscribe settles'), /Unauthorized/);
    await assert.rejects(withTimeout(events.post('/default/x', { x: 1 }, { authToken: bad }), T, 'refused post settles'), (err) => {
      assertPostError(err, { status: 401, errorType: 'UnauthorizedException' });
      return true;
    });
  }
  // On the split namespace, which takes OIDC and Lambda for subscribe, a Cognito token is refused.
  const split = await withTimeout(events.connect(`/split/${uniqueSegment('userpool')}`), T, 'connect split');
  const s = subscribeInbox(split, 'split subscriber');
  await assert.rejects(withTimeout(s.sub.ready, T, 'userPool subscribe on split settles'), /Unauthorized/);
  await split.close();
  await ch.close();
});
