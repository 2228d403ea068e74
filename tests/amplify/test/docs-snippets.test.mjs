// The JavaScript client examples of docs/ run against a real Herald configured with the same
// page's TOML: docs/authorization.md's three amplify-js snippets (iam, oidc, lambda) and
// docs/extensions.md's `subscribeDurable`. Each runs in a Node process of its own (Amplify keeps
// one configuration per process), as the page shows it, with only these changes: the endpoint
// `https://herald.example.com/event` becomes this Herald's, placeholders get values
// (`myOidcClient` hands out a token from the loopback IdP, `<token>` is a Lambda token), the
// README's imports come first, and a few lines after the snippet check what the page says it
// does. The pages are read here, not copied; a change of a snippet changes what runs.
// (docs/handlers.md's JavaScript is handler code, run by crates/handler/tests/docs.rs.)
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { HeraldProcess, freePort } from '../herald-process.mjs';
import { startIdentityFixtures } from './auth-world.mjs';
import { API_KEY } from './helpers.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const suiteDir = path.resolve(here, '..');
const docsDir = path.resolve(suiteDir, '../../docs');
const T = 20_000;

const PRELUDE = `import { Amplify } from 'aws-amplify';
import { events } from 'aws-amplify/data';
import { WebSocket } from 'ws';
globalThis.WebSocket = WebSocket;
`;

/** The fenced blocks of a page in `lang`. */
function blocks(page, lang) {
  const text = readFileSync(path.join(docsDir, page), 'utf8');
  return [...text.matchAll(/^```(\w*)\n([\s\S]*?)^```$/gm)].filter(([, l]) => l === lang).map(([, , body]) => body);
}

/** `text` with `from` replaced by `to`, which must occur (so a changed page fails loudly). */
function replaceRequired(text, from, to) {
  assert.ok(text.includes(from), `expected ${JSON.stringify(from)} in:\n${text}`);
  return text.replaceAll(from, to);
}

const cleanups = [];
after(async () => {
  for (const f of cleanups.reverse()) await f();
});

function tempDir(prefix) {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A Herald on `toml`, with the harness's development CA (trusted through NODE_EXTRA_CA_CERTS). */
async function startHerald(toml) {
  const dataDir = tempDir('herald-docs-');
  cpSync(process.env.HERALD_TEST_DEV_TLS_DIR, path.join(dataDir, 'dev-tls'), { recursive: true });
  const configPath = path.join(dataDir, 'herald.toml');
  writeFileSync(configPath, toml);
  const herald = new HeraldProcess({ bin: process.env.HERALD_TEST_BIN, port: await freePort(), apiKey: API_KEY, dataDir, configPath });
  process.on('exit', () => herald.killSync());
  await herald.start();
  cleanups.push(() => herald.stop());
  return herald;
}

/**
 * Runs `source` as `snippet.mjs` in a directory of its own (with this suite's packages) and
 * returns a handle whose `line(text)` resolves once the process printed that line.
 */
function runModule(source, env = {}) {
  const dir = tempDir('herald-docs-snippet-');
  symlinkSync(path.join(suiteDir, 'node_modules'), path.join(dir, 'node_modules'), 'dir');
  writeFileSync(path.join(dir, 'snippet.mjs'), source);
  const child = spawn(process.execPath, ['snippet.mjs'], { cwd: dir, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  cleanups.push(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const lines = [];
  let stderr = '';
  let exited = null;
  const listeners = new Set();
  let buffered = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk) => {
    buffered += chunk;
    let nl;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      lines.push(buffered.slice(0, nl));
      buffered = buffered.slice(nl + 1);
      for (const l of listeners) l();
    }
  });
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk) => (stderr += chunk));
  child.once('exit', (code) => {
    exited = code;
    for (const l of listeners) l();
  });
  return {
    lines,
    /** Resolves when `text` has been printed; rejects if the process ends or `T` passes first. */
    line(text) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (lines.includes(text)) {
            done();
            resolve();
          } else if (exited !== null) {
            done();
            reject(new Error(`snippet exited (${exited}) without printing ${JSON.stringify(text)}; stdout:\n${lines.join('\n')}\nstderr:\n${stderr}`));
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`timed out waiting for ${JSON.stringify(text)}; stdout:\n${lines.join('\n')}\nstderr:\n${stderr}`));
        }, T);
        const done = () => {
          clearTimeout(timer);
          listeners.delete(check);
        };
        listeners.add(check);
        check();
      });
    },
  };
}

describe('docs/authorization.md', () => {
  let herald;
  let ids;
  let endpoint;
  const snippets = blocks('authorization.md', 'js');
  const snippet = (mode) => {
    const found = snippets.filter((s) => s.includes(`defaultAuthMode: "${mode}"`));
    assert.equal(found.length, 1, `one ${mode} snippet`);
    return replaceRequired(found[0], 'https://herald.example.com/event', endpoint);
  };
  const now = () => Math.floor(Date.now() / 1000);
  // Tokens the page's providers accept: OIDC `client_id = "herald-web"`, and a Lambda token as
  // `identity_validation_expression` wants it.
  const oidcToken = () => ids.signJwt({ iss: ids.oidcIssuer, sub: 'docs-user', aud: 'herald-web', iat: now(), exp: now() + 600 });
  const LAMBDA_TOKEN = 'Bearer allow-docs-reader';

  before(async () => {
    ids = await startIdentityFixtures();
    cleanups.push(() => ids.close());
    // The page's TOML blocks, concatenated, pointed at the loopback IdP and webhook.
    let toml = blocks('authorization.md', 'toml').join('\n');
    toml = replaceRequired(toml, 'issuer = "https://idp.example.com/realms/herald"', `issuer = "${ids.oidcIssuer}"`);
    toml = replaceRequired(toml, '# issuer = "http://127.0.0.1:9000/realms/herald"', `issuer = "${ids.cognitoIssuer}"`);
    toml = replaceRequired(toml, 'authorizer_url = "http://127.0.0.1:9100/authorize"', `authorizer_url = "${ids.hookUrl}/authorize"`);
    herald = await startHerald(toml);
    endpoint = `https://localhost:${herald.port}/event`;
  });

  test('iam: the publisher key publishes in default, and not in chat (chat does not accept AWS_IAM)', { timeout: 60_000 }, async () => {
    const run = runModule(`${PRELUDE}
${snippet('iam')}
await events.post('/default/docs-iam', { via: 'iam' });
console.log('default: published');
await events.post('/chat/room-1', { via: 'iam' }).then(() => console.log('chat: published'), () => console.log('chat: refused'));
process.exit(0);
`);
    await run.line('default: published');
    await run.line('chat: refused');
  });

  test('oidc: the token provider subscribes and publishes in chat', { timeout: 60_000 }, async () => {
    const run = runModule(
      `${PRELUDE}
const myOidcClient = { getAccessToken: async () => process.env.DOC_OIDC_TOKEN };
${snippet('oidc')}
const channel = await events.connect('/chat/*');
const subscription = channel.subscribe({ next: ({ event }) => { console.log('received', JSON.stringify(event)); process.exit(0); } });
await subscription.ready;
await events.post('/chat/room-1', { via: 'oidc' });
`,
      { DOC_OIDC_TOKEN: oidcToken() },
    );
    await run.line('received {"via":"oidc"}');
  });

  test('lambda: the token subscribes in chat, and its events.post is refused as the page says', { timeout: 60_000 }, async () => {
    let code = replaceRequired(snippet('lambda'), '"<token>"', JSON.stringify(LAMBDA_TOKEN));
    // The page shows the publish commented out, for this configuration: run it, expect a refusal.
    const commented = code.split('\n').find((l) => l.trim().startsWith('// await events.post('));
    assert.ok(commented, 'the page shows events.post with the token');
    const post = commented.trim().slice(3);
    const run = runModule(`${PRELUDE}
${code}
await (async () => { ${post} })().then(() => console.log('post: published'), () => console.log('post: refused'));
console.log('ready');
`);
    await run.line('post: refused');
    await run.line('ready');
    // Published by a mode chat accepts for publishing; the Lambda subscriber prints it.
    const res = await fetch(`http://127.0.0.1:${herald.port}/event`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: oidcToken() },
      body: JSON.stringify({ channel: '/chat/room-1', events: [JSON.stringify({ text: 'hi' })] }),
    });
    assert.equal(res.status, 200, await res.text());
    await run.line("{ text: 'hi' }");
  });
});

describe('docs/extensions.md', () => {
  test('subscribeDurable receives events, resumes after a server restart, and reports no gap', { timeout: 90_000 }, async () => {
    const toml = blocks('extensions.md', 'toml')[0];
    assert.match(toml, /name = "chat"\nhistory = /, 'the page configures a chat namespace with history');
    const herald = await startHerald(toml);
    const [helper] = blocks('extensions.md', 'js');
    assert.match(helper, /export function subscribeDurable/);
    const post = async (n) => {
      const res = await fetch(`http://127.0.0.1:${herald.port}/event`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-api-key': API_KEY },
        body: JSON.stringify({ channel: '/chat/room1', events: [JSON.stringify({ n })] }),
      });
      assert.equal(res.status, 200, await res.text());
    };
    // Prints each subscribe_success, to await instead of guessing when the socket is ready.
    const run = runModule(`import WS from 'ws';
let subscribed = 0;
globalThis.WebSocket = class extends WS {
  constructor(...args) {
    super(...args);
    this.on('message', (m) => { if (JSON.parse(String(m)).type === 'subscribe_success') console.log('subscribed ' + ++subscribed); });
  }
};
${helper}
subscribeDurable({
  url: 'ws://127.0.0.1:${herald.port}/event/realtime', httpHost: 'localhost:${herald.port}', apiKey: '${API_KEY}', channel: '/chat/room1',
  onEvent: (event, position) => console.log('event ' + JSON.stringify(event) + ' at ' + position.offset),
  onGap: (reason) => console.log('gap ' + reason),
});
`);
    await run.line('subscribed 1');
    await post(1);
    await run.line('event {"n":1} at 1');
    // The server goes away and comes back; the event published meanwhile (or just after) is
    // replayed or delivered live, once, and nothing is reported missing.
    await herald.stop();
    await herald.start();
    await post(2);
    await run.line('event {"n":2} at 2');
    await run.line('subscribed 2');
    assert.deepEqual(
      run.lines.filter((l) => l.startsWith('event') || l.startsWith('gap')),
      ['event {"n":1} at 1', 'event {"n":2} at 2'],
    );
  });
});
