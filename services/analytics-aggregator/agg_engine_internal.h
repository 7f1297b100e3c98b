/*
 * agg_engine_internal: the state behind agg_engine.h, shared by its three
 * source files and by nothing else:
 *   agg_engine.c             create/destroy, apply (dedupe, lateness, state
 *                            updates per event kind), prune
 *   agg_engine_metrics.c     compute: CourseMetrics from a course's state
 *   agg_engine_checkpoint.c  save/load: a course's state <-> bytes
 *
 * Per course (agg_course), all in event time (ns) and integers:
 *   seen         event ids for dedupe, two queues in arrival order: most
 *                events until they fall behind the lateness (a duplicate
 *                of an older one is late, and late events only touch
 *                idempotent state), purchases, confusions and questions
 *                until the retention (they count all-time figures).
 *   lessons      every lesson id the course has seen, interned (pointers
 *                compare), with its latest LessonUpserted.
 *   students     every user the course has seen (agg_student): latest
 *                enrollment, completed lessons, heartbeats not yet folded,
 *                folded pairs inside the window, per-day sums, prompts,
 *                last activity, open confusions raised.
 *   confusions, questions   one record per id.
 *   currencies   all-time sums and recent per-day sums; the last purchase.
 */
#ifndef AGG_ENGINE_INTERNAL_H
#define AGG_ENGINE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agg_engine.h"
#include "rt_map.h"

#define AGG_SERIES_DAYS 30
#define AGG_PAIR_MAX_GAP_NS (60 * AGG_NS_PER_S)
#define AGG_TOPIC_BUCKET_S 30
#define AGG_TOP_TOPICS 5
#define AGG_STATE_FORMAT 1

typedef struct agg_lesson {
    char *id;
    bool upserted; /* a LessonUpserted was seen */
    bool deleted;  /* what the latest one said */
    int64_t upserted_at;
    uint64_t upserted_arrival;
} agg_lesson;

/* An on-time heartbeat not yet folded into a pair. */
typedef struct agg_beat {
    int64_t at;
    uint64_t arrival;
    agg_lesson *lesson;
    int64_t position_us;
} agg_beat;

/* A heartbeat pair that counts: it belongs to the window and the day of
 * `at` (its later event). */
typedef struct agg_pair {
    int64_t at;
    int64_t active_ns;
    int64_t watched_us;
} agg_pair;

typedef struct agg_day {
    int64_t day;
    int64_t active_ns;
    int64_t watched_us;
} agg_day;

typedef struct agg_prompt {
    bool shown, completed; /* on-time events only */
    int64_t shown_at;      /* earliest on-time PromptShown */
    int64_t completed_at;  /* earliest on-time PromptResponded{completed} */
} agg_prompt;

typedef struct agg_student {
    char *user_id;
    /* Latest EnrollmentChanged by (occurred_at, arrival). */
    bool enrollment_known;
    int64_t enrollment_at;
    uint64_t enrollment_arrival;
    int enrollment_change; /* Unpuzzle__Rt__V1__EnrollmentChange */
    int enrollment_role;   /* Unpuzzle__Rt__V1__MemberRole */
    /* LessonCompleted, each lesson once (interned pointers). */
    agg_lesson **completed;
    size_t n_completed, cap_completed;
    /* On-time heartbeats that a later on-time one could still come between,
     * ascending (at, arrival): those at or after latest - lateness, and the
     * one before them. */
    agg_beat *beats;
    size_t n_beats, cap_beats;
    /* Folded pairs inside the window, ascending: pairs[pairs_head..n_pairs). */
    agg_pair *pairs;
    size_t pairs_head, n_pairs, cap_pairs;
    /* Folded pairs per day, ascending, the 30-day series only. */
    agg_day *days;
    size_t n_days, cap_days;
    rt_strmap *prompts; /* prompt_id -> agg_prompt; NULL until the first */
    bool active_known;
    int64_t last_active_at;
    uint32_t open_confusions; /* raised by this user, created and not resolved */
} agg_student;

typedef struct agg_confusion {
    bool created, created_late;
    bool resolved;         /* any resolution, late ones included */
    bool resolved_on_time; /* an on-time resolution; resolved_at is the earliest */
    int64_t created_at, resolved_at, touched_at;
    agg_lesson *lesson;  /* NULL until created */
    agg_student *user;   /* NULL until created */
    uint32_t bucket_sec; /* 30-second bucket start of video_timestamp_sec */
} agg_confusion;

typedef struct agg_question {
    bool created, created_late;
    bool answered, answered_on_time;
    int64_t created_at, answered_at, touched_at;
    agg_student *user; /* NULL until created */
} agg_question;

typedef struct agg_day_amount {
    int64_t day;
    int64_t cents;
} agg_day_amount;

typedef struct agg_currency {
    char code[4];
    int64_t all_time;
    agg_day_amount *days; /* on-time purchases per day, ascending, this month on */
    size_t n_days, cap_days;
} agg_currency;

typedef struct agg_purchase {
    char *purchase_id;
    char *user_id;
    int64_t amount;
    char currency[4];
    int64_t at;
    uint64_t arrival;
} agg_purchase;

typedef struct agg_seen {
    char *event_id;
    int64_t at;
} agg_seen;

/* A ring of seen ids in arrival order. */
typedef struct agg_seen_queue {
    agg_seen *items;
    size_t head, count, cap;
} agg_seen_queue;

typedef struct agg_course {
    char *course_id;
    bool latest_known;
    int64_t latest;
    uint64_t arrivals;   /* arrival numbers handed out */
    uint64_t changes;    /* events applied */
    uint64_t stream_seq; /* highest stream sequence applied */
    rt_strmap *seen;     /* event_id -> SEEN (membership only) */
    agg_seen_queue seen_short, seen_long;
    rt_strmap *lessons;          /* lesson_id -> agg_lesson */
    rt_strmap *students;         /* user_id -> agg_student */
    rt_strmap *confusions;       /* confusion_id -> agg_confusion */
    rt_strmap *questions;        /* question_id -> agg_question */
    uint64_t confusions_created; /* records with created, plus pruned ones */
    uint64_t confusions_pruned;
    uint64_t confusions_open, questions_open;
    agg_currency *currencies;
    size_t n_currencies;
    bool has_last_purchase;
    agg_purchase last_purchase;
} agg_course;

struct agg_engine {
    agg_config cfg;
    rt_strmap *courses; /* course_id -> agg_course */
    agg_engine_stats stats;
};

/* ---- shared by the three files (agg_engine.c) ---- */

agg_course *agg_course_new(const char *course_id);
void agg_course_free(agg_course *course);
/* The interned lesson / the user's record, created on first use. */
agg_lesson *agg_course_lesson(agg_course *course, const char *lesson_id);
agg_student *agg_course_student(agg_course *course, const char *user_id);
agg_currency *agg_course_currency(agg_course *course, const char *code);
/* Remembers an event id in a queue (the caller checked it is new). */
void agg_course_remember(agg_course *course, agg_seen_queue *queue, const char *event_id,
                         int64_t at);
/* Adds a lesson to the user's completed lessons (once). */
void agg_student_complete(agg_student *student, agg_lesson *lesson);
/* The pair of two consecutive heartbeats: false when it adds nothing (its
 * gap is not in (0, 60 s]). */
bool agg_pair_of(agg_pair *out, const agg_beat *earlier, const agg_beat *later);
/* True when the user's latest enrollment makes them a student enrolled now. */
bool agg_student_enrolled(const agg_student *student);
/* a + b, saturated at the int64 limits (money sums). */
int64_t agg_add_saturated(int64_t a, int64_t b);
/* Recomputes the open counters from the records (after a load). */
void agg_course_recount(agg_course *course);

#endif
