// End to end: Herald's web console (/console) in headless Chromium, against a Herald started here.
//
// Needs Debian's `chromium` (/usr/bin/chromium, or CHROMIUM=path) and the herald binary
// (built with `cargo build -p herald` unless HERALD_BIN names one). SCREENSHOT_DIR=dir keeps
// screenshots of both views; on a failure one is written to the data directory.
import { after, before, describe, test } from 'node:test';
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
const API_KEY = 'da2-consoletestkey0000000000';
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
  return path.join(ROOT, 'target', 'debug', 'herald');
}

let dataDir;
let herald; // the child process
let heraldExited;
let base; // http://127.0.0.1:<port>
let context; // the browser (a persistent context on a fresh profile)
let page;
let failed = false;

/** A test whose failure keeps the data directory and a screenshot for a look. */
function step(name, fn) {
  test(name, async (t) => {
    try {
      await fn(t);
    } catch (e) {
      failed = true;
      throw e;
    }
  });
}

function killHerald() {
  if (herald && herald.exitCode === null && herald.signalCode === null) {
    try {
      process.kill(herald.pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
}
process.on('exit', killHerald);
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    killHerald();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
    process.exit(1);
  });
}

function heraldLog() {
  try {
    return readFileSync(path.join(dataDir, 'herald.log'), 'utf8').split('\n').slice(-30).join('\n');
  } catch {
    return '(no log)';
  }
}

before(async () => {
  failed = true; // until Herald and the browser are up
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: apt-get install -y chromium (or set CHROMIUM)`);
  const bin = heraldBinary();
  dataDir = mkdtempSync(path.join(os.tmpdir(), 'herald-console-'));
  const config = path.join(dataDir, 'herald.toml');
  // `default` as without a config; `chat` keeps history, so its data frames carry their channel;
  // `room` has presence.
  writeFileSync(
    config,
    [
      '[[namespaces]]',
      'name = "default"',
      '',
      '[[namespaces]]',
      'name = "chat"',
      'history = {}',
      '',
      '[[namespaces]]',
      'name = "room"',
      'presence = {}',
      '',
      '[history]',
      'backend = "memory"',
      '',
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
  heraldExited = new Promise((resolve) => herald.once('exit', resolve));
  herald.once('error', () => {});
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (herald.exitCode !== null) throw new Error(`herald exited (${herald.exitCode}):\n${heraldLog()}`);
    try {
      if ((await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(1000) })).ok) break;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > deadline) throw new Error(`herald did not come up:\n${heraldLog()}`);
    await sleep(100);
  }

  const profile = path.join(dataDir, 'chromium-profile');
  mkdirSync(profile);
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1360, height: 860 },
    timeout: 30_000,
  });
  context.setDefaultTimeout(10_000);
  // Record how the page opens sockets, to check the subprotocols it offers.
  await context.addInitScript(() => {
    const Native = window.WebSocket;
    window.openedSockets = [];
    window.WebSocket = class extends Native {
      constructor(url, protocols) {
        super(url, protocols);
        window.openedSockets.push({ url: String(url), protocols });
      }
    };
  });
  page = context.pages()[0] ?? (await context.newPage());
  page.on('pageerror', (e) => console.error('page error:', e.message));
  failed = false;
});

after(async () => {
  try {
    if (page && failed) await page.screenshot({ path: path.join(dataDir, 'failure.png') }).catch(() => {});
    await context?.close().catch(() => {});
  } finally {
    if (herald && herald.exitCode === null) {
      process.kill(herald.pid, 'SIGTERM');
      const done = await Promise.race([heraldExited, sleep(5000).then(() => false)]);
      if (done === false) killHerald();
    }
    if (dataDir && !failed) rmSync(dataDir, { recursive: true, force: true });
    else if (dataDir) console.error(`kept ${dataDir} (herald.log, failure.png)`);
  }
});

async function screenshot(name) {
  if (!process.env.SCREENSHOT_DIR) return;
  mkdirSync(process.env.SCREENSHOT_DIR, { recursive: true });
  await page.screenshot({ path: path.join(process.env.SCREENSHOT_DIR, `${name}.png`) });
}

/** Log lines of data frames whose text includes `text`. */
const dataEntries = (text) => page.locator('#log li[data-type="data"]', { hasText: text });

/** The URL and the decoded `header-` credentials of the last socket the page opened. */
async function lastSocket() {
  const { url, protocols } = await page.evaluate(() => window.openedSockets.at(-1));
  assert.equal(protocols[0], 'aws-appsync-event-ws');
  assert.match(protocols[1], /^header-[A-Za-z0-9_-]+$/, 'base64url without padding');
  return { url, header: JSON.parse(Buffer.from(protocols[1].slice('header-'.length), 'base64url').toString()) };
}

/** Publishes over HTTP from the test itself (not the page). */
async function publishOutside(channel, event) {
  const res = await fetch(`${base}/event`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-api-key': API_KEY },
    body: JSON.stringify({ channel, events: [JSON.stringify(event)] }),
  });
  const reply = await res.json();
  assert.equal(res.status, 200, JSON.stringify(reply));
  assert.equal(reply.successful.length, 1, JSON.stringify(reply));
  return reply;
}

describe('web console', { timeout: 50_000 }, () => {
  step('is served from Herald with its assets', async () => {
    const res = await page.goto(`${base}/console`);
    assert.equal(res.status(), 200);
    assert.equal(await page.title(), 'Herald console');
    await page.locator('#status[data-state="disconnected"]').waitFor();
    // The endpoint defaults to the page's own origin; channels follow the namespace.
    assert.equal(await page.locator('#endpoint').getAttribute('placeholder'), base);
    assert.equal(await page.inputValue('#sub-channel'), '/default/*');
    assert.equal(await page.inputValue('#pub-channel'), '/default/test');
  });

  step('a wrong key is refused with connection_error', async () => {
    await page.fill('#api-key', 'da2-notthekey0000000000');
    await page.click('#connect');
    await page.locator('#status[data-state="error"]').waitFor();
    await page.locator('#log li[data-type="connection_error"]', { hasText: 'UnauthorizedException' }).waitFor();
    const { url, header } = await lastSocket();
    assert.equal(url, `${base.replace('http:', 'ws:')}/event/realtime`);
    assert.deepEqual(header, { host: new URL(base).host, 'x-api-key': 'da2-notthekey0000000000' });
  });

  step('token mode sends an Authorization token (refused: this Herald takes API keys)', async () => {
    await page.selectOption('#auth-mode', 'token');
    assert.equal(await page.isVisible('#api-key'), false);
    await page.fill('#auth-token', 'eyJ.not-a-jwt');
    await page.click('#connect');
    await page.locator('#log li[data-type="connection_error"]').nth(1).waitFor();
    assert.deepEqual((await lastSocket()).header, { host: new URL(base).host, Authorization: 'eyJ.not-a-jwt' });
    await page.selectOption('#auth-mode', 'apiKey');
  });

  step('connects, subscribes to a wildcard, and sees its own WebSocket publish', async () => {
    await page.fill('#api-key', API_KEY);
    await page.click('#connect');
    await page.locator('#status[data-state="connected"]').waitFor();
    await page.locator('#log li[data-type="connection_ack"]').waitFor();

    await page.fill('#sub-channel', '/default/*');
    await page.click('#subscribe');
    await page.locator('#subscriptions li[data-channel="/default/*"][data-state="active"]').waitFor();

    const nonce = `page-${Date.now()}`;
    await page.fill('#pub-channel', '/default/room1');
    await page.fill('#events textarea', JSON.stringify({ from: 'page', nonce }));
    await page.click('#publish-ws');
    await dataEntries(nonce).first().waitFor();
    await page.locator('#log li[data-type="publish_success"]', { hasText: '1 accepted' }).waitFor();
    // Sent frames are logged too.
    await page.locator('#log li[data-dir="out"][data-type="publish"]', { hasText: nonce }).waitFor();
  });

  step('sees an event published from outside over HTTP', async () => {
    const nonce = `outside-${Date.now()}`;
    await publishOutside('/default/elsewhere', { from: 'outside', nonce });
    await dataEntries(nonce).first().waitFor();
  });

  step('publishes several events over HTTP from the page', async () => {
    const nonce = `http-${Date.now()}`;
    await page.click('#add-event');
    const editors = page.locator('#events textarea');
    assert.equal(await editors.count(), 2);
    await editors.nth(0).fill(JSON.stringify({ nonce, n: 1 }));
    await editors.nth(1).fill(JSON.stringify({ nonce, n: 2 }));
    await page.click('#publish-http');
    await page.locator('#log li[data-type="HTTP 200"]', { hasText: '2 accepted' }).waitFor();
    await dataEntries(`"n":1`).filter({ hasText: nonce }).waitFor();
    await dataEntries(`"n":2`).filter({ hasText: nonce }).waitFor();
    await page.locator('#events .event').nth(1).locator('.remove').click();
  });

  step('invalid JSON is flagged and not sent', async () => {
    const before = await page.locator('#log li[data-dir="out"]').count();
    await page.fill('#events textarea', '{not json');
    await page.click('#publish-ws');
    await page.locator('#events textarea.invalid').waitFor();
    assert.equal(await page.locator('#log li[data-dir="out"]').count(), before);
  });

  step('shows the concrete channel of wildcard events from a history namespace', async () => {
    await page.fill('#sub-channel', '/chat/*');
    await page.click('#subscribe');
    await page.locator('#subscriptions li[data-channel="/chat/*"][data-state="active"]').waitFor();
    const nonce = `chat-${Date.now()}`;
    await publishOutside('/chat/room7', { text: 'hi', nonce });
    const entry = dataEntries(nonce).first();
    await entry.waitFor();
    assert.equal(await entry.getAttribute('data-channel'), '/chat/room7');
    await screenshot('pubsub');
  });

  step('replays stored events on subscribe (Herald resume extension)', async () => {
    await page.fill('#sub-channel', '/chat/room7');
    await page.selectOption('#sub-replay', 'all');
    await page.click('#subscribe');
    await page.locator('#subscriptions li[data-channel="/chat/room7"][data-state="active"]').waitFor();
    await page.locator('#log li[data-type="subscribe_success"]', { hasText: 'replayed 1' }).waitFor();
    await page.locator('#log li[data-type="data"][data-channel="/chat/room7"]', { hasText: '#1' }).nth(1).waitFor();
    await page.selectOption('#sub-replay', '');
  });

  step('shows who is subscribed on a presence namespace, and follows joins and leaves', async () => {
    await page.fill('#sub-channel', '/room/lobby');
    await page.click('#subscribe');
    const mine = page.locator('#subscriptions li[data-channel="/room/lobby"]');
    await page.locator('#subscriptions li[data-channel="/room/lobby"][data-members="1"]').waitFor();
    // A second console, on another page of the same browser, joins the channel.
    const other = await context.newPage();
    await other.goto(`${base}/console`);
    await other.fill('#api-key', API_KEY);
    await other.click('#connect');
    await other.locator('#status[data-state="connected"]').waitFor();
    await other.fill('#sub-channel', '/room/lobby');
    await other.click('#subscribe');
    await other.locator('#subscriptions li[data-channel="/room/lobby"][data-members="2"]').waitFor();
    await page.locator('#subscriptions li[data-channel="/room/lobby"][data-members="2"]').waitFor();
    await page.locator('#log li[data-type="presence"]', { hasText: 'joined' }).first().waitFor();
    // It leaves when its socket closes.
    await other.close();
    await page.locator('#subscriptions li[data-channel="/room/lobby"][data-members="1"]').waitFor();
    await page.locator('#log li[data-type="presence"]', { hasText: 'left' }).first().waitFor();
    assert.match(await mine.locator('.members').textContent(), /^1 here/);
    // Namespaces without presence show no member list.
    assert.equal(await page.locator('#subscriptions li[data-channel="/chat/*"] .members').count(), 0);
  });

  step('unsubscribes', async () => {
    const sub = page.locator('#subscriptions li[data-channel="/default/*"]');
    await sub.locator('button').click();
    await page.locator('#log li[data-type="unsubscribe_success"]').waitFor();
    await sub.waitFor({ state: 'detached' });
    const nonce = `after-${Date.now()}`;
    await publishOutside('/default/elsewhere', { nonce });
    // The /chat/* subscription is still live: an event there proves the socket delivered what
    // came after, so the /default event would have arrived by now.
    const marker = `marker-${Date.now()}`;
    await publishOutside('/chat/room7', { marker });
    await dataEntries(marker).first().waitFor();
    assert.equal(await dataEntries(nonce).count(), 0);
  });

  step('metrics view shows live figures per namespace', async () => {
    await page.click('#tab-metrics');
    const row = page.locator('#ns-table tr[data-namespace="default"]');
    await row.waitFor();
    await page.locator('#ns-table tr[data-namespace="chat"]').waitFor();
    const publishes = Number((await row.locator('td[data-column="Publishes"] .value').textContent()).replace(/,/g, ''));
    assert.ok(publishes >= 3, `default publishes: ${publishes}`);
    const connections = page.locator('#server-figures .figure', { hasText: 'Connections' }).locator('.value');
    assert.equal(await connections.textContent(), '1');
    // Refreshed on its own: a publish shows up without touching the page.
    await publishOutside('/default/elsewhere', { more: true });
    await page.waitForFunction(
      (n) => Number(document.querySelector('#ns-table tr[data-namespace="default"] td[data-column="Publishes"] .value')?.textContent.replace(/,/g, '')) > n,
      publishes,
      { timeout: 10_000 },
    );
    await screenshot('metrics');
  });

  step('disconnects', async () => {
    await page.click('#tab-pubsub');
    await page.click('#disconnect');
    await page.locator('#status[data-state="disconnected"]').waitFor();
    await page.locator('#subscriptions li.empty').waitFor();
  });
});
