// Shared helpers: the WebSocket global (from `ws`, with a frame log), the
// Herald endpoint from the harness, and small await-with-timeout utilities.
import { EventEmitter } from 'node:events';
import WS from 'ws';

// ---------------------------------------------------------------------------
// WebSocket: Node 20 has no global WebSocket, and amplify-js calls
// `new WebSocket(url, protocols)` on the global. We provide `ws`, wrapped so
// every frame is recorded (for assertions on the wire and bug reports).
// HERALD_WS_LOG=1 prints them as they pass.
// ---------------------------------------------------------------------------
export const frames = []; // { dir: 'out' | 'in' | 'open' | 'close', data, at }
const frameEvents = new EventEmitter();
frameEvents.setMaxListeners(0);
const liveLog = process.env.HERALD_WS_LOG === '1';

function record(entry) {
  entry.at = Date.now();
  if (entry.dir === 'in' || entry.dir === 'out') {
    try {
      entry.json = JSON.parse(entry.data);
    } catch {
      /* non-JSON frame */
    }
  }
  frames.push(entry);
  if (liveLog) process.stderr.write(`[ws ${entry.dir}] ${entry.data}\n`);
  frameEvents.emit('frame', entry);
}

class RecordingWebSocket extends WS {
  constructor(url, protocols, options) {
    super(url, protocols, options);
    record({ dir: 'open', data: `${url} protocols=${JSON.stringify(protocols)}` });
    this.on('message', (data, isBinary) => {
      record({ dir: 'in', data: isBinary ? `<binary ${data.length} bytes>` : data.toString() });
    });
    this.on('close', (code, reason) => record({ dir: 'close', data: `code=${code} reason=${reason}` }));
    this.on('unexpected-response', (_req, res) => record({ dir: 'close', data: `unexpected HTTP ${res.statusCode}` }));
  }

  send(data, ...rest) {
    record({ dir: 'out', data: String(data) });
    return super.send(data, ...rest);
  }
}
globalThis.WebSocket = RecordingWebSocket;

/** Index to pass as `since` to waitForFrame / framesSince. */
export const frameMark = () => frames.length;
export const framesSince = (mark) => frames.slice(mark);

export function describeFrames(mark = Math.max(0, frames.length - 30)) {
  return framesSince(mark)
    .map((f) => `  ${f.dir.padEnd(5)} ${f.data.length > 400 ? `${f.data.slice(0, 400)}…` : f.data}`)
    .join('\n');
}

/** Resolve with the first recorded frame (from `since` on) matching pred. */
export function waitForFrame(pred, { since = 0, timeoutMs = 10_000, what = 'frame' } = {}) {
  const existing = frames.slice(since).find(pred);
  if (existing) return Promise.resolve(existing);
  return new Promise((resolve, reject) => {
    const onFrame = (f) => {
      if (pred(f)) {
        clearTimeout(timer);
        frameEvents.off('frame', onFrame);
        resolve(f);
      }
    };
    const timer = setTimeout(() => {
      frameEvents.off('frame', onFrame);
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; frames:\n${describeFrames(since)}`));
    }, timeoutMs);
    frameEvents.on('frame', onFrame);
  });
}

// ---------------------------------------------------------------------------
// Herald endpoint (set by run-tests.mjs)
// ---------------------------------------------------------------------------
const port = process.env.HERALD_PORT;
const key = process.env.HERALD_API_KEY;
if (!port || !key || !process.env.NODE_EXTRA_CA_CERTS) {
  throw new Error('HERALD_PORT / HERALD_API_KEY / NODE_EXTRA_CA_CERTS not set: run the suite with `npm test`');
}
export const HERALD_PORT = Number(port);
export const API_KEY = key;
export const BAD_API_KEY = 'da2-thiskeyisnotconfiguredonherald';
export const HTTP_ENDPOINT = `http://127.0.0.1:${port}/event`;
export const HTTPS_ENDPOINT = `https://localhost:${port}/event`;

/** Exactly the configuration a user writes. */
export function amplifyConfig(endpoint, apiKey = API_KEY) {
  return {
    API: {
      Events: {
        endpoint,
        region: 'us-east-1',
        defaultAuthMode: 'apiKey',
        apiKey,
      },
    },
  };
}

// ---------------------------------------------------------------------------
// Awaiting things
// ---------------------------------------------------------------------------
export function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}\nrecent frames:\n${describeFrames()}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Collects items (events or errors) and lets a test await one that matches. */
export class Inbox {
  constructor(name) {
    this.name = name;
    this.items = [];
    this.emitter = new EventEmitter();
    this.emitter.setMaxListeners(0);
  }

  push(item) {
    this.items.push(item);
    this.emitter.emit('item', item);
  }

  waitFor(pred, { timeoutMs = 10_000, what = 'a matching item' } = {}) {
    const existing = this.items.find(pred);
    if (existing !== undefined) return Promise.resolve(existing);
    return new Promise((resolve, reject) => {
      const onItem = (item) => {
        if (pred(item)) {
          clearTimeout(timer);
          this.emitter.off('item', onItem);
          resolve(item);
        }
      };
      const timer = setTimeout(() => {
        this.emitter.off('item', onItem);
        reject(
          new Error(
            `${this.name}: timed out after ${timeoutMs} ms waiting for ${what}; received ${JSON.stringify(this.items)}\nrecent frames:\n${describeFrames()}`,
          ),
        );
      }, timeoutMs);
      this.emitter.on('item', onItem);
    });
  }
}

/**
 * channel.subscribe() with an observer that records into inboxes.
 * `events` collects the deserialized event payloads (`msg.event`), `errors` the observer errors.
 */
export function subscribeInbox(channel, name, subOptions) {
  const events = new Inbox(`${name} events`);
  const errors = new Inbox(`${name} errors`);
  const sub = channel.subscribe(
    {
      next: (msg) => events.push(msg.event),
      error: (err) => errors.push(err),
    },
    subOptions,
  );
  return { sub, events, errors };
}

export const nonce = () => `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
/** A channel segment unique to this run (segments: alnum and dashes). */
export const uniqueSegment = (prefix) => `${prefix}-${nonce()}`;

/**
 * Assert that `events.post` rejected with amplify's RestApiError for an HTTP
 * error response whose body is the spec's `{"errors":[{errorType,message}]}`
 * envelope (spec §3). Returns the parsed errors[0].
 */
export function assertPostError(err, { status, errorType } = {}) {
  const res = err?.response;
  if (!res || typeof res.statusCode !== 'number') {
    throw new Error(`expected a RestApiError with a response, got ${err?.stack ?? err}`);
  }
  if (status !== undefined && res.statusCode !== status) {
    throw new Error(`expected HTTP ${status}, got ${res.statusCode}: ${res.body}`);
  }
  if (res.statusCode < 400 || res.statusCode > 499) {
    throw new Error(`expected a 4xx status, got ${res.statusCode}: ${res.body}`);
  }
  const body = JSON.parse(res.body);
  if (!Array.isArray(body.errors) || body.errors.length === 0 || typeof body.errors[0].errorType !== 'string') {
    throw new Error(`expected {"errors":[{"errorType",...}]}, got ${res.body}`);
  }
  if (errorType !== undefined && body.errors[0].errorType !== errorType) {
    throw new Error(`expected errorType ${errorType}, got ${res.body}`);
  }
  return body.errors[0];
}
