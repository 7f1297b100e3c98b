-- 001: schema "realtime" and what auth decides from.
-- Every migration is idempotent (safe to apply twice) and records itself in
-- realtime.schema_migrations. Apply in file-name order: scripts/migrate.sh.
CREATE SCHEMA IF NOT EXISTS realtime;

CREATE TABLE IF NOT EXISTS realtime.schema_migrations (
    version    text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- Platform role of a user. Without a row, auth uses the token's
-- app_metadata.role, else "student".
CREATE TABLE IF NOT EXISTS realtime.user_roles (
    user_id text PRIMARY KEY,
    role    text NOT NULL CHECK (role IN ('student', 'instructor', 'admin'))
);

-- Who belongs to which course, kept current by auth from
-- evt.v1.enrollment.changed (Django may also write rows directly: the extra
-- columns have defaults). A removed enrollment stays as a row with
-- status 'removed', so an older event arriving late cannot resurrect it:
-- the row changes only for an event at least as recent as changed_at.
CREATE TABLE IF NOT EXISTS realtime.course_members (
    course_id  text NOT NULL,
    user_id    text NOT NULL,
    role       text NOT NULL CHECK (role IN ('student', 'instructor')),
    status     text NOT NULL DEFAULT 'added' CHECK (status IN ('added', 'removed', 'completed')),
    changed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (course_id, user_id)
);
CREATE INDEX IF NOT EXISTS course_members_user_idx ON realtime.course_members (user_id);

-- Which course a lesson belongs to, kept current from evt.v1.lesson.upserted.
-- A deleted lesson keeps its row (deleted = true) for the same reason.
CREATE TABLE IF NOT EXISTS realtime.lessons (
    lesson_id  text PRIMARY KEY,
    course_id  text NOT NULL,
    deleted    boolean NOT NULL DEFAULT false,
    changed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS lessons_course_idx ON realtime.lessons (course_id);

INSERT INTO realtime.schema_migrations (version) VALUES ('001_auth_schema')
    ON CONFLICT (version) DO NOTHING;
