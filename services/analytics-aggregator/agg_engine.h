/*
 * agg_engine: the analytics-aggregator's computational core. Domain events
 * in, CourseMetrics out, exactly as spec/analytics.md defines them (the
 * formulas, and how this code keeps them, are in docs/analytics.md).
 *
 * Pure C: no NATS, no PostgreSQL, no clock of its own (the caller passes
 * the wall clock). The service around it decodes events, calls
 * agg_engine_apply(), computes a course's metrics at most once per publish
 * interval, and checkpoints a course with agg_engine_save_course() in the
 * same transaction as the stream sequence it has applied.
 *
 * Courses are independent: nothing in one course's state depends on
 * another's, so replicas that own different courses (a stable partition of
 * course_id) agree, and a course moves between replicas as one checkpoint.
 *
 * Threads: an engine is not thread-safe; it belongs to one thread (or is
 * guarded by its owner's lock). Several engines may run side by side, e.g.
 * one per worker thread with courses split between them.
 *
 * Costs: agg_engine_apply() is O(1) expected per event (a few hash lookups
 * and, for a heartbeat, an insertion near the end of that student's short
 * list of recent heartbeats); agg_engine_compute() and the checkpoint
 * functions are linear in the course's state; memory per course is bounded
 * by what the window, the lateness, the 30-day series and the id retention
 * keep (agg_engine_prune*).
 */
#ifndef AGG_ENGINE_H
#define AGG_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "agg_clock.h"
#include "agg_presence.h"
#include "rt_proto.h"
#include "rt_room.h"
#include "rt_status.h"

typedef struct agg_engine agg_engine;

typedef struct agg_config {
    agg_clock_mode clock; /* ANALYTICS_CLOCK: wall (default) or event */
    int64_t window_s;     /* ANALYTICS_WINDOW_S: the window W (default 3600) */
    int64_t lateness_s;   /* ANALYTICS_LATENESS_S (default 120) */
    /* Wall mode: an event more than this ahead of the wall clock at arrival
     * is rejected (default 300). */
    int64_t future_s;
    /* How long (event time, behind the course's latest occurred_at) the
     * ids of purchase, confusion and question events, and the records of
     * resolved confusions and answered questions, are kept: a duplicate of
     * such an event arriving later than that would count again (default
     * 31 days; at least the window plus the lateness). */
    int64_t retention_s;
    /* Whether checkpoints keep the event ids of the lateness window (the
     * ids kept for dedupe of ordinary events). Default true: a loaded
     * course is exactly the saved one. The service turns it off: after a
     * restart it skips what it applied by stream sequence, and JetStream
     * drops a repeated Nats-Msg-Id within EVENTS_DUPLICATE_WINDOW_S, so
     * these ids (most of a busy course's state) need not be written every
     * second. */
    bool checkpoint_recent_ids;
} agg_config;

/* The defaults above. */
void agg_config_defaults(agg_config *cfg);

/* What agg_engine_apply() did with an event. */
typedef enum agg_outcome {
    AGG_APPLIED = 0,     /* on time: counted everywhere it belongs */
    AGG_APPLIED_LATE,    /* late: state and all-time figures only (late_events_total) */
    AGG_DUPLICATE,       /* its event_id was already applied: dropped */
    AGG_REJECTED_FUTURE, /* wall mode: too far ahead of the wall clock (future_events_total) */
    AGG_IGNORED,         /* an EVENTS message that is no course's (notifications) */
    AGG_INVALID,         /* not an event, or breaks agg_events.h's rules */
} agg_outcome;

/* How an event arrived. */
typedef struct agg_arrival {
    int64_t wall_ms;     /* wall clock at arrival (wall mode: future check) */
    uint64_t stream_seq; /* JetStream sequence, 0 when none; the course keeps the highest */
} agg_arrival;

/* Counters over the engine's life (not checkpointed). */
typedef struct agg_engine_stats {
    uint64_t applied;
    uint64_t late;
    uint64_t duplicates;
    uint64_t future;
    uint64_t ignored;
    uint64_t invalid;
} agg_engine_stats;

/* What a course's state is at now (agg_engine_course_info). */
typedef struct agg_course_info {
    int64_t latest_ns;   /* latest occurred_at applied */
    uint64_t changes;    /* events applied so far: compare to publish "on each change" */
    uint64_t stream_seq; /* highest stream sequence applied (0: none given) */
} agg_course_info;

/* RT_ERR_CONFIG naming the field when cfg is out of range (window and
 * retention >= 1 s, lateness and future >= 0, retention >= window +
 * lateness, everything <= 10 years). The engine copies cfg. */
rt_status agg_engine_create(agg_engine **out, const agg_config *cfg);
void agg_engine_destroy(agg_engine *engine); /* NULL harmless */

/*
 * Applies one event: any message of events.proto (typically unpacked from
 * an evt.v1.> message; agg_event_descriptor() maps the subject to its type).
 * The caller keeps ownership of `event`; nothing of it is kept.
 *
 * In this order: an event that breaks agg_events.h's rules is
 * RT_ERR_INVALID_ARG (outcome AGG_INVALID); a repeated event_id is
 * AGG_DUPLICATE ("the first arrival wins"); in wall mode an event more than
 * future_s ahead of arrival->wall_ms is AGG_REJECTED_FUTURE (not remembered,
 * so a later retry counts); an event whose occurred_at is more than the
 * lateness behind the course's latest occurred_at is late. Every other
 * outcome is RT_OK.
 */
rt_status agg_engine_apply(agg_outcome *out, agg_engine *engine, const ProtobufCMessage *event,
                           const agg_arrival *arrival);

/*
 * The metrics of course `course_id` at wall clock `now_wall_ms` (ignored
 * for `end` in event mode; used for presence): a new CourseMetrics, every
 * field set as spec/analytics.md says, students included (strip
 * `students` before sending to course: rooms). `presence` may be NULL (no
 * active students). The caller frees *out with agg_metrics_free().
 * RT_ERR_NOT_FOUND when the engine holds no state for the course.
 * Read-only: computing never changes a figure computed later.
 */
rt_status agg_engine_compute(Unpuzzle__Rt__V1__CourseMetrics **out, const agg_engine *engine,
                             const char *course_id, int64_t now_wall_ms,
                             const agg_presence *presence);

/* Frees a CourseMetrics made by agg_engine_compute() (NULL harmless). */
void agg_metrics_free(Unpuzzle__Rt__V1__CourseMetrics *metrics);

/*
 * Checkpoint: the course's whole state as bytes (an AnalyticsCourseState,
 * proto/unpuzzle/rt/v1/analytics_state.proto). *out is rt_malloc()ed; the
 * caller frees it. RT_ERR_NOT_FOUND for an unknown course.
 */
rt_status agg_engine_save_course(uint8_t **out, size_t *out_len, const agg_engine *engine,
                                 const char *course_id);

/*
 * Restores a course from agg_engine_save_course()'s bytes, replacing any
 * state the engine holds for that course; every figure computed afterwards
 * is what the saved engine would have computed. RT_ERR_DECODE (engine
 * unchanged) for bytes that are not a consistent checkpoint. The course id
 * is written to *out_course_id if not NULL (RT_ID_MAX + 1 bytes).
 */
rt_status agg_engine_load_course(agg_engine *engine, const uint8_t *data, size_t len,
                                 char *out_course_id);

/* Forgets a course (its partition moved to another replica). */
void agg_engine_drop_course(agg_engine *engine, const char *course_id);

/*
 * Drops what can no longer change any figure of the course: heartbeat
 * pairs before the window, days before the 30-day series, revenue days
 * before the month, prompts before both, and resolved confusions and
 * answered questions past the retention. Metrics computed afterwards are
 * unchanged (as long as the wall clock does not step back). Call it now and
 * then (e.g. every minute); agg_engine_apply() already prunes as it goes
 * what it touches.
 */
void agg_engine_prune_course(agg_engine *engine, const char *course_id, int64_t now_wall_ms);
void agg_engine_prune(agg_engine *engine, int64_t now_wall_ms);

/* RT_ERR_NOT_FOUND for an unknown course. */
rt_status agg_engine_course_info(agg_course_info *out, const agg_engine *engine,
                                 const char *course_id);
size_t agg_engine_course_count(const agg_engine *engine);
/* Calls fn for every course held (do not add or drop courses inside). */
void agg_engine_each_course(const agg_engine *engine, void (*fn)(void *arg, const char *course_id),
                            void *arg);
/* Calls fn for every instructor of the course (latest EnrollmentChanged
 * with role instructor, added or completed): whose instructor: rooms get
 * the course's updates. Nothing for an unknown course. */
void agg_engine_each_instructor(const agg_engine *engine, const char *course_id,
                                void (*fn)(void *arg, const char *user_id), void *arg);
void agg_engine_stats_get(agg_engine_stats *out, const agg_engine *engine);
const agg_config *agg_engine_config(const agg_engine *engine);

/* "applied", "late", "duplicate", ... (metric labels, logs). */
const char *agg_outcome_name(agg_outcome outcome);

#endif
