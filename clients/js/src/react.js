// React bindings of @unpuzzle/realtime (React >= 18 as a peer dependency).
//
//   <RealtimeProvider url="wss://rt.example.com/ws" getToken={getToken}>…</RealtimeProvider>
//   const { status, session, client } = useRealtime();
//   const { metrics } = useCourseAnalytics(courseId);
//
// Hooks: useRealtime, useRoom, useCourseAnalytics, useLessonProgress,
// useConfusions, useNotifications. One client per provider; it reconnects and
// resumes by itself, the hooks only follow it.
import { createContext, createElement, useCallback, useContext, useEffect, useRef, useState, useSyncExternalStore } from 'react';
import { createClient } from './client.js';

const RealtimeContext = createContext(null);

/**
 * Provides a client to the hooks below: either `client` (made by the app with
 * createClient) or one made from the other props ({url, getToken, WebSocket,
 * ...createClient options}) and destroyed on unmount.
 */
export function RealtimeProvider({ client, children, ...options }) {
  const own = useRef(null);
  const [made, setMade] = useState(null);
  useEffect(() => {
    if (client) return undefined;
    const c = createClient(options);
    own.current = c;
    setMade(c);
    return () => {
      c.destroy();
      own.current = null;
    };
    // The client is made once per provider; change `key` to make a new one.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [client]);
  return createElement(RealtimeContext.Provider, { value: client || made }, children);
}

/** The provider's client (null until it exists). */
export function useRealtimeClient() {
  return useContext(RealtimeContext);
}


/** {client, status, session}: status is the client's state, re-rendered on change. */
export function useRealtime() {
  const client = useRealtimeClient();
  const subscribe = useCallback((cb) => {
    if (!client) return () => {};
    const a = client.on('state', cb);
    const b = client.on('open', cb);
    const c = client.on('refresh', cb);
    return () => {
      a();
      b();
      c();
    };
  }, [client]);
  const status = useSyncExternalStore(subscribe, () => (client ? client.state : 'closed'), () => 'closed');
  const session = useSyncExternalStore(subscribe, () => (client ? client.session : null), () => null);
  return { client, status, session };
}

/**
 * Joins `room` while mounted (null: none). Returns {messages (newest last, at
 * most `limit`), last, status: idle|joining|joined|error, error, resyncs}.
 * onMessage(m) is called for each message too.
 */
export function useRoom(room, { onMessage, limit = 50 } = {}) {
  const client = useRealtimeClient();
  const [state, setState] = useState({ messages: [], last: null, status: 'idle', error: null, resyncs: 0 });
  const cb = useRef(onMessage);
  cb.current = onMessage;
  useEffect(() => {
    if (!client || !room) {
      setState({ messages: [], last: null, status: 'idle', error: null, resyncs: 0 });
      return undefined;
    }
    setState((s) => ({ ...s, messages: [], last: null, status: 'joining', error: null }));
    return client.subscribe(
      room,
      (m) => {
        setState((s) => ({ ...s, messages: [...s.messages, m].slice(-limit), last: m }));
        if (cb.current) cb.current(m);
      },
      {
        onSubscribed: () => setState((s) => (s.status === 'joined' ? s : { ...s, status: 'joined' })),
        onResync: () => setState((s) => ({ ...s, resyncs: s.resyncs + 1 })),
        onError: (error) => setState((s) => ({ ...s, status: 'error', error })),
      },
    );
  }, [client, room, limit]);
  return state;
}

/**
 * The live CourseMetrics of a course: {metrics, updatedAt, status}. Joins
 * instructor:<instructorId> when given (it carries the per-student list),
 * else course:<courseId>. metrics is null until the first update.
 */
export function useCourseAnalytics(courseId, { instructorId } = {}) {
  const room = instructorId ? 'instructor:' + instructorId : courseId ? 'course:' + courseId : null;
  const [metrics, setMetrics] = useState({ metrics: null, updatedAt: null });
  const r = useRoom(room, {
    limit: 1,
    onMessage: (m) => {
      if (m.type === 'analytics' && m.payload && m.payload.courseId === courseId) setMetrics({ metrics: m.payload, updatedAt: m.timestamp || new Date().toISOString() });
    },
  });
  useEffect(() => setMetrics({ metrics: null, updatedAt: null }), [room]);
  return { ...metrics, status: r.status, error: r.error };
}

/**
 * Progress of one lesson that follows the user across devices: {progress,
 * report(state)}. progress is the newest of what this device reported and
 * what the user's other devices reported (user:<me> room, progress/update).
 */
export function useLessonProgress(lessonId, { courseId } = {}) {
  const { client, session } = useRealtime();
  const [progress, setProgress] = useState(null);
  const room = session && session.userId ? 'user:' + session.userId : null;
  useRoom(room, {
    limit: 1,
    onMessage: (m) => {
      const p = m.payload || {};
      if (m.type === 'progress' && p.lessonId === lessonId) {
        setProgress({ positionSec: p.positionSec ?? 0, durationSec: p.durationSec ?? 0, playing: !!p.playing, completed: !!p.completed, from: 'other-device', at: p.occurredAt || m.timestamp });
      }
    },
  });
  const report = useCallback(
    (s) => {
      setProgress({ ...s, from: 'this-device', at: new Date().toISOString() });
      if (!client) return Promise.reject(new Error('no realtime client'));
      return client.reportProgress({ courseId, lessonId, ...s });
    },
    [client, courseId, lessonId],
  );
  return { progress, report };
}

/**
 * The live confusion feed of a course (newest first, at most 50):
 * {confusions, open, markConfusion, resolveConfusion}.
 */
export function useConfusions(courseId, { limit = 50 } = {}) {
  const client = useRealtimeClient();
  const [confusions, setConfusions] = useState([]);
  useRoom(courseId ? 'course:' + courseId : null, {
    limit: 1,
    onMessage: (m) => {
      const p = m.payload || {};
      if (m.type !== 'confusion' || !p.confusionId) return;
      if (m.action === 'create') {
        setConfusions((cs) =>
          cs.some((c) => c.confusionId === p.confusionId)
            ? cs
            : [{ confusionId: p.confusionId, courseId: p.courseId, lessonId: p.lessonId, userId: p.userId || m.userId, videoTimestampSec: p.videoTimestampSec ?? 0, text: p.text || '', createdAt: p.occurredAt || m.timestamp, resolved: false }, ...cs].slice(0, limit),
        );
      } else if (m.action === 'update') {
        setConfusions((cs) => cs.map((c) => (c.confusionId === p.confusionId ? { ...c, resolved: true, response: p.response || '' } : c)));
      }
    },
  });
  const markConfusion = useCallback((a) => client.markConfusion({ courseId, ...a }), [client, courseId]);
  const resolveConfusion = useCallback((confusionId, response) => client.resolveConfusion({ courseId, confusionId, response }), [client, courseId]);
  return { confusions, open: confusions.filter((c) => !c.resolved).length, markConfusion, resolveConfusion };
}

/**
 * The user's notifications: {notifications (newest first), unreadCount,
 * markRead(ids), reload()}. Listed on every (re)connect, live from user:<me>.
 */
export function useNotifications({ limit = 20 } = {}) {
  const { client, status, session } = useRealtime();
  const [state, setState] = useState({ notifications: [], unreadCount: 0, error: null });
  const reload = useCallback(() => {
    if (!client) return Promise.resolve();
    return client
      .listNotifications({ limit })
      .then((r) => setState({ notifications: r.notifications || [], unreadCount: r.unreadCount ?? 0, error: null }))
      .catch((error) => setState((s) => ({ ...s, error })));
  }, [client, limit]);
  useEffect(() => {
    if (status === 'open') reload();
  }, [status, reload]);
  useRoom(session && session.userId ? 'user:' + session.userId : null, {
    limit: 1,
    onMessage: (m) => {
      if (m.type !== 'notification') return;
      const p = m.payload || {};
      if (m.action === 'create' && p.notificationId) {
        setState((s) =>
          s.notifications.some((n) => n.notificationId === p.notificationId)
            ? s
            : { ...s, notifications: [p, ...s.notifications].slice(0, limit), unreadCount: s.unreadCount + (p.readAt ? 0 : 1) },
        );
      } else if (m.action === 'update') {
        const ids = new Set(p.notificationIds || []);
        setState((s) => {
          let read = 0;
          const notifications = s.notifications.map((n) => {
            if (!ids.has(n.notificationId) || n.readAt) return n;
            read++;
            return { ...n, readAt: p.occurredAt || new Date().toISOString() };
          });
          return { ...s, notifications, unreadCount: Math.max(0, s.unreadCount - read) };
        });
      }
    },
  });
  const markRead = useCallback(
    (ids) => {
      const list = Array.isArray(ids) ? ids : [ids];
      const set = new Set(list);
      setState((s) => {
        let read = 0;
        const notifications = s.notifications.map((n) => (set.has(n.notificationId) && !n.readAt ? (read++, { ...n, readAt: new Date().toISOString() }) : n));
        return { ...s, notifications, unreadCount: Math.max(0, s.unreadCount - read) };
      });
      return client.markNotificationsRead(list);
    },
    [client],
  );
  return { ...state, markRead, reload };
}

