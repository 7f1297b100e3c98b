import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createStore } from 'zustand/vanilla';
import { createClient } from '../../src/index.js';
import { createRealtimeSlice, reduceRealtimeMessage, initialRealtimeState } from '../../src/store.js';
import { Clock, fakeServer, flush } from '../support/fake.mjs';

const confusion = (room, seq, id, extra = {}) => ({
  type: 'confusion', action: 'create', room, seq, prevSeq: seq - 1,
  payload: { eventId: 'ev-' + id, confusionId: id, courseId: 'c1', lessonId: 'l1', userId: 's1', videoTimestampSec: 61, text: 't' + id, ...extra },
});

test('reducer: bounded recentEvents and liveConfusions, one confusion per id across rooms', () => {
  let s = initialRealtimeState();
  for (let i = 1; i <= 120; i++) s = { ...s, ...reduceRealtimeMessage(s, confusion('course:c1', i, 'c' + i)) };
  assert.equal(s.recentEvents.length, 100);
  assert.equal(s.liveConfusions.length, 50);
  assert.equal(s.liveConfusions[0].confusionId, 'c120');
  // the aggregator's copy in the instructor room changes nothing
  const again = reduceRealtimeMessage(s, confusion('instructor:i1', 7, 'c120'));
  assert.equal(again.recentEvents, undefined);
  assert.equal(again.liveConfusions, undefined);
  const resolved = reduceRealtimeMessage(s, { type: 'confusion', action: 'update', room: 'course:c1', seq: 200, payload: { eventId: 'r1', confusionId: 'c120', resolved: true, response: 'see 1:02' } });
  assert.equal(resolved.liveConfusions[0].resolved, true);
  assert.equal(resolved.liveConfusions[0].response, 'see 1:02');
  const a = reduceRealtimeMessage(s, { type: 'analytics', action: 'update', room: 'course:c1', seq: 201, payload: { courseId: 'c1', learnRate: 42, activeStudents: [{ userId: 's1' }] } });
  assert.equal(a.liveAnalytics.c1.learnRate, 42);
  assert.deepEqual(a.activeStudents, [{ userId: 's1' }]);
});

test('slice in a zustand store follows the client: wsStatus, rooms, unread count', async () => {
  const clock = new Clock();
  const server = fakeServer();
  const client = createClient({ url: 'ws://x/ws', getToken: () => 't', WebSocket: server.WebSocket, timers: clock, watchNetwork: false });
  const store = createStore((...a) => ({ ...createRealtimeSlice()(...a) }));
  const undo = store.getState().connectRealtime(client, { courseId: 'c1', instructorId: 'i1' });
  assert.equal(store.getState().wsStatus, 'connecting');
  await server.last.accept({ userId: 'i1', now: clock.t });
  assert.equal(store.getState().wsStatus, 'open');
  const rooms = server.last.frames('subscribe').map((f) => f.room).sort();
  assert.deepEqual(rooms, ['course:c1', 'instructor:i1', 'user:i1']);
  const list = server.last.frames('notifications')[0];
  server.last.deliver({ type: 'notifications', id: list.id, payload: { notifications: [], unreadCount: 3, hasMore: false } });
  await flush();
  server.last.answerSubscribes({ seqs: { 'course:c1': 10 } });
  server.last.deliver(confusion('course:c1', 11, 'x1'));
  server.last.deliver({ type: 'notification', action: 'create', room: 'user:i1', seq: 1, prevSeq: 0, payload: { notificationId: 'n1', title: 'hi' } });
  await flush();
  const s = store.getState();
  assert.equal(s.unreadNotifications, 4);
  assert.equal(s.liveConfusions[0].confusionId, 'x1');
  assert.equal(s.recentEvents.length, 2);
  undo();
  client.destroy();
  assert.equal(store.getState().wsStatus, 'open', 'after undo the store no longer follows the client');
});
