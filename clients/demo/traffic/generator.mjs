#!/usr/bin/env node
// Demo traffic: simulated students (and a teaching assistant) playing through
// the real services, so the instructor dashboard moves on its own.
//
//   node --experimental-websocket clients/demo/traffic/generator.mjs \
//     --url ws://127.0.0.1:8080/ws --nats nats://127.0.0.1:4222 [--students 6] [--course demo-course]
//
// What Django would publish (lessons, enrollments, purchases) goes straight to
// JetStream (events.mjs); everything a browser does — progress heartbeats,
// "I'm confused", questions, prompts, the TA's answers — goes through ws-edge
// with @unpuzzle/realtime, exactly as the pages do. Tokens are minted with the
// development secret (SUPABASE_JWT_SECRET). Development only.
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import { createClient } from '../../js/src/index.js';
import { mintToken } from './token.mjs';
import { NatsPublisher, enrollmentChanged, lessonUpserted, nameId, purchaseCompleted } from './events.mjs';

export const LESSONS = [
  { lessonId: 'demo-lesson-1', title: 'Joins, step by step', durationSec: 540, hotSpots: [95, 250, 410] },
  { lessonId: 'demo-lesson-2', title: 'Window functions', durationSec: 480, hotSpots: [130, 300] },
];

const QUESTIONS = [
  'Why does the LEFT JOIN keep rows with NULLs?',
  'Is there a difference between WHERE and ON here?',
  'Could you share the dataset used at this point?',
  'How would this look with a subquery instead?',
  'What does the planner do with this index?',
];
const CONFUSED = ['lost here', 'too fast', 'why NULL?', '', '', 'which table is this?'];
const ANSWERS = ['Good question: see the diagram at 2:10.', 'ON filters before the join, WHERE after.', 'Added the link under the lesson.'];

const pick = (a) => a[Math.floor(Math.random() * a.length)];
const sleep = (ms, signal) =>
  new Promise((res) => {
    if (signal?.aborted) return res();
    const onAbort = () => (clearTimeout(t), res());
    const t = setTimeout(() => {
      if (signal) signal.removeEventListener('abort', onAbort);
      res();
    }, ms);
    if (signal) signal.addEventListener('abort', onAbort, { once: true });
  });

async function webSocketImpl() {
  if (typeof globalThis.WebSocket === 'function') return globalThis.WebSocket;
  try {
    return (await import('ws')).default;
  } catch {
    throw new Error('no WebSocket: run with node --experimental-websocket (Node 20) or Node 22+');
  }
}

/** Lessons, enrollments (the instructor, the demo students, the simulated ones): idempotent. */
export async function bootstrap(nats, { courseId, instructorId, students }) {
  const at = Date.now();
  for (const [i, l] of LESSONS.entries()) {
    await nats.publish(lessonUpserted({ eventId: nameId(`demo/${courseId}/lesson/${l.lessonId}`), at, lessonId: l.lessonId, courseId, title: l.title, position: i + 1 }));
  }
  await nats.publish(enrollmentChanged({ eventId: nameId(`demo/${courseId}/enroll/${instructorId}`), at, courseId, userId: instructorId, role: 'instructor' }));
  for (const u of students) {
    await nats.publish(enrollmentChanged({ eventId: nameId(`demo/${courseId}/enroll/${u}`), at, courseId, userId: u, role: 'student' }));
  }
}

/**
 * Runs until signal aborts. Options: url, natsUrl, secret, courseId,
 * instructorId, students (count of simulated students), heartbeatMs,
 * purchaseEveryMs, ta (answer questions and resolve confusions, default true),
 * log (function).
 */
export async function runTraffic(o) {
  const opts = {
    courseId: 'demo-course',
    instructorId: 'demo-instructor',
    students: 6,
    heartbeatMs: 5000,
    purchaseEveryMs: 25000,
    ta: true,
    log: (...a) => console.log('[traffic]', ...a),
    ...o,
  };
  const signal = opts.signal;
  const WebSocket = await webSocketImpl();
  const names = Array.from({ length: opts.students }, (_, i) => `sim-student-${i + 1}`);
  const nats = new NatsPublisher(opts.natsUrl);
  for (let i = 0; ; i++) {
    try {
      await nats.connect();
      await bootstrap(nats, { courseId: opts.courseId, instructorId: opts.instructorId, students: ['demo-student-1', 'demo-student-2', ...names] });
      break;
    } catch (err) {
      if (signal?.aborted) return;
      if (i % 10 === 0) opts.log('waiting for NATS and the EVENTS stream:', err.message);
      nats.close();
      Object.assign(nats, new NatsPublisher(opts.natsUrl));
      await sleep(500, signal);
    }
  }
  opts.log(`enrolled ${names.length} simulated students in ${opts.courseId}; lessons ${LESSONS.map((l) => l.lessonId).join(', ')}`);

  const clients = [];
  const mk = (user, role) => {
    const c = createClient({ url: opts.url, WebSocket, getToken: async () => mintToken(opts.secret, user, { ttlS: 3600, role }) });
    c.on('error', () => {}); // the demo keeps going; the pages show errors
    clients.push(c);
    return c;
  };

  const tasks = names.map((u, i) => student(mk(u), u, i));
  if (opts.ta) tasks.push(teachingAssistant(mk(opts.instructorId, 'instructor')));
  tasks.push(purchases());
  await Promise.all(tasks);
  for (const c of clients) c.destroy();
  nats.close();

  async function student(c, userId, index) {
    // Students arrive over the first seconds, then watch, pause, get confused.
    await sleep(400 * index + Math.random() * 1000, signal);
    let lesson = LESSONS[index % LESSONS.length];
    let pos = Math.floor(Math.random() * lesson.durationSec * 0.6);
    let playing = true;
    let offLesson = c.subscribe('lesson:' + lesson.lessonId, () => {});
    c.subscribe('course:' + opts.courseId, () => {});
    const prompts = new Set();
    let last = Date.now();
    while (!signal?.aborted) {
      await sleep(opts.heartbeatMs * (0.8 + Math.random() * 0.4), signal);
      if (signal?.aborted) break;
      const now = Date.now();
      if (playing) pos = Math.min(lesson.durationSec, pos + (now - last) / 1000);
      last = now;
      if (Math.random() < 0.08) playing = !playing; // pause now and then (a paused page still heartbeats)
      const completed = pos >= lesson.durationSec;
      c.reportProgress({ courseId: opts.courseId, lessonId: lesson.lessonId, positionSec: Math.round(pos * 10) / 10, durationSec: lesson.durationSec, playing: playing && !completed, completed }).catch(() => {});
      // Confusions cluster around a lesson's hot spots (the dashboard's heat map).
      const near = lesson.hotSpots.find((h) => Math.abs(h - pos) < 25);
      if (near !== undefined && Math.random() < 0.18) {
        c.markConfusion({ courseId: opts.courseId, lessonId: lesson.lessonId, videoTimestampSec: Math.round(pos), text: pick(CONFUSED) }).catch(() => {});
      }
      if (Math.random() < 0.03) c.askQuestion({ courseId: opts.courseId, lessonId: lesson.lessonId, text: pick(QUESTIONS) }).catch(() => {});
      // A quiz every ~2 minutes of video; most are completed, some skipped.
      const promptId = `${lesson.lessonId}-q${Math.floor(pos / 120)}`;
      if (pos > 60 && !prompts.has(promptId) && Math.random() < 0.5) {
        prompts.add(promptId);
        const kind = Math.random() < 0.7 ? 'quiz' : 'reflection';
        c.promptShown({ courseId: opts.courseId, lessonId: lesson.lessonId, promptId, kind }).catch(() => {});
        const answerIn = 3000 + Math.random() * 20000;
        setTimeout(() => {
          if (signal?.aborted) return;
          c.promptResponded({ courseId: opts.courseId, lessonId: lesson.lessonId, promptId, kind, action: Math.random() < 0.8 ? 'completed' : 'skipped' }).catch(() => {});
        }, answerIn);
      }
      if (completed) {
        // next lesson (the presence list shows it), from the start
        lesson = LESSONS[(LESSONS.indexOf(lesson) + 1) % LESSONS.length];
        pos = 0;
        playing = true;
        offLesson();
        offLesson = c.subscribe('lesson:' + lesson.lessonId, () => {});
      }
    }
  }

  async function teachingAssistant(c) {
    // Answers about half of the questions and resolves some confusions, after
    // a human-like delay: response times on the dashboard, notifications for students.
    c.subscribe('course:' + opts.courseId, (m) => {
      const p = m.payload || {};
      if (m.action !== 'create' || Math.random() < 0.5) return;
      const delay = 15000 + Math.random() * 45000;
      if (m.type === 'question' && p.questionId) {
        setTimeout(() => !signal?.aborted && c.answerQuestion({ courseId: opts.courseId, questionId: p.questionId, answer: pick(ANSWERS) }).catch(() => {}), delay);
      } else if (m.type === 'confusion' && p.confusionId && Math.random() < 0.6) {
        setTimeout(() => !signal?.aborted && c.resolveConfusion({ courseId: opts.courseId, confusionId: p.confusionId, response: 'Covered this in the recap at the end.' }).catch(() => {}), delay);
      }
    });
    await sleep(1e9, signal);
  }

  async function purchases() {
    await sleep(3000, signal);
    while (!signal?.aborted) {
      const buyer = 'buyer-' + randomUUID().slice(0, 8);
      try {
        await nats.publish(purchaseCompleted({ courseId: opts.courseId, userId: buyer, amountCents: pick([4900, 9900, 14900]), currency: 'USD' }));
      } catch (err) {
        opts.log('purchase publish failed:', err.message);
      }
      await sleep(opts.purchaseEveryMs * (0.5 + Math.random()), signal);
    }
  }
}

// ---- command line
if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: {
      url: { type: 'string', default: process.env.DEMO_WS_URL || 'ws://127.0.0.1:8080/ws' },
      nats: { type: 'string', default: process.env.NATS_URL || 'nats://127.0.0.1:4222' },
      secret: { type: 'string', default: process.env.SUPABASE_JWT_SECRET },
      students: { type: 'string', default: process.env.DEMO_STUDENTS || '6' },
      course: { type: 'string', default: 'demo-course' },
      instructor: { type: 'string', default: 'demo-instructor' },
      'no-ta': { type: 'boolean', default: false },
    },
  });
  if (!values.secret) {
    console.error('generator: SUPABASE_JWT_SECRET (or --secret) is required: the development secret tokens are minted with');
    process.exit(2);
  }
  const ac = new AbortController();
  for (const sig of ['SIGINT', 'SIGTERM']) process.once(sig, () => ac.abort());
  await runTraffic({ url: values.url, natsUrl: values.nats, secret: values.secret, students: Number(values.students), courseId: values.course, instructorId: values.instructor, ta: !values['no-ta'], signal: ac.signal });
  process.exit(0);
}
