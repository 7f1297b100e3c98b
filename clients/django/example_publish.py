#!/usr/bin/python3
"""Publish a small, realistic sequence of Unpuzzle events the way Django does.

    clients/django/example_publish.py --nats nats://127.0.0.1:4222
    NATS_USER=django NATS_PASSWORD=... clients/django/example_publish.py \\
        --nats nats://nats:4222 --proto-dir gen/

The story: an instructor publishes a lesson, a student buys the course and is
enrolled, watches the lesson (three player heartbeats, 15 s apart), and gets
a welcome notification. Then the purchase is published a second time with the
same event_id, as an outbox retry would: JetStream answers duplicate=true with
the original sequence, and the event is stored once.

One line per publish on stdout:
    published seq=<n> duplicate=<true|false> subject=<subject> type=<message> event_id=<id>
Exit status: 0 all published, 1 a publish failed (the reason on stderr),
2 setup failed (no generated code, protoc missing).

--proto-dir DIR: where the Python generated from proto/ lives (DIR/unpuzzle/
rt/v1/events_pb2.py, see docs/django.md). Without it, the script generates it
into a temp dir from --proto-src (default: this repository's proto/) with
Debian's protoc, exactly as docs/django.md shows.
Credentials: --user/--password, else NATS_USER/NATS_PASSWORD from the
environment (the django user of deploy/nats/nats-server.conf), else none.
"""

import argparse
import datetime
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # unpuzzle_events.py sits next to this script

from unpuzzle_events import EventPublisher, PublishError, stamp, subject_for  # noqa: E402

# The ids Django would send: Supabase user ids (the `sub` of their access
# tokens) and Django's own course, lesson and purchase ids, as strings
# matching [A-Za-z0-9_-]{1,64}.
COURSE = "course-sql-101"
LESSON = "lesson-sql-101-01"
INSTRUCTOR = "7d0e3b52-8a41-4f6c-9b1e-2c5a7f90d315"
STUDENT = "2f6c7e0a-5d3b-4c1e-9a57-3b8d0f1c2e4a"
PURCHASE = "purchase-20431"


def generate(proto_src, out_dir):
    """protoc --python_out=OUT -I proto -I /usr/include proto/unpuzzle/rt/v1/*.proto"""
    protos = sorted(glob.glob(os.path.join(proto_src, "unpuzzle", "rt", "v1", "*.proto")))
    if not protos:
        raise SystemExit("no .proto files under %s" % proto_src)
    protoc = shutil.which("protoc")
    if not protoc:
        raise SystemExit("protoc not found: apt-get install protobuf-compiler")
    cmd = [protoc, "--python_out=" + out_dir, "-I", proto_src, "-I", "/usr/include"] + protos
    if subprocess.call(cmd) != 0:
        raise SystemExit("protoc failed: %s" % " ".join(cmd))


def load_generated(proto_dir):
    sys.path.insert(0, proto_dir)
    try:
        from unpuzzle.rt.v1 import common_pb2, events_pb2
    except ImportError as e:
        raise SystemExit("cannot import the generated code from %s: %s (is the protobuf runtime "
                         "there? apt-get install python3-protobuf)" % (proto_dir, e))
    return common_pb2, events_pb2


def story(common_pb2, events_pb2, now):
    """The events, in the order Django would publish them."""
    t = lambda seconds_ago: now - datetime.timedelta(seconds=seconds_ago)  # noqa: E731
    events = [
        # The instructor saved a lesson (Django: post_save of Lesson).
        events_pb2.LessonUpserted(lesson_id=LESSON, course_id=COURSE,
                                  title="SELECT, FROM, WHERE", position=1, deleted=False),
        # Payment confirmed (Django: the payment provider's webhook).
        events_pb2.PurchaseCompleted(purchase_id=PURCHASE, course_id=COURSE, user_id=STUDENT,
                                     amount_cents=4900, currency="USD"),
        # ... which enrolls the buyer (user_id: the enrolled user, not the actor).
        events_pb2.EnrollmentChanged(course_id=COURSE, user_id=STUDENT,
                                     change=events_pb2.ENROLLMENT_CHANGE_ADDED,
                                     role=common_pb2.MEMBER_ROLE_STUDENT,
                                     actor_user_id=STUDENT),
    ]
    # Player heartbeats (every <= 15 s while the lesson is open).
    for i, position in enumerate((0.0, 15.0, 30.0)):
        events.append(events_pb2.ProgressUpdated(
            course_id=COURSE, lesson_id=LESSON, user_id=STUDENT, position_sec=position,
            duration_sec=600.0, playing=True, completed=False))
    events.append(events_pb2.NotificationRequested(
        user_id=STUDENT, kind="welcome", title="Welcome to SQL 101",
        body="Your first lesson is ready.", link="/courses/course-sql-101"))
    # Event time: when it happened (the heartbeats 30, 15 and 0 s ago).
    times = [t(40), t(35), t(35), t(30), t(15), t(0), t(0)]
    for event, when in zip(events, times):
        stamp(event, occurred_at=when)
    return events


def without_secrets(url):
    """The URL(s) without user, password or token, for messages."""
    parts = []
    for u in url.split(","):
        u = u.strip() if "://" in u else "nats://" + u.strip()
        split = urllib.parse.urlsplit(u)
        parts.append(split._replace(netloc=split.netloc.rpartition("@")[2]).geturl())
    return ",".join(parts)


def report(event, ack):
    print("published seq=%d duplicate=%s subject=%s type=%s event_id=%s" % (
        ack.seq, "true" if ack.duplicate else "false", subject_for(event),
        event.DESCRIPTOR.name, event.event_id), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nats", default=os.environ.get("NATS_URL", "nats://127.0.0.1:4222"),
                        help="NATS URL (default: $NATS_URL or nats://127.0.0.1:4222)")
    parser.add_argument("--user", default=os.environ.get("NATS_USER"),
                        help="NATS user (default: $NATS_USER)")
    parser.add_argument("--password", default=os.environ.get("NATS_PASSWORD"),
                        help="NATS password (default: $NATS_PASSWORD, better: a command line "
                        "is visible to other local users)")
    parser.add_argument("--proto-dir", help="directory holding unpuzzle/rt/v1/*_pb2.py")
    parser.add_argument("--proto-src", default=os.path.join(HERE, "..", "..", "proto"),
                        help="proto/ to generate from when --proto-dir is not given")
    parser.add_argument("--timeout", type=float, default=2.0,
                        help="seconds to wait for each acknowledgement (default 2)")
    args = parser.parse_args()

    tmp = None
    try:
        proto_dir = args.proto_dir
        if not proto_dir:
            tmp = tempfile.mkdtemp(prefix="unpuzzle-pb2-")
            generate(os.path.abspath(args.proto_src), tmp)
            proto_dir = tmp
        common_pb2, events_pb2 = load_generated(proto_dir)
    except SystemExit as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)  # already imported

    events = story(common_pb2, events_pb2, datetime.datetime.now(datetime.timezone.utc))
    publisher = EventPublisher(args.nats, user=args.user, password=args.password,
                               timeout=args.timeout)
    try:
        with publisher:
            acks = {}
            for event in events:
                ack = publisher.publish_event(event)
                acks[event.event_id] = ack
                report(event, ack)
            # An outbox retry: the same purchase event (same event_id) again.
            purchase = events[1]
            again = publisher.publish_event(purchase)
            report(purchase, again)
            if not again.duplicate or again.seq != acks[purchase.event_id].seq:
                print("error: the repeated purchase was not recognised as a duplicate: %r"
                      % (again,), file=sys.stderr)
                return 1
    except PublishError as e:
        print("error: cannot publish to %s: %s: %s" % (without_secrets(args.nats),
                                                       type(e).__name__, e),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
