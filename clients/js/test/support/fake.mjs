// In-process fakes for the SDK's unit tests: a manual clock and a WebSocket
// whose server side the test drives frame by frame.

export class Clock {
  constructor() {
    this.t = 1_700_000_000_000;
    this.queue = [];
    this.nextId = 1;
    this.setTimeout = (fn, ms) => {
      const id = this.nextId++;
      this.queue.push({ id, at: this.t + Math.max(0, ms || 0), fn });
      return id;
    };
    this.clearTimeout = (id) => {
      this.queue = this.queue.filter((x) => x.id !== id);
    };
    this.now = () => this.t;
  }

  /** Runs every timer due within `ms`, in time order, letting promises settle between. */
  async advance(ms) {
    const end = this.t + ms;
    for (;;) {
      await flush();
      this.queue.sort((a, b) => a.at - b.at || a.id - b.id);
      const next = this.queue[0];
      if (!next || next.at > end) break;
      this.queue.shift();
      this.t = next.at;
      next.fn();
    }
    this.t = end;
    await flush();
  }

  pending() {
    return this.queue.map((x) => x.at - this.t).sort((a, b) => a - b);
  }
}

export async function flush() {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
}

export function fakeServer() {
  const server = { sockets: [], get last() { return this.sockets[this.sockets.length - 1]; } };
  class FakeWebSocket {
    constructor(url, protocols) {
      this.url = url;
      this.protocols = protocols;
      this.sent = [];
      this.closed = null;
      server.sockets.push(this);
    }
    send(text) {
      if (this.closed) throw new Error('send on closed socket');
      const f = JSON.parse(text);
      this.sent.push(f);
      // like ws-edge: an application ping is answered at once
      if (f.type === 'ping' && server.answerPings !== false) setImmediate(() => this.deliver({ type: 'pong', id: f.id, serverTime: new Date().toISOString() }));
    }
    close(code, reason) {
      if (this.closed) return;
      this.closed = { code, reason, byClient: true };
      const ev = { code: code ?? 1005, reason };
      setImmediate(() => this.onclose && this.onclose(ev));
    }
    // ---- the server's side
    open() {
      this.onopen && this.onopen({});
    }
    deliver(...msgs) {
      // several messages in one frame, as JSON Lines
      this.onmessage && this.onmessage({ data: msgs.map((m) => (typeof m === 'string' ? m : JSON.stringify(m))).join('\n') });
    }
    drop(code = 1006, reason = '') {
      this.closed = { code, reason, byClient: false };
      this.onclose && this.onclose({ code, reason });
    }
    frames(type) {
      return this.sent.filter((f) => !type || f.type === type);
    }
    /** Opens, answers the auth frame with auth_ok. */
    async accept({ userId = 'u1', expiresInMs = 3_600_000, now = Date.now() } = {}) {
      this.open();
      await flush();
      const auth = this.sent.find((f) => f.type === 'auth');
      if (!auth) throw new Error('no auth frame sent');
      this.deliver({ type: 'auth_ok', connectionId: 'e-' + server.sockets.length, userId, role: 'student', expiresAt: new Date(now + expiresInMs).toISOString() });
      await flush();
      return auth;
    }
    /** Answers every pending subscribe with subscribed (seq per room from `seqs`). */
    answerSubscribes({ seqs = {}, epoch = 'E1', recovered = true } = {}) {
      const subs = this.sent.filter((f) => f.type === 'subscribe' && !f.answered);
      for (const f of subs) {
        f.answered = true;
        this.deliver({ type: 'subscribed', id: f.id, room: f.room, epoch, seq: seqs[f.room] ?? 0, recovered });
      }
      return subs;
    }
  }
  server.WebSocket = FakeWebSocket;
  return server;
}
