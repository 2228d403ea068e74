// A Herald of its own with the control plane on, for the control-plane files
// (control-plane, aws-cli, cdk): an administrator's key, a `default` namespace and the suite's
// API key, in a fresh data dir with the suite's development CA.
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { events } from 'aws-amplify/data';

import { HeraldProcess, freePort } from '../herald-process.mjs';
import { API_KEY } from './helpers.mjs';

/** Starts the Herald; `admin` is `{ accessKeyId, secretAccessKey }`, `extraToml` goes first. */
export async function startControlHerald(file, admin, extraToml = '') {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), `herald-amplify-${file}-`));
  cpSync(process.env.HERALD_TEST_DEV_TLS_DIR, path.join(dataDir, 'dev-tls'), { recursive: true });
  const configPath = path.join(dataDir, 'herald.toml');
  writeFileSync(
    configPath,
    `# Written by tests/amplify/test/${file}.test.mjs
${extraToml}
[[control_plane.access_keys]]
access_key_id = "${admin.accessKeyId}"
secret_access_key = "${admin.secretAccessKey}"

[[namespaces]]
name = "default"
`,
  );
  const herald = new HeraldProcess({
    bin: process.env.HERALD_TEST_BIN,
    port: await freePort(),
    apiKey: API_KEY,
    dataDir,
    configPath,
    // Refusal reasons go to the log (herald.log in the data dir) for failure reports.
    env: { RUST_LOG: 'info,herald_server::auth=debug' },
  });
  process.on('exit', () => herald.killSync());
  await herald.start();
  return {
    herald,
    async stop() {
      await events.closeAll().catch(() => {});
      await herald.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
