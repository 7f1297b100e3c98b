import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fullJitter, reconnectPlan, DEFAULT_BACKOFF } from '../../src/backoff.js';

const seq = (...values) => {
  let i = 0;
  return () => values[i++ % values.length];
};

test('full jitter: uniform in [0, min(max, base*2^attempt))', () => {
  const opts = { baseMs: 500, maxMs: 20000 };
  assert.equal(fullJitter(0, opts, () => 0), 0);
  assert.equal(fullJitter(0, opts, () => 0.999999), 499);
  assert.equal(fullJitter(3, opts, () => 0.5), 2000); // cap 4000
  assert.equal(fullJitter(10, opts, () => 0.999999), 19999); // capped at max
  assert.equal(fullJitter(1000, opts, () => 0.999999), 19999); // no overflow
  // spread: many draws cover the interval, none outside it
  let min = Infinity, max = -1;
  for (let i = 0; i < 2000; i++) {
    const d = fullJitter(4, opts);
    min = Math.min(min, d);
    max = Math.max(max, d);
  }
  assert.ok(min >= 0 && min < 800, 'min ' + min);
  assert.ok(max < 8000 && max > 7200, 'max ' + max);
});

test('connection lost: backoff grows with each failed attempt', () => {
  let attempt = 0;
  const caps = [];
  for (let i = 0; i < 8; i++) {
    const p = reconnectPlan(1006, attempt, false, DEFAULT_BACKOFF, () => 0.999999);
    caps.push(p.delayMs + 1);
    assert.equal(p.freshToken, false);
    attempt = p.attempt;
  }
  assert.deepEqual(caps, [500, 1000, 2000, 4000, 8000, 16000, 20000, 20000]);
});

test('1012 and 1013: reconnect at once, jittered, without growing the backoff', () => {
  for (const code of [1012, 1013, 1001]) {
    const p = reconnectPlan(code, 5, true, DEFAULT_BACKOFF, seq(0.999999));
    assert.ok(p.delayMs < DEFAULT_BACKOFF.restartJitterMs, code + ': ' + p.delayMs);
    assert.equal(p.attempt, 5);
    assert.equal(p.freshToken, false);
  }
  const a = reconnectPlan(1012, 0, true, DEFAULT_BACKOFF, () => 0.1).delayMs;
  const b = reconnectPlan(1012, 0, true, DEFAULT_BACKOFF, () => 0.9).delayMs;
  assert.notEqual(a, b, 'jittered: clients of a drained edge do not come back at the same instant');
});

test('4401: a fresh token; at once after an expiry in session, backoff when refused at connect', () => {
  const expired = reconnectPlan(4401, 0, true, DEFAULT_BACKOFF, () => 0.5);
  assert.equal(expired.freshToken, true);
  assert.ok(expired.delayMs < DEFAULT_BACKOFF.restartJitterMs);
  let attempt = 0;
  let last = 0;
  for (let i = 0; i < 4; i++) {
    const p = reconnectPlan(4401, attempt, false, DEFAULT_BACKOFF, () => 0.999999);
    assert.equal(p.freshToken, true);
    assert.ok(p.delayMs >= last);
    last = p.delayMs;
    attempt = p.attempt;
  }
  assert.equal(attempt, 4);
});

test('4429: backoff, never less than rateLimitMinMs', () => {
  const p = reconnectPlan(4429, 0, true, DEFAULT_BACKOFF, () => 0);
  assert.equal(p.delayMs, DEFAULT_BACKOFF.rateLimitMinMs);
  assert.equal(p.attempt, 1);
  const q = reconnectPlan(4429, 3, true, DEFAULT_BACKOFF, () => 0.999999);
  assert.ok(q.delayMs >= DEFAULT_BACKOFF.rateLimitMinMs + 7999);
});
