// The AppSync control plane (docs/control-plane.md) feeding the unmodified Amplify client: a
// channel namespace with handler code and an API key are created through the control plane,
// with requests signed by Amplify's own SigV4 signer as an AWS SDK signs them, and Amplify
// connects with the created key, subscribes and publishes through the created handler. Deleting
// the key takes effect on the running server. This file starts its own Herald.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { signRequest } from '@aws-amplify/core/internals/aws-client-utils';
import { Amplify } from 'aws-amplify';
import { events } from 'aws-amplify/data';

import { IAM_ALL, eventsConfig, roundTrip, staticCredentialsOptions } from './auth-world.mjs';
import { startControlHerald } from './control-world.mjs';
import { API_KEY, amplifyConfig, assertPostError, subscribeInbox, uniqueSegment, withTimeout } from './helpers.mjs';

const T = 10_000;
const TEST = { timeout: 40_000 };
const ADMIN = { accessKeyId: 'AKIDAMPLIFYADMIN', secretAccessKey: 'amplify-admin-secret-0123456789' };
const API_ID = 'amplify-api';

let world;
let herald;

before(async () => {
  // An AWS_IAM provider in the file, whose keys an API created with AWS_IAM uses.
  const toml = `[control_plane]
api_id = "${API_ID}"

[[auth.providers]]
auth_type = "AWS_IAM"

[[auth.providers.keys]]
access_key_id = "${IAM_ALL.accessKeyId}"
secret_access_key = "${IAM_ALL.secretAccessKey}"
principal = "amplify-all"
actions = ["EventConnect", "EventPublish", "EventSubscribe"]
`;
  world = await startControlHerald('control-plane', ADMIN, toml);
  herald = world.herald;
});

after(async () => world?.stop());

/** One control-plane call, signed for the service `appsync` as the AWS SDKs sign it. */
async function control(method, pathname, body) {
  const url = new URL(`http://127.0.0.1:${herald.port}${pathname}`);
  const text = body === undefined ? '' : JSON.stringify(body);
  const signed = signRequest(
    { url, method, headers: { 'content-type': 'application/json' }, body: text },
    { credentials: ADMIN, signingRegion: 'us-east-1', signingService: 'appsync' },
  );
  const res = await fetch(url, { method, headers: signed.headers, body: text || undefined });
  return { status: res.status, errorType: res.headers.get('x-amzn-errortype'), body: await res.json() };
}

test('a namespace and a key created through the control plane serve Amplify at once', TEST, async () => {
  const code = `export function onPublish(ctx) {
  return ctx.events.map((e) => ({ ...e, payload: { via: 'created', was: e.payload } }));
}`;
  const ns = await control('POST', `/v2/apis/${API_ID}/channelNamespaces`, { name: 'made', codeHandlers: code });
  assert.equal(ns.status, 200, JSON.stringify(ns.body));
  assert.equal(ns.body.channelNamespace.codeHandlers, code);
  const key = await control('POST', `/v1/apis/${API_ID}/apikeys`, { description: 'for Amplify' });
  assert.equal(key.status, 200, JSON.stringify(key.body));
  const created = key.body.apiKey.id;
  assert.match(created, /^da2-[a-z0-9]{26}$/);

  Amplify.configure(amplifyConfig(`http://127.0.0.1:${herald.port}/event`, created));
  const channel = `/made/${uniqueSegment('room')}`;
  const ch = await withTimeout(events.connect(channel), T, 'events.connect');
  const s = subscribeInbox(ch, `${channel} subscriber`);
  await withTimeout(s.sub.ready, T, 'subscription ready');
  await withTimeout(events.post(channel, { n: 1 }), T, 'events.post');
  await withTimeout(ch.publish({ n: 2 }), T, 'channel.publish');
  await s.events.waitFor((e) => e?.was?.n === 2, { timeoutMs: T, what: 'the second event' });
  assert.deepEqual(s.events.items, [{ via: 'created', was: { n: 1 } }, { via: 'created', was: { n: 2 } }]);
  s.sub.unsubscribe();
  ch.close();
  await events.closeAll();

  // Deleted, the key is refused on the next request.
  const del = await control('DELETE', `/v1/apis/${API_ID}/apikeys/${created}`);
  assert.equal(del.status, 200, JSON.stringify(del.body));
  await assert.rejects(withTimeout(events.post(channel, { n: 3 }), T, 'post with the deleted key settles'), (err) => {
    assertPostError(err, { status: 401, errorType: 'UnauthorizedException' });
    return true;
  });
});

test('a namespace the file declares is not the control plane’s to change', TEST, async () => {
  const r = await control('DELETE', `/v2/apis/${API_ID}/channelNamespaces/default`);
  assert.equal(r.status, 400);
  assert.equal(r.errorType, 'BadRequestException');
  assert.match(r.body.message, /configuration file/);
});

test('an API created through the control plane serves Amplify at its own endpoint, apart from the first', TEST, async () => {
  const modes = [{ authType: 'API_KEY' }];
  const made = await control('POST', '/v2/apis', {
    name: 'second',
    eventConfig: { authProviders: modes, connectionAuthModes: modes, defaultPublishAuthModes: modes, defaultSubscribeAuthModes: modes },
  });
  assert.equal(made.status, 200, JSON.stringify(made.body));
  const apiId = made.body.api.apiId;
  assert.equal((await control('POST', `/v2/apis/${apiId}/channelNamespaces`, { name: 'default' })).status, 200);
  const key = (await control('POST', `/v1/apis/${apiId}/apikeys`, {})).body.apiKey.id;

  // The endpoint names the API; Amplify finds its realtime URL beside it.
  Amplify.configure(amplifyConfig(`http://127.0.0.1:${herald.port}/apis/${apiId}/event`, key));
  const channel = `/default/${uniqueSegment('second')}`;
  const ch = await withTimeout(events.connect(channel), T, 'events.connect to the created API');
  const s = subscribeInbox(ch, `${channel} subscriber`);
  await withTimeout(s.sub.ready, T, 'subscription ready');
  await withTimeout(events.post(channel, { api: 'second' }), T, 'events.post');
  await s.events.waitFor((e) => e?.api === 'second', { timeoutMs: T, what: 'the event' });
  s.sub.unsubscribe();
  ch.close();
  await events.closeAll();

  // The first API's key is not this API's.
  Amplify.configure(amplifyConfig(`http://127.0.0.1:${herald.port}/apis/${apiId}/event`, API_KEY));
  await assert.rejects(withTimeout(events.post(channel, { n: 1 }), T, 'post with the other API key settles'), (err) => {
    assertPostError(err, { status: 401, errorType: 'UnauthorizedException' });
    return true;
  });
  const del = await control('DELETE', `/v2/apis/${apiId}`);
  assert.equal(del.status, 200, JSON.stringify(del.body));
});

test('an API created with AWS_IAM serves Amplify signing at its /apis/{apiId}/event endpoint', TEST, async () => {
  const modes = [{ authType: 'AWS_IAM' }];
  const made = await control('POST', '/v2/apis', {
    name: 'signed',
    eventConfig: { authProviders: modes, connectionAuthModes: modes, defaultPublishAuthModes: modes, defaultSubscribeAuthModes: modes },
  });
  assert.equal(made.status, 200, JSON.stringify(made.body));
  const apiId = made.body.api.apiId;
  assert.equal((await control('POST', `/v2/apis/${apiId}/channelNamespaces`, { name: 'default' })).status, 200);
  // Amplify signs the connect, subscribe and publish at the endpoint's own path.
  Amplify.configure(eventsConfig(`http://127.0.0.1:${herald.port}/apis/${apiId}/event`, 'iam'), staticCredentialsOptions(() => IAM_ALL));
  try {
    await roundTrip({ events, label: 'iam on a created API' });
  } catch (e) {
    throw new Error(`${e.message}\nherald log:\n${herald.logTail()}`);
  }
  await events.closeAll();
  assert.equal((await control('DELETE', `/v2/apis/${apiId}`)).status, 200);
});
