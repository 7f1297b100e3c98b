// Reconnect delays: exponential backoff with full jitter (AWS "Exponential
// Backoff And Jitter"; what Centrifugo's SDKs do), plus the special cases of
// the close codes in docs/protocol.md.

/** Defaults of createClient's `backoff` option (milliseconds). */
export const DEFAULT_BACKOFF = Object.freeze({
  baseMs: 500, // the first retry waits up to this long
  maxMs: 20000, // no wait is longer than this
  restartJitterMs: 1000, // after 1012/1013/1001: reconnect at once, spread over this
  rateLimitMinMs: 2000, // after 4429: wait at least this (plus backoff)
});

/**
 * Full jitter: a uniformly random delay in [0, min(maxMs, baseMs * 2^attempt)).
 * `attempt` counts failures since the last successful connection (0 = first).
 */
export function fullJitter(attempt, opts = DEFAULT_BACKOFF, random = Math.random) {
  const base = opts.baseMs ?? DEFAULT_BACKOFF.baseMs;
  const max = opts.maxMs ?? DEFAULT_BACKOFF.maxMs;
  const cap = Math.min(max, base * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * cap);
}

/**
 * What to do after a connection closed with `code`.
 * @param {number} code close code (1006 when the socket just died)
 * @param {number} attempt failures so far since the last connection that reached "open"
 * @param {boolean} wasOpen whether the closed connection had been authenticated
 * @returns {{delayMs:number, attempt:number, freshToken:boolean, reason:string}}
 *   attempt: the failure count to keep for the next close
 */
export function reconnectPlan(code, attempt, wasOpen, opts = DEFAULT_BACKOFF, random = Math.random) {
  const restartJitter = opts.restartJitterMs ?? DEFAULT_BACKOFF.restartJitterMs;
  switch (code) {
    case 1001: // going away
    case 1012: // server restart / drain: another instance will take us
    case 1013: // slow consumer: the queue was dropped; resume with since at once
      return {
        delayMs: Math.floor(random() * restartJitter),
        attempt,
        freshToken: false,
        reason: code === 1013 ? 'slow_consumer' : 'server_restart',
      };
    case 4401: // token refused or expired: ask getToken for a fresh one
      if (wasOpen) {
        // It expired during a session: one immediate (jittered) retry.
        return { delayMs: Math.floor(random() * restartJitter), attempt, freshToken: true, reason: 'token_expired' };
      }
      return { delayMs: fullJitter(attempt, opts, random), attempt: attempt + 1, freshToken: true, reason: 'unauthorized' };
    case 4429: {
      // Rate limited persistently: back off, never less than rateLimitMinMs.
      const min = opts.rateLimitMinMs ?? DEFAULT_BACKOFF.rateLimitMinMs;
      const next = attempt + 1;
      return { delayMs: min + fullJitter(next, opts, random), attempt: next, freshToken: false, reason: 'rate_limited' };
    }
    default:
      return { delayMs: fullJitter(attempt, opts, random), attempt: attempt + 1, freshToken: false, reason: 'connection_lost' };
  }
}
