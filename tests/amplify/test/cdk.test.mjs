// A CDK app (cdk/app.mjs: `EventApi`, `ChannelNamespace` with code from an asset and inline)
// synthesized offline with aws-cdk-lib and deployed with `herald apply`, then used by the
// unmodified Amplify client with the key the template made. Re-applying changes nothing; a
// template Herald cannot apply is refused whole, naming the resource and property. This file
// starts its own Herald.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';

import { Amplify } from 'aws-amplify';
import { events } from 'aws-amplify/data';

import { startControlHerald } from './control-world.mjs';
import { amplifyConfig, subscribeInbox, uniqueSegment, withTimeout } from './helpers.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const T = 10_000;
const TEST = { timeout: 60_000 };
const ADMIN = { AWS_ACCESS_KEY_ID: 'AKIDCDKADMIN', AWS_SECRET_ACCESS_KEY: 'cdk-admin-secret-0123456789' };

let world;
let herald;
let outDir;

before(async () => {
  world = await startControlHerald('cdk', { accessKeyId: ADMIN.AWS_ACCESS_KEY_ID, secretAccessKey: ADMIN.AWS_SECRET_ACCESS_KEY });
  herald = world.herald;
  // `cdk synth` without the CLI: the app synthesizes itself.
  outDir = mkdtempSync(path.join(os.tmpdir(), 'herald-cdk-out-'));
  execFileSync(process.execPath, [path.join(here, '..', 'cdk', 'app.mjs'), outDir], { stdio: 'inherit' });
});

after(async () => {
  await world?.stop();
  if (outDir) rmSync(outDir, { recursive: true, force: true });
});

/** `herald apply TEMPLATE` against this Herald; its exit status, stdout and stderr. */
function apply(template) {
  const env = { ...process.env, ...ADMIN, HERALD_ENDPOINT: `http://127.0.0.1:${herald.port}` };
  const r = spawnSync(process.env.HERALD_TEST_BIN, ['apply', template], { env, encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const templatePath = () => path.join(outDir, 'HeraldEvents.template.json');

test('a synthesized CDK EventApi applied with herald apply serves Amplify, and re-applying changes nothing', TEST, async () => {
  const first = apply(templatePath());
  assert.equal(first.status, 0, first.stderr);
  const [api] = JSON.parse(first.stdout).apis;
  assert.equal(api.name, 'cdk-events');
  assert.equal(api.http, `http://127.0.0.1:${herald.port}/apis/${api.apiId}/event`);
  assert.equal(api.apiKeys.length, 1);
  const key = api.apiKeys[0].id;
  assert.match(first.stderr, /created namespace chat/);
  assert.match(first.stderr, /skipped Rules: the CDK bootstrap check/);

  Amplify.configure(amplifyConfig(api.http, key));
  const channel = `/chat/${uniqueSegment('cdk')}`;
  const ch = await withTimeout(events.connect(channel), T, 'events.connect');
  const s = subscribeInbox(ch, `${channel} subscriber`);
  await withTimeout(s.sub.ready, T, 'subscription ready');
  await withTimeout(events.post(channel, { n: 1 }), T, 'events.post');
  // The handler is the asset file's code (cdk/handlers/chat.js).
  await s.events.waitFor((e) => e?.was?.n === 1, { timeoutMs: T, what: 'the event through the asset handler' });
  assert.deepEqual(s.events.items, [{ via: 'cdk', was: { n: 1 } }]);
  s.sub.unsubscribe();
  ch.close();
  await events.closeAll();

  const again = apply(templatePath());
  assert.equal(again.status, 0, again.stderr);
  const [same] = JSON.parse(again.stdout).apis;
  assert.equal(same.apiId, api.apiId);
  assert.deepEqual(same.apiKeys.map((k) => k.id), [key]);
  assert.match(again.stderr, /updated API cdk-events/);
});

test('a template with what Herald cannot apply is refused whole, naming resource and property', TEST, async () => {
  const template = JSON.parse(readFileSync(templatePath(), 'utf8'));
  template.Resources.ApiF70053CD.Properties.Name = 'never-made';
  template.Resources.ApiF70053CD.Properties.EventConfig.LogConfig = { LogLevel: 'ALL' };
  template.Resources.Bucket = { Type: 'AWS::S3::Bucket' };
  const bad = path.join(outDir, 'bad.template.json');
  writeFileSync(bad, JSON.stringify(template));
  const r = apply(bad);
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /nothing was applied/);
  assert.match(r.stderr, /ApiF70053CD\.EventConfig\.LogConfig: not supported/);
  assert.match(r.stderr, /Bucket: type "AWS::S3::Bucket"/);
  const listed = apply(templatePath());
  assert.equal(JSON.parse(listed.stdout).apis.length, 1);
  assert.doesNotMatch(listed.stderr, /never-made/);
});
