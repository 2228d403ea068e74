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
//   HERALD_BIN       path of the herald binary, relative to the caller's directory
//                    (default ../../target/debug/herald relative to this directory)
//   HERALD_WS_LOG=1  print every WebSocket frame the client sends/receives
// Extra arguments are passed to `node --test` (e.g. --test-name-pattern=wildcard).

import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { HeraldProcess, freePort } from './herald-process.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
// A relative HERALD_BIN is taken from where the command was typed (npm runs
// scripts in this directory but keeps the caller's directory in INIT_CWD).
const heraldBin = process.env.HERALD_BIN
  ? path.resolve(process.env.INIT_CWD || process.cwd(), process.env.HERALD_BIN)
  : path.resolve(here, '../../target/debug/herald');
const apiKey = `da2-amplifytest${Math.random().toString(36).slice(2, 10)}`;
const RUN_TIMEOUT_MS = 180_000;

// Short keep-alive timings so test/keepalive.test.mjs can check, within seconds,
// that Herald's `ka` frames keep amplify-js from dropping an idle socket.
const KEEPALIVE_INTERVAL_MS = 1000;
const CONNECTION_TIMEOUT_MS = 3000;

function log(msg) {
  process.stderr.write(`[run-tests] ${msg}\n`);
}

let herald = null; // HeraldProcess
let dataDir = null;
let testChild = null;

async function startHerald() {
  // A free port can be taken between probing and binding: retry a few times.
  for (let attempt = 1; ; attempt++) {
    dataDir = mkdtempSync(path.join(os.tmpdir(), 'herald-amplify-'));
    herald = new HeraldProcess({
      bin: heraldBin,
      port: await freePort(),
      apiKey,
      dataDir,
      env: {
        HERALD_WEBSOCKET__KEEPALIVE_INTERVAL_MS: String(KEEPALIVE_INTERVAL_MS),
        HERALD_WEBSOCKET__CONNECTION_TIMEOUT_MS: String(CONNECTION_TIMEOUT_MS),
      },
    });
    try {
      await herald.start();
      return;
    } catch (err) {
      rmSync(dataDir, { recursive: true, force: true });
      herald = null;
      dataDir = null;
      if (attempt >= 3 || /binary not found/.test(err.message)) throw err;
      log(`${err.message}\nretrying`);
    }
  }
}

async function main() {
  const [major, minor] = process.versions.node.split('.').map(Number);
  if (major < 20 || (major === 20 && minor < 14)) {
    throw new Error(`Node ${process.versions.node} is too old: this suite needs Node >= 20.14 (node --test --test-force-exit)`);
  }
  await startHerald();
  const ca = herald.caPath();
  log(`herald ${heraldBin} ready on 127.0.0.1:${herald.port}, data dir ${dataDir}`);

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
  // side by side, mostly to overlap the keep-alive and reconnect tests' waits.
  const nodeArgs = ['--test', '--test-force-exit', '--test-concurrency=4', '--test-reporter=spec', ...process.argv.slice(2), ...files];
  const env = {
    ...process.env,
    NODE_EXTRA_CA_CERTS: ca,
    HERALD_PORT: String(herald.port),
    HERALD_API_KEY: apiKey,
    HERALD_TEST_BIN: heraldBin,
    HERALD_TEST_DEV_TLS_DIR: path.dirname(ca),
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
  if (!herald.running) {
    log(`herald exited during the tests; log:\n${herald.logTail()}`);
    return 1;
  }
  if (code !== 0) log(`tests failed; herald log tail:\n${herald.logTail()}`);
  return code;
}

async function cleanup() {
  if (herald) {
    const exit = await herald.stop();
    if (exit && exit.signal === 'SIGKILL') log('herald did not stop within 5 s of SIGTERM; it was killed');
  }
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
process.on('exit', () => herald?.killSync());

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
