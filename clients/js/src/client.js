// @unpuzzle/realtime: the browser (and Node >= 20) client of ws-edge.
// Protocol: docs/protocol.md. State and flow: clients/js/README.md.
//
// One WebSocket at a time, a small state machine around it:
//
//   closed --connect()--> connecting --socket open--> authenticating --auth_ok--> open
//      ^                      ^                              |                      |
//      |                      +------ reconnecting <---------+---- socket closed ---+
//      +---- disconnect() (from any state), or maxReconnectAttempts reached
//
// What the client keeps across connections: the rooms (with the last seq and
// epoch seen in each, so every reconnect resumes with `since`), the actions
// not yet acknowledged (re-sent with the same id, in order), and the token
// source. Nothing is lost: a duplicate seq is dropped, a prevSeq that does not
// follow the last seq seen repairs the room with `since`, and when the server
// cannot replay (recovered:false) the app is told to reload its state.

import { DEFAULT_BACKOFF, reconnectPlan } from './backoff.js';
import { Emitter } from './emitter.js';

export const STATES = Object.freeze(['connecting', 'authenticating', 'open', 'reconnecting', 'closed']);

const ROOM_RE = /^(course|lesson|user|instructor):[A-Za-z0-9_-]{1,64}$/;
const CONTROL_TYPES = new Set(['auth_ok', 'error', 'subscribed', 'unsubscribed', 'ack', 'pong', 'notifications']);
const SUBPROTOCOL = 'unpuzzle.v1';

/** An error the server answered, or one the client raises (timeout, queue_full, closed). */
export class RealtimeError extends Error {
  constructor(code, message, extra = {}) {
    super(message || code);
    this.name = 'RealtimeError';
    this.code = code;
    Object.assign(this, extra);
  }
}

function randomHex(bytes) {
  const c = globalThis.crypto;
  const a = new Uint8Array(bytes);
  if (c && typeof c.getRandomValues === 'function') c.getRandomValues(a);
  else for (let i = 0; i < bytes; i++) a[i] = Math.floor(Math.random() * 256);
  return Array.from(a, (b) => b.toString(16).padStart(2, '0')).join('');
}

function frameText(data) {
  if (typeof data === 'string') return data;
  // ws (Node) may hand a Buffer; browsers an ArrayBuffer only for binary frames.
  if (data && typeof data === 'object') {
    if (typeof data.toString === 'function' && data.constructor && data.constructor.name === 'Buffer') return data.toString('utf8');
    if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) return new TextDecoder().decode(data);
  }
  return String(data);
}

/** Splits one server frame (JSON Lines) into messages; bad lines are reported, not thrown. */
export function splitFrame(text, onBadLine) {
  const out = [];
  for (const line of text.split('\n')) {
    if (line.length === 0 || line.trim().length === 0) continue;
    try {
      out.push(JSON.parse(line));
    } catch (err) {
      if (onBadLine) onBadLine(line, err);
    }
  }
  return out;
}

export class RealtimeClient extends Emitter {
  constructor(options) {
    super();
    if (!options || typeof options.url !== 'string') throw new TypeError('createClient: url is required');
    if (typeof options.getToken !== 'function') throw new TypeError('createClient: getToken is required');
    const o = options;
    this.url = o.url;
    this._getToken = o.getToken;
    this._WebSocket = o.WebSocket || globalThis.WebSocket;
    if (typeof this._WebSocket !== 'function') {
      throw new TypeError(
        'createClient: no WebSocket implementation; pass {WebSocket} (e.g. from the "ws" package) ' +
          'or run Node with --experimental-websocket (Node 20) / Node 22+',
      );
    }
    this._backoff = { ...DEFAULT_BACKOFF, ...(o.backoff || {}) };
    this._random = o.random || Math.random;
    const t = o.timers || {};
    this._setTimeout = t.setTimeout || ((fn, ms) => globalThis.setTimeout(fn, ms));
    this._clearTimeout = t.clearTimeout || ((h) => globalThis.clearTimeout(h));
    this._now = t.now || (() => Date.now());
    this.options = {
      actionTimeoutMs: o.actionTimeoutMs ?? 10000,
      maxQueue: o.maxQueue ?? 200,
      maxInFlight: o.maxInFlight ?? 16,
      maxReconnectAttempts: o.maxReconnectAttempts ?? Infinity,
      refreshMarginMs: o.refreshMarginMs ?? 60000,
      connectTimeoutMs: o.connectTimeoutMs ?? 10000,
      authTimeoutMs: o.authTimeoutMs ?? 10000,
      pingIntervalMs: o.pingIntervalMs ?? 20000,
      pongTimeoutMs: o.pongTimeoutMs ?? 10000,
      // Client-side pacing below the server's token bucket (20/s, burst 40).
      sendRatePerSec: o.sendRatePerSec ?? 15,
      sendBurst: o.sendBurst ?? 30,
      protocols: o.protocols ?? [SUBPROTOCOL],
    };

    this.state = 'closed';
    this.session = null; // {connectionId, userId, role, expiresAt} of the open connection
    this.stats = { connects: 0, reconnects: 0, duplicatesDropped: 0, gapsRepaired: 0, resyncs: 0, messages: 0 };

    this._ws = null;
    this._gen = 0; // bumps with every socket; events of older sockets are ignored
    this._attempt = 0;
    this._freshToken = false;
    this._stopped = true;
    this._wasOpen = false;
    this._timers = new Map(); // name -> handle
    this._idSalt = randomHex(6); // ids unique across reconnects and page loads
    this._idSeq = 0;
    this._rooms = new Map(); // room -> room state
    this._subReqs = new Map(); // subscribe id -> room state
    this._abandonedSubs = new Map(); // subscribe id -> room state left before the answer
    this._outbox = []; // actions not sent yet, in order
    this._inflight = new Map(); // id -> action sent on this connection, awaiting ack/error
    this._retrying = new Map(); // id -> action waiting to be sent again after internal/rate_limited
    this._wire = []; // frames waiting for the send bucket
    this._tokens = this.options.sendBurst;
    this._tokensAt = this._now();
    this._refresh = null; // {pending: bool}
    this._lastInbound = 0;

    if (typeof globalThis.addEventListener === 'function' && o.watchNetwork !== false) {
      // A browser that comes back online need not wait out the backoff.
      this._onOnline = () => {
        if (this.state === 'reconnecting') this._dialNow();
      };
      globalThis.addEventListener('online', this._onOnline);
    }
    if (o.autoConnect !== false) this.connect();
  }

  // ---------------------------------------------------------------- lifecycle

  /** Starts connecting (no-op unless closed). */
  connect() {
    if (this.state !== 'closed') return;
    this._stopped = false;
    this._disconnected = false;
    this._attempt = 0;
    this._dial();
  }

  /** Closes the connection and stops reconnecting; queued and pending actions reject with "closed". */
  disconnect(reason = 'client closed') {
    this._stopped = true;
    this._disconnected = true;
    this._clearTimer('reconnect');
    const ws = this._ws;
    this._teardownSocket();
    if (ws) {
      try {
        ws.close(1000, reason);
      } catch {
        /* already closing */
      }
    }
    this._failAll(new RealtimeError('closed', 'client disconnected'));
    if (this.state !== 'closed') {
      this._setState('closed');
      this.emit('disconnect', { code: 1000, reason, willReconnect: false });
    }
  }

  /** Removes window listeners too; the client cannot be used afterwards. */
  destroy() {
    this.disconnect('destroyed');
    if (this._onOnline) globalThis.removeEventListener('online', this._onOnline);
    this._rooms.clear();
  }

  _setState(next) {
    const prev = this.state;
    if (prev === next) return;
    this.state = next;
    this.emit('state', next, prev);
  }

  _timer(name, ms, fn) {
    this._clearTimer(name);
    const h = this._setTimeout(() => {
      this._timers.delete(name);
      fn();
    }, Math.max(0, ms));
    this._timers.set(name, h);
  }

  _clearTimer(name) {
    const h = this._timers.get(name);
    if (h !== undefined) {
      this._clearTimeout(h);
      this._timers.delete(name);
    }
  }

  _dialNow() {
    this._clearTimer('reconnect');
    this._dial();
  }

  _dial() {
    if (this._stopped) return;
    this._setState('connecting');
    const gen = ++this._gen;
    let ws;
    try {
      ws = new this._WebSocket(this.url, this.options.protocols);
    } catch (err) {
      this.emit('error', err);
      this._onClose(gen, 1006, String(err && err.message));
      return;
    }
    this._ws = ws;
    this._wasOpen = false;
    const mine = (fn) => (ev) => {
      if (gen === this._gen) fn(ev);
    };
    ws.onopen = mine(() => this._onSocketOpen(gen));
    ws.onmessage = mine((ev) => this._onFrame(ev.data));
    ws.onclose = mine((ev) => this._onClose(gen, ev.code || 1006, ev.reason || ''));
    ws.onerror = mine(() => {
      /* a close event follows */
    });
    this._timer('connect', this.options.connectTimeoutMs, () => this._abandon(4000, 'connect timeout'));
  }

  async _onSocketOpen(gen) {
    this._clearTimer('connect');
    this._setState('authenticating');
    this._lastInbound = this._now();
    this._timer('auth', this.options.authTimeoutMs, () => this._abandon(4000, 'auth timeout'));
    let token;
    try {
      token = await this._token(this._freshToken ? 'unauthorized' : 'connect', this._freshToken);
    } catch (err) {
      if (gen !== this._gen) return;
      this.emit('error', new RealtimeError('token_unavailable', 'getToken failed: ' + (err && err.message), { cause: err }));
      this._abandon(4000, 'getToken failed');
      return;
    }
    if (gen !== this._gen) return;
    this._sendNow({ type: 'auth', token });
  }

  async _token(reason, forceRefresh) {
    const t = await this._getToken({ reason, forceRefresh: !!forceRefresh });
    if (typeof t === 'string' && t.length > 0) return t;
    if (t && typeof t.token === 'string') return t.token;
    throw new Error('getToken returned no token');
  }

  // Gives up on the current socket at once (a dead network may take long to
  // report the close) and goes through the close path with `code`.
  _abandon(code, reason) {
    const gen = this._gen;
    const ws = this._ws;
    if (ws) {
      try {
        ws.close(code >= 4000 ? code : 1000, reason);
      } catch {
        /* ignore */
      }
    }
    this._onClose(gen, code, reason);
  }

  _teardownSocket() {
    this._gen++;
    const ws = this._ws;
    if (ws) ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    this._ws = null;
    for (const name of ['connect', 'auth', 'refresh', 'ping', 'pong', 'pump', 'flush-retry']) this._clearTimer(name);
    this._wire = [];
    this._refresh = null;
    this.session = null;
    // Rooms are joined again on the next connection; answers to requests of this one never come.
    for (const r of this._rooms.values()) {
      r.status = 'idle';
      r.reqId = null;
    }
    this._subReqs.clear();
    this._abandonedSubs.clear();
    // Actions sent but not answered go back to the front of the outbox, in
    // their original order, to be sent again with the same id.
    const again = [...this._inflight.values()].sort((a, b) => a.order - b.order);
    for (const a of again) this._clearActionTimer(a);
    this._inflight.clear();
    this._outbox = again.concat(this._outbox);
  }

  _onClose(gen, code, reason) {
    if (gen !== this._gen) return;
    const wasOpen = this._wasOpen;
    this._teardownSocket();
    if (this._stopped) {
      this._setState('closed');
      return;
    }
    const plan = reconnectPlan(code, this._attempt, wasOpen, this._backoff, this._random);
    this._attempt = plan.attempt;
    if (plan.freshToken) this._freshToken = true;
    const giveUp = this._attempt > this.options.maxReconnectAttempts;
    this.emit('disconnect', { code, reason, willReconnect: !giveUp, delayMs: giveUp ? undefined : plan.delayMs, cause: plan.reason });
    if (giveUp) {
      this._stopped = true;
      this._disconnected = true;
      this._failAll(new RealtimeError('closed', 'gave up reconnecting after ' + this.options.maxReconnectAttempts + ' attempts'));
      this._setState('closed');
      return;
    }
    this._setState('reconnecting');
    this.stats.reconnects++;
    this._timer('reconnect', plan.delayMs, () => this._dial());
  }

  // ------------------------------------------------------------------ inbound

  _onFrame(data) {
    this._lastInbound = this._now();
    if (this.state === 'open') this._armPing();
    const msgs = splitFrame(frameText(data), (line) => this.emit('error', new RealtimeError('bad_frame', 'unparsable line from server: ' + line.slice(0, 200))));
    for (const m of msgs) {
      try {
        this._onMessage(m);
      } catch (err) {
        this.emit('error', err);
      }
    }
  }

  _onMessage(m) {
    if (!m || typeof m !== 'object') return;
    if (m.room !== undefined && typeof m.seq === 'number' && !CONTROL_TYPES.has(m.type)) {
      this._onRoomMessage(m);
      return;
    }
    switch (m.type) {
      case 'auth_ok':
        this._onAuthOk(m);
        return;
      case 'subscribed':
        this._onSubscribed(m);
        return;
      case 'unsubscribed':
        return;
      case 'ack':
      case 'notifications':
      case 'pong':
        this._settle(m.id, m);
        return;
      case 'error':
        this._onError(m);
        return;
      default:
        this.emit('unknown', m);
    }
  }

  _onAuthOk(m) {
    const expiresAtMs = Date.parse(m.expiresAt);
    this.session = { connectionId: m.connectionId, userId: m.userId, role: m.role, expiresAt: m.expiresAt };
    if (this.state === 'authenticating') {
      this._clearTimer('auth');
      this._wasOpen = true;
      this._attempt = 0;
      this._freshToken = false;
      this.stats.connects++;
      this._setState('open');
      this.emit('open', { ...this.session });
      for (const r of this._rooms.values()) if (r.status === 'idle') this._sendSubscribe(r);
      this._flush();
      this._armPing();
    } else if (this.state === 'open') {
      const prev = this._refresh && this._refresh.prevExpiresAtMs;
      this._refresh = null;
      this.emit('refresh', { ...this.session });
      if (prev !== undefined && !(expiresAtMs > prev)) {
        // getToken handed back a token that does not live longer: try again
        // later rather than in a loop; at expiry the server closes 4401.
        this._scheduleRefresh(expiresAtMs, true);
        return;
      }
    }
    this._scheduleRefresh(expiresAtMs, false);
  }

  _scheduleRefresh(expiresAtMs, slow) {
    if (!Number.isFinite(expiresAtMs)) return;
    const remaining = expiresAtMs - this._now();
    const margin = Math.min(this.options.refreshMarginMs, Math.max(0, remaining) * 0.25);
    let delay = remaining - margin;
    if (slow) delay = Math.max(1000, remaining / 2);
    if (remaining <= 0) return; // the server will close 4401; reconnect takes a fresh token
    this._timer('refresh', delay, () => this._doRefresh(expiresAtMs));
  }

  async _doRefresh(prevExpiresAtMs) {
    if (this.state !== 'open') return;
    const gen = this._gen;
    let token;
    try {
      token = await this._token('refresh', true);
    } catch (err) {
      if (gen !== this._gen) return;
      this.emit('error', new RealtimeError('token_unavailable', 'getToken failed on refresh: ' + (err && err.message), { cause: err }));
      this._retryRefresh(prevExpiresAtMs);
      return;
    }
    if (gen !== this._gen || this.state !== 'open') return;
    this._refresh = { pending: true, prevExpiresAtMs };
    this._sendNow({ type: 'refresh', token });
  }

  _retryRefresh(expiresAtMs) {
    const remaining = expiresAtMs - this._now();
    if (remaining <= 0) return;
    this._timer('refresh', Math.min(5000, remaining / 2), () => this._doRefresh(expiresAtMs));
  }

  _onError(m) {
    const err = new RealtimeError(m.code || 'internal', m.message || m.code, { id: m.id, room: m.room, frame: m });
    if (m.id && this._abandonedSubs.delete(m.id)) return; // a room we left anyway
    if (m.id && this._subReqs.has(m.id)) {
      this._onSubscribeError(this._subReqs.get(m.id), m, err);
      return;
    }
    if (m.id && this._inflight.has(m.id)) {
      this._onActionError(this._inflight.get(m.id), err);
      return;
    }
    if (!m.id) {
      if (m.code === 'unauthorized' && this._refresh && this._refresh.pending) {
        // The refresh was refused; the connection keeps its old token.
        const prev = this._refresh.prevExpiresAtMs;
        this._refresh = null;
        this.emit('error', err);
        this._retryRefresh(prev);
        return;
      }
      if (m.code === 'rate_limited') {
        // The server dropped a frame without saying which: re-send whatever is
        // unanswered (same ids: the edge stores an action once) after a pause.
        this._tokens = 0;
        this._timer('flush-retry', 1000, () => this._resendInflight());
      }
      if (m.code === 'unauthorized' || m.code === 'token_expired') this._freshToken = true;
    }
    this.emit('error', err);
  }

  // --------------------------------------------------------------------- rooms

  /**
   * Joins `room` ("course:42") and calls handler(message) for each of its
   * messages, in order, once. Returns the function that leaves it.
   * opts.since: {seq, epoch} to resume from a stored position;
   * opts.onResync(info): the server could not replay (recovered:false);
   * opts.onError(err): the room was refused (forbidden, ...).
   */
  subscribe(room, handler, opts = {}) {
    if (typeof room !== 'string' || !ROOM_RE.test(room)) throw new TypeError('subscribe: bad room name ' + JSON.stringify(room));
    if (typeof handler !== 'function') throw new TypeError('subscribe: handler must be a function');
    let r = this._rooms.get(room);
    if (!r) {
      // Left and joined again before the server answered (React StrictMode
      // mounts twice): take the pending request back instead of a second one.
      for (const [id, old] of this._abandonedSubs) {
        if (old.room === room) {
          this._abandonedSubs.delete(id);
          this._subReqs.set(id, old);
          this._rooms.set(room, old);
          r = old;
          break;
        }
      }
    }
    if (!r) {
      const since = opts.since;
      r = {
        room,
        entries: new Set(),
        seq: since && typeof since.seq === 'number' ? since.seq : null,
        epoch: since && since.epoch ? String(since.epoch) : null,
        status: 'idle',
        reqId: null,
        sinceSent: null,
      };
      this._rooms.set(room, r);
      if (this.state === 'open') this._sendSubscribe(r);
    }
    const entry = { handler, onResync: opts.onResync, onError: opts.onError, onSubscribed: opts.onSubscribed };
    r.entries.add(entry);
    if (r.status === 'active' && entry.onSubscribed) entry.onSubscribed({ room, seq: r.seq, epoch: r.epoch, recovered: true });
    let done = false;
    return () => {
      if (done) return;
      done = true;
      r.entries.delete(entry);
      if (r.entries.size === 0 && this._rooms.get(room) === r) {
        this._rooms.delete(room);
        if (r.reqId) {
          // still pending: the server would refuse an unsubscribe now; leave when it answers
          this._subReqs.delete(r.reqId);
          this._abandonedSubs.set(r.reqId, r);
        } else if (this.state === 'open' && r.status === 'active') this._send({ type: 'unsubscribe', id: this._nextId('u'), room });
      }
    };
  }

  /** The position reached in a room ({seq, epoch}), e.g. to store and pass as `since` later. */
  position(room) {
    const r = this._rooms.get(room);
    return r && r.seq !== null ? { seq: r.seq, epoch: r.epoch } : null;
  }

  /** Rooms joined (or being joined). */
  rooms() {
    return [...this._rooms.keys()];
  }

  _sendSubscribe(r) {
    const id = this._nextId('s');
    const frame = { type: 'subscribe', id, room: r.room };
    if (r.seq !== null && r.epoch) frame.since = { seq: r.seq, epoch: r.epoch };
    r.status = 'pending';
    r.reqId = id;
    r.sinceSent = frame.since ? r.seq : null;
    this._subReqs.set(id, r);
    this._send(frame);
  }

  _onSubscribed(m) {
    if (this._abandonedSubs.delete(m.id)) {
      this._send({ type: 'unsubscribe', id: this._nextId('u'), room: m.room });
      return;
    }
    const r = this._subReqs.get(m.id);
    if (!r) return;
    this._subReqs.delete(m.id);
    if (this._rooms.get(r.room) !== r) return;
    r.status = 'active';
    r.reqId = null;
    const info = { room: r.room, seq: m.seq, epoch: m.epoch, recovered: m.recovered !== false };
    if (r.sinceSent === null) {
      r.seq = m.seq;
      r.epoch = m.epoch;
    } else if (m.recovered === false) {
      // History does not reach back (or the stream was recreated): what was
      // missed is gone; the app must reload its state (e.g. a snapshot).
      r.seq = m.seq;
      r.epoch = m.epoch;
      this.stats.resyncs++;
      this.emit('resync', info);
      for (const e of r.entries) if (e.onResync) e.onResync(info);
    } else {
      r.epoch = m.epoch;
    }
    this.emit('subscribed', info);
    for (const e of r.entries) if (e.onSubscribed) e.onSubscribed(info);
  }

  _onSubscribeError(r, m, err) {
    this._subReqs.delete(m.id);
    if (this._rooms.get(r.room) !== r) return;
    r.status = 'idle';
    r.reqId = null;
    if (m.code === 'internal' || m.code === 'rate_limited') {
      // auth did not answer: try again a little later while the room is wanted.
      const name = 'resub:' + r.room;
      this._timer(name, 500 + Math.floor(this._random() * 1500), () => {
        if (this.state === 'open' && this._rooms.get(r.room) === r && r.status === 'idle') this._sendSubscribe(r);
      });
      this.emit('error', err);
      return;
    }
    // forbidden, too_many_rooms, bad_request: final for this room.
    this._rooms.delete(r.room);
    this.emit('subscriptionError', err);
    let told = false;
    for (const e of r.entries) {
      if (e.onError) {
        e.onError(err);
        told = true;
      }
    }
    if (!told) this.emit('error', err);
  }

  _onRoomMessage(m) {
    const r = this._rooms.get(m.room);
    if (!r || r.seq === null) return; // not ours, or a leftover before `subscribed`
    if (r.status === 'pending' && r.sinceSent === null) return;
    if (m.seq <= r.seq) {
      this.stats.duplicatesDropped++;
      return;
    }
    if (typeof m.prevSeq === 'number' && m.prevSeq > r.seq) {
      // A message before this one never reached us: repair with `since`
      // (re-subscribing to a joined room replays nothing, so leave first).
      // This message comes back in the replay.
      if (r.status === 'active') {
        this.stats.gapsRepaired++;
        this.emit('gap', { room: r.room, lastSeq: r.seq, prevSeq: m.prevSeq, seq: m.seq });
        this._send({ type: 'unsubscribe', id: this._nextId('u'), room: r.room });
        this._sendSubscribe(r);
      }
      return;
    }
    r.seq = m.seq;
    this.stats.messages++;
    for (const e of [...r.entries]) {
      try {
        e.handler(m);
      } catch (err) {
        this.emit('error', err);
      }
    }
    this.emit('message', m);
  }

  // ------------------------------------------------------------------- actions

  _nextId(prefix) {
    this._idSeq++;
    return prefix + '-' + this._idSalt + '-' + this._idSeq.toString(36);
  }

  /**
   * Sends an action frame {type, action, id, payload}; resolves with the ack
   * (or the answer's payload for requests such as notifications/list),
   * rejects with a RealtimeError on an error answer or timeout. While not
   * connected the action waits in a bounded queue and goes out after the
   * next auth_ok, in order, with the same id.
   * opts: {timeoutMs, coalesceKey} — a queued action with the same
   * coalesceKey is replaced (its promise settles with the newer one's result).
   */
  request(type, action, payload, opts = {}) {
    return new Promise((resolve, reject) => {
      if (this._disconnected && this.state === 'closed') {
        // after disconnect() (or giving up) nothing is queued; connect() first
        reject(new RealtimeError('closed', 'client is closed'));
        return;
      }
      const a = {
        id: this._nextId('a'),
        order: this._idSeq,
        frame: { type, action, payload },
        resolve,
        reject,
        timeoutMs: opts.timeoutMs ?? this.options.actionTimeoutMs,
        coalesceKey: opts.coalesceKey,
        retries: 0,
        timer: undefined,
        followers: [],
      };
      if (a.coalesceKey) {
        const i = this._outbox.findIndex((x) => x.coalesceKey === a.coalesceKey);
        if (i >= 0) {
          const old = this._outbox[i];
          this._outbox.splice(i, 1);
          a.followers.push(old, ...old.followers);
          old.followers = [];
        }
      }
      if (this._outbox.length >= this.options.maxQueue) {
        const err = new RealtimeError('queue_full', 'offline queue is full (' + this.options.maxQueue + ')');
        this._settleAction(a, err, null);
        return;
      }
      this._outbox.push(a);
      this._flush();
    });
  }

  _flush() {
    if (this.state !== 'open') return;
    while (this._outbox.length > 0 && this._inflight.size < this.options.maxInFlight) {
      const a = this._outbox.shift();
      this._inflight.set(a.id, a);
      this._send({ type: a.frame.type, action: a.frame.action, id: a.id, payload: a.frame.payload });
      this._armActionTimer(a);
    }
  }

  _resendInflight() {
    if (this.state !== 'open') return;
    const again = [...this._inflight.values()].sort((x, y) => x.order - y.order);
    for (const a of again) this._send({ type: a.frame.type, action: a.frame.action, id: a.id, payload: a.frame.payload });
  }

  _armActionTimer(a) {
    this._clearActionTimer(a);
    if (!(a.timeoutMs > 0) || !Number.isFinite(a.timeoutMs)) return;
    a.timer = this._setTimeout(() => {
      a.timer = undefined;
      if (this._inflight.get(a.id) !== a) return;
      this._inflight.delete(a.id);
      this._settleAction(a, new RealtimeError('timeout', 'no answer to ' + a.frame.type + '/' + a.frame.action + ' within ' + a.timeoutMs + ' ms', { id: a.id }), null);
      this._flush();
    }, a.timeoutMs);
  }

  _clearActionTimer(a) {
    if (a.timer !== undefined) {
      this._clearTimeout(a.timer);
      a.timer = undefined;
    }
  }

  _settle(id, m) {
    if (!id) return;
    const a = this._inflight.get(id);
    if (!a) return; // an answer to something already settled (timeout) or a ping we forgot
    this._inflight.delete(id);
    this._clearActionTimer(a);
    let result;
    if (m.type === 'ack') {
      result = { ...m };
      delete result.type;
    } else if (m.type === 'notifications') result = m.payload || {};
    else result = m;
    this._settleAction(a, null, result);
    this._flush();
  }

  _onActionError(a, err) {
    this._inflight.delete(a.id);
    this._clearActionTimer(a);
    const retriable = (err.code === 'internal' && a.retries < 3) || (err.code === 'rate_limited' && a.retries < 5);
    if (retriable) {
      // "internal: safe to retry with the same id"; rate_limited: slow down.
      a.retries++;
      const delay = (err.code === 'rate_limited' ? 1000 : 300) * a.retries + Math.floor(this._random() * 300);
      this._retrying.set(a.id, a);
      this._timer('retry:' + a.id, delay, () => {
        this._retrying.delete(a.id);
        this._outbox.unshift(a);
        this._outbox.sort((x, y) => x.order - y.order);
        this._flush();
      });
      this._flush();
      return;
    }
    this._settleAction(a, err, null);
    this._flush();
  }

  _settleAction(a, err, result) {
    for (const x of [a, ...a.followers]) {
      if (err) x.reject(err);
      else x.resolve(result);
    }
  }

  _failAll(err) {
    const all = [...this._inflight.values(), ...this._retrying.values(), ...this._outbox];
    this._inflight.clear();
    this._retrying.clear();
    this._outbox = [];
    for (const name of [...this._timers.keys()]) if (name.startsWith('retry:') || name.startsWith('resub:')) this._clearTimer(name);
    for (const a of all) {
      this._clearActionTimer(a);
      this._settleAction(a, err, null);
    }
  }

  /** Actions waiting to be sent (offline queue). */
  get queued() {
    return this._outbox.length + this._retrying.size;
  }

  /** Actions sent and not answered yet. */
  get inFlight() {
    return this._inflight.size;
  }

  // The actions of docs/protocol.md, as promises of their ack.
  markConfusion({ courseId, lessonId, videoTimestampSec, text }, opts) {
    const p = { courseId, lessonId, videoTimestampSec };
    if (text !== undefined && text !== null && text !== '') p.text = text;
    return this.request('confusion', 'create', p, opts);
  }

  resolveConfusion({ courseId, confusionId, response }, opts) {
    const p = { courseId, confusionId, resolved: true };
    if (response !== undefined && response !== null && response !== '') p.response = response;
    return this.request('confusion', 'update', p, opts);
  }

  askQuestion({ courseId, lessonId, text }, opts) {
    const p = { courseId, text };
    if (lessonId) p.lessonId = lessonId;
    return this.request('question', 'create', p, opts);
  }

  answerQuestion({ courseId, questionId, answer }, opts) {
    return this.request('question', 'update', { courseId, questionId, answer }, opts);
  }

  reportProgress({ courseId, lessonId, positionSec, durationSec, playing, completed }, opts = {}) {
    const p = { courseId, lessonId, positionSec, durationSec, playing: !!playing };
    if (completed) p.completed = true;
    // Offline, only the newest heartbeat of a lesson is worth sending (unless it completes it).
    const coalesceKey = completed ? undefined : 'progress:' + courseId + ':' + lessonId;
    return this.request('progress', 'update', p, { coalesceKey, ...opts });
  }

  promptShown({ courseId, lessonId, promptId, kind }, opts) {
    return this.request('prompt', 'create', { courseId, lessonId, promptId, kind }, opts);
  }

  promptResponded({ courseId, lessonId, promptId, kind, action }, opts) {
    return this.request('prompt', 'update', { courseId, lessonId, promptId, kind, action }, opts);
  }

  markNotificationsRead(notificationIds, opts) {
    const ids = Array.isArray(notificationIds) ? notificationIds : [notificationIds];
    return this.request('notification', 'update', { notificationIds: ids }, opts);
  }

  /** notifications/list: resolves {notifications, unreadCount, hasMore}, newest first. */
  listNotifications({ unreadOnly, limit, before } = {}, opts) {
    const p = {};
    if (unreadOnly !== undefined) p.unreadOnly = !!unreadOnly;
    if (limit !== undefined) p.limit = limit;
    if (before !== undefined) p.before = before;
    return this.request('notifications', 'list', p, opts);
  }

  /**
   * Sends a progress heartbeat now and every intervalMs (at most 15 s, the
   * protocol's bound), paused or not, until stop(). read() returns
   * {positionSec, durationSec, playing, completed?}. beat() sends one now.
   */
  trackProgress({ courseId, lessonId, read, intervalMs = 15000 }) {
    if (typeof read !== 'function') throw new TypeError('trackProgress: read() is required');
    const every = Math.min(Math.max(intervalMs, 250), 15000);
    let stopped = false;
    let handle;
    const beat = () => {
      if (stopped) return Promise.resolve(null);
      if (handle !== undefined) this._clearTimeout(handle);
      handle = this._setTimeout(beat, every);
      const s = read();
      return this.reportProgress({ courseId, lessonId, ...s }).catch((err) => {
        this.emit('error', err);
        return null;
      });
    };
    beat();
    return {
      beat,
      stop: () => {
        stopped = true;
        if (handle !== undefined) this._clearTimeout(handle);
      },
    };
  }

  // ---------------------------------------------------------------- liveness

  /** {type:"ping"} → resolves the pong ({serverTime}). */
  ping(opts) {
    return this.request('ping', undefined, undefined, { timeoutMs: this.options.pongTimeoutMs, ...opts });
  }

  // Browsers cannot see WebSocket pings, so after pingIntervalMs without a
  // frame the client pings; no answer within pongTimeoutMs means the
  // connection is dead (a laptop that slept, a NAT that forgot us).
  _armPing() {
    if (!(this.options.pingIntervalMs > 0)) return;
    this._clearTimer('pong');
    this._timer('ping', this.options.pingIntervalMs, () => {
      if (this.state !== 'open') return;
      this._sendNow({ type: 'ping', id: this._nextId('p') });
      this._timer('pong', this.options.pongTimeoutMs, () => this._abandon(4000, 'ping timeout'));
    });
  }

  // -------------------------------------------------------------------- wire

  _sendNow(obj) {
    // auth, refresh and pings skip the queue (they are rare).
    const ws = this._ws;
    if (!ws) return;
    this._takeToken(true);
    try {
      ws.send(JSON.stringify(obj));
    } catch (err) {
      this.emit('error', err);
    }
  }

  _send(obj) {
    if (obj.type === 'ping' && obj.action === undefined) {
      // a ping through request(): {type:"ping", id}
      obj = { type: 'ping', id: obj.id };
    }
    this._wire.push(JSON.stringify(obj));
    this._pump();
  }

  _takeToken(force) {
    const now = this._now();
    const rate = this.options.sendRatePerSec;
    this._tokens = Math.min(this.options.sendBurst, this._tokens + ((now - this._tokensAt) / 1000) * rate);
    this._tokensAt = now;
    if (this._tokens >= 1 || force) {
      this._tokens -= 1;
      return true;
    }
    return false;
  }

  _pump() {
    const ws = this._ws;
    if (!ws || this._timers.has('pump')) return;
    while (this._wire.length > 0) {
      if (!this._takeToken(false)) {
        const wait = Math.ceil(((1 - this._tokens) / this.options.sendRatePerSec) * 1000);
        this._timer('pump', wait, () => this._pump());
        return;
      }
      const text = this._wire.shift();
      try {
        ws.send(text);
      } catch (err) {
        this.emit('error', err);
      }
    }
  }
}

/** Creates a client; it connects at once unless autoConnect is false. */
export function createClient(options) {
  return new RealtimeClient(options);
}
