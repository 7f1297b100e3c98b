-- 002: the analytics-aggregator's checkpoints (docs/analytics-aggregator.md).
-- Courses are split into ANALYTICS_PARTITIONS partitions by a stable hash of
-- course_id. A replica owns a partition while it holds the PostgreSQL
-- advisory lock (class 1095650418, partition) on the session it also writes
-- the partition's checkpoints with, so only the owner can commit them.
CREATE SCHEMA IF NOT EXISTS realtime;

-- How far the EVENTS stream has been applied for a partition: every event of
-- the partition's courses with a stream sequence <= applied_seq is in the
-- course states below (same transaction).
CREATE TABLE IF NOT EXISTS realtime.analytics_partitions (
    partition_count integer NOT NULL,
    partition       integer NOT NULL,
    applied_seq     bigint  NOT NULL DEFAULT 0,
    owner           text    NOT NULL DEFAULT '',
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (partition_count, partition)
);

-- One course's whole aggregation state (an AnalyticsCourseState, see
-- proto/unpuzzle/rt/v1/analytics_state.proto) and the highest stream
-- sequence applied to it. course_hash (FNV-1a of course_id) decides the
-- partition: course_hash % partition_count, so the count may change.
CREATE TABLE IF NOT EXISTS realtime.analytics_courses (
    course_id   text   PRIMARY KEY,
    course_hash bigint NOT NULL,
    stream_seq  bigint NOT NULL,
    state       bytea  NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
-- Checkpoints are rewritten every second and hold little that compresses
-- well: store them uncompressed (no pglz work on every write).
ALTER TABLE realtime.analytics_courses ALTER COLUMN state SET STORAGE EXTERNAL;

-- Live replicas (heartbeat every second): each aims to own
-- ceil(partitions / live replicas) partitions.
CREATE TABLE IF NOT EXISTS realtime.analytics_replicas (
    replica_id text PRIMARY KEY,
    seen_at    timestamptz NOT NULL DEFAULT now()
);

INSERT INTO realtime.schema_migrations (version) VALUES ('002_analytics_schema')
    ON CONFLICT DO NOTHING;
