/*
 * agg_engine_metrics: CourseMetrics from one course's state
 * (agg_engine_compute), every formula of docs/analytics.md in one pass over
 * the course: O(students + their recent pairs and prompts + confusions +
 * questions), plus sorting what is listed. Read-only.
 */
#include "agg_engine_internal.h"

#include <stdlib.h>
#include <string.h>

#include "agg_stats.h"
#include "rt_alloc.h"

/* Figures of one student over the window. */
/* Figures of one student (or a course's sum) over the window; 128-bit so a
 * course's sums never overflow. */
typedef struct window_figures {
    agg_i128 active_ns, watched_us; /* heartbeat pairs whose later event is in W */
    agg_i128 shown, completed;      /* prompts first shown in W, and of those completed */
    agg_i128 pace_sum_ns, pace_n;   /* completion - shown over completed ones */
} window_figures;

/* One day of the 30-day series (index 0 = first_day). */
typedef struct series_day {
    agg_i128 active_ns, watched_us, shown, completed;
} series_day;

typedef struct compute_ctx {
    const agg_config *cfg;
    const agg_course *course;
    int64_t end, window_ns, first_day;
    size_t lessons_current;
    series_day days[AGG_SERIES_DAYS];
} compute_ctx;

static bool in_window(const compute_ctx *x, int64_t at)
{
    return agg_clock_in_window(at, x->end, x->window_ns);
}

static series_day *series_at(compute_ctx *x, int64_t at)
{
    int64_t i = agg_clock_day(at) - x->first_day;
    return i >= 0 && i < AGG_SERIES_DAYS ? &x->days[i] : NULL;
}

static void add_pair(compute_ctx *x, window_figures *f, const agg_pair *p)
{
    if (in_window(x, p->at)) {
        f->active_ns += p->active_ns;
        f->watched_us += p->watched_us;
    }
    series_day *d = series_at(x, p->at);
    if (d) {
        d->active_ns += p->active_ns;
        d->watched_us += p->watched_us;
    }
}

/* Folded pairs (window), folded days (series), and the pairs of the
 * heartbeats not folded yet (both). */
static void student_watching(compute_ctx *x, const agg_student *s, window_figures *f)
{
    for (size_t i = s->pairs_head; i < s->n_pairs; i++) {
        if (in_window(x, s->pairs[i].at)) {
            f->active_ns += s->pairs[i].active_ns;
            f->watched_us += s->pairs[i].watched_us;
        }
    }
    for (size_t i = 0; i < s->n_days; i++) {
        int64_t k = s->days[i].day - x->first_day;
        if (k >= 0 && k < AGG_SERIES_DAYS) {
            x->days[k].active_ns += s->days[i].active_ns;
            x->days[k].watched_us += s->days[i].watched_us;
        }
    }
    for (size_t i = 1; i < s->n_beats; i++) {
        agg_pair p;
        if (agg_pair_of(&p, &s->beats[i - 1], &s->beats[i]))
            add_pair(x, f, &p);
    }
}

typedef struct prompt_visit {
    compute_ctx *x;
    window_figures *f;
} prompt_visit;

static void visit_prompt(void *arg, const char *key, void *value)
{
    prompt_visit *v = arg;
    const agg_prompt *p = value;
    (void)key;
    if (!p->shown)
        return; /* a completion without an on-time PromptShown counts nowhere */
    if (in_window(v->x, p->shown_at)) {
        v->f->shown++;
        if (p->completed) {
            v->f->completed++;
            v->f->pace_sum_ns += p->completed_at - p->shown_at;
            v->f->pace_n++;
        }
    }
    series_day *d = series_at(v->x, p->shown_at);
    if (d) {
        d->shown++;
        if (p->completed)
            d->completed++;
    }
}

static size_t completed_current(const agg_student *s)
{
    size_t n = 0;
    for (size_t i = 0; i < s->n_completed; i++) {
        if (s->completed[i]->upserted && !s->completed[i]->deleted)
            n++;
    }
    return n;
}

static bool completed_enrollment(const agg_student *s)
{
    return s->enrollment_change == UNPUZZLE__RT__V1__ENROLLMENT_CHANGE__ENROLLMENT_CHANGE_COMPLETED;
}

/* 60 x watched / active in minutes per hour, as numerator/denominator:
 * watched in us, active in ns -> 60 * 1000 * watched_us / active_ns. */
static agg_i128 learn_num(agg_i128 watched_us)
{
    return 60000 * watched_us;
}

static Google__Protobuf__Timestamp *timestamp_or_null(bool known, int64_t ns)
{
    return known ? agg_clock_new_timestamp(ns) : NULL;
}

/* ---- collecting ---- */

typedef struct ptr_list {
    void **items;
    size_t n, cap;
} ptr_list;

static void ptr_push(ptr_list *l, void *p)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->items = rt_realloc(l->items, l->cap * sizeof(*l->items));
    }
    l->items[l->n++] = p;
}

static void collect_enrolled(void *arg, const char *key, void *value)
{
    (void)key;
    if (agg_student_enrolled(value))
        ptr_push(arg, value);
}

static int cmp_student(const void *a, const void *b)
{
    const agg_student *x = *(agg_student *const *)a, *y = *(agg_student *const *)b;
    return strcmp(x->user_id, y->user_id);
}

static void count_lesson(void *arg, const char *key, void *value)
{
    const agg_lesson *l = value;
    (void)key;
    if (l->upserted && !l->deleted)
        (*(size_t *)arg)++;
}

/* ---- confusions, questions ---- */

typedef struct topic_item {
    const char *lesson_id;
    uint32_t bucket;
    const char *user_id;
    bool resolved;
} topic_item;

typedef struct topic {
    const char *lesson_id;
    uint32_t bucket;
    uint32_t students;
    bool resolved;
} topic;

typedef struct talk_ctx {
    compute_ctx *x;
    topic_item *items;
    size_t n_items, cap_items;
    int64_t *response_ns;
    size_t n_response, cap_response;
    bool waiting_known;
    int64_t oldest_waiting;
    uint64_t in_window;
} talk_ctx;

static void add_response(talk_ctx *t, int64_t ns)
{
    if (t->n_response == t->cap_response) {
        t->cap_response = t->cap_response ? t->cap_response * 2 : 16;
        t->response_ns = rt_realloc(t->response_ns, t->cap_response * sizeof(*t->response_ns));
    }
    t->response_ns[t->n_response++] = ns;
}

static void add_waiting(talk_ctx *t, int64_t created_at)
{
    if (!t->waiting_known || created_at < t->oldest_waiting) {
        t->waiting_known = true;
        t->oldest_waiting = created_at;
    }
}

static void visit_confusion(void *arg, const char *key, void *value)
{
    talk_ctx *t = arg;
    const agg_confusion *cf = value;
    (void)key;
    if (!cf->created)
        return;
    if (!cf->resolved)
        add_waiting(t, cf->created_at);
    if (cf->created_late)
        return; /* windowed figures take on-time confusions only */
    if (cf->resolved_on_time && in_window(t->x, cf->resolved_at))
        add_response(t, cf->resolved_at - cf->created_at);
    if (!in_window(t->x, cf->created_at))
        return;
    t->in_window++;
    if (t->n_items == t->cap_items) {
        t->cap_items = t->cap_items ? t->cap_items * 2 : 16;
        t->items = rt_realloc(t->items, t->cap_items * sizeof(*t->items));
    }
    t->items[t->n_items++] =
        (topic_item){cf->lesson->id, cf->bucket_sec, cf->user->user_id, cf->resolved_on_time};
}

static void visit_question(void *arg, const char *key, void *value)
{
    talk_ctx *t = arg;
    const agg_question *q = value;
    (void)key;
    if (!q->created)
        return;
    if (!q->answered)
        add_waiting(t, q->created_at);
    if (!q->created_late && q->answered_on_time && in_window(t->x, q->answered_at))
        add_response(t, q->answered_at - q->created_at);
}

static int cmp_topic_item(const void *a, const void *b)
{
    const topic_item *x = a, *y = b;
    int c = strcmp(x->lesson_id, y->lesson_id);
    if (c)
        return c;
    if (x->bucket != y->bucket)
        return x->bucket < y->bucket ? -1 : 1;
    return strcmp(x->user_id, y->user_id);
}

/* studentCount desc, then lessonId asc (bytewise), then bucket asc. */
static int cmp_topic(const void *a, const void *b)
{
    const topic *x = a, *y = b;
    if (x->students != y->students)
        return x->students > y->students ? -1 : 1;
    int c = strcmp(x->lesson_id, y->lesson_id);
    if (c)
        return c;
    return x->bucket < y->bucket ? -1 : x->bucket > y->bucket;
}

static void build_topics(Unpuzzle__Rt__V1__CourseMetrics *m, talk_ctx *t)
{
    topic *topics = rt_calloc(t->n_items ? t->n_items : 1, sizeof(*topics));
    size_t n = 0;

    if (t->n_items > 1)
        qsort(t->items, t->n_items, sizeof(*t->items), cmp_topic_item);
    for (size_t i = 0; i < t->n_items;) {
        topic *tp = &topics[n++];
        tp->lesson_id = t->items[i].lesson_id;
        tp->bucket = t->items[i].bucket;
        tp->resolved = true;
        const char *last_user = NULL;
        for (; i < t->n_items && strcmp(t->items[i].lesson_id, tp->lesson_id) == 0 &&
               t->items[i].bucket == tp->bucket;
             i++) {
            if (!last_user || strcmp(last_user, t->items[i].user_id) != 0)
                tp->students++;
            last_user = t->items[i].user_id;
            tp->resolved = tp->resolved && t->items[i].resolved;
        }
    }
    if (n > 1)
        qsort(topics, n, sizeof(*topics), cmp_topic);
    if (n > AGG_TOP_TOPICS)
        n = AGG_TOP_TOPICS;
    m->n_struggling_topics = n;
    m->struggling_topics = rt_calloc(n ? n : 1, sizeof(*m->struggling_topics));
    for (size_t i = 0; i < n; i++) {
        Unpuzzle__Rt__V1__StrugglingTopic *st = rt_malloc(sizeof(*st));
        char mss[AGG_STATS_MSS_LEN];
        unpuzzle__rt__v1__struggling_topic__init(st);
        agg_stats_mss(mss, topics[i].bucket);
        st->lesson_id = rt_strdup(topics[i].lesson_id);
        st->timestamp = rt_strdup(mss);
        st->bucket_start_sec = topics[i].bucket;
        st->student_count = topics[i].students;
        st->resolved = topics[i].resolved;
        m->struggling_topics[i] = st;
    }
    free(topics);
}

static void build_talk(Unpuzzle__Rt__V1__CourseMetrics *m, compute_ctx *x)
{
    const agg_course *c = x->course;
    talk_ctx t = {.x = x};

    rt_strmap_each(c->confusions, visit_confusion, &t);
    rt_strmap_each(c->questions, visit_question, &t);

    Unpuzzle__Rt__V1__ConfusionCounts *cc = rt_malloc(sizeof(*cc));
    unpuzzle__rt__v1__confusion_counts__init(cc);
    cc->open = c->confusions_open;
    cc->in_window = t.in_window;
    cc->total = c->confusions_created;
    m->confusions = cc;

    build_topics(m, &t);

    Unpuzzle__Rt__V1__ResponseTime *rt = rt_malloc(sizeof(*rt));
    unpuzzle__rt__v1__response_time__init(rt);
    if (t.n_response) {
        agg_stats_sort_i64(t.response_ns, t.n_response);
        rt->median_s = agg_stats_new_ratio(agg_stats_nearest_rank(t.response_ns, t.n_response, 50),
                                           AGG_NS_PER_S);
        rt->p90_s = agg_stats_new_ratio(agg_stats_nearest_rank(t.response_ns, t.n_response, 90),
                                        AGG_NS_PER_S);
    }
    rt->waiting = c->confusions_open + c->questions_open;
    if (t.waiting_known)
        rt->oldest_waiting_s = agg_stats_new_ratio(x->end - t.oldest_waiting, AGG_NS_PER_S);
    m->response_time = rt;
    free(t.items);
    free(t.response_ns);
}

/* ---- revenue ---- */

static int cmp_currency(const void *a, const void *b)
{
    return strcmp((*(Unpuzzle__Rt__V1__CurrencyRevenue *const *)a)->currency,
                  (*(Unpuzzle__Rt__V1__CurrencyRevenue *const *)b)->currency);
}

static void build_revenue(Unpuzzle__Rt__V1__CourseMetrics *m, const compute_ctx *x)
{
    const agg_course *c = x->course;
    int64_t today = agg_clock_day(x->end), month_first = agg_clock_month_first_day(today);
    Unpuzzle__Rt__V1__Revenue *rv = rt_malloc(sizeof(*rv));

    unpuzzle__rt__v1__revenue__init(rv);
    rv->n_currencies = c->n_currencies;
    rv->currencies = rt_calloc(c->n_currencies ? c->n_currencies : 1, sizeof(*rv->currencies));
    for (size_t i = 0; i < c->n_currencies; i++) {
        const agg_currency *cur = &c->currencies[i];
        Unpuzzle__Rt__V1__CurrencyRevenue *cr = rt_malloc(sizeof(*cr));
        unpuzzle__rt__v1__currency_revenue__init(cr);
        cr->currency = rt_strdup(cur->code);
        cr->all_time_cents = cur->all_time;
        for (size_t k = 0; k < cur->n_days; k++) {
            if (cur->days[k].day >= month_first && cur->days[k].day <= today)
                cr->month_cents = agg_add_saturated(cr->month_cents, cur->days[k].cents);
            if (cur->days[k].day == today)
                cr->today_cents = agg_add_saturated(cr->today_cents, cur->days[k].cents);
        }
        rv->currencies[i] = cr;
    }
    if (rv->n_currencies > 1)
        qsort(rv->currencies, rv->n_currencies, sizeof(*rv->currencies), cmp_currency);
    if (c->has_last_purchase) {
        Unpuzzle__Rt__V1__LastPurchase *lp = rt_malloc(sizeof(*lp));
        unpuzzle__rt__v1__last_purchase__init(lp);
        lp->purchase_id = rt_strdup(c->last_purchase.purchase_id);
        lp->user_id = rt_strdup(c->last_purchase.user_id);
        lp->amount_cents = c->last_purchase.amount;
        lp->currency = rt_strdup(c->last_purchase.currency);
        lp->occurred_at = agg_clock_new_timestamp(c->last_purchase.at);
        rv->last_purchase = lp;
    }
    m->revenue = rv;
}

/* ---- who is watching ---- */

typedef struct present {
    const char *user_id, *lesson_id;
    int64_t since_ns;
} present;

typedef struct presence_ctx {
    const agg_course *course;
    present *items;
    size_t n, cap;
} presence_ctx;

static void collect_present(void *arg, const agg_presence_entry *e)
{
    presence_ctx *p = arg;
    const agg_student *s = rt_strmap_get(p->course->students, e->user_id);
    if (!s || !agg_student_enrolled(s))
        return; /* students enrolled at end, as every student figure */
    if (p->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 16;
        p->items = rt_realloc(p->items, p->cap * sizeof(*p->items));
    }
    p->items[p->n++] = (present){s->user_id, e->lesson_id, e->since_ns};
}

/* By user, then the earliest known `since` first (unknown last), then lesson. */
static int cmp_present(const void *a, const void *b)
{
    const present *x = a, *y = b;
    int c = strcmp(x->user_id, y->user_id);
    if (c)
        return c;
    int64_t sx = x->since_ns ? x->since_ns : INT64_MAX, sy = y->since_ns ? y->since_ns : INT64_MAX;
    if (sx != sy)
        return sx < sy ? -1 : 1;
    return strcmp(x->lesson_id, y->lesson_id);
}

static void build_active(Unpuzzle__Rt__V1__CourseMetrics *m, const compute_ctx *x,
                         const agg_presence *presence, int64_t now_wall_ms)
{
    presence_ctx p = {.course = x->course};
    size_t n = 0;

    if (presence)
        agg_presence_each(presence, x->course->course_id, now_wall_ms, collect_present, &p);
    if (p.n > 1)
        qsort(p.items, p.n, sizeof(*p.items), cmp_present);
    m->active_students = rt_calloc(p.n ? p.n : 1, sizeof(*m->active_students));
    for (size_t i = 0; i < p.n; i++) {
        if (n && strcmp(p.items[i].user_id, m->active_students[n - 1]->user_id) == 0)
            continue; /* one line per student: their longest-present entry */
        Unpuzzle__Rt__V1__ActiveStudent *as = rt_malloc(sizeof(*as));
        unpuzzle__rt__v1__active_student__init(as);
        as->user_id = rt_strdup(p.items[i].user_id);
        as->lesson_id = rt_strdup(p.items[i].lesson_id);
        as->since = timestamp_or_null(p.items[i].since_ns != 0, p.items[i].since_ns);
        m->active_students[n++] = as;
    }
    m->n_active_students = n;
    m->active_student_count = (uint32_t)n;
    free(p.items);
}

/* ---- the whole ---- */

static Unpuzzle__Rt__V1__StudentInsight *
student_insight(const agg_student *s, const window_figures *f, size_t lessons, size_t done)
{
    Unpuzzle__Rt__V1__StudentInsight *si = rt_malloc(sizeof(*si));
    unpuzzle__rt__v1__student_insight__init(si);
    si->user_id = rt_strdup(s->user_id);
    si->learn_rate = agg_stats_new_ratio(learn_num(f->watched_us), f->active_ns);
    si->learn_rate_band = rt_strdup(
        agg_stats_band(learn_num(f->watched_us), f->active_ns, agg_stats_learn_rate_bands));
    si->execution_rate = agg_stats_new_ratio(100 * f->completed, f->shown);
    si->execution_rate_band =
        rt_strdup(agg_stats_band(100 * f->completed, f->shown, agg_stats_execution_rate_bands));
    si->execution_pace_s = agg_stats_new_ratio(f->pace_sum_ns, f->pace_n * AGG_NS_PER_S);
    if (completed_enrollment(s))
        si->progress = agg_stats_new_ratio(100, 1);
    else
        si->progress = agg_stats_new_ratio((agg_i128)100 * (int64_t)done, (int64_t)lessons);
    si->last_active_at = timestamp_or_null(s->active_known, s->last_active_at);
    si->needs_help =
        s->open_confusions > 0 ||
        (f->active_ns > 0 && agg_stats_compare(learn_num(f->watched_us), f->active_ns, 20) < 0);
    return si;
}

rt_status agg_engine_compute(Unpuzzle__Rt__V1__CourseMetrics **out, const agg_engine *e,
                             const char *course_id, int64_t now_wall_ms,
                             const agg_presence *presence)
{
    const agg_course *c = rt_strmap_get(e->courses, course_id);
    if (!c || !c->latest_known)
        return RT_ERR(RT_ERR_NOT_FOUND, "no state for course %s", course_id);

    compute_ctx *x = rt_calloc(1, sizeof(*x));
    x->cfg = &e->cfg;
    x->course = c;
    x->end = agg_clock_end(e->cfg.clock, c->latest, now_wall_ms, e->cfg.lateness_s);
    x->window_ns = e->cfg.window_s * AGG_NS_PER_S;
    x->first_day = agg_clock_day(x->end) - (AGG_SERIES_DAYS - 1);
    rt_strmap_each(c->lessons, count_lesson, &x->lessons_current);

    Unpuzzle__Rt__V1__CourseMetrics *m = rt_malloc(sizeof(*m));
    unpuzzle__rt__v1__course_metrics__init(m);
    m->course_id = rt_strdup(c->course_id);
    m->end = agg_clock_new_timestamp(x->end);
    m->window_s = (uint32_t)e->cfg.window_s;

    /* Students enrolled at end, in user_id order. */
    ptr_list enrolled = {0};
    rt_strmap_each(c->students, collect_enrolled, &enrolled);
    if (enrolled.n > 1)
        qsort(enrolled.items, enrolled.n, sizeof(*enrolled.items), cmp_student);

    window_figures course = {0};
    agg_i128 progress_num = 0, progress_den_students = 0;
    int64_t completing = 0;
    int64_t lessons = (int64_t)x->lessons_current, unit = lessons > 0 ? lessons : 1;

    m->n_students = enrolled.n;
    m->students = rt_calloc(enrolled.n ? enrolled.n : 1, sizeof(*m->students));
    for (size_t i = 0; i < enrolled.n; i++) {
        const agg_student *s = enrolled.items[i];
        window_figures f = {0};
        prompt_visit pv = {x, &f};
        size_t done = completed_current(s);

        student_watching(x, s, &f);
        if (s->prompts)
            rt_strmap_each(s->prompts, visit_prompt, &pv);
        m->students[i] = student_insight(s, &f, x->lessons_current, done);

        course.active_ns += f.active_ns;
        course.watched_us += f.watched_us;
        course.shown += f.shown;
        course.completed += f.completed;
        course.pace_sum_ns += f.pace_sum_ns;
        course.pace_n += f.pace_n;
        /* Progress as a fraction of `unit` lessons: 100 for a completed
         * enrollment, else done / lessons; no value without lessons. */
        if (completed_enrollment(s)) {
            progress_num += unit;
            progress_den_students++;
            completing++;
        } else if (lessons > 0) {
            progress_num += (int64_t)done;
            progress_den_students++;
            if ((int64_t)done == lessons)
                completing++;
        }
    }
    m->enrolled_students = (uint32_t)enrolled.n;

    m->learn_rate = agg_stats_new_ratio(learn_num(course.watched_us), course.active_ns);
    m->learn_rate_band = rt_strdup(
        agg_stats_band(learn_num(course.watched_us), course.active_ns, agg_stats_learn_rate_bands));
    m->execution_rate = agg_stats_new_ratio(100 * course.completed, course.shown);
    m->execution_rate_band = rt_strdup(
        agg_stats_band(100 * course.completed, course.shown, agg_stats_execution_rate_bands));
    m->execution_pace_s = agg_stats_new_ratio(course.pace_sum_ns, course.pace_n * AGG_NS_PER_S);
    m->completion_rate = agg_stats_new_ratio((agg_i128)100 * completing, (int64_t)enrolled.n);
    m->avg_progress = agg_stats_new_ratio(100 * progress_num, unit * progress_den_students);

    m->n_daily = AGG_SERIES_DAYS;
    m->daily = rt_calloc(AGG_SERIES_DAYS, sizeof(*m->daily));
    for (int i = 0; i < AGG_SERIES_DAYS; i++) {
        const series_day *d = &x->days[i];
        Unpuzzle__Rt__V1__DailyPoint *dp = rt_malloc(sizeof(*dp));
        char date[AGG_CLOCK_DATE_LEN];
        unpuzzle__rt__v1__daily_point__init(dp);
        agg_clock_date(date, x->first_day + i);
        dp->date = rt_strdup(date);
        dp->learn_rate = agg_stats_new_ratio(learn_num(d->watched_us), d->active_ns);
        dp->execution_rate = agg_stats_new_ratio(100 * d->completed, d->shown);
        agg_stats_round3(&dp->watch_minutes, d->watched_us, 60 * INT64_C(1000000));
        m->daily[i] = dp;
    }

    build_talk(m, x);
    build_revenue(m, x);
    build_active(m, x, presence, now_wall_ms);

    free(enrolled.items);
    free(x);
    *out = m;
    return RT_OK;
}

void agg_metrics_free(Unpuzzle__Rt__V1__CourseMetrics *m)
{
    if (m)
        protobuf_c_message_free_unpacked(&m->base, NULL);
}
