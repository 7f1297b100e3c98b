// The student lesson page: a simulated player (a clock, not a video file),
// progress heartbeats, "I'm confused here", questions, prompts, notifications,
// and progress that follows the same user into another tab or device.
import { cfg, params, connect, $, h, mmss, lessonTitle, statusPill, flash } from './common.js';

const userId = params.get('user') || 'demo-student-1';
const courseId = params.get('course') || cfg.courseId;
const client = connect(userId);
statusPill($('#status'), client);
$('#who').textContent = `${userId} · ${courseId}`;

// ---- the simulated player
const player = { lesson: cfg.lessons.find((l) => l.lessonId === params.get('lesson')) || cfg.lessons[0], pos: 0, playing: false, completedSent: false, last: performance.now() };
const sel = $('#lesson');
for (const l of cfg.lessons) sel.append(h('option', { value: l.lessonId }, l.title));
sel.value = player.lesson.lessonId;

let offLesson = null;
let tracker = null;

function openLesson(lesson) {
  player.lesson = lesson;
  player.pos = 0;
  player.playing = false;
  player.completedSent = false;
  $('#lesson-title').textContent = lesson.title;
  $('#screen-title').textContent = lesson.title;
  $('#duration').textContent = mmss(lesson.durationSec);
  $('#seek').max = lesson.durationSec;
  if (offLesson) offLesson();
  offLesson = client.subscribe('lesson:' + lesson.lessonId, () => {}); // presence: "who is watching" this lesson
  if (tracker) tracker.stop();
  // A heartbeat now, every 5 s (the protocol allows up to 15 s) paused or not, and on every play/pause/seek.
  tracker = client.trackProgress({ courseId, lessonId: lesson.lessonId, intervalMs: cfg.heartbeatMs || 5000, read: readPlayer });
  draw();
}

function readPlayer() {
  const s = { positionSec: Math.round(player.pos * 10) / 10, durationSec: player.lesson.durationSec, playing: player.playing };
  if (player.pos >= player.lesson.durationSec && !player.completedSent) {
    player.completedSent = true;
    s.completed = true;
  }
  return s;
}

function draw() {
  $('#position').textContent = mmss(player.pos);
  $('#position').dataset.sec = String(Math.floor(player.pos));
  $('#seek').value = String(Math.floor(player.pos));
  $('#play').textContent = player.playing ? 'Pause' : '▶ Play';
}

setInterval(() => {
  const now = performance.now();
  if (player.playing) {
    player.pos = Math.min(player.lesson.durationSec, player.pos + (now - player.last) / 1000);
    if (player.pos >= player.lesson.durationSec) {
      player.playing = false;
      tracker.beat();
    }
    maybePrompt();
    draw();
  }
  player.last = now;
}, 250);

$('#play').addEventListener('click', () => {
  player.playing = !player.playing;
  player.last = performance.now();
  draw();
  tracker.beat();
});
$('#seek').addEventListener('input', () => {
  player.pos = Number($('#seek').value);
  draw();
});
$('#seek').addEventListener('change', () => tracker.beat());
sel.addEventListener('change', () => openLesson(cfg.lessons.find((l) => l.lessonId === sel.value)));

// ---- progress from the same user's other tabs and devices (user:<me> room;
// the edge does not echo a connection's own heartbeat back to it)
client.subscribe('user:' + userId, (m) => {
  const p = m.payload || {};
  if (m.type === 'progress' && p.lessonId === player.lesson.lessonId) {
    if (!player.playing) {
      player.pos = p.positionSec || 0;
      draw();
    }
    $('#sync-note').textContent = `synced from another device: ${mmss(p.positionSec)}${p.playing ? ' (playing there)' : ''}`;
    $('#sync-note').dataset.sec = String(Math.floor(p.positionSec || 0));
  } else if (m.type === 'notification') onNotification(m);
  else if ((m.type === 'question' || m.type === 'confusion') && m.action === 'update') {
    feed(m.type === 'question' ? `Your question was answered: ${p.answer || ''}` : `The instructor resolved your confusion${p.response ? ': ' + p.response : ''}`);
  }
});

// ---- "I'm confused here"
$('#confused').addEventListener('click', async () => {
  const at = Math.round(player.pos);
  const t0 = performance.now();
  const status = $('#confused-status');
  flash(status, client.state === 'open' ? 'sending…' : 'offline: queued, will be sent on reconnect', 'wait');
  try {
    const ack = await client.markConfusion({ courseId, lessonId: player.lesson.lessonId, videoTimestampSec: at, text: $('#confused-note').value.trim() });
    flash(status, `sent at ${mmss(at)} ✓ (${Math.round(performance.now() - t0)} ms)`);
    status.dataset.confusionId = ack.confusionId || '';
    $('#confused-note').value = '';
  } catch (e) {
    flash(status, `not sent: ${e.code}`, 'bad');
  }
});

// ---- questions
$('#ask').addEventListener('click', async () => {
  const text = $('#question-text').value.trim();
  if (!text) return;
  const status = $('#ask-status');
  flash(status, 'sending…', 'wait');
  try {
    await client.askQuestion({ courseId, lessonId: player.lesson.lessonId, text });
    flash(status, 'asked ✓');
    $('#my-questions').prepend(h('li', {}, h('span', { class: 'grow' }, text), h('span', { class: 'meta' }, mmss(player.pos))));
    $('#question-text').value = '';
  } catch (e) {
    flash(status, `not sent: ${e.code}`, 'bad');
  }
});

// ---- prompts: a quiz every two minutes of video
const shown = new Set();
function maybePrompt() {
  const idx = Math.floor(player.pos / 120);
  const promptId = `${player.lesson.lessonId}-q${idx}`;
  if (player.pos < 60 || shown.has(promptId)) return;
  shown.add(promptId);
  const kind = idx % 2 ? 'reflection' : 'quiz';
  client.promptShown({ courseId, lessonId: player.lesson.lessonId, promptId, kind }).catch(() => {});
  const answer = (action) => {
    client.promptResponded({ courseId, lessonId: player.lesson.lessonId, promptId, kind, action }).catch(() => {});
    card.remove();
  };
  const card = h('div', { class: 'prompt' }, h('span', { class: 'grow' }, kind === 'quiz' ? 'Quick check: which join keeps every row of the left table?' : 'Reflect: where would you use this at work?'),
    h('button', { class: 'primary', onclick: () => answer('completed') }, 'Done'), h('button', { onclick: () => answer('skipped') }, 'Skip'));
  $('#prompt-slot').replaceChildren(card);
}

// ---- the course around me
client.subscribe('course:' + courseId, (m) => {
  const p = m.payload || {};
  if (m.type === 'confusion' && m.action === 'create' && p.userId !== userId) feed(`${p.userId} is confused at ${mmss(p.videoTimestampSec)} in ${lessonTitle(p.lessonId)}`);
  else if (m.type === 'question' && m.action === 'create' && p.userId !== userId) feed(`${p.userId} asked: ${p.text}`);
  else if (m.type === 'analytics') $('#conn-info').dataset.watching = p.activeStudentCount;
});
function feed(text) {
  const list = $('#course-feed');
  if (list.firstElementChild && list.firstElementChild.classList.contains('muted')) list.textContent = '';
  list.prepend(h('li', { class: 'new' }, text));
  while (list.children.length > 8) list.lastElementChild.remove();
}

// ---- notifications (notification-dispatcher: listed on connect, live in user:<me>)
let notes = [];
let unread = 0;
function drawNotes() {
  $('#unread').hidden = unread <= 0;
  $('#unread').textContent = String(unread);
  const list = $('#notification-list');
  list.textContent = '';
  for (const n of notes) list.append(h('li', { style: n.readAt ? 'opacity:.55' : '' }, h('div', { class: 'grow' }, h('b', {}, n.title || n.kind), h('div', { class: 'meta' }, n.body || ''))));
  if (!notes.length) list.append(h('li', { class: 'muted' }, 'Nothing yet.'));
}
async function loadNotes() {
  try {
    const r = await client.listNotifications({ limit: 20 }, { timeoutMs: 5000 });
    notes = r.notifications || [];
    unread = r.unreadCount || 0;
    drawNotes();
  } catch (e) {
    $('#notification-list').replaceChildren(h('li', { class: 'muted' }, `notifications unavailable (${e.code})`));
  }
}
function onNotification(m) {
  const p = m.payload || {};
  if (m.action === 'create' && !notes.some((n) => n.notificationId === p.notificationId)) {
    notes.unshift(p);
    if (!p.readAt) unread++;
  } else if (m.action === 'update') {
    const ids = new Set(p.notificationIds || []);
    for (const n of notes) if (ids.has(n.notificationId) && !n.readAt) (n.readAt = p.occurredAt || 'now'), unread--;
  }
  drawNotes();
}
$('#bell').addEventListener('click', () => ($('#notifications').hidden = !$('#notifications').hidden));
$('#mark-read').addEventListener('click', async () => {
  const ids = notes.filter((n) => !n.readAt).map((n) => n.notificationId);
  if (!ids.length) return;
  for (const n of notes) n.readAt ||= 'now';
  unread = 0;
  drawNotes();
  await client.markNotificationsRead(ids).catch(() => {});
});

client.on('open', (s) => {
  $('#conn-info').textContent = `connection ${s.connectionId} · token until ${new Date(s.expiresAt).toLocaleTimeString()} · reconnects ${client.stats.reconnects}`;
  loadNotes();
});
client.on('disconnect', (d) => ($('#conn-info').textContent = `disconnected (${d.code}); ${d.willReconnect ? `reconnecting in ${d.delayMs} ms — actions are queued` : 'stopped'}`));

openLesson(player.lesson);
