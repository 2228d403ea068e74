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

  const util = Object.freeze({
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

  // Runs one handler call. Returns JSON text: {t:'ok', v} | {t:'error', m, et} |
  // {t:'unauthorized'} | {t:'thrown', m}.
  function call(kind, json) {
    const fn = handlers[kind];
    let out;
    try {
      const result = fn(JSON.parse(json));
      if (result instanceof Promise) {
        out = { t: 'thrown', m: 'handlers must be synchronous, but ' + kind + ' returned a Promise' };
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
