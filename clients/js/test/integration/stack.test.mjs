// The SDK against the real stack: nats-server, PostgreSQL, auth, ws-edge
// (clients/test-support/stack.mjs). Node's WebSocket comes from the "ws"
// package, passed as the WebSocket option.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { join } from 'node:path';
import WS from 'ws';
import { createClient } from '../../src/index.js';
import { startStack, BIN_DIR } from '../../../test-support/stack.mjs';
import { mintToken } from '../../../test-support/token.mjs';

const run = promisify(execFile);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const COURSE = 'demo-course';
const ROOM = 'course:' + COURSE;

let stack;
const clients = [];

before(async () => {
  stack = await startStack();
});

after(async () => {
  for (const c of clients) c.destroy();
  if (stack) await stack.stop();
});

function client(user, opts = {}) {
  const c = createClient({
    url: stack.wsUrl,
    WebSocket: opts.WebSocket || WS,
    getToken: opts.getToken || (async () => stack.token(user)),
    backoff: { baseMs: 200, maxMs: 2000 },
    ...opts.extra,
  });
  clients.push(c);
  return c;
}

async function until(what, fn, timeoutMs = 15000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await fn()) return;
    await sleep(25);
  }
  throw new Error('timed out waiting for ' + what);
}

const opened = (c) => until('open', () => c.state === 'open');

async function publish(room, text, eventId) {
  const payload = JSON.stringify({ confusionId: 'c-' + eventId, courseId: COURSE, lessonId: 'demo-lesson-1', userId: 'demo-student-2', videoTimestampSec: 42, text });
  await run(join(BIN_DIR, 'rtctl'), ['publish', room, 'confusion', 'create', payload, '--event-id', eventId], { env: { ...process.env, NATS_URL: stack.natsUrl } });
}

test('resume after the edge is killed: every message once, in order, nothing lost', async () => {
  const c = client('demo-student-1');
  const got = [];
  const resyncs = [];
  c.on('resync', (r) => resyncs.push(r));
  let subscribed = 0;
  c.subscribe(ROOM, (m) => got.push(m.payload.text), { onSubscribed: () => subscribed++ });
  await until('subscribed', () => subscribed === 1);
  for (let i = 1; i <= 5; i++) await publish(ROOM, 'm' + i, 'resume-' + i);
  await until('first five', () => got.length === 5);
  await stack.killEdge();
  await until('reconnecting', () => c.state === 'reconnecting' || c.state === 'connecting');
  for (let i = 6; i <= 12; i++) await publish(ROOM, 'm' + i, 'resume-' + i);
  await stack.startEdge();
  await until('all twelve', () => got.length >= 12);
  for (let i = 13; i <= 14; i++) await publish(ROOM, 'm' + i, 'resume-' + i);
  await until('live again', () => got.length >= 14);
  await sleep(300);
  assert.deepEqual(got, Array.from({ length: 14 }, (_, i) => 'm' + (i + 1)));
  assert.deepEqual(resyncs, []);
  assert.ok(c.stats.connects >= 2);
});

test('refreshes the token before expiresAt: the connection outlives its first token', async () => {
  let calls = 0;
  const c = client('demo-student-1', { getToken: async () => (calls++, mintToken(stack.secret, 'demo-student-1', { ttlS: 4 })) });
  const refreshes = [];
  const drops = [];
  c.on('refresh', (s) => refreshes.push(s.expiresAt));
  c.on('disconnect', (d) => drops.push(d.code));
  await opened(c);
  const first = c.session.expiresAt;
  await sleep(6500);
  assert.deepEqual(drops, []);
  assert.equal(c.state, 'open');
  assert.ok(refreshes.length >= 1, 'refreshed');
  assert.ok(Date.parse(c.session.expiresAt) > Date.parse(first));
  assert.equal(c.stats.connects, 1);
  assert.ok(calls >= 2);
});

test('4401: a refused token, then getToken is asked for a fresh one and the client gets in', async () => {
  const asked = [];
  const c = client('demo-student-2', {
    getToken: async (ctx) => {
      asked.push(ctx);
      return asked.length === 1 ? mintToken('the-wrong-secret-the-wrong-secret-0000', 'demo-student-2') : stack.token('demo-student-2');
    },
  });
  const drops = [];
  c.on('disconnect', (d) => drops.push(d.code));
  await opened(c);
  assert.deepEqual(drops, [4401]);
  assert.deepEqual(asked.map((a) => a.forceRefresh), [false, true]);
  assert.equal(c.session.userId, 'demo-student-2');
});

test('a token that expires in session (no usable refresh): 4401, then a fresh token, rooms resumed', async () => {
  let n = 0;
  const c = client('demo-student-2', {
    // The first token lives 3 s and "refresh" hands back the same token, so
    // the edge closes 4401 at its expiry; the reconnect asks for a fresh one.
    getToken: async (ctx) => {
      n++;
      if (n <= 3 && ctx.reason !== 'unauthorized') return (c._first ||= mintToken(stack.secret, 'demo-student-2', { ttlS: 3 }));
      return stack.token('demo-student-2');
    },
  });
  const drops = [];
  const got = [];
  c.on('disconnect', (d) => drops.push(d.code));
  c.subscribe('user:demo-student-2', (m) => got.push(m.payload.text));
  await opened(c);
  await until('4401', () => drops.includes(4401), 8000);
  await until('open again', () => c.state === 'open');
  await publish('user:demo-student-2', 'after-expiry', 'exp-1');
  await until('message', () => got.includes('after-expiry'));
});

// A WebSocket that loses the first ack of an action id (the ack was on its
// way when the edge died): the action was stored, the client does not know.
// While hold.on, it dials a closed port (the client keeps retrying).
function lossyWebSocket(shouldDrop, hold = { on: false }) {
  return class LossyWS extends WS {
    constructor(url, protocols) {
      super(hold.on ? 'ws://127.0.0.1:1/ws' : url, protocols);
    }
    set onmessage(fn) {
      super.onmessage = fn && ((ev) => {
        const lines = String(ev.data).split('\n').filter((l) => l && !shouldDrop(l));
        if (lines.length) fn({ data: lines.join('\n') });
      });
    }
    get onmessage() {
      return super.onmessage;
    }
  };
}

test('actions are acked, and stored once even when the ack is lost and the action is re-sent after a crash', async () => {
  const watcher = client('demo-instructor');
  const seen = [];
  let subscribed = false;
  watcher.subscribe(ROOM, (m) => m.type === 'confusion' && seen.push(m.payload.text), { onSubscribed: () => (subscribed = true) });
  await until('watcher subscribed', () => subscribed);

  let dropped = null;
  const hold = { on: false };
  const student = client('demo-student-1', {
    WebSocket: lossyWebSocket((line) => {
      if (dropped === null && line.includes('"type":"ack"')) {
        dropped = JSON.parse(line).id;
        return true;
      }
      return false;
    }, hold),
    extra: { actionTimeoutMs: 60000 },
  });
  await opened(student);
  const p0 = student.markConfusion({ courseId: COURSE, lessonId: 'demo-lesson-1', videoTimestampSec: 12.5, text: 'once-0' });
  await until('the first ack dropped', () => dropped !== null);
  const r1 = await student.markConfusion({ courseId: COURSE, lessonId: 'demo-lesson-1', videoTimestampSec: 13, text: 'once-1' });
  assert.ok(r1.eventId && r1.confusionId);
  await until('both stored', () => seen.includes('once-0') && seen.includes('once-1'));
  assert.equal(student.inFlight, 1);
  const before = student.session.connectionId;
  hold.on = true;
  await stack.killEdge();
  await stack.startEdge();
  // Other connections first, so that the student's new connection cannot
  // have the old one's id by chance (a restarted edge counts from 1 again).
  const others = [1, 2, 3].map(() => client('demo-student-2'));
  await Promise.all(others.map(opened));
  await opened(watcher);
  hold.on = false;
  await opened(student);
  assert.notEqual(student.session.connectionId, before);
  const r0 = await p0;
  assert.ok(r0.eventId);
  const more = await student.askQuestion({ courseId: COURSE, lessonId: 'demo-lesson-1', text: 'after' });
  assert.ok(more.eventId);
  await sleep(1000);
  const count = (t) => seen.filter((x) => x === t).length;
  assert.equal(count('once-1'), 1);
  assert.equal(count('once-0'), 1, 'the re-sent action (same id, new connection) must be stored once');
});

test('actions: bad payloads are rejected with bad_request naming the field; instructors only for updates', async () => {
  const s = client('demo-student-1');
  await opened(s);
  await assert.rejects(s.request('confusion', 'create', { courseId: COURSE, lessonId: 'demo-lesson-1', videoTimestampSec: 1, userId: 'x' }), (e) => e.code === 'bad_request' && /userId/.test(e.message));
  await assert.rejects(s.resolveConfusion({ courseId: COURSE, confusionId: 'nope' }), (e) => e.code === 'forbidden');
  const r = await s.reportProgress({ courseId: COURSE, lessonId: 'demo-lesson-1', positionSec: 10, durationSec: 100, playing: true });
  assert.ok(r.eventId);
});
