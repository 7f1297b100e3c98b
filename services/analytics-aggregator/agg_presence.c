#include "agg_presence.h"

#include <stdlib.h>
#include <string.h>

#include "agg_clock.h"
#include "rt_alloc.h"
#include "rt_map.h"
#include "rt_room.h"

#define DEFAULT_INTERVAL_MS 10000
#define TTL_INTERVALS 3

typedef struct presence_item {
    char *user_id;
    char *course_id;
    char *lesson_id;
    int64_t since_ns;
} presence_item;

typedef struct presence_course presence_course;

/* One edge's latest update, items sorted by course so a course's items are
 * one run. */
typedef struct presence_edge {
    char *edge_id;
    int64_t expires_ms;
    presence_item *items;
    size_t n_items;
} presence_edge;

/* The runs of one course: (edge, first item, count). */
typedef struct course_run {
    presence_edge *edge;
    size_t first, count;
} course_run;

struct presence_course {
    course_run *runs;
    size_t n_runs, cap_runs;
};

struct agg_presence {
    rt_strmap *edges;   /* edge_id -> presence_edge */
    rt_strmap *courses; /* course_id -> presence_course */
};

rt_status agg_presence_create(agg_presence **out)
{
    agg_presence *p = rt_calloc(1, sizeof(*p));
    p->edges = rt_strmap_create();
    p->courses = rt_strmap_create();
    *out = p;
    return RT_OK;
}

static void free_items(presence_edge *edge)
{
    for (size_t i = 0; i < edge->n_items; i++) {
        free(edge->items[i].user_id);
        free(edge->items[i].course_id);
        free(edge->items[i].lesson_id);
    }
    free(edge->items);
    edge->items = NULL;
    edge->n_items = 0;
}

static void free_edge(void *arg, const char *key, void *value)
{
    presence_edge *edge = value;
    (void)arg;
    (void)key;
    free_items(edge);
    free(edge->edge_id);
    free(edge);
}

static void free_course(void *arg, const char *key, void *value)
{
    presence_course *pc = value;
    (void)arg;
    (void)key;
    free(pc->runs);
    free(pc);
}

void agg_presence_destroy(agg_presence *p)
{
    if (!p)
        return;
    rt_strmap_each(p->edges, free_edge, NULL);
    rt_strmap_destroy(p->edges);
    rt_strmap_each(p->courses, free_course, NULL);
    rt_strmap_destroy(p->courses);
    free(p);
}

/* Removes the runs of `edge` from the course index (before its items go). */
static void unindex_edge(agg_presence *p, presence_edge *edge)
{
    for (size_t i = 0; i < edge->n_items;) {
        const char *course_id = edge->items[i].course_id;
        presence_course *pc = rt_strmap_get(p->courses, course_id);
        for (size_t r = 0; pc && r < pc->n_runs; r++) {
            if (pc->runs[r].edge == edge) {
                pc->runs[r] = pc->runs[--pc->n_runs];
                break;
            }
        }
        if (pc && pc->n_runs == 0) {
            rt_strmap_remove(p->courses, course_id);
            free(pc->runs);
            free(pc);
        }
        while (i < edge->n_items && strcmp(edge->items[i].course_id, course_id) == 0)
            i++;
    }
}

static void index_edge(agg_presence *p, presence_edge *edge)
{
    for (size_t i = 0; i < edge->n_items;) {
        size_t first = i;
        const char *course_id = edge->items[i].course_id;
        while (i < edge->n_items && strcmp(edge->items[i].course_id, course_id) == 0)
            i++;
        presence_course *pc = rt_strmap_get(p->courses, course_id);
        if (!pc) {
            pc = rt_calloc(1, sizeof(*pc));
            rt_strmap_put(p->courses, course_id, pc);
        }
        if (pc->n_runs == pc->cap_runs) {
            pc->cap_runs = pc->cap_runs ? pc->cap_runs * 2 : 4;
            pc->runs = rt_realloc(pc->runs, pc->cap_runs * sizeof(*pc->runs));
        }
        pc->runs[pc->n_runs++] = (course_run){edge, first, i - first};
    }
}

static int cmp_item_course(const void *a, const void *b)
{
    return strcmp(((const presence_item *)a)->course_id, ((const presence_item *)b)->course_id);
}

static void forget_edge(agg_presence *p, presence_edge *edge)
{
    unindex_edge(p, edge);
    rt_strmap_remove(p->edges, edge->edge_id);
    free_edge(NULL, NULL, edge);
}

rt_status agg_presence_apply(agg_presence *p, const Unpuzzle__Rt__V1__PresenceUpdate *update,
                             int64_t received_ms)
{
    if (!update || !update->edge_id || !rt_id_valid(update->edge_id))
        return RT_ERR(RT_ERR_INVALID_ARG, "edge_id: not an id");
    presence_edge *edge = rt_strmap_get(p->edges, update->edge_id);
    if (edge) {
        unindex_edge(p, edge);
        free_items(edge);
    } else {
        edge = rt_calloc(1, sizeof(*edge));
        edge->edge_id = rt_strdup(update->edge_id);
        rt_strmap_put(p->edges, edge->edge_id, edge);
    }
    int64_t interval = update->interval_ms ? update->interval_ms : DEFAULT_INTERVAL_MS;
    edge->expires_ms = received_ms + TTL_INTERVALS * interval;
    edge->items = rt_calloc(update->n_entries ? update->n_entries : 1, sizeof(*edge->items));
    for (size_t i = 0; i < update->n_entries; i++) {
        const Unpuzzle__Rt__V1__PresenceEntry *e = update->entries[i];
        int64_t since = 0;
        if (!e || !e->user_id || !rt_id_valid(e->user_id) || !e->course_id ||
            !rt_id_valid(e->course_id))
            continue;
        if (!agg_clock_from_timestamp(&since, e->since))
            since = 0;
        presence_item *it = &edge->items[edge->n_items++];
        it->user_id = rt_strdup(e->user_id);
        it->course_id = rt_strdup(e->course_id);
        it->lesson_id = rt_strdup(e->lesson_id && rt_id_valid(e->lesson_id) ? e->lesson_id : "");
        it->since_ns = since;
    }
    if (edge->n_items > 1)
        qsort(edge->items, edge->n_items, sizeof(*edge->items), cmp_item_course);
    if (edge->n_items == 0) {
        /* Nothing to show: an edge with no viewers is the same as no edge. */
        forget_edge(p, edge);
        return RT_OK;
    }
    index_edge(p, edge);
    return RT_OK;
}

typedef struct expire_ctx {
    int64_t now_ms;
    presence_edge **expired;
    size_t n, cap;
} expire_ctx;

static void collect_expired(void *arg, const char *key, void *value)
{
    expire_ctx *c = arg;
    presence_edge *edge = value;
    (void)key;
    if (edge->expires_ms > c->now_ms)
        return;
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 8;
        c->expired = rt_realloc(c->expired, c->cap * sizeof(*c->expired));
    }
    c->expired[c->n++] = edge;
}

void agg_presence_expire(agg_presence *p, int64_t now_ms)
{
    expire_ctx c = {.now_ms = now_ms};
    rt_strmap_each(p->edges, collect_expired, &c);
    for (size_t i = 0; i < c.n; i++)
        forget_edge(p, c.expired[i]);
    free(c.expired);
}

void agg_presence_each(const agg_presence *p, const char *course_id, int64_t now_ms,
                       void (*fn)(void *arg, const agg_presence_entry *entry), void *arg)
{
    const presence_course *pc = rt_strmap_get(p->courses, course_id);
    for (size_t r = 0; pc && r < pc->n_runs; r++) {
        const course_run *run = &pc->runs[r];
        if (run->edge->expires_ms <= now_ms)
            continue;
        for (size_t i = run->first; i < run->first + run->count; i++) {
            const presence_item *it = &run->edge->items[i];
            agg_presence_entry entry = {it->user_id, it->lesson_id, it->since_ns};
            fn(arg, &entry);
        }
    }
}

size_t agg_presence_edge_count(const agg_presence *p)
{
    return rt_strmap_count(p->edges);
}
