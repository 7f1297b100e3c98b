#!/usr/bin/python3
"""Python half of integration.test_proto_python (tests/integration/test_proto_python.c).

Django compiles the same .proto files with `protoc --python_out`; this script
uses that generated code to prove the wire format agrees with protobuf-c.

    proto_roundtrip.py encode   DIR   write py_*.bin (and py_*.json, canonical
                                      proto3 JSON) for the C side to check
    proto_roundtrip.py decode   DIR   read c_*.bin written by the C side and
                                      check every field
    proto_roundtrip.py describe DIR   write DIR/descriptors.txt: the JSON name
                                      of every field and the members of every
                                      oneof, as protoc sees them

DIR also holds the generated unpuzzle/rt/v1/*_pb2.py. Exit status 0 means
every check passed; a failure names the field on stderr. Run it with Debian's
/usr/bin/python3 (python3-protobuf).
"""

import os
import sys

# The values both sides agree on (test_proto_python.c has the same numbers).
TS_CONFUSION = (1795627800, 123000000)
TS_PURCHASE = (1795627801, 0)
TS_ENROLLMENT = (1795627802, 999999999)
TS_METRICS_END = (1795631400, 0)
TS_ROOM = (1795627803, 500000000)
BIG_INT64 = 9007199254740993  # 2^53 + 1: not exact as a double
MAX_UINT64 = 18446744073709551615


MODULES = ("analytics", "analytics_state", "auth", "common", "events", "notify", "presence", "rooms")


def load(directory):
    """The generated modules of every v1 .proto file, by short name."""
    import importlib
    sys.path.insert(0, directory)
    return {m: importlib.import_module("unpuzzle.rt.v1.%s_pb2" % m) for m in MODULES}


class Checker:
    def __init__(self):
        self.failures = 0

    def eq(self, what, got, want):
        if got != want:
            print("python: %s: got %r, want %r" % (what, got, want), file=sys.stderr)
            self.failures += 1

    def true(self, what, cond):
        if not cond:
            print("python: %s: check failed" % what, file=sys.stderr)
            self.failures += 1


def write(directory, name, data):
    with open(os.path.join(directory, name), "wb") as f:
        f.write(data)


def encode(directory):
    from google.protobuf import json_format

    pb = load(directory)
    common_pb2, events_pb2 = pb["common"], pb["events"]

    cc = events_pb2.ConfusionCreated()
    cc.event_id = "e-1"
    cc.occurred_at.seconds, cc.occurred_at.nanos = TS_CONFUSION
    cc.confusion_id = "c-1"
    cc.course_id = "course-42"
    cc.lesson_id = "lesson-7"
    cc.user_id = "user-1"
    cc.video_timestamp_sec = 61.5
    cc.text = "Ça bloque ici 🙂"

    pc = events_pb2.PurchaseCompleted()
    pc.event_id = "e-2"
    pc.occurred_at.seconds, pc.occurred_at.nanos = TS_PURCHASE
    pc.purchase_id = "p-1"
    pc.course_id = "course-42"
    pc.user_id = "user-2"
    pc.amount_cents = BIG_INT64
    pc.currency = "USD"

    ec = events_pb2.EnrollmentChanged()
    ec.event_id = "e-3"
    ec.occurred_at.seconds, ec.occurred_at.nanos = TS_ENROLLMENT
    ec.course_id = "course-42"
    ec.user_id = "user-3"
    ec.change = events_pb2.ENROLLMENT_CHANGE_COMPLETED
    ec.role = common_pb2.MEMBER_ROLE_INSTRUCTOR
    ec.actor_user_id = "admin-1"

    write(directory, "py_confusion_created.bin", cc.SerializeToString())
    write(directory, "py_purchase_completed.bin", pc.SerializeToString())
    write(directory, "py_enrollment_changed.bin", ec.SerializeToString())
    # Canonical proto3 JSON (no enums in these two): rt_pbjson must read it.
    write(directory, "py_confusion_created.json",
          json_format.MessageToJson(cc, indent=None).encode("utf-8"))
    write(directory, "py_purchase_completed.json",
          json_format.MessageToJson(pc, indent=None).encode("utf-8"))
    return 0


def read(directory, name):
    with open(os.path.join(directory, name), "rb") as f:
        return f.read()


def decode(directory):
    pb = load(directory)
    analytics_pb2, common_pb2 = pb["analytics"], pb["common"]
    events_pb2, rooms_pb2 = pb["events"], pb["rooms"]
    c = Checker()

    cm = analytics_pb2.CourseMetrics()
    cm.ParseFromString(read(directory, "c_course_metrics.bin"))
    c.eq("CourseMetrics.course_id", cm.course_id, "course-42")
    c.eq("CourseMetrics.end", (cm.end.seconds, cm.end.nanos), TS_METRICS_END)
    c.eq("CourseMetrics.window_s", cm.window_s, 3600)
    c.true("CourseMetrics.learn_rate set", cm.HasField("learn_rate"))
    c.eq("CourseMetrics.learn_rate", cm.learn_rate.value, 12.25)
    c.true("CourseMetrics.execution_rate unset", not cm.HasField("execution_rate"))
    c.true("CourseMetrics.execution_pace_s unset", not cm.HasField("execution_pace_s"))
    c.true("CourseMetrics.avg_progress set", cm.HasField("avg_progress"))
    c.eq("CourseMetrics.avg_progress", cm.avg_progress.value, 0.0)
    c.eq("CourseMetrics.learn_rate_band", cm.learn_rate_band, "very_good")
    c.eq("CourseMetrics.active_student_count", cm.active_student_count, 2)
    c.eq("CourseMetrics.active_students",
         [(s.user_id, s.lesson_id) for s in cm.active_students],
         [("user-1", "lesson-7"), ("user-2", "")])
    c.eq("CourseMetrics.confusions.total", cm.confusions.total, MAX_UINT64)
    c.eq("CourseMetrics.confusions.open", cm.confusions.open, 3)
    c.eq("CourseMetrics.revenue.currencies",
         [(r.currency, r.today_cents, r.all_time_cents) for r in cm.revenue.currencies],
         [("USD", -500, BIG_INT64), ("EUR", 0, 100)])
    c.true("CourseMetrics.revenue.last_purchase unset", not cm.revenue.HasField("last_purchase"))
    c.eq("CourseMetrics.daily", [(d.date, d.learn_rate.value, d.HasField("execution_rate"),
                                  d.watch_minutes) for d in cm.daily],
         [("2026-11-25", 1.5, False, 90.25)])
    c.eq("CourseMetrics.enrolled_students", cm.enrolled_students, 4000000000)

    rm = rooms_pb2.RoomMessage()
    rm.ParseFromString(read(directory, "c_room_message.bin"))
    c.eq("RoomMessage.type", rm.type, rooms_pb2.ROOM_MESSAGE_TYPE_PURCHASE)
    c.eq("RoomMessage.action", rm.action, rooms_pb2.ROOM_ACTION_CREATE)
    c.eq("RoomMessage.timestamp", (rm.timestamp.seconds, rm.timestamp.nanos), TS_ROOM)
    c.eq("RoomMessage.user_id", rm.user_id, "user-2")
    c.eq("RoomMessage.event_id", rm.event_id, "e-2")
    c.eq("RoomMessage.payload", rm.WhichOneof("payload"), "purchase")
    c.eq("RoomMessage.purchase.amount_cents", rm.purchase.amount_cents, BIG_INT64)
    c.eq("RoomMessage.purchase.currency", rm.purchase.currency, "EUR")
    c.eq("RoomMessage.purchase.occurred_at",
         (rm.purchase.occurred_at.seconds, rm.purchase.occurred_at.nanos), TS_PURCHASE)

    nr = events_pb2.NotificationRequested()
    nr.ParseFromString(read(directory, "c_notification_requested.bin"))
    c.eq("NotificationRequested.recipient", nr.WhichOneof("recipient"), "course_id")
    c.eq("NotificationRequested.course_id", nr.course_id, "course-42")
    c.eq("NotificationRequested.title", nr.title, "Nouveau chapitre — « Ünïcödé »")

    ps = events_pb2.PromptShown()
    ps.ParseFromString(read(directory, "c_prompt_shown.bin"))
    c.eq("PromptShown.kind", ps.kind, common_pb2.PROMPT_KIND_REFLECTION)
    return 1 if c.failures else 0


def describe(directory):
    modules = load(directory)
    lines = []

    def walk(desc):
        for f in desc.fields:
            lines.append("field %s %s %s" % (desc.full_name, f.name, f.json_name))
        for o in desc.oneofs:
            # proto3 `optional` makes a synthetic oneof "_<field>": no group.
            if len(o.fields) == 1 and o.name == "_" + o.fields[0].name:
                continue
            lines.append("oneof %s %s %s" % (desc.full_name, o.name,
                                             " ".join(f.name for f in o.fields)))
        for nested in desc.nested_types:
            walk(nested)

    seen = set()
    for module in modules.values():
        for desc in module.DESCRIPTOR.message_types_by_name.values():
            if desc.full_name not in seen:
                seen.add(desc.full_name)
                walk(desc)
    with open(os.path.join(directory, "descriptors.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return 0


def main(argv):
    if len(argv) != 3 or argv[1] not in ("encode", "decode", "describe"):
        print(__doc__, file=sys.stderr)
        return 2
    return {"encode": encode, "decode": decode, "describe": describe}[argv[1]](argv[2])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
