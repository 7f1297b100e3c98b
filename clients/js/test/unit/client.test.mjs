import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createClient, splitFrame } from '../../src/index.js';
import { Clock, fakeServer, flush } from '../support/fake.mjs';

function setup(extra = {}) {
  const clock = new Clock();
  const server = fakeServer();
  const tokens = [];
  let n = 0;
  const getToken = extra.getToken || (async (ctx) => {
    tokens.push(ctx);
    return 'tok-' + ++n;
  });
  const states = [];
  const client = createClient({
    url: 'ws://edge/ws',
    getToken,
    WebSocket: server.WebSocket,
    timers: clock,
    random: () => 0.5,
    watchNetwork: false,
    ...extra,
  });
  client.on('state', (s) => states.push(s));
  const accept = (sock = server.last, o = {}) => sock.accept({ now: clock.t, ...o });
  return { clock, server, client, tokens, states, accept };
}

const msg = (room, seq, prevSeq, extra = {}) => ({ type: 'confusion', action: 'create', room, seq, prevSeq, payload: { n: seq }, ...extra });

test('state machine: connecting, authenticating, open, reconnecting, closed', async () => {
  const { client, server, states, accept, clock } = setup();
  assert.equal(client.state, 'connecting');
  const auth = await accept();
  assert.deepEqual(auth, { type: 'auth', token: 'tok-1' });
  assert.equal(client.state, 'open');
  assert.equal(client.session.userId, 'u1');
  server.last.drop(1006);
  assert.equal(client.state, 'reconnecting');
  await clock.advance(1000);
  assert.equal(server.sockets.length, 2);
  assert.equal(client.state, 'connecting');
  await accept();
  client.disconnect();
  assert.equal(client.state, 'closed');
  await clock.advance(60000);
  assert.equal(server.sockets.length, 2, 'no reconnect after disconnect()');
  assert.deepEqual(states, ['authenticating', 'open', 'reconnecting', 'connecting', 'authenticating', 'open', 'closed']);
});

test('reconnects forever with growing, jittered delays; gives up only when told to', async () => {
  const { client, server, clock } = setup({ maxReconnectAttempts: 4 });
  const delays = [];
  client.on('disconnect', (d) => delays.push(d.delayMs));
  for (let i = 0; i < 5; i++) {
    server.last.drop(1006);
    await clock.advance(30000);
  }
  assert.deepEqual(delays, [250, 500, 1000, 2000, undefined]); // random() = 0.5: half of each cap
  assert.equal(client.state, 'closed');
  assert.equal(server.sockets.length, 5);
});

test('1012 (drain): back at once (jittered), resumes every room with since', async () => {
  const { client, server, accept, clock } = setup();
  await accept();
  const got = [];
  client.subscribe('course:c1', (m) => got.push(m.seq));
  server.last.answerSubscribes({ seqs: { 'course:c1': 10 } });
  server.last.deliver(msg('course:c1', 12, 10), msg('course:c1', 15, 12));
  server.last.drop(1012, 'restart');
  assert.deepEqual(clock.pending(), [500]); // restartJitterMs 1000 * random 0.5
  await clock.advance(500);
  await accept();
  const sub = server.last.frames('subscribe')[0];
  assert.deepEqual(sub.since, { seq: 15, epoch: 'E1' });
  server.last.answerSubscribes({ seqs: { 'course:c1': 17 } });
  server.last.deliver(msg('course:c1', 17, 15));
  assert.deepEqual(got, [12, 15, 17]);
});

test('4401: getToken is asked for a fresh token on the next connection', async () => {
  const { server, accept, tokens, clock } = setup();
  server.last.open();
  await flush();
  server.last.deliver({ type: 'error', code: 'unauthorized', message: 'expired' });
  server.last.drop(4401, 'unauthorized');
  await clock.advance(1000);
  await accept();
  assert.deepEqual(tokens.map((t) => t.forceRefresh), [false, true]);
  assert.deepEqual(tokens.map((t) => t.reason), ['connect', 'unauthorized']);
});

test('refreshes the token before expiresAt without reconnecting', async () => {
  const { client, server, accept, clock, tokens } = setup();
  await accept(server.last, { expiresInMs: 100_000 });
  const refreshed = [];
  client.on('refresh', (s) => refreshed.push(s.expiresAt));
  await clock.advance(74_000);
  assert.equal(server.last.frames('refresh').length, 0);
  await clock.advance(2000); // margin: min(60 s, 25 % of the remaining life) = 25 s
  const r = server.last.frames('refresh');
  assert.equal(r.length, 1);
  assert.equal(r[0].token, 'tok-2');
  assert.equal(tokens[1].reason, 'refresh');
  server.last.deliver({ type: 'auth_ok', connectionId: 'e-1', userId: 'u1', role: 'student', expiresAt: new Date(clock.t + 100_000).toISOString() });
  await flush();
  assert.equal(refreshed.length, 1);
  assert.equal(server.sockets.length, 1);
  assert.equal(client.state, 'open');
});

test('a refused refresh keeps the connection and tries again', async () => {
  const { client, server, accept, clock } = setup();
  await accept(server.last, { expiresInMs: 40_000 });
  await clock.advance(31_000);
  assert.equal(server.last.frames('refresh').length, 1);
  server.last.deliver({ type: 'error', code: 'unauthorized', message: 'bad token' });
  await clock.advance(5000);
  assert.equal(server.last.frames('refresh').length, 2);
  assert.equal(client.state, 'open');
});

test('JSON Lines: several messages in one frame, blank lines ignored', async () => {
  assert.deepEqual(splitFrame('{"a":1}\n{"b":2}\n\n{"c":3}\n'), [{ a: 1 }, { b: 2 }, { c: 3 }]);
  const bad = [];
  assert.deepEqual(splitFrame('{"a":1}\nnot json', (l) => bad.push(l)), [{ a: 1 }]);
  assert.deepEqual(bad, ['not json']);
});

test('dedupe: a seq at or below the last one seen is dropped', async () => {
  const { client, server, accept } = setup();
  await accept();
  const got = [];
  client.subscribe('lesson:l1', (m) => got.push(m.seq));
  server.last.answerSubscribes({ seqs: { 'lesson:l1': 3 } });
  server.last.deliver(msg('lesson:l1', 3, 1), msg('lesson:l1', 5, 3), msg('lesson:l1', 5, 3), msg('lesson:l1', 4, 3), msg('lesson:l1', 8, 5));
  assert.deepEqual(got, [5, 8]);
  assert.equal(client.stats.duplicatesDropped, 3);
  assert.deepEqual(client.position('lesson:l1'), { seq: 8, epoch: 'E1' });
});

test('gap repair: prevSeq ahead of the last seq seen leaves and re-joins with since', async () => {
  const { client, server, accept } = setup();
  await accept();
  const got = [];
  const gaps = [];
  client.on('gap', (g) => gaps.push(g));
  client.subscribe('course:c1', (m) => got.push(m.seq));
  server.last.answerSubscribes({ seqs: { 'course:c1': 10 } });
  server.last.deliver(msg('course:c1', 11, 10), msg('course:c1', 20, 14)); // 14 never arrived
  assert.deepEqual(got, [11]);
  assert.equal(gaps.length, 1);
  const frames = server.last.sent.slice(-2);
  assert.equal(frames[0].type, 'unsubscribe');
  assert.equal(frames[1].type, 'subscribe');
  assert.deepEqual(frames[1].since, { seq: 11, epoch: 'E1' });
  // a live message still in flight is not delivered out of order
  server.last.deliver(msg('course:c1', 21, 20));
  server.last.deliver({ type: 'subscribed', id: frames[1].id, room: 'course:c1', epoch: 'E1', seq: 21, recovered: true });
  server.last.deliver(msg('course:c1', 14, 11), msg('course:c1', 20, 14), msg('course:c1', 21, 20));
  assert.deepEqual(got, [11, 14, 20, 21]);
});

test('recovered:false is an event (and onResync); the room continues from the new position', async () => {
  const { client, server, accept, clock } = setup();
  await accept();
  const got = [];
  const resyncs = [];
  client.on('resync', (r) => resyncs.push(r));
  let roomResync = 0;
  client.subscribe('course:c1', (m) => got.push(m.seq), { onResync: () => roomResync++ });
  server.last.answerSubscribes({ seqs: { 'course:c1': 5 } });
  server.last.drop(1006);
  await clock.advance(1000);
  await accept();
  server.last.answerSubscribes({ seqs: { 'course:c1': 900 }, epoch: 'E2', recovered: false });
  server.last.deliver(msg('course:c1', 901, 900));
  assert.deepEqual(resyncs, [{ room: 'course:c1', seq: 900, epoch: 'E2', recovered: false }]);
  assert.equal(roomResync, 1);
  assert.deepEqual(got, [901]);
});

test('unsubscribe: the last handler leaving sends unsubscribe; forbidden rooms report onError', async () => {
  const { client, server, accept } = setup();
  await accept();
  const off1 = client.subscribe('course:c1', () => {});
  const off2 = client.subscribe('course:c1', () => {});
  assert.equal(server.last.frames('subscribe').length, 1, 'one subscribe per room');
  server.last.answerSubscribes();
  off1();
  assert.equal(server.last.frames('unsubscribe').length, 0);
  off2();
  assert.equal(server.last.frames('unsubscribe').length, 1);
  const errors = [];
  client.subscribe('instructor:x', () => {}, { onError: (e) => errors.push(e.code) });
  const f = server.last.frames('subscribe').at(-1);
  server.last.deliver({ type: 'error', id: f.id, code: 'forbidden', room: 'instructor:x' });
  assert.deepEqual(errors, ['forbidden']);
  assert.deepEqual(client.rooms(), []);
  assert.throws(() => client.subscribe('nope', () => {}), TypeError);
});

test('actions: ack resolves, error rejects, timeout rejects', async () => {
  const { client, server, accept, clock } = setup({ actionTimeoutMs: 5000 });
  await accept();
  const p1 = client.markConfusion({ courseId: 'c1', lessonId: 'l1', videoTimestampSec: 42, text: 'lost' });
  const p2 = client.askQuestion({ courseId: 'c1', text: '?' });
  const p3 = client.answerQuestion({ courseId: 'c1', questionId: 'q1', answer: 'yes' });
  p3.catch(() => {});
  const [f1, f2, f3] = server.last.frames().filter((f) => f.action);
  assert.deepEqual({ ...f1, id: undefined }, { type: 'confusion', action: 'create', id: undefined, payload: { courseId: 'c1', lessonId: 'l1', videoTimestampSec: 42, text: 'lost' } });
  assert.deepEqual(f2.payload, { courseId: 'c1', text: '?' });
  server.last.deliver({ type: 'ack', id: f1.id, eventId: 'ev1', confusionId: 'cf1' });
  server.last.deliver({ type: 'error', id: f2.id, code: 'forbidden', message: 'not in course' });
  assert.deepEqual(await p1, { id: f1.id, eventId: 'ev1', confusionId: 'cf1' });
  await assert.rejects(p2, { code: 'forbidden' });
  await clock.advance(5000);
  await assert.rejects(p3, { code: 'timeout' });
  assert.equal(f3.type, 'question');
});

test('offline queue: actions wait, go out after auth_ok in order (after the rooms), in-flight ones again with the same id', async () => {
  const { client, server, accept, clock } = setup();
  await accept();
  client.subscribe('course:c1', () => {});
  server.last.answerSubscribes();
  const inflight = client.promptShown({ courseId: 'c1', lessonId: 'l1', promptId: 'p1', kind: 'quiz' });
  const sentId = server.last.frames('prompt')[0].id;
  server.last.drop(1006);
  const queued = [
    client.markConfusion({ courseId: 'c1', lessonId: 'l1', videoTimestampSec: 1 }),
    client.promptResponded({ courseId: 'c1', lessonId: 'l1', promptId: 'p1', kind: 'quiz', action: 'completed' }),
    client.markNotificationsRead(['n1', 'n2']),
  ];
  assert.equal(client.queued, 4);
  await clock.advance(1000);
  await accept();
  const sent = server.last.frames();
  assert.deepEqual(sent.map((f) => f.type + (f.action ? '/' + f.action : '')), ['auth', 'subscribe', 'prompt/create', 'confusion/create', 'prompt/update', 'notification/update']);
  assert.equal(sent[2].id, sentId, 'the unanswered action is re-sent with its id: the edge stores it once');
  assert.deepEqual(sent[5].payload, { notificationIds: ['n1', 'n2'] });
  for (const f of sent.slice(2)) server.last.deliver({ type: 'ack', id: f.id, eventId: 'e-' + f.id });
  // a late duplicate ack changes nothing
  server.last.deliver({ type: 'ack', id: sentId, eventId: 'e-' + sentId, duplicate: true });
  const r = await inflight;
  assert.equal(r.eventId, 'e-' + sentId);
  assert.equal(r.duplicate, undefined);
  await Promise.all(queued);
  assert.equal(client.queued, 0);
  assert.equal(client.inFlight, 0);
});

test('offline queue is bounded; progress heartbeats of one lesson coalesce', async () => {
  const { client, server, accept, clock } = setup({ maxQueue: 3 });
  server.last.drop(1006);
  const hb = (pos) => client.reportProgress({ courseId: 'c1', lessonId: 'l1', positionSec: pos, durationSec: 100, playing: true });
  const h1 = hb(1), h2 = hb(2), h3 = hb(3);
  assert.equal(client.queued, 1, 'only the newest heartbeat of a lesson waits');
  const a = client.askQuestion({ courseId: 'c1', text: 'a' });
  const b = client.askQuestion({ courseId: 'c1', text: 'b' });
  await assert.rejects(client.askQuestion({ courseId: 'c1', text: 'c' }), { code: 'queue_full' });
  await clock.advance(1000);
  await accept();
  const actions = server.last.frames().filter((f) => f.action);
  assert.deepEqual(actions.map((f) => f.payload.positionSec ?? f.payload.text), [3, 'a', 'b']);
  for (const f of actions) server.last.deliver({ type: 'ack', id: f.id, eventId: 'e' });
  const results = await Promise.all([h1, h2, h3, a, b]);
  assert.equal(results[0].id, actions[0].id, 'replaced heartbeats settle with the one that was sent');
});

test('internal errors are retried with the same id; in-flight actions are capped', async () => {
  const { client, server, accept, clock } = setup({ maxInFlight: 2 });
  await accept();
  const ps = [1, 2, 3].map((i) => client.askQuestion({ courseId: 'c1', text: 'q' + i }));
  let acts = server.last.frames('question');
  assert.equal(acts.length, 2);
  server.last.deliver({ type: 'error', id: acts[0].id, code: 'internal', message: 'try again' });
  assert.equal(server.last.frames('question').length, 3, 'the freed slot takes the next action');
  server.last.deliver({ type: 'ack', id: acts[1].id, eventId: 'e' });
  await clock.advance(1000);
  acts = server.last.frames('question');
  assert.equal(acts.length, 4);
  assert.equal(acts[3].id, acts[0].id);
  for (const f of acts.slice(2)) server.last.deliver({ type: 'ack', id: f.id, eventId: 'e' });
  await Promise.all(ps);
});

test('disconnect() rejects what is queued or in flight', async () => {
  const { client, server, accept } = setup();
  await accept();
  const p = client.askQuestion({ courseId: 'c1', text: 'q' });
  client.disconnect();
  await assert.rejects(p, { code: 'closed' });
  assert.equal(server.last.closed.code, 1000);
});

test('liveness: no frame for pingIntervalMs sends a ping; no answer reconnects', async () => {
  const { client, server, accept, clock } = setup({ pingIntervalMs: 20000, pongTimeoutMs: 5000 });
  server.answerPings = false;
  await accept();
  await clock.advance(20000);
  const ping = server.last.frames('ping');
  assert.equal(ping.length, 1);
  server.last.deliver({ type: 'pong', id: ping[0].id, serverTime: 'x' });
  await clock.advance(20000);
  assert.equal(server.last.frames('ping').length, 2);
  await clock.advance(5000);
  assert.equal(client.state, 'reconnecting');
});

test('frames are paced below the server rate limit', async () => {
  const { client, server, accept, clock } = setup({ sendRatePerSec: 10, sendBurst: 5 });
  await accept();
  for (let i = 0; i < 12; i++) client.subscribe('lesson:l' + i, () => {});
  assert.equal(server.last.frames('subscribe').length, 4); // burst 5, the auth frame took one
  await clock.advance(1000);
  assert.equal(server.last.frames('subscribe').length, 12);
});

test('trackProgress: a heartbeat now and every interval (at most 15 s), paused or not', async () => {
  const { client, server, accept, clock } = setup();
  await accept();
  let pos = 0;
  const t = client.trackProgress({ courseId: 'c1', lessonId: 'l1', intervalMs: 60000, read: () => ({ positionSec: pos, durationSec: 300, playing: false }) });
  assert.equal(server.last.frames('progress').length, 1);
  pos = 7;
  await clock.advance(15000);
  const p = server.last.frames('progress');
  assert.equal(p.length, 2);
  assert.deepEqual(p[1].payload, { courseId: 'c1', lessonId: 'l1', positionSec: 7, durationSec: 300, playing: false });
  t.stop();
  await clock.advance(60000);
  assert.equal(server.last.frames('progress').length, 2);
});

test('leaving a room before the server answered: unsubscribe once it is joined', async () => {
  const { client, server, accept } = setup();
  await accept();
  const off = client.subscribe('course:c1', () => {});
  off();
  assert.equal(server.last.frames('unsubscribe').length, 0);
  server.last.answerSubscribes();
  assert.deepEqual(server.last.frames('unsubscribe').map((f) => f.room), ['course:c1']);
  // joined again meanwhile (React StrictMode): one subscribe, the room stays
  const got = [];
  const off2 = client.subscribe('course:c2', () => {});
  off2();
  client.subscribe('course:c2', (m) => got.push(m.seq));
  assert.equal(server.last.frames('subscribe').filter((f) => f.room === 'course:c2').length, 1);
  server.last.answerSubscribes({ seqs: { 'course:c2': 4 } });
  server.last.deliver({ type: 'question', action: 'create', room: 'course:c2', seq: 5, prevSeq: 4, payload: {} });
  assert.deepEqual(server.last.frames('unsubscribe').map((f) => f.room), ['course:c1']);
  assert.deepEqual(got, [5]);
});

test('after disconnect() actions reject at once; connect() again works', async () => {
  const { client, server, accept, clock } = setup();
  await accept();
  client.disconnect();
  await assert.rejects(client.askQuestion({ courseId: 'c1', text: 'q' }), { code: 'closed' });
  client.connect();
  await clock.advance(10);
  await accept();
  const p = client.askQuestion({ courseId: 'c1', text: 'q' });
  server.last.deliver({ type: 'ack', id: server.last.frames('question')[0].id, eventId: 'e' });
  assert.equal((await p).eventId, 'e');
});
