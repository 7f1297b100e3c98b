/*
 * agg_engine: create/destroy, apply (dedupe, lateness, state per event kind)
 * and prune. Metrics are computed in agg_engine_metrics.c, checkpoints in
 * agg_engine_checkpoint.c; the state is described in agg_engine_internal.h.
 */
#include "agg_engine_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agg_events.h"
#include "rt_alloc.h"

/* Value of every entry of a course's `seen` map (membership only). */
static char SEEN;

#define MAX_CONFIG_S (INT64_C(10) * 366 * 86400)

/* ---- configuration ---- */

void agg_config_defaults(agg_config *cfg)
{
    cfg->clock = AGG_CLOCK_WALL;
    cfg->window_s = 3600;
    cfg->lateness_s = 120;
    cfg->future_s = 300;
    cfg->retention_s = 31 * 86400;
    cfg->checkpoint_recent_ids = true;
}

static rt_status check_config(const agg_config *cfg)
{
    if (cfg->clock != AGG_CLOCK_WALL && cfg->clock != AGG_CLOCK_EVENT)
        return RT_ERR(RT_ERR_CONFIG, "clock: not wall or event");
    if (cfg->window_s < 1 || cfg->window_s > MAX_CONFIG_S)
        return RT_ERR(RT_ERR_CONFIG, "window_s: not in [1 s, 10 years]");
    if (cfg->lateness_s < 0 || cfg->lateness_s > MAX_CONFIG_S)
        return RT_ERR(RT_ERR_CONFIG, "lateness_s: not in [0, 10 years]");
    if (cfg->future_s < 0 || cfg->future_s > MAX_CONFIG_S)
        return RT_ERR(RT_ERR_CONFIG, "future_s: not in [0, 10 years]");
    if (cfg->retention_s < cfg->window_s + cfg->lateness_s || cfg->retention_s > MAX_CONFIG_S)
        return RT_ERR(RT_ERR_CONFIG, "retention_s: not in [window_s + lateness_s, 10 years]");
    return RT_OK;
}

rt_status agg_engine_create(agg_engine **out, const agg_config *cfg)
{
    rt_status rc;
    if (!out || !cfg)
        return RT_ERR(RT_ERR_INVALID_ARG, "no config");
    if ((rc = check_config(cfg)) != RT_OK)
        return rc;
    agg_engine *e = rt_calloc(1, sizeof(*e));
    e->cfg = *cfg;
    e->courses = rt_strmap_create();
    *out = e;
    return RT_OK;
}

static void free_course_entry(void *arg, const char *key, void *value)
{
    (void)arg;
    (void)key;
    agg_course_free(value);
}

void agg_engine_destroy(agg_engine *e)
{
    if (!e)
        return;
    rt_strmap_each(e->courses, free_course_entry, NULL);
    rt_strmap_destroy(e->courses);
    free(e);
}

/* ---- course state ---- */

agg_course *agg_course_new(const char *course_id)
{
    agg_course *c = rt_calloc(1, sizeof(*c));
    c->course_id = rt_strdup(course_id);
    c->seen = rt_strmap_create();
    c->lessons = rt_strmap_create();
    c->students = rt_strmap_create();
    c->confusions = rt_strmap_create();
    c->questions = rt_strmap_create();
    return c;
}

static void free_plain(void *arg, const char *key, void *value)
{
    (void)arg;
    (void)key;
    free(value);
}

static void free_lesson(void *arg, const char *key, void *value)
{
    agg_lesson *l = value;
    (void)arg;
    (void)key;
    free(l->id);
    free(l);
}

static void free_student(void *arg, const char *key, void *value)
{
    agg_student *s = value;
    (void)arg;
    (void)key;
    if (s->prompts) {
        rt_strmap_each(s->prompts, free_plain, NULL);
        rt_strmap_destroy(s->prompts);
    }
    free(s->completed);
    free(s->beats);
    free(s->pairs);
    free(s->days);
    free(s->user_id);
    free(s);
}

static void free_queue(agg_seen_queue *q)
{
    for (size_t i = 0; i < q->count; i++)
        free(q->items[(q->head + i) % q->cap].event_id);
    free(q->items);
}

void agg_course_free(agg_course *c)
{
    if (!c)
        return;
    rt_strmap_destroy(c->seen);
    free_queue(&c->seen_short);
    free_queue(&c->seen_long);
    rt_strmap_each(c->lessons, free_lesson, NULL);
    rt_strmap_destroy(c->lessons);
    rt_strmap_each(c->students, free_student, NULL);
    rt_strmap_destroy(c->students);
    rt_strmap_each(c->confusions, free_plain, NULL);
    rt_strmap_destroy(c->confusions);
    rt_strmap_each(c->questions, free_plain, NULL);
    rt_strmap_destroy(c->questions);
    for (size_t i = 0; i < c->n_currencies; i++)
        free(c->currencies[i].days);
    free(c->currencies);
    free(c->last_purchase.purchase_id);
    free(c->last_purchase.user_id);
    free(c->course_id);
    free(c);
}

agg_lesson *agg_course_lesson(agg_course *c, const char *lesson_id)
{
    agg_lesson *l = rt_strmap_get(c->lessons, lesson_id);
    if (!l) {
        l = rt_calloc(1, sizeof(*l));
        l->id = rt_strdup(lesson_id);
        rt_strmap_put(c->lessons, lesson_id, l);
    }
    return l;
}

agg_student *agg_course_student(agg_course *c, const char *user_id)
{
    agg_student *s = rt_strmap_get(c->students, user_id);
    if (!s) {
        s = rt_calloc(1, sizeof(*s));
        s->user_id = rt_strdup(user_id);
        rt_strmap_put(c->students, user_id, s);
    }
    return s;
}

agg_currency *agg_course_currency(agg_course *c, const char *code)
{
    for (size_t i = 0; i < c->n_currencies; i++) {
        if (strcmp(c->currencies[i].code, code) == 0)
            return &c->currencies[i];
    }
    c->currencies = rt_realloc(c->currencies, (c->n_currencies + 1) * sizeof(*c->currencies));
    agg_currency *cur = &c->currencies[c->n_currencies++];
    memset(cur, 0, sizeof(*cur));
    snprintf(cur->code, sizeof(cur->code), "%s", code);
    return cur;
}

void agg_student_complete(agg_student *s, agg_lesson *lesson)
{
    for (size_t i = 0; i < s->n_completed; i++) {
        if (s->completed[i] == lesson)
            return;
    }
    if (s->n_completed == s->cap_completed) {
        s->cap_completed = s->cap_completed ? s->cap_completed * 2 : 4;
        s->completed = rt_realloc(s->completed, s->cap_completed * sizeof(*s->completed));
    }
    s->completed[s->n_completed++] = lesson;
}

bool agg_student_enrolled(const agg_student *s)
{
    return s->enrollment_known &&
           s->enrollment_role == UNPUZZLE__RT__V1__MEMBER_ROLE__MEMBER_ROLE_STUDENT &&
           (s->enrollment_change == UNPUZZLE__RT__V1__ENROLLMENT_CHANGE__ENROLLMENT_CHANGE_ADDED ||
            s->enrollment_change ==
                UNPUZZLE__RT__V1__ENROLLMENT_CHANGE__ENROLLMENT_CHANGE_COMPLETED);
}

bool agg_pair_of(agg_pair *out, const agg_beat *a, const agg_beat *b)
{
    int64_t dt = b->at - a->at;
    if (dt <= 0 || dt > AGG_PAIR_MAX_GAP_NS)
        return false;
    out->at = b->at;
    out->active_ns = dt;
    out->watched_us = 0;
    if (a->lesson == b->lesson) {
        /* Playing at up to 2x, with 1 s of slack: 0 <= advance <= 2 dt + 1 s
         * (advance in microseconds, dt in nanoseconds). A seek adds nothing. */
        int64_t advance = b->position_us - a->position_us;
        if (advance >= 0 && advance * 1000 <= 2 * dt + AGG_NS_PER_S)
            out->watched_us = advance;
    }
    return true;
}

static void reset_student_open(void *arg, const char *key, void *value)
{
    (void)arg;
    (void)key;
    ((agg_student *)value)->open_confusions = 0;
}

static void recount_confusion(void *arg, const char *key, void *value)
{
    agg_course *c = arg;
    agg_confusion *cf = value;
    (void)key;
    if (!cf->created)
        return;
    c->confusions_created++;
    if (!cf->resolved) {
        c->confusions_open++;
        cf->user->open_confusions++;
    }
}

static void recount_question(void *arg, const char *key, void *value)
{
    agg_course *c = arg;
    agg_question *q = value;
    (void)key;
    if (q->created && !q->answered)
        c->questions_open++;
}

void agg_course_recount(agg_course *c)
{
    rt_strmap_each(c->students, reset_student_open, NULL);
    c->confusions_created = c->confusions_pruned;
    c->confusions_open = 0;
    c->questions_open = 0;
    rt_strmap_each(c->confusions, recount_confusion, c);
    rt_strmap_each(c->questions, recount_question, c);
}

/* ---- seen ids ---- */

static void queue_push(agg_seen_queue *q, char *event_id, int64_t at)
{
    if (q->count == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 16;
        agg_seen *items = rt_malloc(cap * sizeof(*items));
        for (size_t i = 0; i < q->count; i++)
            items[i] = q->items[(q->head + i) % q->cap];
        free(q->items);
        q->items = items;
        q->cap = cap;
        q->head = 0;
    }
    q->items[(q->head + q->count) % q->cap] = (agg_seen){event_id, at};
    q->count++;
}

void agg_course_remember(agg_course *c, agg_seen_queue *q, const char *event_id, int64_t at)
{
    rt_strmap_put(c->seen, event_id, &SEEN);
    queue_push(q, rt_strdup(event_id), at);
}

/* Forgets the ids at the front of the queue older than `horizon`. The queue
 * is in arrival order, so an id may wait behind a newer one; it is still
 * forgotten within one more horizon. */
static void forget_seen(agg_course *c, agg_seen_queue *q, int64_t horizon)
{
    while (q->count && q->items[q->head].at < horizon) {
        agg_seen *front = &q->items[q->head];
        rt_strmap_remove(c->seen, front->event_id);
        free(front->event_id);
        q->head = (q->head + 1) % q->cap;
        q->count--;
    }
}

/* ---- heartbeats ---- */

static void beat_insert(agg_student *s, const agg_beat *b)
{
    if (s->n_beats == s->cap_beats) {
        s->cap_beats = s->cap_beats ? s->cap_beats * 2 : 8;
        s->beats = rt_realloc(s->beats, s->cap_beats * sizeof(*s->beats));
    }
    /* Ascending (at, arrival): a new arrival goes after every equal time. */
    size_t i = s->n_beats;
    while (i > 0 && s->beats[i - 1].at > b->at)
        i--;
    memmove(&s->beats[i + 1], &s->beats[i], (s->n_beats - i) * sizeof(*s->beats));
    s->beats[i] = *b;
    s->n_beats++;
}

static void pairs_push(agg_student *s, const agg_pair *p)
{
    if (s->n_pairs == s->cap_pairs) {
        if (s->pairs_head > 0) {
            /* Reuse the room that pruning left at the front. */
            s->n_pairs -= s->pairs_head;
            memmove(s->pairs, s->pairs + s->pairs_head, s->n_pairs * sizeof(*s->pairs));
            s->pairs_head = 0;
        }
        if (s->n_pairs == s->cap_pairs) {
            s->cap_pairs = s->cap_pairs ? s->cap_pairs * 2 : 16;
            s->pairs = rt_realloc(s->pairs, s->cap_pairs * sizeof(*s->pairs));
        }
    }
    s->pairs[s->n_pairs++] = *p;
}

static void days_add(agg_student *s, int64_t day, const agg_pair *p)
{
    size_t i = s->n_days;
    while (i > 0 && s->days[i - 1].day > day)
        i--;
    if (i > 0 && s->days[i - 1].day == day) {
        s->days[i - 1].active_ns += p->active_ns;
        s->days[i - 1].watched_us += p->watched_us;
        return;
    }
    if (s->n_days == s->cap_days) {
        s->cap_days = s->cap_days ? s->cap_days * 2 : 4;
        s->days = rt_realloc(s->days, s->cap_days * sizeof(*s->days));
    }
    memmove(&s->days[i + 1], &s->days[i], (s->n_days - i) * sizeof(*s->days));
    s->days[i] = (agg_day){day, p->active_ns, p->watched_us};
    s->n_days++;
}

/*
 * Folds the pairs no later on-time heartbeat can come between: every on-time
 * event has occurred_at >= latest - lateness (`boundary`), so a pair whose
 * later heartbeat is before the boundary is final. The last heartbeat
 * before the boundary stays, to start the next pair.
 */
static void fold_beats(agg_student *s, int64_t boundary, int64_t window_floor, int64_t first_day)
{
    size_t k = 0;
    while (k + 1 < s->n_beats && s->beats[k + 1].at < boundary) {
        agg_pair p;
        if (agg_pair_of(&p, &s->beats[k], &s->beats[k + 1])) {
            if (p.at > window_floor)
                pairs_push(s, &p);
            int64_t day = agg_clock_day(p.at);
            if (day >= first_day)
                days_add(s, day, &p);
        }
        k++;
    }
    if (k) {
        s->n_beats -= k;
        memmove(s->beats, s->beats + k, s->n_beats * sizeof(*s->beats));
    }
}

/* Drops pairs at or before the window's start and days before the series. */
static void prune_watching(agg_student *s, int64_t window_floor, int64_t first_day)
{
    while (s->pairs_head < s->n_pairs && s->pairs[s->pairs_head].at <= window_floor)
        s->pairs_head++;
    if (s->pairs_head == s->n_pairs)
        s->pairs_head = s->n_pairs = 0;
    size_t k = 0;
    while (k < s->n_days && s->days[k].day < first_day)
        k++;
    if (k) {
        s->n_days -= k;
        memmove(s->days, s->days + k, s->n_days * sizeof(*s->days));
    }
}

/* ---- applying one event ---- */

typedef struct apply_ctx {
    const agg_config *cfg;
    agg_course *course;
    const agg_event *ev;
    bool late;
    uint64_t arrival;
} apply_ctx;

static void touch_active(agg_student *s, int64_t at)
{
    if (!s->active_known || at > s->last_active_at) {
        s->active_known = true;
        s->last_active_at = at;
    }
}

static void on_progress(const apply_ctx *x)
{
    const Unpuzzle__Rt__V1__ProgressUpdated *m = (const void *)x->ev->msg;
    agg_course *c = x->course;
    agg_student *s = agg_course_student(c, m->user_id);
    int64_t at = x->ev->occurred_at_ns;

    touch_active(s, at);
    if (x->late)
        return; /* a late heartbeat makes no pair */
    agg_beat b = {at, x->arrival, agg_course_lesson(c, m->lesson_id),
                  (int64_t)llround(m->position_sec * 1e6)};
    beat_insert(s, &b);
    int64_t window_floor = c->latest - x->cfg->window_s * AGG_NS_PER_S;
    int64_t first_day = agg_clock_day(c->latest) - (AGG_SERIES_DAYS - 1);
    fold_beats(s, c->latest - x->cfg->lateness_s * AGG_NS_PER_S, window_floor, first_day);
    prune_watching(s, window_floor, first_day);
}

static agg_prompt *student_prompt(agg_student *s, const char *prompt_id)
{
    if (!s->prompts)
        s->prompts = rt_strmap_create();
    agg_prompt *p = rt_strmap_get(s->prompts, prompt_id);
    if (!p) {
        p = rt_calloc(1, sizeof(*p));
        rt_strmap_put(s->prompts, prompt_id, p);
    }
    return p;
}

static void on_prompt_shown(const apply_ctx *x)
{
    const Unpuzzle__Rt__V1__PromptShown *m = (const void *)x->ev->msg;
    agg_student *s = agg_course_student(x->course, m->user_id);
    int64_t at = x->ev->occurred_at_ns;

    touch_active(s, at);
    if (x->late)
        return; /* only the first on-time PromptShown counts */
    agg_prompt *p = student_prompt(s, m->prompt_id);
    if (!p->shown || at < p->shown_at) {
        p->shown = true;
        p->shown_at = at;
    }
}

static void on_prompt_responded(const apply_ctx *x)
{
    const Unpuzzle__Rt__V1__PromptResponded *m = (const void *)x->ev->msg;
    agg_student *s = agg_course_student(x->course, m->user_id);
    int64_t at = x->ev->occurred_at_ns;

    touch_active(s, at);
    /* A late response completes no prompt; a skip never undoes a completion. */
    if (x->late || m->action != UNPUZZLE__RT__V1__PROMPT_ACTION__PROMPT_ACTION_COMPLETED)
        return;
    agg_prompt *p = student_prompt(s, m->prompt_id);
    if (!p->completed || at < p->completed_at) {
        p->completed = true;
        p->completed_at = at;
    }
}

static void on_lesson_completed(const apply_ctx *x)
{
    const Unpuzzle__Rt__V1__LessonCompleted *m = (const void *)x->ev->msg;
    agg_student *s = agg_course_student(x->course, m->user_id);
    agg_student_complete(s, agg_course_lesson(x->course, m->lesson_id));
}

static void on_enrollment(const apply_ctx *x)
{
    const Unpuzzle__Rt__V1__EnrollmentChanged *m = (const void *)x->ev->msg;
    agg_student *s = agg_course_student(x->course, m->user_id);
    int64_t at = x->ev->occurred_at_ns;

    /* The latest by event time decides; at equal times the later arrival
     * (arrival numbers only grow). */
    if (!s->enrollment_known || at >= s->enrollment_at) {
        s->enrollment_known = true;
        s->enrollment_at = at;
        s->enrollment_arrival = x->arrival;
        s->enrollment_change = (int)m->change;
        s->enrollment_role = (int)m->role;
    }
}

static void on_lesson_upserted(const apply_ctx *x)
{
    const Unpuzzle__Rt__V1__LessonUpserted *m = (const void *)x->ev->msg;
    agg_lesson *l = agg_course_lesson(x->course, m->lesson_id);
    int64_t at = x->ev->occurred_at_ns;

    if (!l->upserted || at >= l->upserted_at) {
        l->upserted = true;
        l->upserted_at = at;
        l->upserted_arrival = x->arrival;
        l->deleted = m->deleted;
    }
}

static uint32_t topic_bucket(double video_timestamp_sec)
{
    if (!(video_timestamp_sec > 0))
        return 0; /* negative positions are the video's start */
    uint32_t s = (uint32_t)floor(video_timestamp_sec);
    return s - s % AGG_TOPIC_BUCKET_S;
}

static agg_confusion *course_confusion(agg_course *c, const char *id, int64_t at)
{
    agg_confusion *cf = rt_strmap_get(c->confusions, id);
    if (!cf) {
        cf = rt_calloc(1, sizeof(*cf));
        cf->touched_at = at;
        rt_strmap_put(c->confusions, id, cf);
    }
    if (at > cf->touched_at)
        cf->touched_at = at;
    return cf;
}

static void on_confusion_created(const apply_ctx *x)
{
    const Unpuzzle__Rt__V1__ConfusionCreated *m = (const void *)x->ev->msg;
    agg_course *c = x->course;
    agg_student *s = agg_course_student(c, m->user_id);
    int64_t at = x->ev->occurred_at_ns;

    touch_active(s, at);
    agg_confusion *cf = course_confusion(c, m->confusion_id, at);
    if (cf->created)
        return; /* the first creation of a confusion id wins */
    cf->created = true;
    cf->created_late = x->late;
    cf->created_at = at;
    cf->lesson = agg_course_lesson(c, m->lesson_id);
    cf->user = s;
    cf->bucket_sec = topic_bucket(m->video_timestamp_sec);
    c->confusions_created++;
    if (!cf->resolved) {
        c->confusions_open++;
        s->open_confusions++;
    }
}

static void on_confusion_resolved(const apply_ctx *x)
{
    const Unpuzzle__Rt__V1__ConfusionResolved *m = (const void *)x->ev->msg;
    agg_course *c = x->course;
    int64_t at = x->ev->occurred_at_ns;

    if (!m->resolved)
        return; /* resolved=false is reserved for reopening: no effect today */
    agg_confusion *cf = course_confusion(c, m->confusion_id, at);
    if (!cf->resolved) {
        cf->resolved = true;
        if (cf->created) {
            c->confusions_open--;
            cf->user->open_confusions--;
        }
    }
    if (!x->late && (!cf->resolved_on_time || at < cf->resolved_at)) {
        cf->resolved_on_time = true;
        cf->resolved_at = at;
    }
}

static agg_question *course_question(agg_course *c, const char *id, int64_t at)
{
    agg_question *q = rt_strmap_get(c->questions, id);
    if (!q) {
        q = rt_calloc(1, sizeof(*q));
        q->touched_at = at;
        rt_strmap_put(c->questions, id, q);
    }
    if (at > q->touched_at)
        q->touched_at = at;
    return q;
}

static void on_question_created(const apply_ctx *x)
{
    const Unpuzzle__Rt__V1__QuestionCreated *m = (const void *)x->ev->msg;
    agg_course *c = x->course;
    agg_student *s = agg_course_student(c, m->user_id);
    int64_t at = x->ev->occurred_at_ns;

    touch_active(s, at);
    agg_question *q = course_question(c, m->question_id, at);
    if (q->created)
        return;
    q->created = true;
    q->created_late = x->late;
    q->created_at = at;
    q->user = s;
    if (!q->answered)
        c->questions_open++;
}

static void on_question_answered(const apply_ctx *x)
{
    const Unpuzzle__Rt__V1__QuestionAnswered *m = (const void *)x->ev->msg;
    agg_course *c = x->course;
    int64_t at = x->ev->occurred_at_ns;
    agg_question *q = course_question(c, m->question_id, at);

    if (!q->answered) {
        q->answered = true;
        if (q->created)
            c->questions_open--;
    }
    if (!x->late && (!q->answered_on_time || at < q->answered_at)) {
        q->answered_on_time = true;
        q->answered_at = at;
    }
}

int64_t agg_add_saturated(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_add_overflow(a, b, &r))
        return b > 0 ? INT64_MAX : INT64_MIN;
    return r;
}

static void currency_day_add(agg_currency *cur, int64_t day, int64_t cents)
{
    size_t i = cur->n_days;
    while (i > 0 && cur->days[i - 1].day > day)
        i--;
    if (i > 0 && cur->days[i - 1].day == day) {
        cur->days[i - 1].cents = agg_add_saturated(cur->days[i - 1].cents, cents);
        return;
    }
    if (cur->n_days == cur->cap_days) {
        cur->cap_days = cur->cap_days ? cur->cap_days * 2 : 4;
        cur->days = rt_realloc(cur->days, cur->cap_days * sizeof(*cur->days));
    }
    memmove(&cur->days[i + 1], &cur->days[i], (cur->n_days - i) * sizeof(*cur->days));
    cur->days[i] = (agg_day_amount){day, cents};
    cur->n_days++;
}

/* Revenue days before the month of `end` count for nothing any more. */
static void prune_currency(agg_currency *cur, int64_t end)
{
    int64_t first = agg_clock_month_first_day(agg_clock_day(end));
    size_t k = 0;
    while (k < cur->n_days && cur->days[k].day < first)
        k++;
    if (k) {
        cur->n_days -= k;
        memmove(cur->days, cur->days + k, cur->n_days * sizeof(*cur->days));
    }
}

static void on_purchase(const apply_ctx *x)
{
    const Unpuzzle__Rt__V1__PurchaseCompleted *m = (const void *)x->ev->msg;
    agg_course *c = x->course;
    int64_t at = x->ev->occurred_at_ns;
    agg_currency *cur = agg_course_currency(c, m->currency);

    cur->all_time = agg_add_saturated(cur->all_time, m->amount_cents);
    if (!x->late) {
        currency_day_add(cur, agg_clock_day(at), m->amount_cents);
        prune_currency(cur, c->latest);
    }
    if (!c->has_last_purchase || at >= c->last_purchase.at) {
        agg_purchase *lp = &c->last_purchase;
        free(lp->purchase_id);
        free(lp->user_id);
        lp->purchase_id = rt_strdup(m->purchase_id);
        lp->user_id = rt_strdup(m->user_id);
        lp->amount = m->amount_cents;
        snprintf(lp->currency, sizeof(lp->currency), "%s", m->currency);
        lp->at = at;
        lp->arrival = x->arrival;
        c->has_last_purchase = true;
    }
}

/* Kinds whose ids are kept for the retention rather than the lateness:
 * they feed all-time figures, and they are rare. */
static bool kept_long(agg_event_kind kind)
{
    return kind == AGG_EVENT_PURCHASE_COMPLETED || kind == AGG_EVENT_CONFUSION_CREATED ||
           kind == AGG_EVENT_CONFUSION_RESOLVED || kind == AGG_EVENT_QUESTION_CREATED ||
           kind == AGG_EVENT_QUESTION_ANSWERED;
}

static void dispatch(const apply_ctx *x)
{
    switch (x->ev->kind) {
    case AGG_EVENT_PROGRESS_UPDATED:
        on_progress(x);
        break;
    case AGG_EVENT_PROMPT_SHOWN:
        on_prompt_shown(x);
        break;
    case AGG_EVENT_PROMPT_RESPONDED:
        on_prompt_responded(x);
        break;
    case AGG_EVENT_LESSON_COMPLETED:
        on_lesson_completed(x);
        break;
    case AGG_EVENT_ENROLLMENT_CHANGED:
        on_enrollment(x);
        break;
    case AGG_EVENT_LESSON_UPSERTED:
        on_lesson_upserted(x);
        break;
    case AGG_EVENT_CONFUSION_CREATED:
        on_confusion_created(x);
        break;
    case AGG_EVENT_CONFUSION_RESOLVED:
        on_confusion_resolved(x);
        break;
    case AGG_EVENT_QUESTION_CREATED:
        on_question_created(x);
        break;
    case AGG_EVENT_QUESTION_ANSWERED:
        on_question_answered(x);
        break;
    case AGG_EVENT_PURCHASE_COMPLETED:
        on_purchase(x);
        break;
    case AGG_EVENT_QUIZ_SUBMITTED:
    case AGG_EVENT_REFLECTION_SUBMITTED:
    case AGG_EVENT_COURSE_UPDATED:
    case AGG_EVENT_NOT_A_COURSE_EVENT:
        /* They move the course's clock; no figure uses them. */
        break;
    }
}

rt_status agg_engine_apply(agg_outcome *out, agg_engine *e, const ProtobufCMessage *msg,
                           const agg_arrival *arrival)
{
    const agg_config *cfg = &e->cfg;
    agg_event ev;
    rt_status rc;

    *out = AGG_INVALID;
    if (!arrival && cfg->clock == AGG_CLOCK_WALL) {
        e->stats.invalid++;
        return RT_ERR(RT_ERR_INVALID_ARG, "wall clock mode needs the arrival time");
    }
    if ((rc = agg_event_read(&ev, msg)) != RT_OK) {
        e->stats.invalid++;
        return rc;
    }
    if (ev.kind == AGG_EVENT_NOT_A_COURSE_EVENT) {
        e->stats.ignored++;
        *out = AGG_IGNORED;
        return RT_OK;
    }

    agg_course *c = rt_strmap_get(e->courses, ev.course_id);
    if (c && rt_strmap_get(c->seen, ev.event_id)) {
        e->stats.duplicates++;
        *out = AGG_DUPLICATE;
        return RT_OK;
    }
    if (cfg->clock == AGG_CLOCK_WALL &&
        ev.occurred_at_ns > arrival->wall_ms * AGG_NS_PER_MS + cfg->future_s * AGG_NS_PER_S) {
        e->stats.future++;
        *out = AGG_REJECTED_FUTURE;
        return RT_OK;
    }
    if (!c) {
        c = agg_course_new(ev.course_id);
        rt_strmap_put(e->courses, ev.course_id, c);
    }

    int64_t lateness_ns = cfg->lateness_s * AGG_NS_PER_S;
    int64_t retention_ns = cfg->retention_s * AGG_NS_PER_S;
    bool late = c->latest_known && ev.occurred_at_ns < c->latest - lateness_ns;
    if (!c->latest_known || ev.occurred_at_ns > c->latest) {
        c->latest_known = true;
        c->latest = ev.occurred_at_ns;
    }
    c->changes++;
    if (arrival && arrival->stream_seq > c->stream_seq)
        c->stream_seq = arrival->stream_seq;

    if (kept_long(ev.kind)) {
        if (ev.occurred_at_ns >= c->latest - retention_ns)
            agg_course_remember(c, &c->seen_long, ev.event_id, ev.occurred_at_ns);
    } else if (!late) {
        agg_course_remember(c, &c->seen_short, ev.event_id, ev.occurred_at_ns);
    }

    apply_ctx x = {cfg, c, &ev, late, ++c->arrivals};
    dispatch(&x);

    forget_seen(c, &c->seen_short, c->latest - lateness_ns);
    forget_seen(c, &c->seen_long, c->latest - retention_ns);
    if (late) {
        e->stats.late++;
        *out = AGG_APPLIED_LATE;
    } else {
        e->stats.applied++;
        *out = AGG_APPLIED;
    }
    return RT_OK;
}

/* ---- pruning ---- */

typedef struct prune_ctx {
    const agg_config *cfg;
    agg_course *course;
    int64_t end, window_floor, first_day, fold_boundary, retention_horizon;
    char **doomed; /* keys to remove after a walk */
    size_t n_doomed, cap_doomed;
} prune_ctx;

static void doom(prune_ctx *p, const char *key)
{
    if (p->n_doomed == p->cap_doomed) {
        p->cap_doomed = p->cap_doomed ? p->cap_doomed * 2 : 16;
        p->doomed = rt_realloc(p->doomed, p->cap_doomed * sizeof(*p->doomed));
    }
    p->doomed[p->n_doomed++] = rt_strdup(key);
}

/* Removes (and frees the value of) every doomed key of `map`. */
static void remove_doomed(prune_ctx *p, rt_strmap *map)
{
    for (size_t i = 0; i < p->n_doomed; i++) {
        free(rt_strmap_remove(map, p->doomed[i]));
        free(p->doomed[i]);
    }
    p->n_doomed = 0;
}

static void find_old_prompts(void *arg, const char *key, void *value)
{
    prune_ctx *p = arg;
    const agg_prompt *pr = value;
    int64_t series_start = p->first_day * AGG_NS_PER_DAY;
    int64_t newest = INT64_MIN;
    if (pr->shown)
        newest = pr->shown_at;
    if (pr->completed && pr->completed_at > newest)
        newest = pr->completed_at;
    /* Before the window and before the series: it can count nowhere. */
    if (newest <= p->window_floor && newest < series_start)
        doom(p, key);
}

static void prune_student(void *arg, const char *key, void *value)
{
    prune_ctx *p = arg;
    agg_student *s = value;
    (void)key;
    fold_beats(s, p->fold_boundary, p->window_floor, p->first_day);
    prune_watching(s, p->window_floor, p->first_day);
    if (s->prompts) {
        rt_strmap_each(s->prompts, find_old_prompts, p);
        remove_doomed(p, s->prompts);
    }
}

static void find_old_confusions(void *arg, const char *key, void *value)
{
    prune_ctx *p = arg;
    const agg_confusion *cf = value;
    if (cf->touched_at >= p->retention_horizon || (cf->created && !cf->resolved))
        return; /* open confusions stay: they are all-time figures */
    if (cf->created)
        p->course->confusions_pruned++;
    doom(p, key);
}

static void find_old_questions(void *arg, const char *key, void *value)
{
    prune_ctx *p = arg;
    const agg_question *q = value;
    if (q->touched_at >= p->retention_horizon || (q->created && !q->answered))
        return;
    doom(p, key);
}

static void prune_course(const agg_config *cfg, agg_course *c, int64_t now_wall_ms)
{
    prune_ctx p = {.cfg = cfg, .course = c};
    if (!c->latest_known)
        return;
    p.end = agg_clock_end(cfg->clock, c->latest, now_wall_ms, cfg->lateness_s);
    p.window_floor = p.end - cfg->window_s * AGG_NS_PER_S;
    p.first_day = agg_clock_day(p.end) - (AGG_SERIES_DAYS - 1);
    p.fold_boundary = c->latest - cfg->lateness_s * AGG_NS_PER_S;
    p.retention_horizon = c->latest - cfg->retention_s * AGG_NS_PER_S;

    rt_strmap_each(c->students, prune_student, &p);
    rt_strmap_each(c->confusions, find_old_confusions, &p);
    remove_doomed(&p, c->confusions);
    rt_strmap_each(c->questions, find_old_questions, &p);
    remove_doomed(&p, c->questions);
    for (size_t i = 0; i < c->n_currencies; i++)
        prune_currency(&c->currencies[i], p.end);
    free(p.doomed);
}

void agg_engine_prune_course(agg_engine *e, const char *course_id, int64_t now_wall_ms)
{
    agg_course *c = rt_strmap_get(e->courses, course_id);
    if (c)
        prune_course(&e->cfg, c, now_wall_ms);
}

typedef struct prune_all_ctx {
    const agg_config *cfg;
    int64_t now_wall_ms;
} prune_all_ctx;

static void prune_one(void *arg, const char *key, void *value)
{
    prune_all_ctx *p = arg;
    (void)key;
    prune_course(p->cfg, value, p->now_wall_ms);
}

void agg_engine_prune(agg_engine *e, int64_t now_wall_ms)
{
    prune_all_ctx p = {&e->cfg, now_wall_ms};
    rt_strmap_each(e->courses, prune_one, &p);
}

/* ---- small queries ---- */

void agg_engine_drop_course(agg_engine *e, const char *course_id)
{
    agg_course_free(rt_strmap_remove(e->courses, course_id));
}

rt_status agg_engine_course_info(agg_course_info *out, const agg_engine *e, const char *course_id)
{
    const agg_course *c = rt_strmap_get(e->courses, course_id);
    if (!c)
        return RT_ERR(RT_ERR_NOT_FOUND, "no state for course %s", course_id);
    out->latest_ns = c->latest;
    out->changes = c->changes;
    out->stream_seq = c->stream_seq;
    return RT_OK;
}

size_t agg_engine_course_count(const agg_engine *e)
{
    return rt_strmap_count(e->courses);
}

typedef struct each_ctx {
    void (*fn)(void *arg, const char *course_id);
    void *arg;
} each_ctx;

static void each_course(void *arg, const char *key, void *value)
{
    each_ctx *x = arg;
    (void)value;
    x->fn(x->arg, key);
}

void agg_engine_each_course(const agg_engine *e, void (*fn)(void *arg, const char *course_id),
                            void *arg)
{
    each_ctx x = {fn, arg};
    rt_strmap_each(e->courses, each_course, &x);
}

typedef struct instructor_ctx {
    void (*fn)(void *arg, const char *user_id);
    void *arg;
} instructor_ctx;

static void visit_instructor(void *arg, const char *key, void *value)
{
    const instructor_ctx *x = arg;
    const agg_student *s = value;
    (void)key;
    if (s->enrollment_known &&
        s->enrollment_role == UNPUZZLE__RT__V1__MEMBER_ROLE__MEMBER_ROLE_INSTRUCTOR &&
        (s->enrollment_change == UNPUZZLE__RT__V1__ENROLLMENT_CHANGE__ENROLLMENT_CHANGE_ADDED ||
         s->enrollment_change == UNPUZZLE__RT__V1__ENROLLMENT_CHANGE__ENROLLMENT_CHANGE_COMPLETED))
        x->fn(x->arg, s->user_id);
}

void agg_engine_each_instructor(const agg_engine *e, const char *course_id,
                                void (*fn)(void *arg, const char *user_id), void *arg)
{
    const agg_course *c = rt_strmap_get(e->courses, course_id);
    instructor_ctx x = {fn, arg};
    if (c)
        rt_strmap_each(c->students, visit_instructor, &x);
}

void agg_engine_stats_get(agg_engine_stats *out, const agg_engine *e)
{
    *out = e->stats;
}

const agg_config *agg_engine_config(const agg_engine *e)
{
    return &e->cfg;
}

const char *agg_outcome_name(agg_outcome outcome)
{
    switch (outcome) {
    case AGG_APPLIED:
        return "applied";
    case AGG_APPLIED_LATE:
        return "late";
    case AGG_DUPLICATE:
        return "duplicate";
    case AGG_REJECTED_FUTURE:
        return "future";
    case AGG_IGNORED:
        return "ignored";
    case AGG_INVALID:
        return "invalid";
    }
    return "unknown";
}
