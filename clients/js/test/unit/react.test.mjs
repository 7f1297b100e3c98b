import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createElement as h, act } from 'react';
import TestRenderer from 'react-test-renderer';
import { createClient } from '../../src/index.js';
import { RealtimeProvider, useRealtime, useCourseAnalytics, useConfusions, useLessonProgress, useNotifications, useRoom } from '../../src/react.js';
import { Clock, fakeServer, flush } from '../support/fake.mjs';

globalThis.IS_REACT_ACT_ENVIRONMENT = true;

test('hooks follow the client: status, rooms, analytics, confusions, progress, notifications', async () => {
  const clock = new Clock();
  const server = fakeServer();
  const client = createClient({ url: 'ws://x/ws', getToken: () => 't', WebSocket: server.WebSocket, timers: clock, watchNetwork: false });
  let seen;
  function Probe() {
    const rt = useRealtime();
    const analytics = useCourseAnalytics('c1');
    const conf = useConfusions('c1');
    const prog = useLessonProgress('l1', { courseId: 'c1' });
    const notes = useNotifications();
    const room = useRoom('lesson:l1');
    seen = { rt, analytics, conf, prog, notes, room };
    return null;
  }
  let r;
  await act(async () => {
    r = TestRenderer.create(h(RealtimeProvider, { client }, h(Probe)));
  });
  assert.equal(seen.rt.status, 'connecting');
  await act(async () => {
    await server.last.accept({ userId: 's1', now: clock.t });
  });
  assert.equal(seen.rt.status, 'open');
  assert.equal(seen.rt.session.userId, 's1');
  const rooms = [...new Set(server.last.frames('subscribe').map((f) => f.room))].sort();
  assert.deepEqual(rooms, ['course:c1', 'lesson:l1', 'user:s1']);
  await act(async () => {
    const list = server.last.frames('notifications')[0];
    server.last.deliver({ type: 'notifications', id: list.id, payload: { notifications: [{ notificationId: 'n1', title: 'a' }], unreadCount: 1, hasMore: false } });
    server.last.answerSubscribes({ seqs: {} });
    await flush();
  });
  assert.equal(seen.room.status, 'joined');
  assert.equal(seen.notes.unreadCount, 1);
  await act(async () => {
    server.last.deliver(
      { type: 'analytics', action: 'update', room: 'course:c1', seq: 1, prevSeq: 0, payload: { courseId: 'c1', learnRate: 51.5, learnRateBand: 'very_good' } },
      { type: 'confusion', action: 'create', room: 'course:c1', seq: 2, prevSeq: 1, payload: { confusionId: 'cf1', courseId: 'c1', lessonId: 'l1', userId: 's2', videoTimestampSec: 61 } },
      { type: 'progress', action: 'update', room: 'user:s1', seq: 1, prevSeq: 0, payload: { courseId: 'c1', lessonId: 'l1', positionSec: 120, durationSec: 600, playing: true } },
      { type: 'notification', action: 'create', room: 'user:s1', seq: 2, prevSeq: 1, payload: { notificationId: 'n2', title: 'answered' } },
    );
    await flush();
  });
  assert.equal(seen.analytics.metrics.learnRate, 51.5);
  assert.equal(seen.conf.confusions.length, 1);
  assert.equal(seen.conf.open, 1);
  assert.equal(seen.prog.progress.positionSec, 120);
  assert.equal(seen.prog.progress.from, 'other-device');
  assert.equal(seen.notes.unreadCount, 2);
  assert.equal(seen.notes.notifications[0].notificationId, 'n2');
  await act(async () => {
    seen.notes.markRead(['n1', 'n2']).catch(() => {});
    seen.prog.report({ positionSec: 130, durationSec: 600, playing: true }).catch(() => {});
    await flush();
  });
  assert.equal(seen.notes.unreadCount, 0);
  assert.equal(seen.prog.progress.from, 'this-device');
  assert.deepEqual(server.last.frames('notification')[0].payload, { notificationIds: ['n1', 'n2'] });
  assert.equal(server.last.frames('progress')[0].payload.positionSec, 130);
  await act(async () => r.unmount());
  assert.ok(server.last.frames('unsubscribe').length >= 3, 'rooms left on unmount');
  client.destroy();
});
