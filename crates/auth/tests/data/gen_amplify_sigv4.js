// Generates amplify_sigv4.json: WebSocket auth objects signed by amplify-js's own SigV4 signer,
// built the way amplify-js's Events provider builds them (AWSWebSocketProvider/authHeaders.ts:
// POST <endpoint>, AWS_APPSYNC_REALTIME_HEADERS, body JSON.stringify({channel, events})).
// Not run by the tests or CI; to regenerate:
//   mkdir /tmp/amp && cd /tmp/amp && npm install @aws-amplify/core@6.19.2
//   NODE_PATH=/tmp/amp/node_modules node gen_amplify_sigv4.js > amplify_sigv4.json
const { signRequest } = require('@aws-amplify/core/internals/aws-client-utils');

const endpoint = 'https://abcdefghijklmnopqrstuvwxyz.appsync-api.us-east-1.amazonaws.com/event';
const realtimeHeaders = {
  accept: 'application/json, text/javascript',
  'content-encoding': 'amz-1.0',
  'content-type': 'application/json; charset=UTF-8',
};
const signingDate = new Date('2026-11-27T08:00:00Z');
const credentials = { accessKeyId: 'AKIDAMPLIFYTEST', secretAccessKey: 'amplify/test+secret' };
const withToken = { ...credentials, sessionToken: 'amplify-session-token/+=' };
// amplify-js serializeEvents: each event is JSON.stringify'd.
const serializeEvents = (events) => (Array.isArray(events) ? events : [events]).map((e) => JSON.stringify(e));

function sign(payload, creds) {
  const signed = signRequest(
    { headers: { ...realtimeHeaders }, method: 'POST', url: new URL(endpoint), body: payload },
    { credentials: creds, signingRegion: 'us-east-1', signingService: 'appsync', signingDate },
  );
  return signed.headers;
}

const cases = [];
function add(name, operation, channel, events, creds) {
  const data = operation === 'connect' ? {} : { channel, events: events === undefined ? undefined : serializeEvents(events) };
  const body = JSON.stringify(data);
  cases.push({ name, operation, channel: channel ?? null, events: data.events ?? [], body, session_token: creds.sessionToken ?? null, auth: sign(body, creds) });
}

add('connect', 'connect', undefined, undefined, credentials);
add('connect-session-token', 'connect', undefined, undefined, withToken);
add('subscribe-wildcard', 'subscribe', '/default/*', undefined, credentials);
add('subscribe-no-leading-slash', 'subscribe', 'default/channel', undefined, withToken);
add('publish-objects', 'publish', '/default/channel', [{ msg: 'hello/world', n: 1 }, 'plain string', 42, null], credentials);
add('publish-escapes', 'publish', '/default/a-b/c', [{ text: 'quote " backslash \\ newline \n tab \t ctrl \u0001 del \u007f' }, 'é ü 漢字 😀 \u2028'], withToken);

console.log(JSON.stringify({ time: '20261127T080000Z', access_key_id: credentials.accessKeyId, secret_access_key: credentials.secretAccessKey, cases }, null, 1));
