// Herald console: a pub/sub editor speaking the AppSync Events protocol from the browser,
// and live per-namespace figures read from Herald's Prometheus endpoint. No dependencies.

const $ = (id) => document.getElementById(id);
const MAX_LOG = 2000;
const MAX_EVENTS = 5;
const SETTINGS = 'herald-console';

// ---------------------------------------------------------------------------------------------
// Endpoints and credentials

/**
 * The URLs for an endpoint as typed: empty means this page's origin; `host:port`, `http(s)://…`,
 * `…/event` and `ws(s)://…/event/realtime` all work. AWS hosts get their realtime host.
 */
function endpoints(input) {
  let raw = input.trim() || location.origin;
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(raw)) raw = `http://${raw}`;
  const u = new URL(raw);
  if (u.protocol === 'ws:') u.protocol = 'http:';
  if (u.protocol === 'wss:') u.protocol = 'https:';
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error(`unsupported scheme ${u.protocol}`);
  const base = u.pathname.replace(/\/+$/, '').replace(/\/event(\/realtime)?$/, '');
  const realtimeHost = u.host.replace(/\.appsync-api\./, '.appsync-realtime-api.');
  return {
    host: u.host.replace(/\.appsync-realtime-api\./, '.appsync-api.'),
    http: `${u.protocol}//${u.host}${base}/event`,
    realtime: `${u.protocol === 'https:' ? 'wss' : 'ws'}://${realtimeHost}${base}/event/realtime`,
    metrics: `${u.protocol}//${u.host}${base}/metrics`,
  };
}

function credentials() {
  return $('auth-mode').value === 'token'
    ? { name: 'Authorization', value: $('auth-token').value.trim() }
    : { name: 'x-api-key', value: $('api-key').value.trim() };
}

/** The `authorization` object of WebSocket operations (also the connect header). */
function authObject(host) {
  const c = credentials();
  return { host, [c.name]: c.value };
}

function base64url(text) {
  let bin = '';
  for (const b of new TextEncoder().encode(text)) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

let idCounter = 0;
function newId(prefix) {
  const r = new Uint32Array(2);
  crypto.getRandomValues(r);
  return `${prefix}-${(++idCounter).toString(36)}-${r[0].toString(36)}${r[1].toString(36)}`;
}

/** A copy of a frame with credentials shortened, for display. */
function redact(value) {
  if (Array.isArray(value)) return value.map(redact);
  if (value && typeof value === 'object') {
    const out = {};
    for (const [k, v] of Object.entries(value)) {
      const secret = /^(x-api-key|authorization|x-amz-security-token)$/i.test(k);
      out[k] = secret && typeof v === 'string' ? mask(v) : redact(v);
    }
    return out;
  }
  return value;
}
const mask = (s) => (s.length <= 8 ? '••••' : `${s.slice(0, 6)}…${s.slice(-2)}`);

// ---------------------------------------------------------------------------------------------
// Log

const log = $('log');

/**
 * Adds one line. `dir`: 'out' (sent), 'in' (received), 'info' or 'error'. `type` is the frame's
 * type (or e.g. 'http'); `summary` the one-line text; `raw` an object shown pretty on demand.
 */
function addLog({ dir, type, summary, raw, channel, cls }) {
  const li = document.createElement('li');
  li.className = `entry ${dir}${cls ? ` ${cls}` : ''}`;
  li.dataset.dir = dir;
  li.dataset.type = type;
  if (channel) li.dataset.channel = channel;

  const time = document.createElement('time');
  const now = new Date();
  time.textContent = `${now.toLocaleTimeString([], { hour12: false })}.${String(now.getMilliseconds()).padStart(3, '0')}`;
  const arrow = document.createElement('span');
  arrow.className = 'arrow';
  arrow.textContent = { out: '↑', in: '↓', info: '•', error: '!' }[dir] ?? '•';
  arrow.title = { out: 'sent', in: 'received', info: 'info', error: 'error' }[dir] ?? '';
  const badge = document.createElement('span');
  badge.className = 'type';
  badge.textContent = type;
  li.append(time, arrow, badge);
  if (channel) {
    const ch = document.createElement('span');
    ch.className = 'channel';
    ch.textContent = channel;
    li.append(ch);
  }
  const text = document.createElement('span');
  text.className = 'summary';
  text.textContent = summary ?? '';
  li.append(text);
  if (raw !== undefined) {
    const toggle = document.createElement('button');
    toggle.type = 'button';
    toggle.className = 'raw-toggle';
    toggle.textContent = '{ }';
    toggle.title = 'Show the whole frame';
    toggle.setAttribute('aria-expanded', 'false');
    const pre = document.createElement('pre');
    pre.hidden = true;
    pre.textContent = typeof raw === 'string' ? raw : JSON.stringify(redact(raw), null, 2);
    toggle.addEventListener('click', () => {
      pre.hidden = !pre.hidden;
      toggle.setAttribute('aria-expanded', String(!pre.hidden));
    });
    li.append(toggle, pre);
  }
  applyFilter(li);
  const follow = $('autoscroll').checked;
  log.append(li);
  while (log.childElementCount > MAX_LOG) log.firstElementChild.remove();
  if (follow) log.scrollTop = log.scrollHeight;
}

function applyFilter(li) {
  const q = $('log-filter').value.trim().toLowerCase();
  li.classList.toggle('filtered', q !== '' && !li.textContent.toLowerCase().includes(q));
}

/** A JSON string shown compactly (events are JSON strings). */
function compactEvent(s) {
  try {
    return JSON.stringify(JSON.parse(s));
  } catch {
    return String(s);
  }
}

const errorText = (errors) =>
  (errors ?? []).map((e) => `${e.errorType ?? e.code ?? 'Error'}${e.message ? `: ${e.message}` : ''}`).join('; ');

// ---------------------------------------------------------------------------------------------
// Connection

let ws = null;
let conn = null; // { host, urls } of the current socket
const subs = new Map(); // id -> { channel, state, el }
const publishes = new Map(); // id -> channel

function setStatus(state, text) {
  $('status').dataset.state = state;
  $('status-text').textContent = text;
  const connected = state === 'connected';
  const open = state === 'connected' || state === 'connecting';
  $('subscribe').disabled = !connected;
  $('publish-ws').disabled = !connected;
  $('disconnect').disabled = !open;
  $('connect').textContent = open ? 'Reconnect' : 'Connect';
}

function send(frame) {
  if (!ws || ws.readyState !== WebSocket.OPEN) {
    addLog({ dir: 'error', type: 'error', summary: 'Not connected.' });
    return false;
  }
  ws.send(JSON.stringify(frame));
  const summary = frame.events
    ? `${frame.events.length} event${frame.events.length === 1 ? '' : 's'}: ${frame.events.join(' ')}`
    : frame.id
      ? `id ${frame.id}`
      : '';
  addLog({ dir: 'out', type: frame.type, channel: frame.channel, summary, raw: frame });
  return true;
}

function connect() {
  let urls;
  try {
    urls = endpoints($('endpoint').value);
  } catch (e) {
    addLog({ dir: 'error', type: 'error', summary: `Invalid endpoint: ${e.message}` });
    return;
  }
  const cred = credentials();
  if (!cred.value) {
    addLog({ dir: 'error', type: 'error', summary: `Enter ${cred.name === 'x-api-key' ? 'an API key' : 'an authorization token'} first.` });
    (cred.name === 'x-api-key' ? $('api-key') : $('auth-token')).focus();
    return;
  }
  disconnect('reconnecting');
  saveSettings();
  const header = authObject(urls.host);
  let socket;
  try {
    socket = new WebSocket(urls.realtime, ['aws-appsync-event-ws', `header-${base64url(JSON.stringify(header))}`]);
  } catch (e) {
    addLog({ dir: 'error', type: 'error', summary: `Cannot open ${urls.realtime}: ${e.message}` });
    return;
  }
  ws = socket;
  conn = { host: urls.host, urls };
  setStatus('connecting', 'Connecting…');
  addLog({ dir: 'info', type: 'socket', summary: `Opening ${urls.realtime}` });

  socket.onopen = () => {
    if (socket !== ws) return;
    addLog({ dir: 'info', type: 'socket', summary: `Open (subprotocol ${socket.protocol || 'none'})` });
    send({ type: 'connection_init' });
  };
  socket.onmessage = (m) => {
    if (socket !== ws) return;
    receive(m.data);
  };
  socket.onerror = () => {
    if (socket !== ws) return;
    addLog({ dir: 'error', type: 'socket', summary: 'WebSocket error (see the browser console for details)' });
  };
  socket.onclose = (e) => {
    if (socket !== ws) return;
    ws = null;
    addLog({
      dir: e.code === 1000 ? 'info' : 'error',
      type: 'close',
      summary: `Closed: code ${e.code}${e.reason ? ` (${e.reason})` : ''}${e.code === 1006 ? ' — no answer; is the endpoint right?' : ''}`,
    });
    endSubscriptions();
    if (conn.refused) setStatus('error', 'Connection refused');
    else setStatus('disconnected', e.code === 1000 ? 'Disconnected' : `Closed (${e.code})`);
  };
}

function disconnect(why) {
  if (!ws) return;
  const socket = ws;
  ws = null;
  socket.close(1000);
  addLog({ dir: 'info', type: 'close', summary: why === 'reconnecting' ? 'Closed to reconnect' : 'Disconnected by you' });
  endSubscriptions();
  setStatus('disconnected', 'Disconnected');
}

function receive(text) {
  let msg;
  try {
    msg = JSON.parse(text);
  } catch {
    addLog({ dir: 'in', type: 'unparsed', summary: text, cls: 'bad' });
    return;
  }
  const type = String(msg.type ?? '(no type)');
  switch (type) {
    case 'connection_ack':
      setStatus('connected', `Connected to ${conn.host}`);
      addLog({ dir: 'in', type, summary: `timeout ${msg.connectionTimeoutMs ?? '?'} ms`, raw: msg, cls: 'good' });
      return;
    case 'connection_error':
      conn.refused = true;
      setStatus('error', 'Connection refused');
      addLog({ dir: 'in', type, summary: errorText(msg.errors), raw: msg, cls: 'bad' });
      return;
    case 'ka':
      addLog({ dir: 'in', type, summary: 'keep-alive', cls: 'ka' });
      return;
    case 'data': {
      const sub = subs.get(msg.id);
      if (msg.presence && sub) {
        presenceEvent(sub, msg);
        return;
      }
      const channel = msg.position?.channel ?? sub?.channel;
      const via = msg.position?.channel && sub && sub.channel !== msg.position.channel ? ` (via ${sub.channel})` : '';
      const pos = msg.position?.offset !== undefined ? ` #${msg.position.offset}` : '';
      addLog({ dir: 'in', type, channel, summary: `${compactEvent(msg.event)}${via}${pos}`, raw: msg, cls: 'data-event' });
      return;
    }
    case 'subscribe_success': {
      const sub = subs.get(msg.id);
      if (sub) setSubState(msg.id, 'active');
      // Who is here (Herald presence extension); a namespace without presence answers an error.
      if (sub) send({ type: 'presence', id: `pr-${msg.id}`, channel: sub.channel, authorization: authObject(conn.host) });
      const r = msg.resume;
      const resume = !r
        ? ''
        : r.recovered
          ? `, replayed ${r.replayed}`
          : `, replayed ${r.replayed ?? 0}, not everything: ${r.reason ?? 'unknown reason'}`;
      addLog({ dir: 'in', type, channel: sub?.channel, summary: `id ${msg.id}${resume}`, raw: msg, cls: 'good' });
      return;
    }
    case 'subscribe_error': {
      const sub = subs.get(msg.id);
      if (sub) setSubState(msg.id, 'error', errorText(msg.errors));
      addLog({ dir: 'in', type, channel: sub?.channel, summary: errorText(msg.errors), raw: msg, cls: 'bad' });
      return;
    }
    case 'unsubscribe_success': {
      const sub = subs.get(msg.id);
      removeSub(msg.id);
      addLog({ dir: 'in', type, channel: sub?.channel, summary: `id ${msg.id}`, raw: msg });
      return;
    }
    case 'publish_success': {
      const channel = publishes.get(msg.id);
      publishes.delete(msg.id);
      addLog({ dir: 'in', type, channel, summary: publishSummary(msg), raw: msg, cls: msg.failed?.length ? 'bad' : 'good' });
      return;
    }
    case 'publish_error': {
      const channel = publishes.get(msg.id);
      publishes.delete(msg.id);
      addLog({ dir: 'in', type, channel, summary: errorText(msg.errors), raw: msg, cls: 'bad' });
      return;
    }
    case 'presence_result': {
      const sub = subs.get(String(msg.id).replace(/^pr-/, ''));
      if (sub) {
        sub.members = new Map((msg.members ?? []).map((m) => [m.connectionId, m]));
        sub.memberCount = msg.count ?? sub.members.size;
        renderMembers(sub);
      }
      addLog({ dir: 'in', type, channel: sub?.channel, summary: `${msg.count} here`, raw: msg });
      return;
    }
    case 'presence_error':
      // Expected on namespaces without presence: nothing to show.
      addLog({ dir: 'in', type, summary: errorText(msg.errors), raw: msg, cls: 'ka' });
      return;
    default:
      addLog({ dir: 'in', type, summary: msg.errors ? errorText(msg.errors) : '', raw: msg, cls: msg.errors ? 'bad' : '' });
  }
}

/** A join or leave on a subscription that asked for them: the member list follows it. */
function presenceEvent(sub, msg) {
  let member = {};
  try {
    member = JSON.parse(msg.event).member ?? {};
  } catch {
    /* shown raw in the log */
  }
  if (sub.members) {
    const had = sub.members.has(member.connectionId);
    if (msg.presence === 'join' && !had) {
      sub.members.set(member.connectionId, member);
      sub.memberCount += 1;
    } else if (msg.presence === 'leave' && had) {
      sub.members.delete(member.connectionId);
      sub.memberCount -= 1;
    }
    renderMembers(sub);
  }
  const who = memberName(member);
  addLog({ dir: 'in', type: 'presence', channel: sub.channel, summary: `${who} ${msg.presence === 'join' ? 'joined' : 'left'}`, raw: msg });
}

function memberName(m) {
  const info = m.info && typeof m.info === 'object' ? m.info.name ?? m.info.user : undefined;
  return String(info ?? m.identity ?? m.connectionId ?? 'someone');
}

/** "N here: a, b, c" under the subscription (the first 20 names). */
function renderMembers(sub) {
  let el = sub.el.querySelector('.members');
  if (!el) {
    el = document.createElement('div');
    el.className = 'members';
    sub.el.append(el);
  }
  const names = [...sub.members.values()].slice(0, 20).map(memberName);
  const more = sub.memberCount > names.length ? ` and ${sub.memberCount - names.length} more` : '';
  sub.el.dataset.members = String(sub.memberCount);
  el.textContent = `${sub.memberCount} here${names.length ? `: ${names.join(', ')}${more}` : ''}`;
}

/** `successful`/`failed` of a publish reply, in words. */
function publishSummary(reply) {
  const ok = reply.successful ?? [];
  const failed = reply.failed ?? [];
  const delivered = ok.map((s) => s.delivered).filter((d) => typeof d === 'number');
  const parts = [`${ok.length} accepted`];
  if (delivered.length) parts.push(`delivered to ${delivered.join('+')} subscription${delivered.reduce((a, b) => a + b, 0) === 1 ? '' : 's'}`);
  if (failed.length) parts.push(`${failed.length} failed: ${failed.map((f) => `#${f.index} ${f.code ?? ''} ${f.message ?? ''}`.trim()).join('; ')}`);
  return parts.join(', ');
}

// ---------------------------------------------------------------------------------------------
// Subscriptions

function normalizeChannel(c) {
  c = c.trim();
  return c && !c.startsWith('/') ? `/${c}` : c;
}

function subscribe() {
  const channel = normalizeChannel($('sub-channel').value);
  if (!channel || !conn || !ws) return;
  const id = newId('sub');
  const li = document.createElement('li');
  li.dataset.id = id;
  li.dataset.channel = channel;
  const name = document.createElement('code');
  name.textContent = channel;
  const state = document.createElement('span');
  state.className = 'sub-state';
  const button = document.createElement('button');
  button.type = 'button';
  button.className = 'small';
  button.textContent = 'Unsubscribe';
  button.addEventListener('click', () => unsubscribe(id));
  li.append(name, state, button);
  subs.set(id, { channel, state: 'pending', el: li });
  $('subscriptions').querySelector('.empty')?.remove();
  $('subscriptions').append(li);
  setSubState(id, 'pending');
  // Herald presence extension: joins and leaves on namespaces with presence (ignored elsewhere).
  const frame = { type: 'subscribe', id, channel, authorization: authObject(conn.host), presence: { events: true } };
  // Herald's resume extension (docs/extensions.md): replay what is stored since then, then live.
  const replay = $('sub-replay').value;
  if (replay) frame.resume = { since_ms: replay === 'all' ? 0 : Date.now() - Number(replay) };
  if (!send(frame)) removeSub(id);
}

function setSubState(id, state, detail) {
  const sub = subs.get(id);
  if (!sub) return;
  sub.state = state;
  sub.el.dataset.state = state;
  const label = sub.el.querySelector('.sub-state');
  label.textContent = { pending: 'pending', active: 'active', error: 'refused' }[state] ?? state;
  label.title = detail ?? '';
  sub.el.querySelector('button').textContent = state === 'error' ? 'Remove' : 'Unsubscribe';
}

function unsubscribe(id) {
  const sub = subs.get(id);
  if (!sub) return;
  if (sub.state === 'error' || !ws) {
    removeSub(id);
    return;
  }
  send({ type: 'unsubscribe', id });
}

function removeSub(id) {
  subs.get(id)?.el.remove();
  subs.delete(id);
  if (subs.size === 0) showNoSubs();
}

function showNoSubs() {
  const ul = $('subscriptions');
  ul.replaceChildren();
  const li = document.createElement('li');
  li.className = 'empty';
  li.textContent = 'No subscriptions.';
  ul.append(li);
}

function endSubscriptions() {
  subs.clear();
  publishes.clear();
  showNoSubs();
}

// ---------------------------------------------------------------------------------------------
// Publishing

function addEventEditor(text = '{"message":"Hello from the Herald console"}') {
  const box = $('events');
  if (box.childElementCount >= MAX_EVENTS) return;
  const wrap = document.createElement('div');
  wrap.className = 'event';
  const ta = document.createElement('textarea');
  ta.rows = 3;
  ta.spellcheck = false;
  ta.value = text;
  ta.setAttribute('aria-label', 'Event (JSON)');
  ta.addEventListener('input', () => ta.classList.remove('invalid'));
  ta.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      if (ws && ws.readyState === WebSocket.OPEN) publishWs();
      else publishHttp();
    }
  });
  const remove = document.createElement('button');
  remove.type = 'button';
  remove.className = 'small remove';
  remove.textContent = '×';
  remove.title = 'Remove this event';
  remove.addEventListener('click', () => {
    if (box.childElementCount > 1) wrap.remove();
    renumberEvents();
  });
  wrap.append(ta, remove);
  box.append(wrap);
  renumberEvents();
}

function renumberEvents() {
  const editors = [...$('events').children];
  editors.forEach((w, i) => {
    w.dataset.index = String(i + 1);
    w.querySelector('.remove').hidden = editors.length === 1;
  });
  $('add-event').disabled = editors.length >= MAX_EVENTS;
}

/** The events as JSON strings, or null (with the bad editors marked) when one is not JSON. */
function readEvents() {
  const events = [];
  let ok = true;
  for (const ta of $('events').querySelectorAll('textarea')) {
    try {
      events.push(JSON.stringify(JSON.parse(ta.value)));
    } catch (e) {
      ta.classList.add('invalid');
      addLog({ dir: 'error', type: 'error', summary: `Event ${ta.parentElement.dataset.index} is not JSON: ${e.message}` });
      ok = false;
    }
  }
  return ok ? events : null;
}

function publishTarget() {
  const channel = normalizeChannel($('pub-channel').value);
  if (!channel) addLog({ dir: 'error', type: 'error', summary: 'Enter a channel to publish to.' });
  const events = channel ? readEvents() : null;
  return channel && events ? { channel, events } : null;
}

function publishWs() {
  if (!ws || !conn) {
    addLog({ dir: 'error', type: 'error', summary: 'Connect first, or publish over HTTP.' });
    return;
  }
  const t = publishTarget();
  if (!t) return;
  const id = newId('pub');
  publishes.set(id, t.channel);
  send({ type: 'publish', id, channel: t.channel, events: t.events, authorization: authObject(conn.host) });
}

async function publishHttp() {
  const t = publishTarget();
  if (!t) return;
  let urls;
  try {
    urls = endpoints($('endpoint').value);
  } catch (e) {
    addLog({ dir: 'error', type: 'error', summary: `Invalid endpoint: ${e.message}` });
    return;
  }
  const cred = credentials();
  const body = { channel: t.channel, events: t.events };
  addLog({
    dir: 'out',
    type: 'POST /event',
    channel: t.channel,
    summary: `${t.events.length} event${t.events.length === 1 ? '' : 's'}: ${t.events.join(' ')}`,
    raw: { url: urls.http, headers: { [cred.name]: cred.value }, body },
  });
  saveSettings();
  try {
    const res = await fetch(urls.http, {
      method: 'POST',
      headers: { 'content-type': 'application/json', [cred.name]: cred.value },
      body: JSON.stringify(body),
    });
    const text = await res.text();
    let reply;
    try {
      reply = JSON.parse(text);
    } catch {
      reply = text;
    }
    const ok = res.ok && !(reply && reply.failed && reply.failed.length);
    const summary = res.ok && typeof reply === 'object' ? publishSummary(reply) : errorText(reply?.errors) || text;
    addLog({ dir: 'in', type: `HTTP ${res.status}`, channel: t.channel, summary, raw: reply, cls: ok ? 'good' : 'bad' });
  } catch (e) {
    addLog({ dir: 'error', type: 'HTTP', channel: t.channel, summary: `Request failed: ${e.message} (another origin needs http.cors_allowed_origins)` });
  }
}

// ---------------------------------------------------------------------------------------------
// Metrics

/** Prometheus text format: samples and each family's TYPE. */
function parseProm(text) {
  const samples = [];
  const types = {};
  for (const line of text.split('\n')) {
    if (line.startsWith('# TYPE ')) {
      const [, , name, type] = line.split(/\s+/);
      types[name] = type;
      continue;
    }
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
    }
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return { samples, types };
}

const sampleKey = (s) => `${s.name}{${Object.entries(s.labels).map(([k, v]) => `${k}=${v}`).join(',')}}`;

// Server-wide figures, shown when present: [metric, label, show rate, unit].
const SERVER_FIGURES = [
  ['herald_active_connections', 'Connections', false],
  ['herald_connect_success_total', 'Connects', true],
  ['herald_inbound_messages_total', 'Messages in', true],
  ['herald_outbound_messages_total', 'Messages out', true],
  ['herald_outbound_bytes_total', 'Bytes out', true, 'bytes'],
  ['herald_queued_bytes', 'Queued', false, 'bytes'],
  ['herald_connect_client_errors_total', 'Refused connects', true],
  ['herald_unauthorized_total', 'Unauthorized', true],
  ['herald_slow_consumer_disconnects_total', 'Slow consumers', true],
];

// Per-namespace columns: [label, metrics summed, show rate].
const NS_COLUMNS = [
  ['Subscriptions', ['herald_active_subscriptions'], false],
  ['Subscribes', ['herald_subscribe_success_total'], true],
  ['Publishes', ['herald_publish_success_total'], true],
  ['Events', ['herald_broadcast_events_total'], true],
  ['Deliveries', ['herald_deliveries_total'], true],
  [
    'Errors',
    [
      'herald_publish_client_errors_total',
      'herald_publish_server_errors_total',
      'herald_subscribe_client_errors_total',
      'herald_failed_events_total',
      'herald_rule_denials_total',
      'herald_history_errors_total',
    ],
    true,
  ],
  ['Stored', ['herald_history_appends_total'], true],
];

let previous = null; // { at, values: Map(key -> value) }
const SPARK_POINTS = 40;
const activity = new Map(); // namespace -> recent events/s (oldest first)
let metricsTimer = null;

async function refreshMetrics() {
  let urls;
  try {
    urls = endpoints($('endpoint').value);
  } catch (e) {
    showMetricsError(`Invalid endpoint: ${e.message}`);
    return;
  }
  $('metrics-source').textContent = `from ${urls.metrics}`;
  let text;
  try {
    const res = await fetch(urls.metrics, { cache: 'no-store' });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    text = await res.text();
  } catch (e) {
    showMetricsError(`Cannot read ${urls.metrics}: ${e.message}`);
    return;
  }
  $('metrics-error').hidden = true;
  const at = performance.now();
  const { samples, types } = parseProm(text);
  const values = new Map(samples.map((s) => [sampleKey(s), s.value]));
  const dt = previous ? (at - previous.at) / 1000 : 0;
  const rate = (key) => {
    if (!previous || dt <= 0 || !previous.values.has(key)) return null;
    const d = values.get(key) - previous.values.get(key);
    return d < 0 ? null : d / dt;
  };
  renderServerFigures(samples, rate);
  renderNamespaces(samples, types, rate);
  previous = { at, values };
  $('metrics-updated').textContent = `updated ${new Date().toLocaleTimeString([], { hour12: false })}`;
}

function showMetricsError(text) {
  const p = $('metrics-error');
  p.textContent = text;
  p.hidden = false;
}

function fmt(n, unit) {
  if (n === null || n === undefined || Number.isNaN(n)) return '—';
  if (unit === 'bytes') {
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (Math.abs(n) >= 1024 && i < units.length - 1) {
      n /= 1024;
      i++;
    }
    return `${i === 0 ? Math.round(n) : n.toFixed(1)} ${units[i]}`;
  }
  if (Number.isInteger(n)) return n.toLocaleString('en-US');
  return n >= 100 ? Math.round(n).toLocaleString('en-US') : n.toFixed(n >= 10 ? 1 : 2);
}

function figure(label, value, rateValue, unit) {
  const div = document.createElement('div');
  div.className = 'figure';
  const v = document.createElement('div');
  v.className = 'value';
  v.textContent = fmt(value, unit);
  const l = document.createElement('div');
  l.className = 'label';
  l.textContent = label;
  div.append(v, l);
  if (rateValue !== undefined) {
    const r = document.createElement('div');
    r.className = 'rate';
    r.textContent = rateValue === null ? '' : `${fmt(rateValue, unit)}/s`;
    div.append(r);
  }
  return div;
}

function renderServerFigures(samples, rate) {
  const box = $('server-figures');
  box.replaceChildren();
  for (const [name, label, withRate, unit] of SERVER_FIGURES) {
    const s = samples.find((x) => x.name === name && Object.keys(x.labels).length === 0);
    if (!s) continue;
    box.append(figure(label, s.value, withRate ? rate(sampleKey(s)) : undefined, unit));
  }
  const http = samples.filter((x) => x.name === 'herald_http_requests_total');
  if (http.length) {
    const total = http.reduce((a, s) => a + s.value, 0);
    const rates = http.map((s) => rate(sampleKey(s)));
    const r = rates.some((x) => x === null) ? null : rates.reduce((a, b) => a + b, 0);
    const div = figure('HTTP requests', total, r);
    div.title = http.map((s) => `${s.labels.status ?? '?'}: ${s.value}`).join('\n');
    box.append(div);
  }
}

function renderNamespaces(samples, types, rate) {
  const byNs = new Map();
  for (const s of samples) {
    const ns = s.labels.namespace;
    if (ns === undefined || !s.name.startsWith('herald_')) continue;
    if (!byNs.has(ns)) byNs.set(ns, []);
    byNs.get(ns).push(s);
  }
  const present = new Set(samples.map((s) => s.name));
  const columns = NS_COLUMNS.filter(([, names]) => names.some((n) => present.has(n)));

  const table = $('ns-table');
  const head = document.createElement('tr');
  for (const label of ['Namespace', 'Events/s', ...columns.map((c) => c[0])]) {
    const th = document.createElement('th');
    th.textContent = label;
    if (label === 'Events/s') th.className = 'spark';
    head.append(th);
  }
  table.tHead.replaceChildren(head);

  const body = table.tBodies[0];
  body.replaceChildren();
  const all = $('ns-all');
  all.replaceChildren();
  if (byNs.size === 0) {
    const tr = document.createElement('tr');
    const td = document.createElement('td');
    td.colSpan = columns.length + 2;
    td.className = 'empty';
    td.textContent = 'No namespace metrics.';
    tr.append(td);
    body.append(tr);
    return;
  }
  for (const [ns, list] of [...byNs].sort(([a], [b]) => a.localeCompare(b))) {
    const tr = document.createElement('tr');
    tr.dataset.namespace = ns;
    const name = document.createElement('th');
    name.scope = 'row';
    name.textContent = ns;
    const spark = document.createElement('td');
    spark.className = 'spark';
    spark.append(sparkline(ns, list, rate));
    tr.append(name, spark);
    for (const [label, names, withRate] of columns) {
      const picked = list.filter((s) => names.includes(s.name));
      const td = document.createElement('td');
      td.dataset.column = label;
      const total = picked.reduce((a, s) => a + s.value, 0);
      if (picked.length > 1) td.title = picked.map((s) => `${s.name.replace(/^herald_/, '')}: ${s.value}`).join('\n');
      td.classList.toggle('nonzero', label === 'Errors' && total > 0);
      const v = document.createElement('span');
      v.className = 'value';
      v.textContent = fmt(total);
      td.append(v);
      if (withRate) {
        const rates = picked.map((s) => rate(sampleKey(s)));
        const r = document.createElement('span');
        r.className = 'rate';
        r.textContent = rates.length && rates.every((x) => x !== null) ? `${fmt(rates.reduce((a, b) => a + b, 0))}/s` : '';
        td.append(r);
      }
      tr.append(td);
    }
    body.append(tr);

    const section = document.createElement('div');
    section.className = 'ns-all';
    const h = document.createElement('h4');
    h.textContent = ns;
    const dl = document.createElement('dl');
    for (const s of list) {
      const rest = Object.entries(s.labels).filter(([k]) => k !== 'namespace');
      const dt = document.createElement('dt');
      dt.textContent = `${s.name}${rest.length ? `{${rest.map(([k, v]) => `${k}="${v}"`).join(',')}}` : ''}`;
      dt.title = types[s.name] ?? '';
      const dd = document.createElement('dd');
      dd.textContent = fmt(s.value);
      dl.append(dt, dd);
    }
    section.append(h, dl);
    all.append(section);
  }
}

/** A small line of the namespace's recent events/s (broadcast events), newest on the right. */
function sparkline(ns, list, rate) {
  const events = list.filter((s) => s.name === 'herald_broadcast_events_total');
  const rates = events.map((s) => rate(sampleKey(s)));
  const points = activity.get(ns) ?? [];
  if (rates.length && rates.every((r) => r !== null)) {
    points.push(rates.reduce((a, b) => a + b, 0));
    if (points.length > SPARK_POINTS) points.shift();
  }
  activity.set(ns, points);

  const NS = 'http://www.w3.org/2000/svg';
  const w = 120;
  const h = 26;
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('viewBox', `0 0 ${w} ${h}`);
  svg.setAttribute('width', String(w));
  svg.setAttribute('height', String(h));
  svg.setAttribute('aria-hidden', 'true');
  const max = Math.max(1, ...points);
  const step = w / (SPARK_POINTS - 1);
  const x0 = w - (points.length - 1) * step;
  const xy = points.map((v, i) => `${(x0 + i * step).toFixed(1)},${(h - 2 - (v / max) * (h - 4)).toFixed(1)}`);
  if (xy.length > 1) {
    const area = document.createElementNS(NS, 'polygon');
    area.setAttribute('points', `${xy[0].split(',')[0]},${h} ${xy.join(' ')} ${w},${h}`);
    area.setAttribute('class', 'area');
    const line = document.createElementNS(NS, 'polyline');
    line.setAttribute('points', xy.join(' '));
    line.setAttribute('class', 'line');
    svg.append(area, line);
  }
  const wrap = document.createElement('span');
  wrap.className = 'spark-wrap';
  const last = document.createElement('span');
  last.className = 'spark-last';
  last.textContent = points.length ? fmt(points[points.length - 1]) : '—';
  wrap.title = `events per second, last ${points.length} refreshes (peak ${fmt(Math.max(0, ...points))})`;
  wrap.append(svg, last);
  return wrap;
}

function startMetrics() {
  stopMetrics();
  refreshMetrics();
  metricsTimer = setInterval(refreshMetrics, Number($('metrics-interval').value));
}

function stopMetrics() {
  if (metricsTimer !== null) clearInterval(metricsTimer);
  metricsTimer = null;
}

// ---------------------------------------------------------------------------------------------
// Views and settings

function showView(view) {
  for (const tab of document.querySelectorAll('.tab')) {
    const on = tab.dataset.view === view;
    tab.classList.toggle('active', on);
    tab.setAttribute('aria-selected', String(on));
  }
  for (const v of document.querySelectorAll('.view')) {
    const on = v.id === `view-${view}`;
    v.hidden = !on;
    v.classList.toggle('active', on);
  }
  if (view === 'metrics') startMetrics();
  else stopMetrics();
}

function saveSettings() {
  try {
    localStorage.setItem(
      SETTINGS,
      JSON.stringify({ endpoint: $('endpoint').value, mode: $('auth-mode').value, namespace: $('namespace').value }),
    );
    // Credentials last only as long as the tab.
    sessionStorage.setItem(SETTINGS, JSON.stringify({ apiKey: $('api-key').value, token: $('auth-token').value }));
  } catch {
    /* storage disabled */
  }
}

function loadSettings() {
  try {
    const s = JSON.parse(localStorage.getItem(SETTINGS) ?? '{}');
    const c = JSON.parse(sessionStorage.getItem(SETTINGS) ?? '{}');
    if (s.endpoint) $('endpoint').value = s.endpoint;
    if (s.mode) $('auth-mode').value = s.mode;
    if (s.namespace) $('namespace').value = s.namespace;
    if (c.apiKey) $('api-key').value = c.apiKey;
    if (c.token) $('auth-token').value = c.token;
  } catch {
    /* nothing saved */
  }
}

function showAuthFields() {
  const token = $('auth-mode').value === 'token';
  $('api-key-field').hidden = token;
  $('token-field').hidden = !token;
}

function showEndpointHint() {
  try {
    const u = endpoints($('endpoint').value);
    $('endpoint-hint').textContent = `WebSocket ${u.realtime}\nHTTP ${u.http}`;
    $('endpoint-hint').classList.remove('error');
  } catch (e) {
    $('endpoint-hint').textContent = e.message;
    $('endpoint-hint').classList.add('error');
  }
}

/** Follows the namespace into the channel fields while they still name the old one. */
let namespaceShown = '';
function followNamespace() {
  const ns = $('namespace').value.trim().replace(/^\/+|\/+$/g, '');
  for (const [id, rest] of [['sub-channel', '/*'], ['pub-channel', '/test']]) {
    const field = $(id);
    const old = namespaceShown ? `/${namespaceShown}` : null;
    if (!field.value || (old && (field.value === old || field.value.startsWith(`${old}/`)))) {
      field.value = field.value && old ? `/${ns}${field.value.slice(old.length)}` : `/${ns}${rest}`;
    }
  }
  namespaceShown = ns;
}

function init() {
  loadSettings();
  $('endpoint').placeholder = location.origin;
  showAuthFields();
  showEndpointHint();
  followNamespace();
  addEventEditor();
  setStatus('disconnected', 'Disconnected');

  $('connect-form').addEventListener('submit', (e) => {
    e.preventDefault();
    connect();
  });
  $('disconnect').addEventListener('click', () => disconnect('user'));
  $('auth-mode').addEventListener('change', () => {
    showAuthFields();
    saveSettings();
  });
  $('endpoint').addEventListener('input', () => {
    showEndpointHint();
    previous = null;
    activity.clear();
  });
  $('namespace').addEventListener('input', followNamespace);
  $('subscribe-form').addEventListener('submit', (e) => {
    e.preventDefault();
    subscribe();
  });
  $('publish-form').addEventListener('submit', (e) => {
    e.preventDefault();
    publishWs();
  });
  $('publish-http').addEventListener('click', publishHttp);
  $('add-event').addEventListener('click', () => addEventEditor('{}'));
  $('clear-log').addEventListener('click', () => log.replaceChildren());
  $('show-ka').addEventListener('change', () => log.classList.toggle('show-ka', $('show-ka').checked));
  $('log-filter').addEventListener('input', () => log.querySelectorAll('li').forEach(applyFilter));
  $('metrics-interval').addEventListener('change', () => metricsTimer !== null && startMetrics());
  $('metrics-refresh').addEventListener('click', refreshMetrics);
  for (const tab of document.querySelectorAll('.tab')) {
    tab.addEventListener('click', () => {
      history.replaceState(null, '', tab.dataset.view === 'pubsub' ? location.pathname : `#${tab.dataset.view}`);
      showView(tab.dataset.view);
    });
  }
  showView(location.hash === '#metrics' ? 'metrics' : 'pubsub');
}

init();
