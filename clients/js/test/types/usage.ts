// Compiled by test/unit/types.test.mjs (tsc --noEmit): the hand-written
// .d.ts files must describe the API as apps use it.
import { createClient, trackVideo, RealtimeError, type RoomMessage, type CourseMetrics, type Ack } from '@unpuzzle/realtime';
import { RealtimeProvider, useRealtime, useRoom, useCourseAnalytics, useLessonProgress, useConfusions, useNotifications } from '@unpuzzle/realtime/react';
import { createRealtimeSlice, type RealtimeSlice } from '@unpuzzle/realtime/zustand';
import { createStore } from 'zustand/vanilla';

const client = createClient({ url: 'wss://rt.example.com/ws', getToken: async ({ forceRefresh }) => (forceRefresh ? 'fresh' : 'cached') });
client.on('state', (s, prev) => console.log(s.toUpperCase(), prev));
client.on('resync', (info) => console.log(info.room, info.recovered));
const off: () => void = client.subscribe('course:42', (m: RoomMessage<CourseMetrics>) => console.log(m.payload.learnRate, m.seq));
off();
async function actions(): Promise<void> {
  const a: Ack & { confusionId: string } = await client.markConfusion({ courseId: 'c', lessonId: 'l', videoTimestampSec: 1.5 });
  await client.resolveConfusion({ courseId: 'c', confusionId: a.confusionId, response: 'ok' });
  const q = await client.askQuestion({ courseId: 'c', text: '?' });
  await client.answerQuestion({ courseId: 'c', questionId: q.questionId, answer: '!' });
  await client.reportProgress({ courseId: 'c', lessonId: 'l', positionSec: 1, durationSec: 2, playing: true });
  await client.promptShown({ courseId: 'c', lessonId: 'l', promptId: 'p', kind: 'quiz' });
  await client.promptResponded({ courseId: 'c', lessonId: 'l', promptId: 'p', kind: 'quiz', action: 'skipped' });
  const list = await client.listNotifications({ unreadOnly: true });
  await client.markNotificationsRead(list.notifications.map((n) => n.notificationId));
  try {
    await client.ping();
  } catch (e) {
    if (e instanceof RealtimeError) console.log(e.code);
  }
}
void actions;
declare const video: HTMLVideoElement;
const stop: () => void = trackVideo(client, video, { courseId: 'c', lessonId: 'l' });
stop();

function Hooks(): null {
  const { status, session } = useRealtime();
  const room = useRoom('lesson:l');
  const { metrics } = useCourseAnalytics('c', { instructorId: 'i' });
  const { progress, report } = useLessonProgress('l', { courseId: 'c' });
  const { confusions, resolveConfusion } = useConfusions('c');
  const { unreadCount, markRead } = useNotifications();
  console.log(status, session?.userId, room.status, metrics?.learnRateBand, progress?.from, confusions.length, unreadCount);
  void report({ positionSec: 1, durationSec: 2, playing: false });
  void resolveConfusion('x');
  void markRead('n1');
  return null;
}
void Hooks;
void RealtimeProvider;

const store = createStore<RealtimeSlice>()((set, get, api) => ({ ...createRealtimeSlice()(set, get, api) }));
store.getState().connectRealtime(client, { courseId: 'c' });
const s: string = store.getState().wsStatus;
void s;
