// End to end in Debian's Chromium (headless, driven by playwright-core; never
// a downloaded browser): the demo pages served by ws-edge (WS_STATIC_DIR) on
// the real stack with analytics and demo traffic. Each test saves
// screenshots under $RT_SCREENSHOT_DIR (ctest: <build>/browser-tests).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { chromium } from 'playwright-core';
import { startStack, BIN_DIR, REPO } from '../test-support/stack.mjs';
import { buildDemo } from '../demo/build.mjs';
import { runTraffic } from '../demo/traffic/generator.mjs';

const CHROMIUM = process.env.RT_CHROMIUM || '/usr/bin/chromium';
const SHOTS = process.env.RT_SCREENSHOT_DIR || join(REPO, 'build/browser-tests');
const run = promisify(execFile);

let stack, site, profile, browser, traffic;
const ac = new AbortController();

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  site = mkdtempSync(join(tmpdir(), 'rt-demo-site-'));
  // The site gets the stack's (test) secret: the pages mint their own dev tokens.
  const { SECRET } = await import('../test-support/stack.mjs');
  buildDemo(site, { secret: SECRET, heartbeatMs: 2000 });
  stack = await startStack({ aggregator: true, notifications: true, edgeEnv: { WS_STATIC_DIR: site } });
  await stack.waitAggregator();
  // Two simulated students and the enrollments, as scripts/dev-up.sh runs it.
  traffic = runTraffic({ url: stack.wsUrl, natsUrl: stack.natsUrl, secret: stack.secret, students: 2, heartbeatMs: 2000, purchaseEveryMs: 4000, ta: false, signal: ac.signal, log: () => {} });
  profile = mkdtempSync(join(tmpdir(), 'rt-chromium-'));
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1400, height: 1000 },
  });
});

after(async () => {
  ac.abort();
  if (browser) await browser.close();
  if (traffic) await traffic.catch(() => {});
  if (stack) await stack.stop();
  for (const d of [site, profile]) if (d) rmSync(d, { recursive: true, force: true });
});

async function open(path) {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e));
  page.errors = errors;
  await page.goto(`${stack.httpUrl}/${path}`);
  await page.waitForSelector('#status[data-state=open]', { timeout: 15000 });
  return page;
}

const shot = (page, name) => page.screenshot({ path: join(SHOTS, name + '.png'), fullPage: true });

test('a student clicks "I\'m confused here" and the instructor dashboard shows it in under 1 s', async () => {
  const dash = await open('instructor.html');
  const student = await open('student.html?user=demo-student-1');
  // the dashboard is live with demo traffic
  await dash.waitForFunction(() => document.querySelectorAll('[data-testid=watching]').length > 0, null, { timeout: 20000 });
  // Note when the confusion appears on the dashboard, by the page's own clock.
  await dash.evaluate(() => {
    window.__seen = null;
    new MutationObserver(() => {
      if (!window.__seen && document.querySelector('[data-testid=confusion][data-user=demo-student-1]')) window.__seen = Date.now();
    }).observe(document.getElementById('confusion-feed'), { childList: true, subtree: true });
  });
  await student.fill('#seek', '95');
  await student.dispatchEvent('#seek', 'change');
  const clickedAt = await student.evaluate(() => {
    const t = Date.now();
    document.getElementById('confused').click();
    return t;
  });
  await dash.waitForFunction(() => window.__seen !== null, null, { timeout: 5000 });
  const seenAt = await dash.evaluate(() => window.__seen);
  const latency = seenAt - clickedAt;
  await student.waitForSelector('#confused-status[data-kind=ok]');
  const text = await dash.textContent('[data-testid=confusion][data-user=demo-student-1]');
  assert.match(text, /1:35/);
  await shot(dash, 'confusion-dashboard');
  await shot(student, 'confusion-student');
  console.log(`# click -> dashboard: ${latency} ms`);
  assert.ok(latency < 1000, `shown after ${latency} ms`);
  if (stack.procs.notify) {
    // The instructor resolves it: the student's bell rings (notification-dispatcher, user: room).
    await dash.click('[data-testid=confusion][data-user=demo-student-1] button');
    await student.waitForSelector('#unread:not([hidden])', { timeout: 10000 });
    await student.click('#bell');
    await student.waitForSelector('#notification-list li:not(.muted)');
    await shot(student, 'confusion-student-notified');
  }
  assert.deepEqual([...dash.errors, ...student.errors], []);
  await dash.close();
  await student.close();
});

test('progress in one tab appears in the other tab of the same user', async () => {
  const a = await open('student.html?user=demo-student-2');
  const b = await open('student.html?user=demo-student-2');
  await a.fill('#seek', '200');
  await a.dispatchEvent('#seek', 'change'); // a heartbeat at once
  await b.waitForSelector('#position[data-sec="200"]', { timeout: 5000 });
  assert.equal(await b.textContent('#position'), '3:20');
  assert.match(await b.textContent('#sync-note'), /another device: 3:20/);
  // and back: play in B, pause, the position reaches A
  await b.fill('#seek', '321');
  await b.dispatchEvent('#seek', 'change');
  await a.waitForSelector('#position[data-sec="321"]', { timeout: 5000 });
  await shot(a, 'progress-tab-a');
  await shot(b, 'progress-tab-b');
  await a.close();
  await b.close();
});

async function publishToCourse(text, eventId) {
  const payload = JSON.stringify({ confusionId: 'cf-' + eventId, courseId: 'demo-course', lessonId: 'demo-lesson-2', userId: 'published-while-down', videoTimestampSec: 300, text });
  await run(join(BIN_DIR, 'rtctl'), ['publish', 'course:demo-course', 'confusion', 'create', payload, '--event-id', eventId], { env: { ...process.env, NATS_URL: stack.natsUrl } });
}

test('the edge restarts mid-session: both pages reconnect and nothing is lost', async () => {
  const dash = await open('instructor.html');
  const student = await open('student.html?user=demo-student-1');
  const feedIds = () => dash.$$eval('[data-testid=confusion]', (els) => els.map((e) => e.dataset.confusionId));

  await stack.killEdge();
  await dash.waitForSelector('#status:not([data-state=open])');
  await student.waitForSelector('#status:not([data-state=open])');
  // While the edge is down: the student is confused twice (queued in the page),
  // and something else happens in the course (published to NATS directly).
  await student.fill('#confused-note', 'offline one');
  await student.click('#confused');
  await student.fill('#seek', '250');
  await student.fill('#confused-note', 'offline two');
  await student.click('#confused');
  assert.ok((await student.evaluate(() => window.rt.queued)) >= 2, 'both confusions wait in the offline queue');
  await publishToCourse('while the edge was down 1', 'e2e-down-1');
  await publishToCourse('while the edge was down 2', 'e2e-down-2');
  await stack.startEdge();

  await dash.waitForSelector('#status[data-state=open]', { timeout: 15000 });
  await student.waitForSelector('#status[data-state=open]', { timeout: 15000 });
  await dash.waitForFunction(() => {
    const t = [...document.querySelectorAll('[data-testid=confusion]')].map((e) => e.textContent).join('\n');
    return ['offline one', 'offline two', 'while the edge was down 1', 'while the edge was down 2'].every((x) => t.includes(x));
  }, null, { timeout: 15000 });
  await student.waitForSelector('#confused-status[data-kind=ok]');
  const ids = await feedIds();
  assert.equal(new Set(ids).size, ids.length, 'no confusion shown twice');
  const texts = await dash.$$eval('[data-testid=confusion]', (els) => els.map((e) => e.textContent));
  for (const x of ['offline one', 'offline two', 'while the edge was down 1', 'while the edge was down 2']) {
    assert.equal(texts.filter((t) => t.includes(x)).length, 1, x);
  }
  // and the dashboard keeps moving after the restart
  const before = await dash.textContent('#updated');
  await dash.waitForFunction(() => /updated [0-2] s ago/.test(document.getElementById('updated').textContent), null, { timeout: 15000 });
  void before;
  await shot(dash, 'restart-dashboard');
  await shot(student, 'restart-student');
  assert.deepEqual([...dash.errors, ...student.errors], []);
  await dash.close();
  await student.close();
});
