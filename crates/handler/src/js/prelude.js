// Herald's per-namespace JavaScript glue: console, util, runtime and the call wrapper.
// Runs once per namespace context, before the namespace's module. `__heraldNative` holds the
// Rust functions (log, autoId, base64Encode, base64Decode); it is removed from the globals here.
(function (native) {
  'use strict';

  function describe(value) {
    if (typeof value === 'string') return value;
    if (value instanceof Error) {
      const stack = typeof value.stack === 'string' && value.stack.length > 0 ? '\n' + value.stack.trimEnd() : '';
      return String(value) + stack;
    }
    try {
      const json = JSON.stringify(value);
      return json === undefined ? String(value) : json;
    } catch (_) {
      return String(value);
    }
  }

  const logger = (level) => (...args) => native.log(level, args.map(describe).join(' '));
  const console = {
    log: logger('info'),
    info: logger('info'),
    debug: logger('debug'),
    warn: logger('warn'),
    error: logger('error'),
  };

  // Thrown by util.error / util.unauthorized / runtime.earlyReturn; recognised by `call` below.
  class HeraldSignal {
    constructor(kind, message, errorType, value) {
      this.kind = kind;
      this.message = message;
      this.errorType = errorType;
      this.value = value;
    }
    toString() {
      return this.kind === 'error' ? 'Error: ' + this.message : this.kind;
    }
  }

  // util.dynamodb: plain values to DynamoDB's typed form (AppSync's conversions).
  function toDynamoDB(value) {
    if (value === null || value === undefined) return { NULL: true };
    if (typeof value === 'string') return { S: value };
    if (typeof value === 'number') return { N: String(value) };
    if (typeof value === 'boolean') return { BOOL: value };
    if (Array.isArray(value)) return { L: value.map(toDynamoDB) };
    if (typeof value === 'object') return { M: toMapValues(value) };
    return { S: String(value) };
  }
  function toMapValues(object) {
    const out = {};
    for (const [k, v] of Object.entries(object ?? {})) {
      if (v !== undefined) out[k] = toDynamoDB(v);
    }
    return out;
  }
  const dynamodb = Object.freeze({
    toDynamoDB,
    toMapValues,
    toString: (s) => ({ S: String(s) }),
    toStringSet: (list) => ({ SS: list.map(String) }),
    toNumber: (n) => ({ N: String(n) }),
    toNumberSet: (list) => ({ NS: list.map(String) }),
    toBinary: (b) => ({ B: String(b) }),
    toBinarySet: (list) => ({ BS: list.map(String) }),
    toBoolean: (b) => ({ BOOL: Boolean(b) }),
    toNull: () => ({ NULL: true }),
    toList: (list) => ({ L: list.map(toDynamoDB) }),
    toMap: (object) => ({ M: toMapValues(object) }),
    toS3Object: (key, bucket, region, version) =>
      ({ S: JSON.stringify({ s3: version === undefined ? { key, bucket, region } : { key, bucket, region, version } }) }),
    fromS3ObjectJson: (json) => JSON.parse(json).s3,
  });

  const util = Object.freeze({
    dynamodb,
    error(message, errorType) {
      throw new HeraldSignal('error', message === undefined ? '' : String(message),
        errorType === undefined || errorType === null ? null : String(errorType));
    },
    unauthorized() {
      throw new HeraldSignal('unauthorized', 'Unauthorized', null);
    },
    // application/x-www-form-urlencoded, as AppSync's util.urlEncode (Java URLEncoder).
    urlEncode(value) {
      return encodeURIComponent(String(value))
        .replace(/%20/g, '+')
        .replace(/[!'()~]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase());
    },
    urlDecode(value) {
      return decodeURIComponent(String(value).replace(/\+/g, ' '));
    },
    base64Encode(value) {
      return native.base64Encode(String(value));
    },
    base64Decode(value) {
      return native.base64Decode(String(value));
    },
    autoId() {
      return native.autoId();
    },
    time: Object.freeze({
      nowEpochMilliSeconds() {
        return Date.now();
      },
      nowEpochSeconds() {
        return Math.floor(Date.now() / 1000);
      },
      nowISO8601() {
        return new Date().toISOString();
      },
    }),
  });

  const runtime = Object.freeze({
    earlyReturn(value) {
      throw new HeraldSignal('earlyReturn', 'earlyReturn', null, value);
    },
  });

  const handlers = { publish: undefined, subscribe: undefined };
  let handlersSet = false;

  function setHandlers(onPublish, onSubscribe) {
    if (handlersSet) throw new Error('handlers are already set');
    handlersSet = true;
    handlers.publish = onPublish;
    handlers.subscribe = onSubscribe;
  }

  function fatal(e) {
    // Resource exhaustion must reach Rust as an exception so the runtime gets rebuilt.
    return typeof InternalError !== 'undefined' && e instanceof InternalError &&
      /out of memory|interrupted/.test(String(e.message));
  }

  // Without `response`, a data-source handler passes the call's error on and otherwise keeps
  // the events (publish) or allows (subscribe).
  function defaultResponse(ctx) {
    if (ctx.error) util.error(ctx.error.message, ctx.error.type);
    return ctx.events;
  }

  // Runs one step of a handler call. `phase` is 'handler' (a plain function export), 'request'
  // or 'response' (a {request, response} export; `extra` carries {result, error, stash}).
  // Returns JSON text: {t:'ok', v} | {t:'request', v, s} | {t:'error', m, et} |
  // {t:'unauthorized'} | {t:'thrown', m}.
  function call(kind, phase, json, extra) {
    const handler = handlers[kind];
    let out;
    try {
      const ctx = JSON.parse(json);
      let fn = handler;
      if (phase === 'request') {
        fn = handler.request;
      } else if (phase === 'response') {
        const x = JSON.parse(extra);
        ctx.result = x.result === undefined ? null : x.result;
        ctx.error = x.error === undefined ? null : x.error;
        ctx.stash = x.stash && typeof x.stash === 'object' ? x.stash : {};
        fn = typeof handler.response === 'function' ? handler.response : defaultResponse;
      }
      const result = fn.call(handler, ctx);
      if (result instanceof Promise) {
        out = { t: 'thrown', m: 'handlers must be synchronous, but ' + kind + ' returned a Promise' };
      } else if (phase === 'request') {
        if (result === undefined || result === null) {
          out = { t: 'thrown', m: 'request must return the data source request object' };
        } else {
          out = { t: 'request', v: result, s: ctx.stash };
        }
      } else {
        out = { t: 'ok', v: result === undefined ? null : result };
      }
    } catch (e) {
      if (e instanceof HeraldSignal) {
        if (e.kind === 'earlyReturn') out = { t: 'ok', v: e.value === undefined ? null : e.value };
        else if (e.kind === 'error') out = { t: 'error', m: e.message, et: e.errorType };
        else out = { t: 'unauthorized' };
      } else if (fatal(e)) {
        throw e;
      } else {
        out = { t: 'thrown', m: describe(e) };
      }
    }
    try {
      return JSON.stringify(out);
    } catch (e) {
      if (fatal(e)) throw e;
      return JSON.stringify({ t: 'thrown', m: 'the handler result cannot be converted to JSON: ' + describe(e) });
    }
  }

  const hidden = (value) => ({ value, writable: false, enumerable: false, configurable: false });
  Object.defineProperty(globalThis, 'console', hidden(console));
  Object.defineProperty(globalThis, '__heraldUtils', hidden(Object.freeze({ util, runtime })));
  Object.defineProperty(globalThis, '__heraldSetHandlers', hidden(setHandlers));
  Object.defineProperty(globalThis, '__heraldCall', hidden(call));
})(globalThis.__heraldNative);
delete globalThis.__heraldNative;
