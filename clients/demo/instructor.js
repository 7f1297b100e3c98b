// The instructor dashboard: CourseMetrics from analytics/update (course: and
// instructor: rooms), instant confusion, question and purchase alerts.
import { cfg, params, connect, $, h, mmss, money, num, ago, lessonTitle, statusPill, flash } from './common.js';

const instructorId = params.get('user') || cfg.instructorId;
const courseId = params.get('course') || cfg.courseId;
const client = connect(instructorId, 'instructor');
statusPill($('#status'), client);
$('#who').textContent = `${instructorId} · ${courseId}`;

let metrics = null;
let updatedAt = 0;
const confusions = new Map(); // confusionId -> {li, data}
const questions = new Map();
const liveBuckets = new Map(); // lessonId|bucket -> Set(userId)
const seenPurchases = new Set();

function onMessage(m) {
  const p = m.payload || {};
  if (m.type === 'analytics' && p.courseId === courseId) {
    // instructor: carries the per-student list; course: does not. Keep the richer one.
    if (!p.students && metrics && metrics.students && m.room.startsWith('course:')) p.students = metrics.students;
    metrics = p;
    updatedAt = Date.now();
    render();
  } else if (m.type === 'confusion' && m.action === 'create' && p.courseId === courseId) addConfusion(p, m);
  else if (m.type === 'question' && m.action === 'create' && p.courseId === courseId) addQuestion(p, m);
  else if (m.type === 'purchase' && m.action === 'create') addPurchase(p, true);
}

client.subscribe('course:' + courseId, onMessage);
client.subscribe('instructor:' + instructorId, onMessage, { onError: (e) => console.warn('instructor room:', e.code) });
client.on('resync', () => ($('#resync-banner').hidden = false));

// ---- confusions
function addConfusion(p, m) {
  if (confusions.has(p.confusionId)) return;
  $('#no-confusions')?.remove();
  const user = p.userId || m.userId;
  const status = h('span', { class: 'meta' });
  const btn = h('button', {
    onclick: async () => {
      btn.disabled = true;
      try {
        await client.resolveConfusion({ courseId, confusionId: p.confusionId, response: 'Let’s go through it together in the Q&A.' });
        li.style.opacity = 0.5;
        flash(status, 'resolved ✓');
        btn.remove();
      } catch (e) {
        btn.disabled = false;
        flash(status, e.code, 'bad');
      }
    },
    text: 'Resolve',
  });
  const li = h('li', { class: 'new', 'data-testid': 'confusion', 'data-confusion-id': p.confusionId, 'data-user': user },
    h('div', { class: 'grow' },
      h('div', {}, h('span', { class: 'who' }, user), ' is confused at ', h('b', {}, mmss(p.videoTimestampSec)), ' in ', lessonTitle(p.lessonId)),
      p.text ? h('div', { class: 'meta' }, '“' + p.text + '”') : null,
      h('div', { class: 'meta', 'data-ts': p.occurredAt || m.timestamp || new Date().toISOString() }, ago(p.occurredAt || m.timestamp))),
    status, btn);
  $('#confusion-feed').prepend(li);
  confusions.set(p.confusionId, { li, data: p });
  while ($('#confusion-feed').children.length > 50) $('#confusion-feed').lastElementChild.remove();
  const key = p.lessonId + '|' + Math.floor((p.videoTimestampSec || 0) / 30) * 30;
  if (!liveBuckets.has(key)) liveBuckets.set(key, new Set());
  liveBuckets.get(key).add(user);
  renderHeat();
}

// ---- questions
function addQuestion(p, m) {
  if (questions.has(p.questionId)) return;
  const list = $('#questions');
  if (questions.size === 0) list.textContent = '';
  const input = h('input', { placeholder: 'Answer…', style: 'flex:1;min-width:80px' });
  const status = h('span', { class: 'meta' });
  const send = async () => {
    if (!input.value.trim()) return;
    try {
      const t0 = performance.now();
      await client.answerQuestion({ courseId, questionId: p.questionId, answer: input.value.trim() });
      flash(status, `answered ✓ ${Math.round(performance.now() - t0)} ms`);
      input.remove();
      btn.remove();
    } catch (e) {
      flash(status, e.code, 'bad');
    }
  };
  const btn = h('button', { onclick: send, text: 'Answer' });
  input.addEventListener('keydown', (e) => e.key === 'Enter' && send());
  const li = h('li', { class: 'new', 'data-testid': 'question' },
    h('div', { class: 'grow' }, h('div', {}, h('span', { class: 'who' }, p.userId || m.userId), ': ', p.text),
      h('div', { class: 'meta' }, (p.lessonId ? lessonTitle(p.lessonId) + ' · ' : '') + new Date(p.occurredAt || Date.now()).toLocaleTimeString()),
      h('div', { style: 'display:flex;gap:6px;margin-top:4px' }, input, btn, status)));
  list.prepend(li);
  questions.set(p.questionId, li);
  while (list.children.length > 12) list.lastElementChild.remove();
}

// ---- purchases
function addPurchase(p, live) {
  if (!p.purchaseId || seenPurchases.has(p.purchaseId)) return;
  seenPurchases.add(p.purchaseId);
  const li = h('li', { class: live ? 'new' : '' }, h('span', { class: 'grow' }, h('span', { class: 'who' }, money(p.amountCents, p.currency)), ' · ', p.userId), h('span', { class: 'meta' }, new Date(p.occurredAt || Date.now()).toLocaleTimeString()));
  $('#purchases').prepend(li);
  while ($('#purchases').children.length > 10) $('#purchases').lastElementChild.remove();
  if (live) {
    const t = $('#revenue-today');
    t.classList.add('bump');
    setTimeout(() => t.classList.remove('bump'), 900);
  }
}

// ---- rendering of CourseMetrics
function band(el, b) {
  el.dataset.band = b || '';
  el.textContent = (b || '').replace('_', ' ');
  el.hidden = !b;
}

function render() {
  const m = metrics;
  $('#learn-rate').textContent = num(m.learnRate, 1);
  band($('#learn-band'), m.learnRateBand);
  $('#exec-rate').textContent = m.executionRate === null || m.executionRate === undefined ? '—' : num(m.executionRate, 0) + '%';
  band($('#exec-band'), m.executionRateBand);
  $('#exec-pace').textContent = m.executionPaceS ? `pace ${num(m.executionPaceS, 0)} s to complete a prompt` : 'prompts completed';
  $('#active-count').textContent = m.activeStudentCount ?? 0;
  $('#enrolled').textContent = `of ${m.enrolledStudents ?? '—'} enrolled · completion ${num(m.completionRate, 0)}%`;
  const c = m.confusions || {};
  $('#confusions-open').textContent = c.open ?? 0;
  $('#confusions-window').textContent = `${c.inWindow ?? 0} in the last hour · ${c.total ?? 0} in all`;
  const r = m.responseTime || {};
  $('#waiting').textContent = r.waiting ?? 0;
  $('#response-times').textContent = `response median ${r.medianS != null ? num(r.medianS, 0) + ' s' : '—'} · p90 ${r.p90S != null ? num(r.p90S, 0) + ' s' : '—'}${r.oldestWaitingS != null ? ` · oldest ${num(r.oldestWaitingS, 0)} s` : ''}`;
  const usd = ((m.revenue || {}).currencies || [])[0];
  if (usd) {
    $('#revenue-today').textContent = money(usd.todayCents, usd.currency);
    $('#revenue-month').textContent = `month ${money(usd.monthCents, usd.currency)} · all time ${money(usd.allTimeCents, usd.currency)}`;
  }
  if (m.revenue && m.revenue.lastPurchase) addPurchase(m.revenue.lastPurchase, false);
  // who is watching
  const w = $('#watching');
  w.textContent = '';
  for (const s of m.activeStudents || []) w.append(h('li', { 'data-testid': 'watching' }, h('span', { class: 'who grow' }, s.userId), h('span', { class: 'meta' }, (s.lessonId ? lessonTitle(s.lessonId) : 'course page') + ' · since ' + ago(s.since))));
  if (!w.children.length) w.append(h('li', { class: 'muted' }, 'Nobody right now.'));
  renderHeat();
  renderTopics();
  renderDaily();
  renderStudents();
}

function renderTopics() {
  const tb = $('#topics');
  tb.textContent = '';
  for (const t of (metrics && metrics.strugglingTopics) || []) {
    tb.append(h('tr', {}, h('td', {}, lessonTitle(t.lessonId)), h('td', {}, t.timestamp), h('td', {}, t.studentCount), h('td', {}, t.resolved ? h('span', { class: 'ok' }, 'resolved') : h('span', { class: 'bad' }, 'open'))));
  }
}

function renderHeat() {
  const buckets = new Map(liveBuckets.size ? [...liveBuckets].map(([k, v]) => [k, v.size]) : []);
  for (const t of (metrics && metrics.strugglingTopics) || []) {
    const k = t.lessonId + '|' + t.bucketStartSec;
    buckets.set(k, Math.max(buckets.get(k) || 0, t.studentCount));
  }
  const heat = $('#heat');
  const cols = Math.ceil(Math.max(...cfg.lessons.map((l) => l.durationSec)) / 30);
  heat.style.gridTemplateColumns = `140px repeat(${cols}, 1fr)`;
  heat.textContent = '';
  const max = Math.max(1, ...buckets.values());
  for (const l of cfg.lessons) {
    heat.append(h('div', { class: 'lbl', title: l.title }, l.title));
    for (let i = 0; i < cols; i++) {
      const n = buckets.get(l.lessonId + '|' + i * 30) || 0;
      const beyond = i * 30 >= l.durationSec;
      const cell = h('div', { class: 'cell', title: `${l.title} ${mmss(i * 30)}: ${n} confused` });
      if (beyond) cell.style.opacity = 0.25;
      if (n) cell.style.background = `rgba(239,100,97,${0.25 + 0.75 * (n / max)})`;
      heat.append(cell);
    }
  }
}

function renderDaily() {
  const svg = $('#daily');
  const days = (metrics && metrics.daily) || [];
  const W = 600, H = 150, n = Math.max(days.length, 1), bw = W / n;
  const maxMin = Math.max(1, ...days.map((d) => d.watchMinutes || 0));
  const y = (v, max) => H - (v / max) * (H - 10);
  let out = '';
  days.forEach((d, i) => {
    const bh = ((d.watchMinutes || 0) / maxMin) * (H - 10);
    out += `<rect x="${i * bw + 2}" y="${H - bh}" width="${bw - 4}" height="${bh}" fill="#3a4670"><title>${d.date}: ${num(d.watchMinutes, 1)} watch minutes</title></rect>`;
  });
  const line = (key, max, color) => {
    const pts = days.map((d, i) => (d[key] == null ? null : `${i * bw + bw / 2},${y(Math.min(d[key], max), max)}`)).filter(Boolean);
    if (pts.length === 1) return `<circle cx="${pts[0].split(',')[0]}" cy="${pts[0].split(',')[1]}" r="3.5" fill="${color}"/>`;
    return pts.length ? `<polyline fill="none" stroke="${color}" stroke-width="2" points="${pts.join(' ')}"/>` : '';
  };
  out += line('learnRate', 80, '#6aa8ff') + line('executionRate', 100, '#3ecf8e');
  if (days.length) out += `<text x="0" y="${H + 14}">${days[0].date}</text><text x="${W}" y="${H + 14}" text-anchor="end">${days[days.length - 1].date}</text>`;
  svg.innerHTML = out;
}

function renderStudents() {
  const tb = $('#students');
  const list = (metrics && metrics.students) || [];
  tb.textContent = '';
  for (const s of [...list].sort((a, b) => (b.needsHelp ? 1 : 0) - (a.needsHelp ? 1 : 0) || a.userId.localeCompare(b.userId))) {
    tb.append(h('tr', {}, h('td', {}, s.userId), h('td', {}, num(s.learnRate, 1), s.learnRateBand ? h('span', { class: 'band', 'data-band': s.learnRateBand }, s.learnRateBand.replace('_', ' ')) : ''),
      h('td', {}, s.executionRate == null ? '—' : num(s.executionRate, 0) + '%'), h('td', {}, s.executionPaceS == null ? '—' : num(s.executionPaceS, 0) + ' s'),
      h('td', {}, s.progress == null ? '—' : num(s.progress, 0) + '%'), h('td', { class: 'meta' }, ago(s.lastActiveAt)), h('td', {}, s.needsHelp ? h('span', { class: 'bad' }, 'needs help') : '')));
  }
  if (!list.length) tb.append(h('tr', {}, h('td', { colspan: 7, class: 'muted' }, 'Per-student figures arrive in the instructor room.')));
}

setInterval(() => {
  $('#updated').textContent = updatedAt ? `updated ${Math.round((Date.now() - updatedAt) / 1000)} s ago` : 'waiting for the first update…';
  for (const el of document.querySelectorAll('[data-ts]')) el.textContent = ago(el.dataset.ts);
}, 1000);
