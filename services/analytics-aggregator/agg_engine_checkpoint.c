/*
 * agg_engine_checkpoint: one course's state <-> AnalyticsCourseState bytes
 * (proto/unpuzzle/rt/v1/analytics_state.proto). Saving copies everything
 * the figures depend on, loading checks it all and rebuilds the same state
 * (interned lessons, users, open counters), so metrics computed after a
 * load are those the saved engine would have computed.
 */
#include "agg_engine_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt_alloc.h"
#include "rt_room.h"
#include "unpuzzle/rt/v1/analytics_state.pb-c.h"

typedef Unpuzzle__Rt__V1__AnalyticsCourseState st_course;
typedef Unpuzzle__Rt__V1__AnalyticsCourseState__SeenEvent st_seen;
typedef Unpuzzle__Rt__V1__AnalyticsCourseState__Lesson st_lesson;
typedef Unpuzzle__Rt__V1__AnalyticsCourseState__Beat st_beat;
typedef Unpuzzle__Rt__V1__AnalyticsCourseState__Day st_day;
typedef Unpuzzle__Rt__V1__AnalyticsCourseState__Prompt st_prompt;
typedef Unpuzzle__Rt__V1__AnalyticsCourseState__Student st_student;
typedef Unpuzzle__Rt__V1__AnalyticsCourseState__Confusion st_confusion;
typedef Unpuzzle__Rt__V1__AnalyticsCourseState__Question st_question;
typedef Unpuzzle__Rt__V1__AnalyticsCourseState__DayAmount st_day_amount;
typedef Unpuzzle__Rt__V1__AnalyticsCourseState__Currency st_currency;
typedef Unpuzzle__Rt__V1__AnalyticsCourseState__Purchase st_purchase;

/* An array of n message pointers (at least one slot, so never NULL). */
#define NEW_ARRAY(n) rt_calloc((n) ? (n) : 1, sizeof(void *))

#define MS_NS INT64_C(1000000)

/* ---- squeezed differences (analytics_state.proto, Student.pair_*) ---- */

static uint64_t zigzag(int64_t v)
{
    return ((uint64_t)v << 1) ^ (v < 0 ? UINT64_MAX : 0);
}

static int64_t unzigzag(uint64_t u)
{
    return (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
}

/* Whole milliseconds (the common case: producers stamp in ms) become small
 * varints; anything else keeps its nanoseconds. |v| < 2^61 here: gaps and
 * durations inside one window. */
static uint64_t squeeze(int64_t v)
{
    if (v % MS_NS == 0)
        return zigzag(v / MS_NS) << 1;
    return zigzag(v) << 1 | 1;
}

static bool unsqueeze(int64_t *out, uint64_t u)
{
    int64_t v = unzigzag(u >> 1);
    if (u & 1) {
        *out = v;
        return true;
    }
    return !__builtin_mul_overflow(v, MS_NS, out);
}

/* Lessons are written once, in `lessons`; everything else names a lesson by
 * its index there. */
typedef struct lesson_index {
    rt_u64map *index; /* (uintptr_t)agg_lesson * -> index + 1 */
} lesson_index;

static uint32_t index_of(const lesson_index *li, const agg_lesson *l)
{
    return (uint32_t)((uintptr_t)rt_u64map_get(li->index, (uint64_t)(uintptr_t)l) - 1);
}

/* ---- save ---- */

/* A repeated field being filled by a map walk. */
typedef struct fill_ctx {
    void **items;
    size_t n;
} fill_ctx;

static st_seen **save_queue(const agg_seen_queue *q, size_t *n)
{
    st_seen **out = NEW_ARRAY(q->count);
    for (size_t i = 0; i < q->count; i++) {
        const agg_seen *it = &q->items[(q->head + i) % q->cap];
        st_seen *s = rt_malloc(sizeof(*s));
        unpuzzle__rt__v1__analytics_course_state__seen_event__init(s);
        s->event_id = rt_strdup(it->event_id);
        s->occurred_at_ns = it->at;
        out[i] = s;
    }
    *n = q->count;
    return out;
}

typedef struct lesson_fill {
    fill_ctx f;
    lesson_index *li;
} lesson_fill;

static void save_lesson(void *arg, const char *key, void *value)
{
    lesson_fill *lf = arg;
    fill_ctx *f = &lf->f;
    const agg_lesson *l = value;
    st_lesson *s = rt_malloc(sizeof(*s));
    (void)key;
    rt_u64map_put(lf->li->index, (uint64_t)(uintptr_t)l, (void *)(uintptr_t)(f->n + 1));
    unpuzzle__rt__v1__analytics_course_state__lesson__init(s);
    s->lesson_id = rt_strdup(l->id);
    s->upserted = l->upserted;
    s->upserted_at_ns = l->upserted_at;
    s->upserted_arrival = l->upserted_arrival;
    s->deleted = l->deleted;
    f->items[f->n++] = s;
}

static void save_prompt(void *arg, const char *key, void *value)
{
    fill_ctx *f = arg;
    const agg_prompt *p = value;
    st_prompt *s = rt_malloc(sizeof(*s));
    unpuzzle__rt__v1__analytics_course_state__prompt__init(s);
    s->prompt_id = rt_strdup(key);
    s->shown = p->shown;
    s->shown_at_ns = p->shown_at;
    s->completed = p->completed;
    s->completed_at_ns = p->completed_at;
    f->items[f->n++] = s;
}

typedef struct student_fill {
    fill_ctx f;
    const lesson_index *li;
} student_fill;

static void save_student(void *arg, const char *key, void *value)
{
    student_fill *sf = arg;
    fill_ctx *f = &sf->f;
    const agg_student *u = value;
    st_student *s = rt_malloc(sizeof(*s));
    size_t n_pairs = u->n_pairs - u->pairs_head;
    (void)key;

    unpuzzle__rt__v1__analytics_course_state__student__init(s);
    s->user_id = rt_strdup(u->user_id);
    s->enrollment_known = u->enrollment_known;
    s->enrollment_at_ns = u->enrollment_at;
    s->enrollment_arrival = u->enrollment_arrival;
    s->enrollment_change = u->enrollment_change;
    s->enrollment_role = u->enrollment_role;

    s->n_completed_lessons = u->n_completed;
    s->completed_lessons = rt_calloc(u->n_completed ? u->n_completed : 1, sizeof(uint32_t));
    for (size_t i = 0; i < u->n_completed; i++)
        s->completed_lessons[i] = index_of(sf->li, u->completed[i]);

    s->n_beats = u->n_beats;
    s->beats = NEW_ARRAY(u->n_beats);
    for (size_t i = 0; i < u->n_beats; i++) {
        st_beat *b = rt_malloc(sizeof(*b));
        unpuzzle__rt__v1__analytics_course_state__beat__init(b);
        b->at_ns = u->beats[i].at;
        b->arrival = u->beats[i].arrival;
        b->lesson = index_of(sf->li, u->beats[i].lesson);
        b->position_us = u->beats[i].position_us;
        s->beats[i] = b;
    }

    s->n_pair_at = s->n_pair_active = s->n_pair_watched = n_pairs;
    s->pair_at = rt_calloc(n_pairs ? n_pairs : 1, sizeof(uint64_t));
    s->pair_active = rt_calloc(n_pairs ? n_pairs : 1, sizeof(uint64_t));
    s->pair_watched = rt_calloc(n_pairs ? n_pairs : 1, sizeof(uint64_t));
    s->pairs_base_ns = n_pairs ? u->pairs[u->pairs_head].at : 0;
    int64_t prev = s->pairs_base_ns;
    for (size_t i = 0; i < n_pairs; i++) {
        const agg_pair *p = &u->pairs[u->pairs_head + i];
        int64_t gap = p->at - prev;
        s->pair_at[i] = squeeze(gap);
        s->pair_active[i] = squeeze(p->active_ns - gap);
        s->pair_watched[i] = squeeze(p->watched_us * 1000 - p->active_ns);
        prev = p->at;
    }

    s->n_days = u->n_days;
    s->days = NEW_ARRAY(u->n_days);
    for (size_t i = 0; i < u->n_days; i++) {
        st_day *d = rt_malloc(sizeof(*d));
        unpuzzle__rt__v1__analytics_course_state__day__init(d);
        d->day = u->days[i].day;
        d->active_ns = u->days[i].active_ns;
        d->watched_us = u->days[i].watched_us;
        s->days[i] = d;
    }

    size_t n_prompts = u->prompts ? rt_strmap_count(u->prompts) : 0;
    fill_ctx pf = {NEW_ARRAY(n_prompts), 0};
    if (u->prompts)
        rt_strmap_each(u->prompts, save_prompt, &pf);
    s->n_prompts = pf.n;
    s->prompts = (st_prompt **)pf.items;

    s->active_known = u->active_known;
    s->last_active_at_ns = u->last_active_at;
    f->items[f->n++] = s;
}

static void save_confusion(void *arg, const char *key, void *value)
{
    fill_ctx *f = arg;
    const agg_confusion *cf = value;
    st_confusion *s = rt_malloc(sizeof(*s));
    unpuzzle__rt__v1__analytics_course_state__confusion__init(s);
    s->confusion_id = rt_strdup(key);
    s->created = cf->created;
    s->created_late = cf->created_late;
    s->created_at_ns = cf->created_at;
    s->lesson_id = rt_strdup(cf->lesson ? cf->lesson->id : "");
    s->user_id = rt_strdup(cf->user ? cf->user->user_id : "");
    s->bucket_start_sec = cf->bucket_sec;
    s->resolved = cf->resolved;
    s->resolved_on_time = cf->resolved_on_time;
    s->resolved_at_ns = cf->resolved_at;
    s->touched_at_ns = cf->touched_at;
    f->items[f->n++] = s;
}

static void save_question(void *arg, const char *key, void *value)
{
    fill_ctx *f = arg;
    const agg_question *q = value;
    st_question *s = rt_malloc(sizeof(*s));
    unpuzzle__rt__v1__analytics_course_state__question__init(s);
    s->question_id = rt_strdup(key);
    s->created = q->created;
    s->created_late = q->created_late;
    s->created_at_ns = q->created_at;
    s->user_id = rt_strdup(q->user ? q->user->user_id : "");
    s->answered = q->answered;
    s->answered_on_time = q->answered_on_time;
    s->answered_at_ns = q->answered_at;
    s->touched_at_ns = q->touched_at;
    f->items[f->n++] = s;
}

static st_course *save_state(const agg_course *c, bool recent_ids)
{
    st_course *s = rt_malloc(sizeof(*s));
    unpuzzle__rt__v1__analytics_course_state__init(s);
    s->format = AGG_STATE_FORMAT;
    s->course_id = rt_strdup(c->course_id);
    s->latest_known = c->latest_known;
    s->latest_ns = c->latest;
    s->arrivals = c->arrivals;
    s->changes = c->changes;
    s->stream_seq = c->stream_seq;
    /* The lateness window's ids can be left to the caller's own dedupe
     * (agg_config.checkpoint_recent_ids): they are most of a busy course. */
    if (recent_ids)
        s->seen_short = save_queue(&c->seen_short, &s->n_seen_short);
    s->seen_long = save_queue(&c->seen_long, &s->n_seen_long);

    lesson_index li = {rt_u64map_create()};
    lesson_fill lf = {{NEW_ARRAY(rt_strmap_count(c->lessons)), 0}, &li};
    rt_strmap_each(c->lessons, save_lesson, &lf);
    s->n_lessons = lf.f.n;
    s->lessons = (st_lesson **)lf.f.items;

    student_fill sf = {{NEW_ARRAY(rt_strmap_count(c->students)), 0}, &li};
    rt_strmap_each(c->students, save_student, &sf);
    s->n_students = sf.f.n;
    s->students = (st_student **)sf.f.items;
    rt_u64map_destroy(li.index);

    fill_ctx f = {NEW_ARRAY(rt_strmap_count(c->confusions)), 0};
    rt_strmap_each(c->confusions, save_confusion, &f);
    s->n_confusions = f.n;
    s->confusions = (st_confusion **)f.items;

    f = (fill_ctx){NEW_ARRAY(rt_strmap_count(c->questions)), 0};
    rt_strmap_each(c->questions, save_question, &f);
    s->n_questions = f.n;
    s->questions = (st_question **)f.items;

    s->n_currencies = c->n_currencies;
    s->currencies = NEW_ARRAY(c->n_currencies);
    for (size_t i = 0; i < c->n_currencies; i++) {
        const agg_currency *cur = &c->currencies[i];
        st_currency *sc = rt_malloc(sizeof(*sc));
        unpuzzle__rt__v1__analytics_course_state__currency__init(sc);
        sc->currency = rt_strdup(cur->code);
        sc->all_time_cents = cur->all_time;
        sc->n_days = cur->n_days;
        sc->days = NEW_ARRAY(cur->n_days);
        for (size_t k = 0; k < cur->n_days; k++) {
            st_day_amount *d = rt_malloc(sizeof(*d));
            unpuzzle__rt__v1__analytics_course_state__day_amount__init(d);
            d->day = cur->days[k].day;
            d->cents = cur->days[k].cents;
            sc->days[k] = d;
        }
        s->currencies[i] = sc;
    }

    if (c->has_last_purchase) {
        const agg_purchase *lp = &c->last_purchase;
        st_purchase *p = rt_malloc(sizeof(*p));
        unpuzzle__rt__v1__analytics_course_state__purchase__init(p);
        p->purchase_id = rt_strdup(lp->purchase_id);
        p->user_id = rt_strdup(lp->user_id);
        p->amount_cents = lp->amount;
        p->currency = rt_strdup(lp->currency);
        p->occurred_at_ns = lp->at;
        p->arrival = lp->arrival;
        s->last_purchase = p;
    }
    s->confusions_pruned = c->confusions_pruned;
    return s;
}

rt_status agg_engine_save_course(uint8_t **out, size_t *out_len, const agg_engine *e,
                                 const char *course_id)
{
    const agg_course *c = rt_strmap_get(e->courses, course_id);
    if (!c)
        return RT_ERR(RT_ERR_NOT_FOUND, "no state for course %s", course_id);
    st_course *s = save_state(c, e->cfg.checkpoint_recent_ids);
    size_t len = unpuzzle__rt__v1__analytics_course_state__get_packed_size(s);
    uint8_t *buf = rt_malloc(len ? len : 1);
    unpuzzle__rt__v1__analytics_course_state__pack(s, buf);
    protobuf_c_message_free_unpacked(&s->base, NULL);
    *out = buf;
    *out_len = len;
    return RT_OK;
}

/* ---- load ---- */

static bool valid_currency(const char *code)
{
    if (!code || strlen(code) != 3)
        return false;
    for (int i = 0; i < 3; i++) {
        if (code[i] < 'A' || code[i] > 'Z')
            return false;
    }
    return true;
}

static bool valid_time(int64_t ns)
{
    return ns >= 0 && ns < AGG_TIME_MAX_S * AGG_NS_PER_S;
}

/* Bounds that keep every sum of the metrics far from overflowing. */
#define MAX_POSITION_US (INT64_C(1000000000) * 1000000)
#define MAX_DAY_ACTIVE_NS (AGG_NS_PER_DAY + AGG_PAIR_MAX_GAP_NS)
#define MAX_DAY_WATCHED_US (3 * AGG_NS_PER_DAY / 1000)

#define BAD(...) RT_ERR(RT_ERR_DECODE, "checkpoint: " __VA_ARGS__)

static rt_status load_queue(agg_course *c, agg_seen_queue *q, st_seen **items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!rt_id_valid(items[i]->event_id) || !valid_time(items[i]->occurred_at_ns))
            return BAD("seen event %zu is not an id and a time", i);
        if (rt_strmap_get(c->seen, items[i]->event_id))
            return BAD("event id %s seen twice", items[i]->event_id);
        agg_course_remember(c, q, items[i]->event_id, items[i]->occurred_at_ns);
    }
    return RT_OK;
}

/* Lessons in checkpoint order, so indexes resolve. */
typedef struct lesson_table {
    agg_lesson **items;
    size_t n;
} lesson_table;

static rt_status lesson_at(agg_lesson **out, const lesson_table *t, uint32_t index)
{
    if (index >= t->n)
        return BAD("lesson index %u out of range", index);
    *out = t->items[index];
    return RT_OK;
}

static rt_status load_lesson(agg_course *c, const st_lesson *s)
{
    if (!rt_id_valid(s->lesson_id))
        return BAD("lesson id not an id");
    if (rt_strmap_get(c->lessons, s->lesson_id))
        return BAD("lesson %s twice", s->lesson_id);
    agg_lesson *l = agg_course_lesson(c, s->lesson_id);
    l->upserted = s->upserted;
    l->upserted_at = s->upserted_at_ns;
    l->upserted_arrival = s->upserted_arrival;
    l->deleted = s->deleted;
    return RT_OK;
}

static rt_status load_student(agg_course *c, const lesson_table *lt, const st_student *s)
{
    rt_status rc;
    if (!rt_id_valid(s->user_id))
        return BAD("user id not an id");
    if (rt_strmap_get(c->students, s->user_id))
        return BAD("user %s twice", s->user_id);
    if ((unsigned)s->enrollment_change > 3 || (unsigned)s->enrollment_role > 2)
        return BAD("user %s: enrollment out of range", s->user_id);
    agg_student *u = agg_course_student(c, s->user_id);
    u->enrollment_known = s->enrollment_known;
    u->enrollment_at = s->enrollment_at_ns;
    u->enrollment_arrival = s->enrollment_arrival;
    u->enrollment_change = (int)s->enrollment_change;
    u->enrollment_role = (int)s->enrollment_role;

    for (size_t i = 0; i < s->n_completed_lessons; i++) {
        agg_lesson *l = NULL;
        if ((rc = lesson_at(&l, lt, s->completed_lessons[i])) != RT_OK)
            return rc;
        agg_student_complete(u, l);
    }

    u->cap_beats = s->n_beats ? s->n_beats : 1;
    u->beats = rt_calloc(u->cap_beats, sizeof(*u->beats));
    for (size_t i = 0; i < s->n_beats; i++) {
        const st_beat *b = s->beats[i];
        agg_lesson *l = NULL;
        if ((rc = lesson_at(&l, lt, b->lesson)) != RT_OK)
            return rc;
        if (!valid_time(b->at_ns) || b->position_us > MAX_POSITION_US ||
            b->position_us < -MAX_POSITION_US)
            return BAD("user %s: heartbeat %zu malformed", s->user_id, i);
        if (i > 0 &&
            (b->at_ns < s->beats[i - 1]->at_ns ||
             (b->at_ns == s->beats[i - 1]->at_ns && b->arrival <= s->beats[i - 1]->arrival)))
            return BAD("user %s: heartbeats out of order", s->user_id);
        u->beats[u->n_beats++] = (agg_beat){b->at_ns, b->arrival, l, b->position_us};
    }

    size_t n_pairs = s->n_pair_at;
    if (s->n_pair_active != n_pairs || s->n_pair_watched != n_pairs)
        return BAD("user %s: pair columns of different lengths", s->user_id);
    u->cap_pairs = n_pairs ? n_pairs : 1;
    u->pairs = rt_calloc(u->cap_pairs, sizeof(*u->pairs));
    int64_t prev = s->pairs_base_ns;
    for (size_t i = 0; i < n_pairs; i++) {
        int64_t gap, active_d, watched_d, at, active, watched_ns;
        if (!unsqueeze(&gap, s->pair_at[i]) || !unsqueeze(&active_d, s->pair_active[i]) ||
            !unsqueeze(&watched_d, s->pair_watched[i]) || gap < 0 ||
            __builtin_add_overflow(prev, gap, &at) ||
            __builtin_add_overflow(gap, active_d, &active) ||
            __builtin_add_overflow(active, watched_d, &watched_ns))
            return BAD("user %s: pair %zu does not decode", s->user_id, i);
        if (!valid_time(at) || active <= 0 || active > AGG_PAIR_MAX_GAP_NS || watched_ns < 0 ||
            watched_ns % 1000 != 0 || watched_ns > 2 * active + AGG_NS_PER_S)
            return BAD("user %s: pair %zu out of range", s->user_id, i);
        u->pairs[u->n_pairs++] = (agg_pair){at, active, watched_ns / 1000};
        prev = at;
    }

    u->n_days = s->n_days;
    u->cap_days = s->n_days ? s->n_days : 1;
    u->days = rt_calloc(u->cap_days, sizeof(*u->days));
    for (size_t i = 0; i < s->n_days; i++) {
        if (i > 0 && s->days[i]->day <= s->days[i - 1]->day)
            return BAD("user %s: days out of order", s->user_id);
        if (s->days[i]->active_ns < 0 || s->days[i]->active_ns > MAX_DAY_ACTIVE_NS ||
            s->days[i]->watched_us < 0 || s->days[i]->watched_us > MAX_DAY_WATCHED_US)
            return BAD("user %s: day out of range", s->user_id);
        u->days[i] = (agg_day){s->days[i]->day, s->days[i]->active_ns, s->days[i]->watched_us};
    }

    for (size_t i = 0; i < s->n_prompts; i++) {
        const st_prompt *p = s->prompts[i];
        if (!rt_id_valid(p->prompt_id) || !valid_time(p->shown_at_ns) ||
            !valid_time(p->completed_at_ns))
            return BAD("user %s: prompt malformed", s->user_id);
        if (!u->prompts)
            u->prompts = rt_strmap_create();
        if (rt_strmap_get(u->prompts, p->prompt_id))
            return BAD("user %s: prompt %s twice", s->user_id, p->prompt_id);
        agg_prompt *pr = rt_calloc(1, sizeof(*pr));
        *pr = (agg_prompt){p->shown, p->completed, p->shown_at_ns, p->completed_at_ns};
        rt_strmap_put(u->prompts, p->prompt_id, pr);
    }
    u->active_known = s->active_known;
    u->last_active_at = s->last_active_at_ns;
    return RT_OK;
}

static rt_status load_confusion(agg_course *c, const st_confusion *s)
{
    if (!rt_id_valid(s->confusion_id))
        return BAD("confusion id not an id");
    if (rt_strmap_get(c->confusions, s->confusion_id))
        return BAD("confusion %s twice", s->confusion_id);
    if (s->created && (!rt_id_valid(s->lesson_id) || !rt_id_valid(s->user_id)))
        return BAD("confusion %s: lesson or user not an id", s->confusion_id);
    if (!valid_time(s->created_at_ns) || !valid_time(s->resolved_at_ns))
        return BAD("confusion %s: time out of range", s->confusion_id);
    if (s->bucket_start_sec % AGG_TOPIC_BUCKET_S)
        return BAD("confusion %s: bucket not a multiple of 30 s", s->confusion_id);
    agg_confusion *cf = rt_calloc(1, sizeof(*cf));
    cf->created = s->created;
    cf->created_late = s->created_late;
    cf->created_at = s->created_at_ns;
    cf->resolved = s->resolved;
    cf->resolved_on_time = s->resolved_on_time;
    cf->resolved_at = s->resolved_at_ns;
    cf->touched_at = s->touched_at_ns;
    cf->bucket_sec = s->bucket_start_sec;
    if (s->created) {
        cf->lesson = agg_course_lesson(c, s->lesson_id);
        cf->user = agg_course_student(c, s->user_id);
    }
    rt_strmap_put(c->confusions, s->confusion_id, cf);
    return RT_OK;
}

static rt_status load_question(agg_course *c, const st_question *s)
{
    if (!rt_id_valid(s->question_id))
        return BAD("question id not an id");
    if (rt_strmap_get(c->questions, s->question_id))
        return BAD("question %s twice", s->question_id);
    if (s->created && !rt_id_valid(s->user_id))
        return BAD("question %s: user not an id", s->question_id);
    if (!valid_time(s->created_at_ns) || !valid_time(s->answered_at_ns))
        return BAD("question %s: time out of range", s->question_id);
    agg_question *q = rt_calloc(1, sizeof(*q));
    q->created = s->created;
    q->created_late = s->created_late;
    q->created_at = s->created_at_ns;
    q->answered = s->answered;
    q->answered_on_time = s->answered_on_time;
    q->answered_at = s->answered_at_ns;
    q->touched_at = s->touched_at_ns;
    if (s->created)
        q->user = agg_course_student(c, s->user_id);
    rt_strmap_put(c->questions, s->question_id, q);
    return RT_OK;
}

static rt_status load_revenue(agg_course *c, const st_course *s)
{
    for (size_t i = 0; i < s->n_currencies; i++) {
        const st_currency *sc = s->currencies[i];
        if (!valid_currency(sc->currency))
            return BAD("currency %zu not three upper-case letters", i);
        for (size_t k = 0; k < c->n_currencies; k++) {
            if (strcmp(c->currencies[k].code, sc->currency) == 0)
                return BAD("currency %s twice", sc->currency);
        }
        agg_currency *cur = agg_course_currency(c, sc->currency);
        cur->all_time = sc->all_time_cents;
        cur->n_days = sc->n_days;
        cur->cap_days = sc->n_days ? sc->n_days : 1;
        cur->days = rt_calloc(cur->cap_days, sizeof(*cur->days));
        for (size_t k = 0; k < sc->n_days; k++) {
            if (k > 0 && sc->days[k]->day <= sc->days[k - 1]->day)
                return BAD("currency %s: days out of order", sc->currency);
            cur->days[k] = (agg_day_amount){sc->days[k]->day, sc->days[k]->cents};
        }
    }
    if (s->last_purchase) {
        const st_purchase *p = s->last_purchase;
        if (!rt_id_valid(p->purchase_id) || !rt_id_valid(p->user_id) ||
            !valid_currency(p->currency) || !valid_time(p->occurred_at_ns))
            return BAD("last purchase malformed");
        agg_purchase *lp = &c->last_purchase;
        lp->purchase_id = rt_strdup(p->purchase_id);
        lp->user_id = rt_strdup(p->user_id);
        lp->amount = p->amount_cents;
        memcpy(lp->currency, p->currency, 4);
        lp->at = p->occurred_at_ns;
        lp->arrival = p->arrival;
        c->has_last_purchase = true;
    }
    return RT_OK;
}

static rt_status load_state(agg_course *c, const st_course *s)
{
    rt_status rc = RT_OK;
#define TRY(x)                                                                                     \
    do {                                                                                           \
        if ((rc = (x)) != RT_OK)                                                                   \
            return rc;                                                                             \
    } while (0)
    if (s->latest_known && !valid_time(s->latest_ns))
        return BAD("latest time out of range");
    c->latest_known = s->latest_known;
    c->latest = s->latest_ns;
    c->arrivals = s->arrivals;
    c->changes = s->changes;
    c->stream_seq = s->stream_seq;
    TRY(load_queue(c, &c->seen_short, s->seen_short, s->n_seen_short));
    TRY(load_queue(c, &c->seen_long, s->seen_long, s->n_seen_long));
    lesson_table lt = {rt_calloc(s->n_lessons ? s->n_lessons : 1, sizeof(agg_lesson *)), 0};
    for (size_t i = 0; i < s->n_lessons; i++) {
        if ((rc = load_lesson(c, s->lessons[i])) != RT_OK)
            break;
        lt.items[lt.n++] = rt_strmap_get(c->lessons, s->lessons[i]->lesson_id);
    }
    for (size_t i = 0; rc == RT_OK && i < s->n_students; i++)
        rc = load_student(c, &lt, s->students[i]);
    free(lt.items);
    if (rc != RT_OK)
        return rc;
    for (size_t i = 0; i < s->n_confusions; i++)
        TRY(load_confusion(c, s->confusions[i]));
    for (size_t i = 0; i < s->n_questions; i++)
        TRY(load_question(c, s->questions[i]));
    TRY(load_revenue(c, s));
    c->confusions_pruned = s->confusions_pruned;
    agg_course_recount(c);
    return RT_OK;
#undef TRY
}

rt_status agg_engine_load_course(agg_engine *e, const uint8_t *data, size_t len,
                                 char *out_course_id)
{
    st_course *s = unpuzzle__rt__v1__analytics_course_state__unpack(NULL, len, data);
    rt_status rc;

    if (!s)
        return BAD("not an AnalyticsCourseState");
    if (s->format != AGG_STATE_FORMAT || !rt_id_valid(s->course_id)) {
        rc = BAD("format %u or course id not understood", s->format);
        unpuzzle__rt__v1__analytics_course_state__free_unpacked(s, NULL);
        return rc;
    }
    agg_course *c = agg_course_new(s->course_id);
    rc = load_state(c, s);
    if (rc != RT_OK) {
        agg_course_free(c);
        unpuzzle__rt__v1__analytics_course_state__free_unpacked(s, NULL);
        return rc;
    }
    agg_course_free(rt_strmap_put(e->courses, c->course_id, c));
    if (out_course_id)
        snprintf(out_course_id, RT_ID_MAX + 1, "%s", c->course_id);
    unpuzzle__rt__v1__analytics_course_state__free_unpacked(s, NULL);
    return RT_OK;
}
