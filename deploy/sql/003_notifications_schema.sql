-- 003: the notification-dispatcher's tables (docs/notification-dispatcher.md).
-- Idempotent like every migration; records itself in realtime.schema_migrations.
CREATE SCHEMA IF NOT EXISTS realtime;

-- One row per notification per recipient. The dispatcher inserts with
-- ON CONFLICT (source_event_id, user_id) DO NOTHING, so an event delivered
-- twice (JetStream redelivery, or a producer publishing it again with
-- another Nats-Msg-Id) never creates a second row for a user.
--   created_at   millisecond precision and strictly increasing per user (the
--                insert takes the later of now and the user's newest + 1 ms),
--                so paging with `before` (the browser sees milliseconds)
--                neither skips nor repeats a row.
--   published    the row's room messages are stored in the ROOMS stream
--                (Nats-Msg-Id "ntf-<notification_id>"); rows left false by a
--                crash are published on the event's redelivery or by the
--                periodic sweep.
--   room_extra   a RoomMessage (protobuf) published to the user's room just
--                before the notification: the answer or resolution itself.
CREATE TABLE IF NOT EXISTS realtime.notifications (
    notification_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id         text        NOT NULL,
    kind            text        NOT NULL,
    title           text        NOT NULL,
    body            text        NOT NULL DEFAULT '',
    link            text        NOT NULL DEFAULT '',
    course_id       text        NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT date_trunc('milliseconds', now()),
    read_at         timestamptz,
    source_event_id text        NOT NULL,
    published       boolean     NOT NULL DEFAULT false,
    published_at    timestamptz,
    room_extra      bytea,
    CONSTRAINT notifications_once_per_user UNIQUE (source_event_id, user_id)
);
-- notify.v1.list: a user's newest first, and the unread ones (list and count).
CREATE INDEX IF NOT EXISTS notifications_user_created_idx
    ON realtime.notifications (user_id, created_at DESC, notification_id DESC);
CREATE INDEX IF NOT EXISTS notifications_user_unread_idx
    ON realtime.notifications (user_id, created_at DESC) WHERE read_at IS NULL;
-- The sweep's work list stays small: only rows not yet in the ROOMS stream.
CREATE INDEX IF NOT EXISTS notifications_unpublished_idx
    ON realtime.notifications (notification_id) WHERE NOT published;

-- Who raised a confusion or asked a question (from ConfusionCreated /
-- QuestionCreated): ws-edge publishes the instructor's ConfusionResolved /
-- QuestionAnswered without the student, so the dispatcher looks them up
-- here. The first record of an id wins (redeliveries change nothing).
CREATE TABLE IF NOT EXISTS realtime.notify_threads (
    kind            text        NOT NULL CHECK (kind IN ('confusion', 'question')),
    thread_id       text        NOT NULL,
    course_id       text        NOT NULL,
    lesson_id       text        NOT NULL DEFAULT '',
    student_user_id text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, thread_id)
);

INSERT INTO realtime.schema_migrations (version) VALUES ('003_notifications_schema')
    ON CONFLICT (version) DO NOTHING;
