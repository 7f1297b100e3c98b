// The realtime part of the product's Zustand store, as a slice:
//
//   import { create } from 'zustand';
//   import { createRealtimeSlice } from '@unpuzzle/realtime/zustand';
//   const useStore = create((...a) => ({ ...createRealtimeSlice()(...a), ...otherSlices(...a) }));
//   useStore.getState().connectRealtime(client, { courseId, instructorId });
//
// It imports nothing from zustand: a slice is a function of (set, get).

export const RECENT_EVENTS_MAX = 100;
export const LIVE_CONFUSIONS_MAX = 50;

/** The slice's initial state (the names the product's store uses). */
export function initialRealtimeState() {
  return {
    wsStatus: 'closed', // connecting | authenticating | open | reconnecting | closed
    recentEvents: [], // room messages, newest first, at most 100
    unreadNotifications: 0,
    liveConfusions: [], // newest first, at most 50: {confusionId, courseId, lessonId, userId, videoTimestampSec, text, createdAt, resolved, response}
    liveAnalytics: {}, // courseId -> CourseMetrics (the latest analytics/update)
    activeStudents: [], // "who is watching" of the latest analytics/update: [{userId, lessonId, since}]
    lastResync: null, // {room, seq, epoch} when the server could not replay: reload snapshots
  };
}

/**
 * The pure state transition for one room message; returns the changed keys
 * (or null when nothing changes). Used by connectRealtime, exported for tests
 * and for apps that feed messages themselves.
 */
export function reduceRealtimeMessage(state, m) {
  const p = m.payload || {};
  // The same event can reach the store through two rooms (a confusion in
  // course: from ws-edge and in instructor: from the aggregator): keep one.
  const key = p.eventId && m.type !== 'analytics' ? m.type + ':' + m.action + ':' + p.eventId : null;
  const dup = key !== null && state.recentEvents.some((e) => e.payload && e.type + ':' + e.action + ':' + e.payload.eventId === key);
  const out = dup ? {} : { recentEvents: [m, ...state.recentEvents].slice(0, RECENT_EVENTS_MAX) };
  if (dup && m.type !== 'confusion') return out;
  if (m.type === 'confusion' && m.action === 'create' && p.confusionId) {
    if (!state.liveConfusions.some((c) => c.confusionId === p.confusionId)) {
      const c = {
        confusionId: p.confusionId,
        courseId: p.courseId,
        lessonId: p.lessonId,
        userId: p.userId || m.userId,
        videoTimestampSec: p.videoTimestampSec ?? 0,
        text: p.text || '',
        createdAt: p.occurredAt || m.timestamp || null,
        resolved: false,
        response: '',
      };
      out.liveConfusions = [c, ...state.liveConfusions].slice(0, LIVE_CONFUSIONS_MAX);
    }
  } else if (m.type === 'confusion' && m.action === 'update' && p.confusionId) {
    out.liveConfusions = state.liveConfusions.map((c) => (c.confusionId === p.confusionId ? { ...c, resolved: p.resolved !== false, response: p.response || '' } : c));
  } else if (m.type === 'analytics' && p.courseId) {
    out.liveAnalytics = { ...state.liveAnalytics, [p.courseId]: p };
    out.activeStudents = p.activeStudents || [];
  } else if (m.type === 'notification' && m.action === 'create') {
    out.unreadNotifications = state.unreadNotifications + (p.readAt ? 0 : 1);
  }
  return out;
}

/**
 * createRealtimeSlice() → (set, get) => slice. The slice has the state above
 * plus:
 *   connectRealtime(client, {courseId?, instructorId?, userRoom = true}) →
 *     follows the client's state, joins course:<courseId>,
 *     instructor:<instructorId> and the user's own room; returns (and keeps)
 *     the function that undoes it.
 *   disconnectRealtime()
 *   ingestRealtimeMessage(message)
 *   setUnreadNotifications(n)
 */
export function createRealtimeSlice() {
  return (set, get) => {
    let undo = null;
    const ingest = (m) => set((s) => reduceRealtimeMessage(s, m));
    return {
      ...initialRealtimeState(),

      ingestRealtimeMessage: ingest,

      setUnreadNotifications: (n) => set({ unreadNotifications: Math.max(0, n | 0) }),

      connectRealtime(client, { courseId, instructorId, userRoom = true } = {}) {
        if (undo) undo();
        const offs = [];
        const joined = new Set();
        const join = (room) => {
          if (!room || joined.has(room)) return;
          joined.add(room);
          offs.push(client.subscribe(room, ingest, { onResync: (info) => set({ lastResync: info }) }));
        };
        const countUnread = () => {
          client
            .listNotifications({ unreadOnly: true, limit: 1 }, { timeoutMs: 5000 })
            .then((r) => set({ unreadNotifications: r.unreadCount ?? 0 }))
            .catch(() => {
              /* no notification service: keep counting live ones */
            });
        };
        const onOpen = (session) => {
          if (userRoom && session && session.userId) join('user:' + session.userId);
          countUnread();
        };
        offs.push(client.on('state', (st) => set({ wsStatus: st })));
        offs.push(client.on('open', onOpen));
        offs.push(
          client.on('message', (m) => {
            // another device read notifications: ask for the true count
            if (m.type === 'notification' && m.action === 'update') countUnread();
          }),
        );
        set({ wsStatus: client.state });
        if (courseId) join('course:' + courseId);
        if (instructorId) join('instructor:' + instructorId);
        if (client.state === 'open') onOpen(client.session);
        undo = () => {
          for (const off of offs) off();
          undo = null;
        };
        return undo;
      },

      disconnectRealtime() {
        if (undo) undo();
        set({ wsStatus: 'closed' });
      },
    };
  };
}
