// README.md's Amplify quick start, run as a newcomer runs it: Herald started with the README's
// command (from a directory of its own, so the printed CA path must be absolute), the README's
// JavaScript saved as quickstart.mjs in another directory with the `aws-amplify` and `ws`
// packages, and `NODE_EXTRA_CA_CERTS=<path from the banner> node quickstart.mjs`; its output is
// checked against the lines the README shows. The README text is read here, not copied.
//
// What differs from the README, and only this: the port (8080 becomes a free one, through
// HERALD_LISTEN and in the script's endpoint) and the packages (this suite's node_modules,
// installed from its lockfile, linked into the script's directory instead of `npm install`).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { freePort, heraldEnv } from '../herald-process.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const suiteDir = path.resolve(here, '..');
const readme = readFileSync(path.resolve(suiteDir, '../../README.md'), 'utf8');
const TIMEOUT_MS = 30_000;

/** The fenced blocks of the README's quick start, in order: { lang, text }. */
function quickStartBlocks() {
  const start = readme.indexOf('## Quick start with the Amplify client');
  const end = readme.indexOf('\n## ', start + 1);
  assert.ok(start >= 0 && end > start, 'README has its quick start section');
  const section = readme.slice(start, end);
  return [...section.matchAll(/^```(\w*)\n([\s\S]*?)^```$/gm)].map(([, lang, text]) => ({ lang, text }));
}

/** Lines of a child's stream, with a way to await one matching. */
function lineReader(stream) {
  const lines = [];
  const waiters = [];
  let buffered = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk) => {
    buffered += chunk;
    let nl;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      lines.push(line);
      for (const w of [...waiters]) if (w.pred(line)) w.resolve(line);
    }
  });
  return {
    lines,
    waitFor(pred, what) {
      const seen = lines.find(pred);
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`timed out waiting for ${what}; output so far:\n${lines.join('\n')}`)),
          TIMEOUT_MS,
        );
        waiters.push({
          pred,
          resolve: (line) => {
            clearTimeout(timer);
            resolve(line);
          },
        });
      });
    },
  };
}

const children = [];
const dirs = [];
after(() => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

test('README quick start: quickstart.mjs receives both events from the README server', { timeout: 60_000 }, async () => {
  const blocks = quickStartBlocks();
  const serveBlock = blocks.find((b) => b.lang === 'sh' && b.text.includes('-- serve'));
  const js = blocks.filter((b) => b.lang === 'js');
  const runBlock = blocks.find((b) => b.lang === 'sh' && b.text.includes('node quickstart.mjs'));
  const installBlock = blocks.find((b) => b.lang === 'sh' && b.text.includes('npm install'));
  assert.ok(serveBlock && runBlock && installBlock, 'the quick start has its serve, npm install and node commands');
  assert.equal(js.length, 1, 'one JavaScript block: quickstart.mjs');
  assert.match(readme, /save this as `quickstart\.mjs`/, 'the README names the file it runs');

  // The packages the README installs are this suite's dependencies.
  const wanted = installBlock.text.trim().split(/\s+/).slice(2);
  const deps = JSON.parse(readFileSync(path.join(suiteDir, 'package.json'), 'utf8')).dependencies;
  assert.deepEqual(wanted.filter((p) => !(p in deps)), [], `npm install ${wanted.join(' ')}: all in package.json`);

  // Herald, exactly as the README starts it, from its own directory.
  const serveLine = serveBlock.text.split('\n').find((l) => l.includes('-- serve'));
  const args = serveLine.slice(serveLine.indexOf('-- ') + 3).trim().split(/\s+/);
  const port = await freePort();
  const serverDir = mkdtempSync(path.join(os.tmpdir(), 'herald-readme-server-'));
  dirs.push(serverDir);
  const server = spawn(process.env.HERALD_TEST_BIN, args, {
    cwd: serverDir,
    env: heraldEnv({ HERALD_LISTEN: `127.0.0.1:${port}` }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(server);
  const serverOut = lineReader(server.stdout);
  lineReader(server.stderr);
  const caLine = await serverOut.waitFor((l) => l.includes('NODE_EXTRA_CA_CERTS='), 'the banner line with the CA');
  const ca = caLine.slice(caLine.indexOf('NODE_EXTRA_CA_CERTS=') + 'NODE_EXTRA_CA_CERTS='.length).trim();
  assert.ok(path.isAbsolute(ca), `the CA path is absolute: ${ca}`);
  assert.ok(existsSync(ca), `the CA exists: ${ca}`);

  // quickstart.mjs in a directory of its own, with the packages.
  const appDir = mkdtempSync(path.join(os.tmpdir(), 'herald-readme-app-'));
  dirs.push(appDir);
  symlinkSync(path.join(suiteDir, 'node_modules'), path.join(appDir, 'node_modules'), 'dir');
  writeFileSync(path.join(appDir, 'quickstart.mjs'), js[0].text.replaceAll(':8080', `:${port}`));

  // The README's command, with the banner's path.
  const runLine = runBlock.text.split('\n').find((l) => l.includes('node quickstart.mjs'));
  assert.match(runLine, /^NODE_EXTRA_CA_CERTS=\S+ node quickstart\.mjs$/);
  const expected = runBlock.text
    .split('\n')
    .filter((l) => l.startsWith('# '))
    .map((l) => l.slice(2));
  assert.ok(expected.length >= 2, 'the README shows what the script prints');
  const app = spawn(process.execPath, ['quickstart.mjs'], {
    cwd: appDir,
    env: { ...process.env, NODE_EXTRA_CA_CERTS: ca },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(app);
  const appOut = lineReader(app.stdout);
  const appErr = lineReader(app.stderr);
  app.once('exit', (code) => {
    if (code) appOut.lines.push(`(quickstart.mjs exited with ${code}; stderr: ${appErr.lines.join('\n')})`);
  });
  for (const line of expected) {
    await appOut.waitFor((l) => l === line, `quickstart.mjs to print ${line}`);
  }
  assert.deepEqual(appOut.lines, expected, 'it prints exactly what the README shows');
  assert.deepEqual(appErr.lines, [], 'and nothing on stderr');
  app.kill('SIGTERM');
  server.kill('SIGTERM');
});
