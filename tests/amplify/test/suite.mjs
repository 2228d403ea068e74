// The compatibility suite, run once per endpoint form (see *.test.mjs).
// Every test awaits the events it expects; timeouts are only failure bounds.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import {
  BAD_API_KEY,
  amplifyConfig,
  assertPostError,
  frameMark,
  framesSince,
  nonce,
  subscribeInbox,
  uniqueSegment,
  waitForFrame,
  withTimeout,
} from './helpers.mjs';
import { Amplify } from 'aws-amplify';
import { events } from 'aws-amplify/data';

const T = 10_000; // failure bound for one awaited step
const TEST = { timeout: 30_000 };

export function defineCompatSuite({ label, endpoint }) {
  describe(`aws-amplify events against Herald (${label}: ${endpoint})`, () => {
    /** A wildcard subscriber on /default/* that lives for the whole suite. */
    let wild;
    let wildChannel;

    before(async () => {
      Amplify.configure(amplifyConfig(endpoint));
      wildChannel = await withTimeout(events.connect('/default/*'), T, "events.connect('/default/*')");
      wild = subscribeInbox(wildChannel, '/default/* subscriber');
      await withTimeout(wild.sub.ready, T, 'wildcard subscription ready (subscribe_success)');
    });

    after(async () => {
      await events.closeAll();
    });

    test('1. wildcard subscriber receives channel.publish over the socket, intact', TEST, async () => {
      const id = nonce();
      const payload = {
        nonce: id,
        text: 'héllo wörld ✓ "quoted" \\ back\\slash / slash\nnew line',
        n: 42,
        neg: -1.5e-7,
        flag: true,
        nothing: null,
        list: [1, 'two', null, false, { deep: ['x'] }],
        empty: {},
      };
      const publisher = await withTimeout(events.connect('/default/a/b'), T, "events.connect('/default/a/b')");
      // The publishing channel object also subscribes to its own exact channel:
      // a publisher subscribed to a matching channel receives its own events.
      const own = subscribeInbox(publisher, '/default/a/b subscriber');
      await withTimeout(own.sub.ready, T, '/default/a/b subscription ready');

      const result = await withTimeout(publisher.publish(payload), T, 'channel.publish resolves');
      assert.equal(result, undefined, 'publish resolves (publish_success) with no value');

      const got = await wild.events.waitFor((e) => e?.nonce === id, { timeoutMs: T, what: 'the published event' });
      assert.deepEqual(got, payload);
      const gotOwn = await own.events.waitFor((e) => e?.nonce === id, { timeoutMs: T, what: 'own event' });
      assert.deepEqual(gotOwn, payload);

      // Another channel object publishes several events at once to a deeper channel.
      const deeper = await events.connect('/default/a/b/c/d');
      const batch = [
        { nonce: id, i: 0 },
        { nonce: id, i: 1, s: 'x' },
        { nonce: id, i: 2, arr: [] },
      ];
      await withTimeout(deeper.publish(batch), T, 'channel.publish([3 events]) resolves');
      for (const ev of batch) {
        const g = await wild.events.waitFor((e) => e?.nonce === id && e.i === ev.i, { timeoutMs: T, what: `batch event ${ev.i}` });
        assert.deepEqual(g, ev);
      }
      // Non-object JSON values survive too.
      const scalarChannel = await events.connect(`/default/${uniqueSegment('scalar')}`);
      const scalar = `just a string ${id}`;
      await withTimeout(scalarChannel.publish(scalar), T, 'publish of a JSON string');
      assert.equal(await wild.events.waitFor((e) => e === scalar, { timeoutMs: T, what: 'string event' }), scalar);

      own.sub.unsubscribe();
      await publisher.close();
      await deeper.close();
      await scalarChannel.close();
    });

    test('2. events.post over HTTP reaches the wildcard subscriber; an array delivers each event', TEST, async () => {
      const id = nonce();
      const payload = { nonce: id, via: 'http', nested: { a: [1, 2, 3], b: 'ü' } };
      const result = await withTimeout(events.post('/default/x', payload), T, 'events.post');
      assert.equal(result, undefined, 'events.post returns nothing when no event failed');
      assert.deepEqual(await wild.events.waitFor((e) => e?.nonce === id && e.via === 'http', { timeoutMs: T }), payload);

      const batch = [0, 1, 2, 3, 4].map((i) => ({ nonce: id, via: 'http-batch', i }));
      const batchResult = await withTimeout(events.post('/default/x/y', batch), T, 'events.post([5 events])');
      assert.equal(batchResult, undefined, 'no failed events');
      for (const ev of batch) {
        const g = await wild.events.waitFor((e) => e?.nonce === id && e.via === 'http-batch' && e.i === ev.i, {
          timeoutMs: T,
          what: `HTTP batch event ${ev.i}`,
        });
        assert.deepEqual(g, ev);
      }
      const delivered = wild.events.items.filter((e) => e?.nonce === id && e.via === 'http-batch');
      assert.equal(delivered.length, batch.length, 'each event delivered exactly once');
    });

    test('3. an exact-channel subscription does not receive events from a sibling channel', TEST, async () => {
      const id = nonce();
      const base = uniqueSegment('sib');
      const exactCh = await events.connect(`/default/${base}/one`);
      const exact = subscribeInbox(exactCh, `/default/${base}/one subscriber`);
      await withTimeout(exact.sub.ready, T, 'exact subscription ready');
      const prefixCh = await events.connect(`/default/${base}/*`);
      const prefix = subscribeInbox(prefixCh, `/default/${base}/* subscriber`);
      await withTimeout(prefix.sub.ready, T, 'prefix wildcard subscription ready');

      // Publish to the sibling and to the wildcard's own prefix first, then to the exact channel.
      await events.post(`/default/${base}/two`, { nonce: id, to: 'two' });
      await events.post(`/default/${base}`, { nonce: id, to: 'prefix-itself' });
      await events.post(`/default/${base}/one/deeper`, { nonce: id, to: 'one-deeper' });
      await events.post(`/default/${base}/one`, { nonce: id, to: 'one' });

      // Await every event that should arrive. The exact subscriber's wrongly routed
      // events would share the socket with these (and 'one' was published last),
      // so once all are in, anything misrouted would have shown up too.
      const expect = async (inbox, targets) => {
        for (const to of targets) {
          await inbox.waitFor((e) => e?.nonce === id && e.to === to, { timeoutMs: T, what: `event to ${to}` });
        }
      };
      await expect(wild.events, ['two', 'prefix-itself', 'one-deeper', 'one']);
      await expect(prefix.events, ['two', 'one-deeper', 'one']);
      await expect(exact.events, ['one']);

      assert.deepEqual(
        exact.events.items.filter((e) => e?.nonce === id).map((e) => e.to),
        ['one'],
        'the exact subscriber receives only its own channel',
      );
      assert.deepEqual(
        prefix.events.items.filter((e) => e?.nonce === id).map((e) => e.to).sort(),
        ['one', 'one-deeper', 'two'],
        '/ns/base/* matches every deeper channel but not /ns/base itself',
      );
      assert.deepEqual(
        wild.events.items.filter((e) => e?.nonce === id).map((e) => e.to).sort(),
        ['one', 'one-deeper', 'prefix-itself', 'two'],
      );
      exact.sub.unsubscribe();
      prefix.sub.unsubscribe();
      await exactCh.close();
      await prefixCh.close();
    });

    test('4. a bad API key on subscribe / publish / post is rejected and surfaced', TEST, async () => {
      const id = nonce();
      const ch = await events.connect(`/default/${uniqueSegment('badkey')}`);

      const mark = frameMark();
      const bad = subscribeInbox(ch, 'bad-key subscriber', { apiKey: BAD_API_KEY });
      await assert.rejects(withTimeout(bad.sub.ready, T, 'bad-key subscription settles'), (err) => {
        assert.match(String(err?.message ?? err), /Unauthorized/i);
        return true;
      });
      const observerErr = await bad.errors.waitFor(() => true, { timeoutMs: T, what: 'observer.error' });
      assert.ok(observerErr, 'the observer gets an error');
      const frame = await waitForFrame((f) => f.dir === 'in' && f.json?.type === 'subscribe_error', { since: mark });
      assert.ok(Array.isArray(frame.json.errors) && frame.json.errors.length > 0, 'subscribe_error carries errors[]');

      await assert.rejects(withTimeout(ch.publish({ nonce: id }, { apiKey: BAD_API_KEY }), T, 'bad-key publish settles'), /Unauthorized/);
      await assert.rejects(withTimeout(events.post('/default/x', { nonce: id }, { apiKey: BAD_API_KEY }), T, 'bad-key post settles'), (err) => {
        assertPostError(err, { status: 401, errorType: 'UnauthorizedException' });
        return true;
      });

      // The socket survives per-operation auth failures, and nothing was delivered.
      await events.post('/default/x', { nonce: id, after: 'bad-key' });
      await wild.events.waitFor((e) => e?.nonce === id && e.after === 'bad-key', { timeoutMs: T });
      assert.deepEqual(wild.events.items.filter((e) => e?.nonce === id).map((e) => e.after), ['bad-key']);
      await ch.close();
    });

    test('5. publishing to an unknown namespace rejects (HTTP and socket)', TEST, async () => {
      const id = nonce();
      await assert.rejects(withTimeout(events.post('/nosuchns/x', { nonce: id }), T, 'post to unknown namespace settles'), (err) => {
        // The status for an unknown namespace is an open question (spec §11.6): any 4xx with the envelope.
        assertPostError(err);
        return true;
      });
      const ch = await events.connect('/nosuchns/x');
      await assert.rejects(withTimeout(ch.publish({ nonce: id }), T, 'socket publish to unknown namespace settles'), /Publish errors/);
      const sub = subscribeInbox(ch, '/nosuchns/x subscriber');
      await assert.rejects(withTimeout(sub.sub.ready, T, 'subscribe to unknown namespace settles'));
      await ch.close();
    });

    test('6. after unsubscribe() and channel.close(), later events are not received', TEST, async () => {
      const id = nonce();
      const name = `/default/${uniqueSegment('unsub')}/c`;
      const ch = await events.connect(name);
      const s = subscribeInbox(ch, `${name} subscriber`);
      const { subscriptionId } = await withTimeout(s.sub.ready, T, 'subscription ready');

      await events.post(name, { nonce: id, seq: 0 });
      await s.events.waitFor((e) => e?.nonce === id && e.seq === 0, { timeoutMs: T, what: 'event before unsubscribe' });

      const mark = frameMark();
      s.sub.unsubscribe();
      const ack = await waitForFrame((f) => f.dir === 'in' && f.json?.id === subscriptionId && /^unsubscribe_/.test(f.json?.type), {
        since: mark,
        what: 'unsubscribe reply',
      });
      assert.equal(ack.json.type, 'unsubscribe_success');
      await ch.close();
      await assert.rejects(ch.publish({ nonce: id }), /Channel is closed/);
      assert.throws(() => ch.subscribe({ next() {} }), /Channel is closed/);

      await events.post(name, { nonce: id, seq: 1 });
      await events.post(name, { nonce: id, seq: 2 });
      // The still-open wildcard subscription shares the socket: once it has both, any
      // frame for the closed subscription would already have arrived.
      await wild.events.waitFor((e) => e?.nonce === id && e.seq === 2, { timeoutMs: T, what: 'seq 2 on wildcard' });
      await wild.events.waitFor((e) => e?.nonce === id && e.seq === 1, { timeoutMs: T, what: 'seq 1 on wildcard' });
      assert.deepEqual(s.events.items.map((e) => e.seq), [0], 'nothing after unsubscribe');
      const stray = framesSince(mark).filter((f) => f.dir === 'in' && f.json?.type === 'data' && f.json.id === subscriptionId);
      assert.deepEqual(stray, [], 'no data frame for the removed subscription id');
    });

    test('7. channel names without a leading slash work (spec §5)', TEST, async () => {
      const id = nonce();
      const base = uniqueSegment('noslash');
      const ch = await events.connect(`default/${base}/*`);
      const s = subscribeInbox(ch, `default/${base}/* subscriber`);
      await withTimeout(s.sub.ready, T, 'subscription without leading slash ready');
      await events.post(`default/${base}/x`, { nonce: id, via: 'http' });
      const pub = await events.connect(`default/${base}/y`);
      await withTimeout(pub.publish({ nonce: id, via: 'socket' }), T, 'publish without leading slash');
      await s.events.waitFor((e) => e?.nonce === id && e.via === 'http', { timeoutMs: T, what: 'HTTP event' });
      await s.events.waitFor((e) => e?.nonce === id && e.via === 'socket', { timeoutMs: T, what: 'socket event' });
      s.sub.unsubscribe();
      await ch.close();
      await pub.close();
    });

    test('8. two subscriptions to one channel on one socket each get one copy', TEST, async () => {
      const id = nonce();
      const name = `/default/${uniqueSegment('twice')}`;
      const ch1 = await events.connect(name);
      const ch2 = await events.connect(name);
      const s1 = subscribeInbox(ch1, 'first');
      const s2 = subscribeInbox(ch2, 'second');
      const [r1, r2] = await withTimeout(Promise.all([s1.sub.ready, s2.sub.ready]), T, 'both subscriptions ready');
      assert.notEqual(r1.subscriptionId, r2.subscriptionId);
      await events.post(name, { nonce: id, n: 1 });
      await events.post(name, { nonce: id, n: 2 });
      for (const s of [s1, s2]) {
        await s.events.waitFor((e) => e?.nonce === id && e.n === 1, { timeoutMs: T });
        await s.events.waitFor((e) => e?.nonce === id && e.n === 2, { timeoutMs: T });
        assert.deepEqual(s.events.items.map((e) => e.n).sort(), [1, 2]);
      }
      s1.sub.unsubscribe();
      s2.sub.unsubscribe();
      await ch1.close();
      await ch2.close();
    });

    test('9. limits surface through the client: 6 events reject, an oversize event is reported failed', TEST, async () => {
      const id = nonce();
      const name = `/default/${uniqueSegment('limits')}`;
      const six = [0, 1, 2, 3, 4, 5].map((i) => ({ nonce: id, i }));
      await assert.rejects(withTimeout(events.post(name, six), T, 'post of 6 events settles'), (err) => {
        assertPostError(err, { status: 400, errorType: 'BadRequestException' });
        return true;
      });
      const ch = await events.connect(name);
      await assert.rejects(withTimeout(ch.publish(six), T, 'socket publish of 6 events settles'), /Publish errors/);

      // 240 KB per event (spec §7): HTTP 200 with the event in `failed`, which events.post returns.
      const big = { nonce: id, blob: 'x'.repeat(250 * 1024) };
      const failed = await withTimeout(events.post(name, [{ nonce: id, small: true }, big]), T, 'post with an oversize event');
      assert.ok(Array.isArray(failed) && failed.length === 1, `events.post returns the failed events: ${JSON.stringify(failed)}`);
      assert.equal(failed[0].index, 1);
      assert.equal(failed[0].code, 'EventTooLargeException');
      assert.equal(typeof failed[0].identifier, 'string');
      await wild.events.waitFor((e) => e?.nonce === id && e.small === true, { timeoutMs: T, what: 'the small event of the pair' });
      assert.equal(wild.events.items.filter((e) => e?.nonce === id && e.blob).length, 0, 'the oversize event is not delivered');
      await ch.close();
    });
  });
}
