#!/usr/bin/env node
// Test harness for the aws-amplify compatibility suite.
//
// 1. Starts one Herald process (`herald serve --dev-tls`) on a free loopback
//    port with a fresh temporary data dir and waits for GET /healthz.
// 2. Runs `node --test test/*.test.mjs` in a CHILD node process whose
//    environment has NODE_EXTRA_CA_CERTS pointing at Herald's development CA
//    (Node reads that variable only at start-up, so it cannot be set from
//    inside an already-running process), plus the endpoint and API key.
// 3. Stops Herald and removes the data dir whatever happens (test failure,
//    Ctrl-C, SIGTERM), and exits with the test runner's exit code.
//
// Environment:
//   HERALD_BIN       path of the herald binary (default ../../target/debug/herald
//                    relative to this directory)
//   HERALD_WS_LOG=1  print every WebSocket frame the client sends/receives
// Extra arguments are passed to `node --test` (e.g. --test-name-pattern=wildcard).

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, closeSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const heraldBin = process.env.HERALD_BIN
  ? path.resolve(process.env.HERALD_BIN)
  : path.resolve(here, '../../target/debug/herald');
const apiKey = `da2-amplifytest${Math.random().toString(36).slice(2, 10)}`;
const READY_TIMEOUT_MS = 20_000;
const RUN_TIMEOUT_MS = 180_000;

function log(msg) {
  process.stderr.write(`[run-tests] ${msg}\n`);
}

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

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let herald = null; // ChildProcess
let heraldExited = null; // Promise resolved on exit
let dataDir = null;
let logPath = null;
let testChild = null;

function stopHeraldSync() {
  if (herald && herald.exitCode === null && herald.signalCode === null) {
    try {
      herald.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
}

async function stopHerald() {
  if (!herald) return;
  if (herald.exitCode === null && herald.signalCode === null) {
    herald.kill('SIGTERM');
    const done = await Promise.race([heraldExited.then(() => true), sleep(5000).then(() => false)]);
    if (!done) {
      log('herald did not stop within 5 s of SIGTERM; sending SIGKILL');
      herald.kill('SIGKILL');
      await heraldExited;
    }
  }
}

function heraldLogTail(lines = 40) {
  try {
    return readFileSync(logPath, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '(no herald log)';
  }
}

// Short keep-alive timings so test/keepalive.test.mjs can check, within seconds,
// that Herald's `ka` frames keep amplify-js from dropping an idle socket.
const KEEPALIVE_INTERVAL_MS = 1000;
const CONNECTION_TIMEOUT_MS = 3000;

function heraldEnv() {
  // Herald reads HERALD_* as configuration overrides: keep the caller's out.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('HERALD_')));
  env.HERALD_WEBSOCKET__KEEPALIVE_INTERVAL_MS = String(KEEPALIVE_INTERVAL_MS);
  env.HERALD_WEBSOCKET__CONNECTION_TIMEOUT_MS = String(CONNECTION_TIMEOUT_MS);
  return env;
}

async function startHerald() {
  if (!existsSync(heraldBin)) {
    throw new Error(`herald binary not found at ${heraldBin}; run \`cargo build -p herald\` or set HERALD_BIN`);
  }
  // A free port can be taken between probing and binding: retry a few times.
  for (let attempt = 1; attempt <= 3; attempt++) {
    const port = await freePort();
    dataDir = mkdtempSync(path.join(os.tmpdir(), 'herald-amplify-'));
    logPath = path.join(dataDir, 'herald.log');
    const fd = openSync(logPath, 'a');
    const args = ['serve', '--listen', `127.0.0.1:${port}`, '--api-key', apiKey, '--dev-tls', '--data-dir', dataDir];
    herald = spawn(heraldBin, args, { stdio: ['ignore', fd, fd], env: heraldEnv() });
    closeSync(fd);
    heraldExited = new Promise((resolve) => herald.once('exit', resolve));
    herald.once('error', (err) => log(`failed to spawn herald: ${err.message}`));

    const deadline = Date.now() + READY_TIMEOUT_MS;
    let ready = false;
    while (Date.now() < deadline) {
      if (herald.exitCode !== null || herald.signalCode !== null) break;
      try {
        const res = await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(1000) });
        if (res.ok) {
          ready = true;
          break;
        }
      } catch {
        /* not listening yet */
      }
      await sleep(100);
    }
    if (ready) return port;
    log(`herald did not become ready on port ${port} (attempt ${attempt}); log:\n${heraldLogTail()}`);
    await stopHerald();
    rmSync(dataDir, { recursive: true, force: true });
    herald = null;
  }
  throw new Error('could not start herald');
}

function findCa() {
  // Herald prints "... NODE_EXTRA_CA_CERTS=<path>"; fall back to the documented location.
  const printed = /NODE_EXTRA_CA_CERTS=(\S+)/.exec(readFileSync(logPath, 'utf8'));
  const candidates = [printed?.[1], path.join(dataDir, 'dev-tls', 'ca.pem')].filter(Boolean);
  const ca = candidates.find((p) => existsSync(p));
  if (!ca) throw new Error(`development CA not found (looked at ${candidates.join(', ')})`);
  return ca;
}

async function main() {
  const [major, minor] = process.versions.node.split('.').map(Number);
  if (major < 20 || (major === 20 && minor < 14)) {
    throw new Error(`Node ${process.versions.node} is too old: this suite needs Node >= 20.14 (node --test --test-force-exit)`);
  }
  const port = await startHerald();
  const ca = findCa();
  log(`herald ${heraldBin} ready on 127.0.0.1:${port}, data dir ${dataDir}`);

  const testDir = path.join(here, 'test');
  const files = readdirSync(testDir)
    .filter((f) => f.endsWith('.test.mjs'))
    .sort()
    .map((f) => path.join(testDir, f));
  // --test-force-exit: amplify-js arms a 15 s connection_init timer on every
  // socket it opens and never clears it (CONNECTION_INIT_TIMEOUT in
  // AWSWebSocketProvider._initiateHandshake), so each test file would otherwise
  // linger 15 s after its last test even though every socket is closed.
  // The files are independent (each its own process, own channels): run them
  // side by side, mostly to overlap the keep-alive test's idle wait.
  const nodeArgs = ['--test', '--test-force-exit', '--test-concurrency=4', '--test-reporter=spec', ...process.argv.slice(2), ...files];
  const env = {
    ...process.env,
    NODE_EXTRA_CA_CERTS: ca,
    HERALD_PORT: String(port),
    HERALD_API_KEY: apiKey,
    HERALD_TEST_KEEPALIVE_INTERVAL_MS: String(KEEPALIVE_INTERVAL_MS),
    HERALD_TEST_CONNECTION_TIMEOUT_MS: String(CONNECTION_TIMEOUT_MS),
  };
  testChild = spawn(process.execPath, nodeArgs, { stdio: 'inherit', env, cwd: here });
  // Watchdog: every test has its own timeout, this only bounds a wedged runner.
  const watchdog = setTimeout(() => {
    log(`test runner still running after ${RUN_TIMEOUT_MS / 1000} s; killing it`);
    testChild?.kill('SIGKILL');
  }, RUN_TIMEOUT_MS);
  const code = await new Promise((resolve) => {
    testChild.once('exit', (c, sig) => resolve(c ?? (sig ? 1 : 0)));
  });
  clearTimeout(watchdog);
  testChild = null;
  if (herald.exitCode !== null || herald.signalCode !== null) {
    log(`herald exited during the tests (code ${herald.exitCode}, signal ${herald.signalCode}); log:\n${heraldLogTail()}`);
    return 1;
  }
  if (code !== 0) log(`tests failed; herald log tail:\n${heraldLogTail()}`);
  return code;
}

async function cleanup() {
  await stopHerald();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
}

for (const [sig, num] of [['SIGINT', 2], ['SIGTERM', 15], ['SIGHUP', 1]]) {
  process.on(sig, async () => {
    log(`received ${sig}; stopping`);
    if (testChild) testChild.kill('SIGTERM');
    await cleanup();
    process.exit(128 + num);
  });
}
process.on('exit', stopHeraldSync);

let exitCode = 1;
try {
  exitCode = await main();
} catch (err) {
  log(`error: ${err.stack || err}`);
  exitCode = 1;
} finally {
  await cleanup();
}
process.exit(exitCode);
