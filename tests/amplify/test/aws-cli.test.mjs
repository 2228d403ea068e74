// The unmodified AWS CLI (PyPI `awscli`, which scripts/test installs in target/python-venv;
// $AWS_CLI overrides) creates an Event API, a namespace with handler code and a key on a running
// Herald; then the unmodified Amplify client connects to that API with the created key, and
// publishes and subscribes through the handler. An update through the CLI takes effect on the
// live server, and a delete ends the API. This file starts its own Herald.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';

import { Amplify } from 'aws-amplify';
import { events } from 'aws-amplify/data';

import { startControlHerald } from './control-world.mjs';
import { amplifyConfig, assertPostError, subscribeInbox, uniqueSegment, withTimeout } from './helpers.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const AWS_CLI = process.env.AWS_CLI ?? path.resolve(here, '../../../target/python-venv/bin/aws');
const T = 10_000;
const TEST = { timeout: 60_000 };
const ADMIN = { AWS_ACCESS_KEY_ID: 'AKIDAWSCLIADMIN', AWS_SECRET_ACCESS_KEY: 'aws-cli-admin-secret-0123456789' };

let world;
let herald;

before(async () => {
  if (!existsSync(AWS_CLI)) {
    throw new Error(`the AWS CLI is not at ${AWS_CLI}: run scripts/test (which installs it), or pip install awscli and set AWS_CLI`);
  }
  world = await startControlHerald('aws-cli', { accessKeyId: ADMIN.AWS_ACCESS_KEY_ID, secretAccessKey: ADMIN.AWS_SECRET_ACCESS_KEY });
  herald = world.herald;
});

after(async () => world?.stop());

/** `aws appsync ARGS…` against this Herald, with only the administrator's credentials. */
function aws(...args) {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('AWS_')));
  Object.assign(env, ADMIN, { AWS_CONFIG_FILE: os.devNull, AWS_SHARED_CREDENTIALS_FILE: os.devNull });
  const r = spawnSync(
    AWS_CLI,
    ['appsync', ...args, '--endpoint-url', `http://127.0.0.1:${herald.port}`, '--region', 'us-east-1', '--output', 'json'],
    { env, encoding: 'utf8', timeout: 60_000 },
  );
  assert.equal(r.status, 0, `aws appsync ${args[0]}: ${r.stderr}`);
  return r.stdout.trim() ? JSON.parse(r.stdout) : {};
}

test('an API, namespace and key made with the AWS CLI serve the Amplify client, and CLI updates take effect live', TEST, async () => {
  const modes = [{ authType: 'API_KEY' }];
  const eventConfig = JSON.stringify({ authProviders: modes, connectionAuthModes: modes, defaultPublishAuthModes: modes, defaultSubscribeAuthModes: modes });
  const { api } = aws('create-api', '--name', 'from-the-cli', '--event-config', eventConfig);
  const code = 'export function onPublish(ctx) { return ctx.events.map((e) => ({ ...e, payload: { by: "aws-cli", was: e.payload } })); }';
  aws('create-channel-namespace', '--api-id', api.apiId, '--name', 'chat', '--code-handlers', code);
  const { apiKey } = aws('create-api-key', '--api-id', api.apiId, '--description', 'amplify');

  const endpoint = `http://127.0.0.1:${herald.port}/apis/${api.apiId}/event`;
  Amplify.configure(amplifyConfig(endpoint, apiKey.id));
  const channel = `/chat/${uniqueSegment('cli')}`;
  const ch = await withTimeout(events.connect(channel), T, 'events.connect');
  const s = subscribeInbox(ch, `${channel} subscriber`);
  await withTimeout(s.sub.ready, T, 'subscription ready');
  await withTimeout(events.post(channel, { n: 1 }), T, 'events.post');
  await s.events.waitFor((e) => e?.was?.n === 1, { timeoutMs: T, what: 'the event through the handler' });

  // The namespace's code changed through the CLI applies to the next event on the same socket.
  const upper = 'export function onPublish(ctx) { return ctx.events.map((e) => ({ ...e, payload: { by: "updated", was: e.payload } })); }';
  aws('update-channel-namespace', '--api-id', api.apiId, '--name', 'chat', '--code-handlers', upper);
  await withTimeout(ch.publish({ n: 2 }), T, 'channel.publish');
  await s.events.waitFor((e) => e?.was?.n === 2, { timeoutMs: T, what: 'the event through the new handler' });
  assert.deepEqual(s.events.items, [{ by: 'aws-cli', was: { n: 1 } }, { by: 'updated', was: { n: 2 } }]);
  s.sub.unsubscribe();
  ch.close();
  await events.closeAll();

  // Deleted through the CLI, the API is gone: its endpoint refuses the key.
  aws('delete-api', '--api-id', api.apiId);
  await assert.rejects(withTimeout(events.post(channel, { n: 3 }), T, 'post to the deleted API settles'), (err) => {
    assertPostError(err, { status: 404 });
    return true;
  });
});
