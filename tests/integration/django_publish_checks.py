#!/usr/bin/python3
"""Python half of integration.test_django_publish (tests/integration/test_django_publish.c):
the failure paths of clients/django/unpuzzle_events.py against the real stack.

    django_publish_checks.py DIR URL

DIR holds the Python generated from proto/ (unpuzzle/rt/v1/*_pb2.py); URL is
the test's nats-server running deploy/nats/nats-server.conf; NATS_USER and
NATS_PASSWORD (the django user) come from the environment. The C side has
subscribed (without replying) to rt.v1.room.course.silent before this runs.

Prints for the C side to check in the stream and on that subscription:
    subject <message full name> <subject>      every entry of EVENT_SUBJECTS
    lost-ack seq=<n> duplicate=<b> event_id=<id>  stored once despite a retry
    timeout event_id=<id>                        sent twice, never acknowledged
and "ok <check>" per check. Exit status 0 means every check passed; a
failure is named on stderr. Stores exactly one event (the lost-ack one).
"""

import datetime
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "clients", "django"))

import unpuzzle_events as ue  # noqa: E402

failures = 0


def check(name, cond, detail=""):
    global failures
    if cond:
        print("ok %s" % name, flush=True)
    else:
        print("FAIL: %s %s" % (name, detail), file=sys.stderr, flush=True)
        failures += 1


def raises(name, exc_type, fn, text=None):
    """fn() must raise exc_type (whose message contains `text`); returns it."""
    try:
        got = fn()
    except exc_type as e:
        check(name, text is None or text in str(e), "message %r lacks %r" % (str(e), text))
        return e
    except Exception as e:  # noqa: BLE001 (report any other outcome)
        check(name, False, "raised %s: %s, want %s" % (type(e).__name__, e, exc_type.__name__))
        return None
    check(name, False, "returned %r, want %s" % (got, exc_type.__name__))
    return None


class LosingPublisher(ue.EventPublisher):
    """Reads the real acknowledgement of the next publish, then pretends it
    never came (a lost ack): the publisher must send the event again with the
    same Nats-Msg-Id, and JetStream must not store it twice."""

    lose_next = False

    def _wait_reply(self, reply, deadline):
        answer = super()._wait_reply(reply, deadline)
        if self.lose_next:
            self.lose_next = False
            raise ue._Timeout()
        return answer


def main(argv):
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    sys.path.insert(0, argv[1])
    from unpuzzle.rt.v1 import auth_pb2, events_pb2, rooms_pb2
    url = argv[2]
    user, password = os.environ.get("NATS_USER"), os.environ.get("NATS_PASSWORD")

    # The subject table covers events.proto exactly.
    names = {d.full_name for d in events_pb2.DESCRIPTOR.message_types_by_name.values()}
    check("every event of events.proto has a subject", names == set(ue.EVENT_SUBJECTS),
          "missing %s, extra %s" % (sorted(names - set(ue.EVENT_SUBJECTS)),
                                    sorted(set(ue.EVENT_SUBJECTS) - names)))
    for name, subject in sorted(ue.EVENT_SUBJECTS.items()):
        print("subject %s %s" % (name, subject))
    check("subject_for", ue.subject_for(events_pb2.EnrollmentChanged())
          == "evt.v1.enrollment.changed")
    raises("subject_for refuses a non-event", ValueError,
           lambda: ue.subject_for(rooms_pb2.RoomMessage()), "not a domain event")

    # stamp() fills once and keeps what is set.
    ev = ue.stamp(events_pb2.CourseUpdated(course_id="c-1"))
    first = (ev.event_id, ev.occurred_at.seconds, ev.occurred_at.nanos)
    ue.stamp(ev)
    check("stamp keeps event_id and occurred_at",
          (ev.event_id, ev.occurred_at.seconds, ev.occurred_at.nanos) == first)
    check("stamp makes a UUID", len(ev.event_id) == 36 and ev.event_id.count("-") == 4)
    when = datetime.datetime(2026, 11, 25, 17, 30, 0, 123456, tzinfo=datetime.timezone.utc)
    ev2 = ue.stamp(events_pb2.CourseUpdated(), occurred_at=when)
    check("stamp converts an aware datetime",
          (ev2.occurred_at.seconds, ev2.occurred_at.nanos) == (1795627800, 123456000))
    raises("stamp refuses a naive datetime", ValueError,
           lambda: ue.stamp(events_pb2.CourseUpdated(), occurred_at=datetime.datetime.now()),
           "timezone-aware")

    # Input validation, before anything is sent.
    pub = LosingPublisher(url, user=user, password=password, timeout=2.0)
    no_id = events_pb2.CourseUpdated(course_id="c-1")
    no_id.occurred_at.GetCurrentTime()
    raises("no event_id", ValueError, lambda: pub.publish_event(no_id), "event_id is empty")
    no_time = events_pb2.CourseUpdated(event_id="e-no-time", course_id="c-1")
    raises("no occurred_at", ValueError, lambda: pub.publish_event(no_time), "occurred_at")
    bad_id = ue.stamp(events_pb2.CourseUpdated(event_id="has space"))
    raises("event_id not an id", ValueError, lambda: pub.publish_event(bad_id), "not [A-Za-z0-9")
    raises("wildcard subject", ValueError,
           lambda: pub.publish("evt.v1.*", ue.stamp(events_pb2.CourseUpdated())), "subject")
    raises("message without event_id", TypeError,
           lambda: pub.publish("evt.v1.course.updated", auth_pb2.VerifyRequest(token="x")),
           "no event_id")

    # deploy/nats: the django user may not publish into auth.v1.*; the error
    # names the violation, and the same publisher goes on working.
    raises("permission violation", ue.NatsServerError,
           lambda: pub.publish("auth.v1.invalidated.enrollment", ue.stamp(
               events_pb2.EnrollmentChanged(course_id="c-1", user_id="u-1"))),
           "Permissions Violation for Publish")

    # The stream refuses what it must not store.
    raises("expected stream", ue.JetStreamError,
           lambda: pub.publish("evt.v1.course.updated", ue.stamp(
               events_pb2.CourseUpdated(course_id="c-1")), expected_stream="ROOMS"),
           "expected stream does not match")

    # No stream stores this subject (no ws-edge has created ROOMS): 503.
    room = rooms_pb2.RoomMessage(event_id="e-no-responders", user_id="u-1")
    raises("no responders", ue.NoRespondersError,
           lambda: pub.publish("rt.v1.room.course.nostream", room), "no stream stores")

    # A lost acknowledgement: sent again with the same Nats-Msg-Id, stored once.
    lost = ue.stamp(events_pb2.CourseUpdated(course_id="course-lost-ack", title="Lost ack",
                                             summary="retried", actor_user_id="u-1"))
    pub.lose_next = True
    try:
        ack = pub.publish_event(lost)
        check("lost ack: the retry is a duplicate", ack.duplicate, repr(ack))
        print("lost-ack seq=%d duplicate=%s event_id=%s"
              % (ack.seq, "true" if ack.duplicate else "false", lost.event_id), flush=True)
    except ue.PublishError as e:
        check("lost ack", False, "%s: %s" % (type(e).__name__, e))
    pub.close()

    # Nobody acknowledges (a subscriber that never replies): two attempts,
    # then PublishTimeout, which says the event may or may not be stored.
    silent = ue.EventPublisher(url, user=user, password=password, timeout=0.3, attempts=2)
    quiet = rooms_pb2.RoomMessage(event_id="e-silent-1", user_id="u-1")
    started = time.monotonic()
    raises("timeout", ue.PublishTimeout,
           lambda: silent.publish("rt.v1.room.course.silent", quiet), "2 attempts")
    elapsed = time.monotonic() - started
    check("timeout took about 2 x 0.3 s", 0.55 <= elapsed < 3.0, "%.2f s" % elapsed)
    print("timeout event_id=%s" % quiet.event_id, flush=True)
    silent.close()

    # Wrong credentials are refused clearly, not retried.
    wrong = ue.EventPublisher(url, user=user, password="wrong0password", timeout=2.0)
    raises("wrong password", ue.NatsServerError,
           lambda: wrong.publish_event(ue.stamp(events_pb2.CourseUpdated(course_id="c-1"))),
           "Authorization Violation")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
