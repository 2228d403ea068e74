// Amplify configured with an API key Herald does not know: the connection
// itself is refused (spec §2.1: connection_error, then close).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { BAD_API_KEY, HTTP_ENDPOINT, amplifyConfig, assertPostError, frameMark, framesSince, waitForFrame, withTimeout } from './helpers.mjs';
import { Amplify } from 'aws-amplify';
import { events } from 'aws-amplify/data';

before(() => {
  Amplify.configure(amplifyConfig(HTTP_ENDPOINT, BAD_API_KEY));
});

after(async () => {
  await events.closeAll();
});

test('4. a bad API key in the configuration: events.connect rejects with connection_error', { timeout: 30_000 }, async () => {
  const mark = frameMark();
  await assert.rejects(withTimeout(events.connect('/default/*'), 20_000, 'events.connect with a bad key settles'), (err) => {
    // amplify-js turns connection_error {errorType: UnauthorizedException} into a NonRetryableError.
    assert.match(String(err?.message ?? err), /UnauthorizedException/);
    return true;
  });
  const frame = await waitForFrame((f) => f.dir === 'in' && f.json?.type === 'connection_error', { since: mark });
  assert.equal(frame.json.errors?.[0]?.errorType, 'UnauthorizedException');
  const opened = framesSince(mark).filter((f) => f.dir === 'open');
  assert.equal(opened.length, 1, 'amplify-js does not retry a non-retryable connection_error');
});

test('4. a bad API key in the configuration: events.post rejects', { timeout: 30_000 }, async () => {
  await assert.rejects(withTimeout(events.post('/default/x', { hello: 'world' }), 10_000, 'events.post with a bad key settles'), (err) => {
    // HTTP 401 with the {"errors":[...]} envelope (spec §3).
    assertPostError(err, { status: 401, errorType: 'UnauthorizedException' });
    return true;
  });
});
