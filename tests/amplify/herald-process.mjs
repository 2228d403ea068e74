// Starting and stopping a Herald process for the tests (used by run-tests.mjs
// and by test/reconnect.test.mjs, which restarts its own Herald).
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';

export const READY_TIMEOUT_MS = 20_000;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A loopback port that was free a moment ago. */
export function freePort() {
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

/**
 * The environment for Herald: the caller's minus every HERALD_* variable (Herald
 * reads those as configuration overrides), plus `overrides`.
 */
export function heraldEnv(overrides = {}) {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('HERALD_')));
  return { ...env, ...overrides };
}

export class HeraldProcess {
  /**
   * @param {object} o
   * @param {string} o.bin herald binary
   * @param {number} o.port loopback port
   * @param {string} o.apiKey
   * @param {string} o.dataDir (its dev-tls/ holds the development CA, reused if present)
   * @param {Record<string,string>} [o.env] extra HERALD_* configuration
   * @param {string} [o.configPath] a TOML file passed as `--config` (the flags above still
   *   override its listen address and data dir, and add the API key)
   */
  constructor({ bin, port, apiKey, dataDir, env = {}, configPath }) {
    Object.assign(this, { bin, port, apiKey, dataDir, env, configPath });
    this.logPath = path.join(dataDir, 'herald.log');
    this.child = null;
    this.exited = null;
  }

  get running() {
    return this.child !== null && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Spawn and wait for GET /healthz; throws (after stopping it) if it does not come up. */
  async start() {
    if (!existsSync(this.bin)) {
      throw new Error(`herald binary not found at ${this.bin}; run \`cargo build -p herald\` or set HERALD_BIN`);
    }
    const fd = openSync(this.logPath, 'a');
    const args = ['serve', '--listen', `127.0.0.1:${this.port}`, '--api-key', this.apiKey, '--dev-tls', '--data-dir', this.dataDir];
    if (this.configPath) args.push('--config', this.configPath);
    const child = spawn(this.bin, args, { stdio: ['ignore', fd, fd], env: heraldEnv(this.env) });
    closeSync(fd);
    this.child = child;
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    child.once('error', () => {}); // surfaces as an exit / readiness failure below

    const deadline = Date.now() + READY_TIMEOUT_MS;
    while (Date.now() < deadline && this.running) {
      try {
        const res = await fetch(`http://127.0.0.1:${this.port}/healthz`, { signal: AbortSignal.timeout(1000) });
        if (res.ok) return;
      } catch {
        /* not listening yet */
      }
      await sleep(100);
    }
    await this.stop();
    throw new Error(`herald did not become ready on 127.0.0.1:${this.port}; log:\n${this.logTail()}`);
  }

  /** SIGTERM (graceful shutdown), SIGKILL after `graceMs`. Resolves with {code, signal}. */
  async stop(graceMs = 5000) {
    if (!this.child) return null;
    if (this.running) {
      this.child.kill('SIGTERM');
      const done = await Promise.race([this.exited, sleep(graceMs).then(() => null)]);
      if (!done) {
        this.child.kill('SIGKILL');
      }
    }
    return this.exited;
  }

  /** For process 'exit' handlers, which cannot wait. */
  killSync() {
    if (this.running) {
      try {
        this.child.kill('SIGKILL');
      } catch {
        /* gone */
      }
    }
  }

  logTail(lines = 40) {
    try {
      return readFileSync(this.logPath, 'utf8').split('\n').slice(-lines).join('\n');
    } catch {
      return '(no herald log)';
    }
  }

  /** The development CA Herald printed (NODE_EXTRA_CA_CERTS=...), or its documented location. */
  caPath() {
    let printed;
    try {
      printed = /NODE_EXTRA_CA_CERTS=(\S+)/.exec(readFileSync(this.logPath, 'utf8'))?.[1];
    } catch {
      /* no log */
    }
    const candidates = [printed, path.join(this.dataDir, 'dev-tls', 'ca.pem')].filter(Boolean);
    const ca = candidates.find((p) => existsSync(p));
    if (!ca) throw new Error(`development CA not found (looked at ${candidates.join(', ')})`);
    return ca;
  }
}
