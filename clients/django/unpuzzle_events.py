"""Publish Unpuzzle domain events from Django to NATS JetStream.

Vendor this one file into the Django project (docs/django.md). It needs the
Python standard library, the protobuf runtime (Debian: python3-protobuf) and
the Python generated from proto/ with `protoc --python_out`; no NATS package.

    from django.utils import timezone
    from unpuzzle.rt.v1 import common_pb2, events_pb2   # generated from proto/
    from unpuzzle_events import EventPublisher, stamp

    publisher = EventPublisher("nats://127.0.0.1:4222", user="django", password="...")
    event = stamp(events_pb2.EnrollmentChanged(
        course_id="course-1", user_id="user-1",
        change=events_pb2.ENROLLMENT_CHANGE_ADDED, role=common_pb2.MEMBER_ROLE_STUDENT),
        occurred_at=timezone.now())
    seq, duplicate = publisher.publish_event(event)     # evt.v1.enrollment.changed

What it does, and nothing more:
  - speaks just enough of the NATS client protocol over one TCP socket:
    INFO / CONNECT (user + password, or token) / PING / PONG / SUB / HPUB /
    MSG / HMSG / -ERR;
  - publishes each event with the header Nats-Msg-Id = event_id, so
    JetStream stores it once even when it is sent again (spec/subjects.md);
  - waits for the stream's acknowledgement (a small JSON reply on a private
    _INBOX subject) and returns (stream sequence, duplicate);
  - on a timeout or a lost connection sends the SAME bytes with the SAME
    Nats-Msg-Id again (reconnecting if needed): within the stream's dedupe
    window (EVENTS_DUPLICATE_WINDOW_S, default 120 s) this cannot store the
    event twice; the repeat is answered with duplicate=True and the original
    sequence;
  - raises a clear exception otherwise (see PublishError and its subclasses).

Not supported (not needed by deploy/): TLS, NKEY/JWT credentials, cluster
server discovery. One request is in flight per connection; publish() is
thread-safe (a lock) and notices a fork (gunicorn --preload) and reconnects.
"""

import datetime
import json
import os
import re
import secrets
import socket
import threading
import time
import urllib.parse
import uuid
from collections import namedtuple

__all__ = [
    "EVENT_SUBJECTS",
    "EventPublisher",
    "JetStreamError",
    "NatsConnectionError",
    "NatsServerError",
    "NoRespondersError",
    "PubAck",
    "PublishError",
    "PublishTimeout",
    "stamp",
    "subject_for",
]

# ---- the contract: which message goes to which subject ----

# proto message (full name) -> subject of stream EVENTS (spec/subjects.md).
# Every message of proto/unpuzzle/rt/v1/events.proto is listed.
EVENT_SUBJECTS = {
    "unpuzzle.rt.v1.ConfusionCreated": "evt.v1.confusion.created",
    "unpuzzle.rt.v1.ConfusionResolved": "evt.v1.confusion.resolved",
    "unpuzzle.rt.v1.QuestionCreated": "evt.v1.question.created",
    "unpuzzle.rt.v1.QuestionAnswered": "evt.v1.question.answered",
    "unpuzzle.rt.v1.ProgressUpdated": "evt.v1.progress.updated",
    "unpuzzle.rt.v1.LessonCompleted": "evt.v1.lesson.completed",
    "unpuzzle.rt.v1.PromptShown": "evt.v1.prompt.shown",
    "unpuzzle.rt.v1.PromptResponded": "evt.v1.prompt.responded",
    "unpuzzle.rt.v1.QuizSubmitted": "evt.v1.quiz.submitted",
    "unpuzzle.rt.v1.ReflectionSubmitted": "evt.v1.reflection.submitted",
    "unpuzzle.rt.v1.PurchaseCompleted": "evt.v1.purchase.completed",
    "unpuzzle.rt.v1.EnrollmentChanged": "evt.v1.enrollment.changed",
    "unpuzzle.rt.v1.LessonUpserted": "evt.v1.lesson.upserted",
    "unpuzzle.rt.v1.CourseUpdated": "evt.v1.course.updated",
    "unpuzzle.rt.v1.NotificationRequested": "evt.v1.notification.requested",
    "unpuzzle.rt.v1.NotificationsRead": "evt.v1.notification.read",
}

# The stream that stores evt.v1.> (created by the auth service).
EVENTS_STREAM = "EVENTS"

# event_id, like every id of the contract: [A-Za-z0-9_-]{1,64} (a UUID fits).
_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")
# A subject to publish to: non-empty tokens of visible ASCII, no wildcards.
_TOKEN_RE = re.compile(r"[!-~]+\Z")


def _valid_subject(subject):
    return isinstance(subject, str) and all(
        _TOKEN_RE.match(t) and "*" not in t and ">" not in t
        for t in subject.split("."))


def subject_for(message):
    """The EVENTS subject of a generated event message ("evt.v1....")."""
    name = message.DESCRIPTOR.full_name
    try:
        return EVENT_SUBJECTS[name]
    except KeyError:
        raise ValueError("%s is not a domain event of events.proto" % name) from None


def stamp(message, occurred_at=None):
    """Fills event_id (a new UUID) and occurred_at when they are unset.

    occurred_at (event time: when it happened, not when it is sent) is a
    timezone-aware datetime, e.g. django.utils.timezone.now(); default now.
    Returns the message. Call it once, when the event is created: a retry
    must publish the same event_id, never a new one.
    """
    if not message.event_id:
        message.event_id = str(uuid.uuid4())
    if not message.HasField("occurred_at"):
        when = occurred_at
        if when is None:
            when = datetime.datetime.now(datetime.timezone.utc)
        if when.tzinfo is None or when.utcoffset() is None:
            raise ValueError("occurred_at must be timezone-aware (django.utils.timezone.now())")
        message.occurred_at.FromDatetime(when)
    return message


# ---- results and errors ----

# seq: the stream sequence of the stored event; duplicate: the stream already
# had this Nats-Msg-Id (an earlier publish of the same event): stored once,
# and seq is the original's.
PubAck = namedtuple("PubAck", "seq duplicate")


class PublishError(Exception):
    """Base class: the event was not confirmed as stored."""


class NatsConnectionError(PublishError):
    """No connection to any server (refused, unreachable, closed, TLS required)."""


class NatsServerError(PublishError):
    """The server sent -ERR: bad credentials ('Authorization Violation'), a
    subject this user may not use ('Permissions Violation ...'), and so on."""


class NoRespondersError(PublishError):
    """Status 503: no stream stores this subject (is the EVENTS stream
    there? the auth service creates it). Nothing was stored."""


class JetStreamError(PublishError):
    """The stream refused the message; code/err_code/description are
    JetStream's (e.g. 10060 'expected stream does not match')."""

    def __init__(self, code, err_code, description):
        super().__init__("JetStream error %s (err_code %s): %s" % (code, err_code, description))
        self.code, self.err_code, self.description = code, err_code, description


class PublishTimeout(PublishError):
    """No acknowledgement after every attempt. The event may or may not be
    stored: publish it again later with the SAME event_id (an outbox retry);
    within the dedupe window it is stored at most once."""


class _Timeout(Exception):
    """Internal: the deadline of one wait passed."""


# ---- the publisher ----


class EventPublisher:
    """A small synchronous JetStream publisher for protobuf events.

    url: "nats://host:4222", optionally "nats://user:password@host:4222" or
    "nats://token@host:4222"; several URLs separated by commas are tried in
    order. user/password or token given as arguments win over the URL's.
    timeout: seconds to wait for each acknowledgement (and to connect).
    attempts: how many times one event is sent before PublishTimeout.
    """

    def __init__(self, url="nats://127.0.0.1:4222", user=None, password=None, token=None,
                 timeout=2.0, attempts=3, name="django"):
        self._servers = [self._parse_url(u.strip()) for u in url.split(",") if u.strip()]
        if not self._servers:
            raise ValueError("no NATS URL given")
        self._user, self._password, self._token = user, password, token
        self.timeout = float(timeout)
        self.attempts = max(1, int(attempts))
        self.name = name
        self._lock = threading.Lock()
        self._sock = None
        self._pid = None
        self._buf = bytearray()
        self._max_payload = 1024 * 1024
        self._inbox = None
        self._next_reply = 0

    # -- public API --

    def publish_event(self, message):
        """Publishes a domain event to its subject (EVENT_SUBJECTS) in the
        EVENTS stream; returns PubAck(seq, duplicate)."""
        return self.publish(subject_for(message), message, expected_stream=EVENTS_STREAM)

    def publish(self, subject, message, expected_stream=None):
        """Publishes `message` (a generated protobuf message with event_id and
        occurred_at set) to `subject` through JetStream with Nats-Msg-Id =
        event_id and returns PubAck(seq, duplicate). expected_stream: the
        stream that must store it (header Nats-Expected-Stream), or None."""
        if not _valid_subject(subject):
            raise ValueError("not a subject to publish to: %r" % (subject,))
        event_id = getattr(message, "event_id", None)
        if not isinstance(event_id, str):
            raise TypeError("%s has no event_id field" % type(message).__name__)
        if not event_id:
            raise ValueError("event_id is empty: set it once per event (stamp())")
        if not _ID_RE.match(event_id):
            raise ValueError("event_id %r is not [A-Za-z0-9_-]{1,64}" % (event_id,))
        if "occurred_at" in message.DESCRIPTOR.fields_by_name and (
                not message.HasField("occurred_at") or message.occurred_at.seconds <= 0):
            raise ValueError("occurred_at is unset: set it to the event time (stamp())")
        payload = message.SerializeToString()
        headers = "NATS/1.0\r\nNats-Msg-Id: %s\r\n" % event_id
        if expected_stream:
            if not _ID_RE.match(expected_stream):
                raise ValueError("not a stream name: %r" % (expected_stream,))
            headers += "Nats-Expected-Stream: %s\r\n" % expected_stream
        headers = (headers + "\r\n").encode("ascii")
        with self._lock:
            return self._publish_locked(subject, headers, payload)

    def close(self):
        """Closes the connection (the next publish opens a new one)."""
        with self._lock:
            self._close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- one publish, with retries --

    def _publish_locked(self, subject, headers, payload):
        if len(headers) + len(payload) > self._max_payload:
            raise ValueError("event of %d bytes is over the server's max_payload (%d)"
                             % (len(headers) + len(payload), self._max_payload))
        sent = False  # still False: it certainly never reached a server
        last, backoff = None, 0.0
        for _ in range(self.attempts):
            time.sleep(backoff)
            try:
                self._ensure_connected()
                reply = "%s.%d" % (self._inbox, self._next_reply)
                self._next_reply += 1
                self._send(b"HPUB %s %s %d %d\r\n%s%s\r\n" % (
                    subject.encode("ascii"), reply.encode("ascii"), len(headers),
                    len(headers) + len(payload), headers, payload))
                sent = True
                status, body = self._wait_reply(reply, time.monotonic() + self.timeout)
                return self._pub_ack(subject, status, body)
            except _Timeout:
                # Stored with its ack lost, or the connection silently dead:
                # send it again on a new connection with the same Nats-Msg-Id,
                # which JetStream does not store twice.
                self._close()
                last, backoff = "no acknowledgement within %.1f s" % self.timeout, 0.0
            except (OSError, NatsConnectionError) as e:
                self._close()
                last = str(e) if isinstance(e, NatsConnectionError) else "connection lost: %s" % e
                backoff = min(max(2 * backoff, 0.1), 1.0)
            except NatsServerError:
                self._close()
                raise
        if not sent:
            raise NatsConnectionError("%s (%d attempts)" % (last, self.attempts))
        raise PublishTimeout("publish to %s: %s (%d attempts)" % (subject, last, self.attempts))

    @staticmethod
    def _pub_ack(subject, status, body):
        if status == 503:
            raise NoRespondersError("no stream stores %s (503 no responders)" % subject)
        if status is not None and status >= 300:
            raise JetStreamError(status, None, "status %d on %s" % (status, subject))
        try:
            ack = json.loads(body.decode("utf-8"))
        except ValueError:
            raise PublishError("unexpected reply to publish on %s: %r" % (subject, body[:200]))
        if not isinstance(ack, dict):
            raise PublishError("unexpected reply to publish on %s: %r" % (subject, body[:200]))
        err = ack.get("error")
        if err:
            raise JetStreamError(err.get("code"), err.get("err_code"), err.get("description"))
        if "seq" not in ack:
            raise PublishError("reply to publish on %s has no seq: %r" % (subject, ack))
        return PubAck(int(ack["seq"]), bool(ack.get("duplicate", False)))

    # -- connection --

    @staticmethod
    def _parse_url(url):
        if "://" not in url:
            url = "nats://" + url
        u = urllib.parse.urlsplit(url)
        if u.scheme != "nats":
            raise ValueError("unsupported NATS URL scheme %r (nats:// only)" % u.scheme)
        if not u.hostname:
            raise ValueError("NATS URL without a host")
        user = urllib.parse.unquote(u.username) if u.username else None
        password = urllib.parse.unquote(u.password) if u.password else None
        return (u.hostname, u.port or 4222, user, password)

    def _ensure_connected(self):
        if self._sock is not None and self._pid == os.getpid():
            return
        if self._sock is not None:
            # Forked (gunicorn --preload): the parent's socket is not ours to
            # use; closing our copy of the descriptor leaves the parent's open.
            self._close()
        errors = []
        for host, port, url_user, url_password in self._servers:
            try:
                self._connect(host, port, url_user, url_password)
                return
            except NatsServerError:
                self._close()
                raise  # bad credentials: another server will not differ
            except (OSError, NatsConnectionError, _Timeout) as e:
                self._close()
                errors.append("%s:%d: %s" % (host, port, str(e) or "timed out"))
        raise NatsConnectionError("cannot connect to NATS (%s)" % "; ".join(errors))

    def _connect(self, host, port, url_user, url_password):
        deadline = time.monotonic() + self.timeout
        self._buf = bytearray()
        self._sock = socket.create_connection((host, port), timeout=self.timeout)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        self._pid = os.getpid()
        line = self._read_line(deadline)
        if not line.startswith(b"INFO "):
            raise NatsConnectionError("not a NATS server (first line %r)" % line[:40])
        try:
            info = json.loads(line[5:].decode("utf-8"))
        except ValueError:
            raise NatsConnectionError("not a NATS server (bad INFO)") from None
        if info.get("tls_required"):
            raise NatsConnectionError("the server requires TLS, which this client does not do")
        if not info.get("headers", False):
            raise NatsConnectionError("the server does not support headers (nats-server >= 2.2)")
        self._max_payload = int(info.get("max_payload", self._max_payload))
        connect = {"verbose": False, "pedantic": False, "lang": "python-unpuzzle",
                   "version": "1", "protocol": 1, "headers": True, "no_responders": True,
                   "name": self.name}
        user = self._user if self._user is not None else url_user
        password = self._password if self._password is not None else url_password
        if self._token is not None:
            connect["auth_token"] = self._token
        elif user is not None and password is None:
            connect["auth_token"] = user  # nats://token@host
        elif user is not None:
            connect["user"], connect["pass"] = user, password
        # One wildcard subscription receives every acknowledgement; _INBOX.>
        # is what deploy/nats lets the django user subscribe to.
        self._inbox = "_INBOX." + secrets.token_hex(11)
        self._send(b"CONNECT %s\r\nSUB %s.* 1\r\nPING\r\n" % (
            json.dumps(connect, separators=(",", ":")).encode("utf-8"),
            self._inbox.encode("ascii")))
        while True:  # the server answers CONNECT/SUB in order: an -ERR comes first
            line = self._read_line(deadline)
            if line == b"PONG":
                return
            if line.startswith(b"-ERR"):
                raise NatsServerError("NATS refused the connection: %s" % _err_text(line))
            if line == b"PING":
                self._send(b"PONG\r\n")

    def _close(self):
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        self._sock = None
        self._buf = bytearray()

    # -- protocol reading --

    def _send(self, data):
        self._sock.settimeout(self.timeout)
        self._sock.sendall(data)

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _Timeout()
        self._sock.settimeout(remaining)
        try:
            chunk = self._sock.recv(65536)
        except socket.timeout:
            raise _Timeout() from None
        if not chunk:
            raise NatsConnectionError("the server closed the connection")
        self._buf += chunk

    def _read_op(self, deadline):
        """The next complete protocol operation: (control line, payload or
        None). Nothing is consumed until all of it has arrived."""
        while True:
            end = self._buf.find(b"\r\n")
            if end >= 0:
                line = bytes(self._buf[:end])
                if not (line.startswith(b"MSG ") or line.startswith(b"HMSG ")):
                    del self._buf[:end + 2]
                    return line, None
                try:
                    size = int(line.split()[-1])  # MSG: payload; HMSG: headers + payload
                except ValueError:
                    raise NatsConnectionError("protocol error: %r" % line[:80]) from None
                if len(self._buf) >= end + 2 + size + 2:
                    payload = bytes(self._buf[end + 2:end + 2 + size])
                    del self._buf[:end + 2 + size + 2]  # and the trailing CRLF
                    return line, payload
            elif len(self._buf) > 64 * 1024:
                raise NatsConnectionError("protocol line too long")
            self._fill(deadline)

    def _read_line(self, deadline):
        line, _ = self._read_op(deadline)
        return line

    def _wait_reply(self, reply, deadline):
        """Reads until the message for `reply` arrives: (status or None, body)."""
        while True:
            line, data = self._read_op(deadline)
            if data is not None:
                # MSG <subject> <sid> [reply] <size>
                # HMSG <subject> <sid> [reply] <header size> <total size>
                parts = line.split()
                hdr_len = int(parts[-2]) if parts[0] == b"HMSG" else 0
                if parts[1].decode("ascii") != reply:
                    continue  # not ours (cannot happen with one request in flight)
                return _status(data[:hdr_len]), data[hdr_len:]
            if line == b"PING":
                self._send(b"PONG\r\n")
            elif line.startswith(b"-ERR"):
                text = _err_text(line)
                if "permissions violation" in text.lower():
                    # The connection stays open, but this publish is refused.
                    raise NatsServerError("NATS refused the publish: %s" % text)
                # Every other -ERR closes the connection ('Stale Connection'...).
                raise NatsConnectionError("NATS closed the connection: %s" % text)
            # INFO (cluster updates), PONG, +OK: nothing to do.


def _err_text(line):
    return line[4:].strip().strip(b"'").decode("utf-8", "replace")


def _status(header_block):
    """The status code of a NATS header block ("NATS/1.0 503"), or None."""
    if not header_block:
        return None
    first = header_block.split(b"\r\n", 1)[0].split()
    if len(first) >= 2 and first[1].isdigit():
        return int(first[1])
    return None
