// Server-Sent Events in headless Chromium: the browser's own `EventSource` reads
// `GET /event/stream`, opened with a token from `POST /event/stream/token`, through the
// `streamEvents` helper of docs/clients.md (read from the page, not copied). Herald ends every
// stream after two seconds (its connection lifetime), so the helper reconnects with a fresh token
// and `lastEventId` while events keep coming: each one must arrive once, in order.
//
// Needs what console.test.mjs needs: Debian's `chromium` (or CHROMIUM=path) and the herald
// binary (HERALD_BIN, or built with `cargo build -p herald`).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const API_KEY = 'da2-ssetestkey000000000000000';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function heraldBinary() {
  if (process.env.HERALD_BIN) return process.env.HERALD_BIN;
  const build = spawnSync('cargo', ['build', '-p', 'herald'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
  if (build.status !== 0) throw new Error(`cargo build -p herald failed:\n${build.stderr}`);
  return path.join(process.env.CARGO_TARGET_DIR ?? path.join(ROOT, 'target'), 'debug', 'herald');
}

/** The `streamEvents` helper of docs/clients.md, as a script for the page. */
function helperFromDocs() {
  const page = readFileSync(path.join(ROOT, 'docs/clients.md'), 'utf8');
  const blocks = [...page.matchAll(/^```js\n([\s\S]*?)^```$/gm)].map((m) => m[1]);
  const helper = blocks.find((b) => b.includes('function streamEvents'));
  assert.ok(helper, 'docs/clients.md shows streamEvents');
  return helper.replace('export function', 'window.streamEvents = function');
}

let dataDir;
let herald;
let base;
let context;
let page;

before(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: apt-get install -y chromium (or set CHROMIUM)`);
  const bin = heraldBinary();
  dataDir = mkdtempSync(path.join(os.tmpdir(), 'herald-sse-'));
  const config = path.join(dataDir, 'herald.toml');
  writeFileSync(
    config,
    [
      '[[namespaces]]', 'name = "default"', '',
      '[[namespaces]]', 'name = "chat"', 'history = {}', '',
      '[history]', 'backend = "memory"', '',
      // Every stream ends after about two seconds: the helper must reconnect and resume.
      '[websocket]', 'keepalive_interval_ms = 250', 'max_lifetime_secs = 2', '',
    ].join('\n'),
  );
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  const log = openSync(path.join(dataDir, 'herald.log'), 'a');
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('HERALD_')));
  herald = spawn(
    bin,
    ['serve', '--config', config, '--listen', `127.0.0.1:${port}`, '--api-key', API_KEY, '--data-dir', path.join(dataDir, 'data')],
    { stdio: ['ignore', log, log], env },
  );
  closeSync(log);
  herald.once('error', () => {});
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (herald.exitCode !== null) throw new Error(`herald exited (${herald.exitCode})`);
    try {
      if ((await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(1000) })).ok) break;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > deadline) throw new Error('herald did not come up');
    await sleep(100);
  }
  const profile = path.join(dataDir, 'chromium-profile');
  mkdirSync(profile);
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
    timeout: 30_000,
  });
  context.setDefaultTimeout(15_000);
  page = context.pages()[0] ?? (await context.newPage());
  page.on('pageerror', (e) => console.error('page error:', e.message));
  // A page of Herald's own origin.
  await page.goto(`${base}/healthz`);
  await page.addScriptTag({ content: helperFromDocs() });
});

after(async () => {
  await context?.close().catch(() => {});
  if (herald && herald.exitCode === null) herald.kill('SIGKILL');
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

async function publish(channel, event) {
  const res = await fetch(`${base}/event`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-api-key': API_KEY },
    body: JSON.stringify({ channel, events: [JSON.stringify(event)] }),
  });
  assert.equal(res.status, 200, await res.text());
}

test('EventSource receives events with their channel, and resumes across reconnects', async () => {
  await page.evaluate(
    ({ base, apiKey }) => {
      window.received = [];
      window.opens = 0;
      window.stream = window.streamEvents({
        base,
        apiKey,
        channels: ['/chat/room', '/default/*'],
        onOpen: () => window.opens++,
        onEvent: (event, frame) => window.received.push({ event, channel: frame.channel }),
      });
    },
    { base, apiKey: API_KEY },
  );
  await page.waitForFunction(() => window.opens >= 2);
  await publish('/default/a/b', { hello: 'browser' });
  await page.waitForFunction(() => window.received.length >= 1);
  assert.deepEqual(await page.evaluate(() => window.received[0]), { event: { hello: 'browser' }, channel: '/default/a/b' });

  // Events on the history channel while the server ends the stream every two seconds.
  const total = 60;
  for (let n = 0; n < total; n++) {
    await publish('/chat/room', { n });
    await sleep(80);
  }
  await page.waitForFunction((total) => window.received.filter((r) => r.channel === '/chat/room').length >= total, total);
  const got = await page.evaluate(() => window.received.filter((r) => r.channel === '/chat/room').map((r) => r.event.n));
  assert.deepEqual(got, [...Array(total).keys()], 'every event once, in order');
  // Two subscriptions per stream: more than two opens means it reconnected.
  const opens = await page.evaluate(() => window.opens);
  assert.ok(opens >= 4, `reconnected (${opens} subscribe_success events)`);
  await page.evaluate(() => window.stream.close());
});
