// Fixtures for the authorization-mode tests (auth-*.test.mjs): a loopback OpenID
// provider (discovery + JWKS, for both the OPENID_CONNECT and the Cognito-style
// issuer), a Lambda-style authorizer webhook, and a Herald started with a
// `--config` file naming them. Everything is real: tokens are RS256 JWTs signed
// with a key generated here, the webhook is a plain HTTP server.
import { generateKeyPairSync, sign as cryptoSign } from 'node:crypto';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';

import { HeraldProcess, freePort } from '../herald-process.mjs';
import { API_KEY, nonce, subscribeInbox, uniqueSegment, withTimeout } from './helpers.mjs';

export const REGION = 'us-east-1';
export const OIDC_CLIENT = 'amplify-web';
export const COGNITO_CLIENT = 'amplifyappclient';
/** May connect, publish and subscribe in every namespace. */
export const IAM_ALL = { accessKeyId: 'AKIAAMPLIFYALL', secretAccessKey: 'amplify/all+secret' };
/** Temporary credentials: every request must carry the session token. */
export const IAM_SESSION = {
  accessKeyId: 'ASIAAMPLIFYSESSION',
  secretAccessKey: 'amplify-session-secret',
  sessionToken: 'FwoGZXIvYXdzEAMPLIFY//session+token==',
};
/** May connect and subscribe, never publish. */
export const IAM_READER = { accessKeyId: 'AKIAAMPLIFYREADER', secretAccessKey: 'amplify-reader-secret' };

const ALL_MODES = '["API_KEY", "AMAZON_COGNITO_USER_POOLS", "OPENID_CONNECT", "AWS_LAMBDA", "AWS_IAM"]';

/** Listens on a fresh loopback port; resolves with the server and its base URL. */
function listen(handler) {
  return new Promise((resolve, reject) => {
    const server = http.createServer(handler);
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => resolve({ server, url: `http://127.0.0.1:${server.address().port}` }));
  });
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function sendJson(res, status, value) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(value));
}

const b64url = (s) => Buffer.from(s).toString('base64url');

/**
 * The identity fixtures alone: the OpenID provider (issuers `oidcIssuer` and `cognitoIssuer`),
 * `signJwt(claims)` with its key, and the authorizer webhook (`hookUrl`, `hookCalls`): tokens
 * `allow-*` may do everything, `readonly-*` everything but publish, anything else is denied; a
 * `Bearer ` prefix is ignored. `close()` stops both servers.
 */
export async function startIdentityFixtures() {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwks = { keys: [{ ...publicKey.export({ format: 'jwk' }), kid: 'amplify-k1', alg: 'RS256', use: 'sig' }] };

  // One IdP server, two issuers under it: /oidc and /cognito.
  let idpUrl;
  const idp = await listen((req, res) => {
    const m = /^\/(oidc|cognito)(\/.*)$/.exec(req.url ?? '');
    if (m && m[2] === '/.well-known/openid-configuration') {
      const issuer = `${idpUrl}/${m[1]}`;
      return sendJson(res, 200, { issuer, jwks_uri: `${issuer}/jwks` });
    }
    if (m && m[2] === '/jwks') return sendJson(res, 200, jwks);
    return sendJson(res, 404, {});
  });
  idpUrl = idp.url;
  const oidcIssuer = `${idpUrl}/oidc`;
  const cognitoIssuer = `${idpUrl}/cognito`;

  // The authorizer: `allow-*` may do everything, `readonly-*` everything but publish.
  const hookCalls = [];
  const hook = await listen(async (req, res) => {
    const body = JSON.parse(await readBody(req));
    hookCalls.push(body);
    const token = String(body.authorizationToken ?? '').replace(/^Bearer /, '');
    const op = body.requestContext?.operation;
    const isAuthorized = token.startsWith('allow-') || (token.startsWith('readonly-') && op !== 'EVENT_PUBLISH');
    sendJson(res, 200, { isAuthorized, handlerContext: { user: token } });
  });

  const signJwt = (claims) => {
    const head = b64url(JSON.stringify({ alg: 'RS256', typ: 'JWT', kid: 'amplify-k1' }));
    const body = b64url(JSON.stringify(claims));
    const sig = cryptoSign('sha256', Buffer.from(`${head}.${body}`), privateKey).toString('base64url');
    return `${head}.${body}.${sig}`;
  };
  return {
    oidcIssuer,
    cognitoIssuer,
    signJwt,
    hookUrl: hook.url,
    hookCalls,
    close() {
      idp.server.close();
      hook.server.close();
      idp.server.closeAllConnections?.();
      hook.server.closeAllConnections?.();
    },
  };
}

/**
 * Starts the fixtures and Herald. `stop()` tears everything down.
 * @returns {Promise<object>}
 */
export async function startAuthWorld() {
  const fixtures = await startIdentityFixtures();
  const { oidcIssuer, cognitoIssuer, signJwt, hookCalls } = fixtures;
  const hook = { url: fixtures.hookUrl };
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'herald-amplify-auth-'));
  // Reuse the harness Herald's development CA, which NODE_EXTRA_CA_CERTS already trusts.
  cpSync(process.env.HERALD_TEST_DEV_TLS_DIR, path.join(dataDir, 'dev-tls'), { recursive: true });
  const configPath = path.join(dataDir, 'herald.toml');
  writeFileSync(
    configPath,
    `# Written by tests/amplify/test/auth-world.mjs
[auth]
connection_auth_modes = ${ALL_MODES}
default_publish_auth_modes = ${ALL_MODES}
default_subscribe_auth_modes = ${ALL_MODES}

[[auth.providers]]
auth_type = "OPENID_CONNECT"
issuer = "${oidcIssuer}"
client_id = "${OIDC_CLIENT}"

[[auth.providers]]
auth_type = "AMAZON_COGNITO_USER_POOLS"
user_pool_id = "us-east-1_AmplifyTest"
aws_region = "${REGION}"
app_id_client_regex = "${COGNITO_CLIENT}"
issuer = "${cognitoIssuer}"

[[auth.providers]]
auth_type = "AWS_LAMBDA"
authorizer_url = "${hook.url}/authorize"
timeout_ms = 5000

[[auth.providers]]
auth_type = "AWS_IAM"
region = "${REGION}"

[[auth.providers.keys]]
access_key_id = "${IAM_ALL.accessKeyId}"
secret_access_key = "${IAM_ALL.secretAccessKey}"
principal = "amplify-all"
actions = ["EventConnect", "EventPublish", "EventSubscribe"]

[[auth.providers.keys]]
access_key_id = "${IAM_SESSION.accessKeyId}"
secret_access_key = "${IAM_SESSION.secretAccessKey}"
session_token = "${IAM_SESSION.sessionToken}"
principal = "amplify-session"
actions = ["EventConnect", "EventPublish", "EventSubscribe"]

[[auth.providers.keys]]
access_key_id = "${IAM_READER.accessKeyId}"
secret_access_key = "${IAM_READER.secretAccessKey}"
principal = "amplify-reader"
actions = ["EventConnect", "EventSubscribe"]

[[namespaces]]
name = "default"

# Publish only with IAM; subscribe only with OIDC or the Lambda authorizer.
[[namespaces]]
name = "split"
publish_auth_modes = ["AWS_IAM"]
subscribe_auth_modes = ["OPENID_CONNECT", "AWS_LAMBDA"]
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

  const now = () => Math.floor(Date.now() / 1000);

  return {
    herald,
    httpEndpoint: `http://127.0.0.1:${herald.port}/event`,
    httpsEndpoint: `https://localhost:${herald.port}/event`,
    hookCalls,
    signJwt,
    /** An OIDC ID token for `sub`. */
    oidcToken: (sub, extra = {}) =>
      signJwt({ iss: oidcIssuer, sub, aud: OIDC_CLIENT, iat: now(), exp: now() + 600, ...extra }),
    /** A Cognito-style access token for `username`. */
    cognitoToken: (username, extra = {}) =>
      signJwt({
        iss: cognitoIssuer,
        sub: `sub-${username}`,
        client_id: COGNITO_CLIENT,
        token_use: 'access',
        'cognito:username': username,
        iat: now(),
        exp: now() + 600,
        ...extra,
      }),
    async stop() {
      await herald.stop();
      fixtures.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * What amplify-js expects from a token provider: `{ payload, toString() }` per token.
 * The same code as docs/authorization.md's example (browser APIs only).
 */
export function amplifyJwt(jwt) {
  const base64 = jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  return { payload: JSON.parse(new TextDecoder().decode(bytes)), toString: () => jwt };
}

/** Amplify options whose token provider hands out `token()` as the access token. */
export function tokenProviderOptions(token) {
  return {
    Auth: {
      tokenProvider: {
        getTokens: async () => ({ accessToken: amplifyJwt(token()) }),
      },
    },
  };
}

/** Amplify options whose credentials provider hands out the static IAM credentials `credentials()`. */
export function staticCredentialsOptions(credentials) {
  return {
    Auth: {
      credentialsProvider: {
        getCredentialsAndIdentityId: async () => ({ credentials: { ...credentials() } }),
        clearCredentialsAndIdentityId: () => {},
      },
    },
  };
}

/** The Events section of an Amplify configuration for `authMode`. */
export function eventsConfig(endpoint, defaultAuthMode, extra = {}) {
  return { API: { Events: { endpoint, region: REGION, defaultAuthMode, ...extra } } };
}

/**
 * The round trip every mode must pass: `events.connect` + `subscribe` on
 * `/<ns>/<unique>/*`, `channel.publish` over the socket from a second channel
 * object, `events.post` over HTTP; both events arrive intact. `connectOptions`
 * go to events.connect (and so to the channel's subscribe and publish),
 * `postOptions` to events.post.
 */
export async function roundTrip({ events, ns = 'default', connectOptions, postOptions, label }) {
  const T = 10_000;
  const seg = uniqueSegment(label.replace(/[^A-Za-z0-9-]/g, '-'));
  const id = nonce();
  const ch = await withTimeout(events.connect(`/${ns}/${seg}/*`, connectOptions), T, `${label}: events.connect`);
  const s = subscribeInbox(ch, `${label} subscriber`);
  await withTimeout(s.sub.ready, T, `${label}: subscription ready`);
  const pub = await withTimeout(events.connect(`/${ns}/${seg}/a`, connectOptions), T, `${label}: publisher connect`);
  const socketEvent = { nonce: id, via: 'socket', text: 'héllo "wörld" / ✓\n' };
  await withTimeout(pub.publish(socketEvent), T, `${label}: channel.publish resolves`);
  const got = await s.events.waitFor((e) => e?.nonce === id && e.via === 'socket', { timeoutMs: T, what: `${label}: socket event` });
  const httpEvent = { nonce: id, via: 'http', list: [1, 'two', null] };
  const failed = await withTimeout(events.post(`/${ns}/${seg}/b`, httpEvent, postOptions), T, `${label}: events.post resolves`);
  const gotHttp = await s.events.waitFor((e) => e?.nonce === id && e.via === 'http', { timeoutMs: T, what: `${label}: HTTP event` });
  await pub.close();
  await ch.close();
  return { got, socketEvent, gotHttp, httpEvent, failed, errors: s.errors.items };
}
