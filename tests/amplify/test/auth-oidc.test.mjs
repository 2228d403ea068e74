// OPENID_CONNECT with the Amplify client: `defaultAuthMode: 'oidc'` and a token
// provider (what an app using any OIDC library plugs in), plus the per-call
// `authToken` override. Herald verifies the JWTs against the loopback IdP's JWKS.
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
  token = world.oidcToken('amplify-alice');
  Amplify.configure(eventsConfig(world.httpEndpoint, 'oidc'), tokenProviderOptions(() => token));
});

after(async () => {
  await events.closeAll().catch(() => {});
  await world?.stop();
});

test('oidc: connect, subscribe, channel.publish and events.post with the token provider', { timeout: 30_000 }, async () => {
  const r = await roundTrip({ events, label: 'oidc' });
  assert.deepEqual(r.got, r.socketEvent);
  assert.deepEqual(r.gotHttp, r.httpEvent);
  assert.equal(r.failed, undefined, 'events.post reports no failed events');
  assert.deepEqual(r.errors, []);
});

test('oidc: a per-call authToken overrides the token provider', { timeout: 30_000 }, async () => {
  const other = world.oidcToken('amplify-bob');
  const r = await roundTrip({
    events,
    label: 'oidc-authToken',
    connectOptions: { authMode: 'oidc', authToken: other },
    postOptions: { authMode: 'oidc', authToken: other },
  });
  assert.deepEqual(r.gotHttp, r.httpEvent);
});

test('oidc: expired, wrong-audience and forged tokens are refused', { timeout: 30_000 }, async () => {
  const ch = await withTimeout(events.connect(`/default/${uniqueSegment('oidc-bad')}`), T, 'connect');
  const now = Math.floor(Date.now() / 1000);
  const expired = world.oidcToken('amplify-eve', { iat: now - 7200, exp: now - 3600 });
  const wrongAudience = world.oidcToken('amplify-eve', { aud: 'another-client' });
  const good = world.oidcToken('amplify-eve');
  const forged = `${good.split('.').slice(0, 2).join('.')}.${Buffer.from('not a signature').toString('base64url')}`;
  for (const bad of [expired, wrongAudience, forged]) {
    const s = subscribeInbox(ch, 'refused subscriber', { authToken: bad });
    await assert.rejects(withTimeout(s.sub.ready, T, 'refused subscribe settles'), /Unauthorized/);
    await assert.rejects(withTimeout(ch.publish({ x: 1 }, { authToken: bad }), T, 'refused publish settles'), /Unauthorized/);
    await assert.rejects(withTimeout(events.post('/default/x', { x: 1 }, { authToken: bad }), T, 'refused post settles'), (err) => {
      assertPostError(err, { status: 401, errorType: 'UnauthorizedException' });
      return true;
    });
  }
  await ch.close();
});

test('oidc: a namespace that takes OIDC for subscribe but only IAM for publish', { timeout: 30_000 }, async () => {
  const seg = uniqueSegment('oidc-split');
  const ch = await withTimeout(events.connect(`/split/${seg}`), T, 'connect');
  const s = subscribeInbox(ch, 'split subscriber');
  await withTimeout(s.sub.ready, T, 'OIDC subscription on split is accepted');
  await assert.rejects(withTimeout(ch.publish({ x: 1 }), T, 'OIDC publish on split settles'), /Unauthorized/);
  await assert.rejects(withTimeout(events.post(`/split/${seg}`, { x: 1 }), T, 'OIDC post on split settles'), (err) => {
    assertPostError(err, { status: 401, errorType: 'UnauthorizedException' });
    return true;
  });
  await ch.close();
});
