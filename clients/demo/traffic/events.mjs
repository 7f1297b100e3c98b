// What the demo traffic generator publishes the way Django does (the domain
// events browsers cannot send: lessons, enrollments, purchases): protobuf
// encoded by hand for these few messages of proto/unpuzzle/rt/v1/events.proto,
// published to JetStream with Nats-Msg-Id over a minimal NATS client.
// Development tool only; Django's real publisher is clients/django.
import { createHash, randomUUID } from 'node:crypto';
import { connect } from 'node:net';

// ---- protobuf (proto3) writer: just what these messages need
function varint(n) {
  let v = BigInt(n);
  if (v < 0n) v += 1n << 64n; // int64 two's complement
  const out = [];
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) b |= 0x80;
    out.push(b);
  } while (v > 0n);
  return Buffer.from(out);
}
const key = (field, wire) => varint((field << 3) | wire);
const str = (field, s) => {
  if (s === undefined || s === null || s === '') return Buffer.alloc(0);
  const b = Buffer.from(String(s), 'utf8');
  return Buffer.concat([key(field, 2), varint(b.length), b]);
};
const num = (field, n) => (n ? Buffer.concat([key(field, 0), varint(n)]) : Buffer.alloc(0));
const msg = (field, b) => Buffer.concat([key(field, 2), varint(b.length), b]);
const timestamp = (field, ms) => msg(field, Buffer.concat([num(1, Math.floor(ms / 1000)), num(2, (ms % 1000) * 1e6)]));

export const MEMBER_ROLE = { student: 1, instructor: 2 };
export const ENROLLMENT_CHANGE = { added: 1, removed: 2, completed: 3 };

/** A stable UUID-shaped id from a name (so a bootstrap re-run is a duplicate). */
export function nameId(name) {
  const h = createHash('sha256').update(name).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

export function lessonUpserted({ eventId = randomUUID(), at = Date.now(), lessonId, courseId, title, position }) {
  return { subject: 'evt.v1.lesson.upserted', eventId, bytes: Buffer.concat([str(1, eventId), timestamp(2, at), str(3, lessonId), str(4, courseId), str(5, title), num(6, position)]) };
}

export function enrollmentChanged({ eventId = randomUUID(), at = Date.now(), courseId, userId, change = 'added', role = 'student' }) {
  return {
    subject: 'evt.v1.enrollment.changed',
    eventId,
    bytes: Buffer.concat([str(1, eventId), timestamp(2, at), str(3, courseId), str(4, userId), num(5, ENROLLMENT_CHANGE[change]), num(6, MEMBER_ROLE[role])]),
  };
}

export function purchaseCompleted({ eventId = randomUUID(), at = Date.now(), purchaseId = randomUUID(), courseId, userId, amountCents, currency = 'USD' }) {
  return {
    subject: 'evt.v1.purchase.completed',
    eventId,
    bytes: Buffer.concat([str(1, eventId), timestamp(2, at), str(3, purchaseId), str(4, courseId), str(5, userId), num(6, amountCents), str(7, currency)]),
  };
}

// ---- NATS: INFO / CONNECT / PING / SUB / HPUB / MSG / HMSG, one publish at a time
export class NatsPublisher {
  constructor(url = 'nats://127.0.0.1:4222') {
    const u = new URL(url);
    this.host = u.hostname;
    this.port = Number(u.port || 4222);
    this.user = decodeURIComponent(u.username || '') || process.env.NATS_USER;
    this.pass = decodeURIComponent(u.password || '') || process.env.NATS_PASSWORD;
    this.sock = null;
    this.buf = Buffer.alloc(0);
    this.inbox = '_INBOX.demo' + randomUUID().replace(/-/g, '');
    this.waiters = new Map();
    this.n = 0;
  }

  connect() {
    return new Promise((resolve, reject) => {
      const s = connect(this.port, this.host);
      this.sock = s;
      let greeted = false;
      s.on('error', (e) => (greeted ? this._fail(e) : reject(e)));
      s.on('close', () => this._fail(new Error('NATS connection closed')));
      s.on('data', (d) => {
        this.buf = Buffer.concat([this.buf, d]);
        if (!greeted) {
          const i = this.buf.indexOf('\r\n');
          if (i < 0) return;
          const line = this.buf.subarray(0, i).toString();
          this.buf = this.buf.subarray(i + 2);
          if (!line.startsWith('INFO ')) return reject(new Error('not a NATS server: ' + line));
          greeted = true;
          const c = { verbose: false, pedantic: false, headers: true, no_responders: true, protocol: 1, name: 'demo-traffic' };
          if (this.user) Object.assign(c, { user: this.user, pass: this.pass });
          s.write(`CONNECT ${JSON.stringify(c)}\r\nSUB ${this.inbox}.* 1\r\nPING\r\n`);
          this._onPong = resolve;
        }
        this._parse();
      });
    });
  }

  _fail(err) {
    for (const w of this.waiters.values()) w.reject(err);
    this.waiters.clear();
    this.closed = true;
  }

  _parse() {
    for (;;) {
      const i = this.buf.indexOf('\r\n');
      if (i < 0) return;
      const line = this.buf.subarray(0, i).toString();
      if (line.startsWith('MSG ') || line.startsWith('HMSG ')) {
        const parts = line.split(' ');
        const isH = parts[0] === 'HMSG';
        const total = Number(parts[parts.length - 1]);
        const hdr = isH ? Number(parts[parts.length - 2]) : 0;
        if (this.buf.length < i + 2 + total + 2) return;
        const body = this.buf.subarray(i + 2, i + 2 + total);
        this.buf = this.buf.subarray(i + 2 + total + 2);
        const w = this.waiters.get(parts[1]);
        if (w) {
          this.waiters.delete(parts[1]);
          const head = body.subarray(0, hdr).toString();
          const payload = body.subarray(hdr).toString();
          if (/^NATS\/1\.0 503/.test(head)) w.reject(new Error('no responders (is the EVENTS stream there?)'));
          else {
            try {
              const ack = JSON.parse(payload);
              if (ack.error) w.reject(new Error(ack.error.description || JSON.stringify(ack.error)));
              else w.resolve(ack);
            } catch (e) {
              w.reject(e);
            }
          }
        }
        continue;
      }
      this.buf = this.buf.subarray(i + 2);
      if (line === 'PING') this.sock.write('PONG\r\n');
      else if (line === 'PONG' && this._onPong) {
        this._onPong();
        this._onPong = null;
      } else if (line.startsWith('-ERR')) this._fail(new Error('NATS ' + line));
    }
  }

  /** Publishes an event to JetStream; resolves the PubAck ({stream, seq, duplicate}). */
  publish({ subject, eventId, bytes }, timeoutMs = 3000) {
    if (this.closed) return Promise.reject(new Error('NATS connection closed'));
    const reply = `${this.inbox}.${++this.n}`;
    const headers = `NATS/1.0\r\nNats-Msg-Id: ${eventId}\r\n\r\n`;
    const h = Buffer.from(headers);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.waiters.delete(reply);
        reject(new Error('no PubAck within ' + timeoutMs + ' ms'));
      }, timeoutMs);
      this.waiters.set(reply, {
        resolve: (a) => (clearTimeout(t), resolve(a)),
        reject: (e) => (clearTimeout(t), reject(e)),
      });
      this.sock.write(Buffer.concat([Buffer.from(`HPUB ${subject} ${reply} ${h.length} ${h.length + bytes.length}\r\n`), h, bytes, Buffer.from('\r\n')]));
    });
  }

  close() {
    this.closed = true;
    if (this.sock) this.sock.destroy();
  }
}
