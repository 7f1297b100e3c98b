#include "edge_presence.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rt_alloc.h"
#include "rt_map.h"
#include "rt_room.h"

#define SEP '\x1f'

typedef struct held {
    int count;        /* connections holding this (user, course, lesson) */
    int64_t since_ms; /* earliest join among them */
} held;

struct edge_presence {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    rt_strmap *held; /* "user\x1fcourse\x1flesson" -> held */
    bool changed;
    uint64_t sequence;
};

edge_presence *edge_presence_create(void)
{
    edge_presence *p = rt_calloc(1, sizeof(*p));
    pthread_mutex_init(&p->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cond, &attr);
    pthread_condattr_destroy(&attr);
    p->held = rt_strmap_create();
    return p;
}

static void free_value(void *arg, const char *key, void *value)
{
    (void)arg;
    (void)key;
    free(value);
}

void edge_presence_destroy(edge_presence *p)
{
    if (!p)
        return;
    rt_strmap_each(p->held, free_value, NULL);
    rt_strmap_destroy(p->held);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

static void make_key(char *out, size_t size, const char *user, const char *course,
                     const char *lesson)
{
    snprintf(out, size, "%s%c%s%c%s", user, SEP, course, SEP, lesson);
}

void edge_presence_join(edge_presence *p, const char *user_id, const char *course_id,
                        const char *lesson_id, int64_t now_ms)
{
    char key[3 * (RT_ID_MAX + 1)];
    make_key(key, sizeof(key), user_id, course_id, lesson_id);
    pthread_mutex_lock(&p->lock);
    held *h = rt_strmap_get(p->held, key);
    if (!h) {
        h = rt_calloc(1, sizeof(*h));
        h->since_ms = now_ms;
        rt_strmap_put(p->held, key, h);
        p->changed = true;
        pthread_cond_signal(&p->cond);
    }
    h->count++;
    pthread_mutex_unlock(&p->lock);
}

void edge_presence_leave(edge_presence *p, const char *user_id, const char *course_id,
                         const char *lesson_id)
{
    char key[3 * (RT_ID_MAX + 1)];
    make_key(key, sizeof(key), user_id, course_id, lesson_id);
    pthread_mutex_lock(&p->lock);
    held *h = rt_strmap_get(p->held, key);
    if (h && --h->count == 0) {
        free(rt_strmap_remove(p->held, key));
        p->changed = true;
        pthread_cond_signal(&p->cond);
    }
    pthread_mutex_unlock(&p->lock);
}

void edge_presence_wait(edge_presence *p, int timeout_ms)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&p->lock);
    while (!p->changed) {
        if (pthread_cond_timedwait(&p->cond, &p->lock, &until) != 0)
            break;
    }
    pthread_mutex_unlock(&p->lock);
}

bool edge_presence_changed(edge_presence *p)
{
    pthread_mutex_lock(&p->lock);
    bool changed = p->changed;
    pthread_mutex_unlock(&p->lock);
    return changed;
}

/* ---- snapshot ---- */

typedef struct row {
    char *key; /* "user\0course\0lesson" after splitting */
    const char *user, *course, *lesson;
    int64_t since_ms;
} row;

typedef struct rows {
    row *items;
    size_t n;
} rows;

static void collect(void *arg, const char *key, void *value)
{
    rows *r = arg;
    row *it = &r->items[r->n++];
    it->key = rt_strdup(key);
    char *a = strchr(it->key, SEP);
    char *b = a ? strchr(a + 1, SEP) : NULL;
    *a = '\0';
    *b = '\0';
    it->user = it->key;
    it->course = a + 1;
    it->lesson = b + 1;
    it->since_ms = ((held *)value)->since_ms;
}

static int by_user_course(const void *x, const void *y)
{
    const row *a = x, *b = y;
    int c = strcmp(a->user, b->user);
    return c ? c : strcmp(a->course, b->course);
}

static Unpuzzle__Rt__V1__PresenceUpdate *new_part(const char *edge_id, const char *instance,
                                                  uint32_t interval_ms, uint64_t sequence,
                                                  int64_t now_ms, size_t cap)
{
    Unpuzzle__Rt__V1__PresenceUpdate *u = rt_calloc(1, sizeof(*u));
    unpuzzle__rt__v1__presence_update__init(u);
    u->edge_id = rt_strdup(edge_id);
    u->instance = rt_strdup(instance);
    u->interval_ms = interval_ms;
    u->sequence = sequence;
    u->sent_at = rt_calloc(1, sizeof(*u->sent_at));
    google__protobuf__timestamp__init(u->sent_at);
    u->sent_at->seconds = now_ms / 1000;
    u->sent_at->nanos = (int32_t)(now_ms % 1000) * 1000000;
    u->entries = rt_calloc(cap ? cap : 1, sizeof(*u->entries));
    return u;
}

static Unpuzzle__Rt__V1__PresenceEntry *new_entry(const row *first, const char *lesson,
                                                  int64_t since_ms)
{
    Unpuzzle__Rt__V1__PresenceEntry *e = rt_calloc(1, sizeof(*e));
    unpuzzle__rt__v1__presence_entry__init(e);
    e->user_id = rt_strdup(first->user);
    e->course_id = rt_strdup(first->course);
    e->lesson_id = rt_strdup(lesson);
    e->since = rt_calloc(1, sizeof(*e->since));
    google__protobuf__timestamp__init(e->since);
    e->since->seconds = since_ms / 1000;
    e->since->nanos = (int32_t)(since_ms % 1000) * 1000000;
    return e;
}

size_t edge_presence_snapshot(edge_presence *p, Unpuzzle__Rt__V1__PresenceUpdate ***out,
                              size_t max_entries, const char *edge_id, const char *instance,
                              uint32_t interval_ms, int64_t now_ms)
{
    if (max_entries == 0)
        max_entries = 1;
    pthread_mutex_lock(&p->lock);
    rows r = {.items = rt_calloc(rt_strmap_count(p->held) + 1, sizeof(row))};
    rt_strmap_each(p->held, collect, &r);
    p->changed = false;
    uint64_t sequence = ++p->sequence;
    pthread_mutex_unlock(&p->lock);

    qsort(r.items, r.n, sizeof(row), by_user_course);
    /* One entry per (user, course). */
    Unpuzzle__Rt__V1__PresenceEntry **entries = rt_calloc(r.n + 1, sizeof(*entries));
    size_t n_entries = 0;
    for (size_t i = 0; i < r.n;) {
        size_t j = i;
        int64_t since = r.items[i].since_ms, lesson_since = INT64_MIN;
        const char *lesson = "";
        for (; j < r.n && by_user_course(&r.items[i], &r.items[j]) == 0; j++) {
            if (r.items[j].since_ms < since)
                since = r.items[j].since_ms;
            if (r.items[j].lesson[0] && r.items[j].since_ms >= lesson_since) {
                lesson = r.items[j].lesson;
                lesson_since = r.items[j].since_ms;
            }
        }
        entries[n_entries++] = new_entry(&r.items[i], lesson, since);
        i = j;
    }
    for (size_t i = 0; i < r.n; i++)
        free(r.items[i].key);
    free(r.items);

    size_t n_parts = n_entries ? (n_entries + max_entries - 1) / max_entries : 1;
    Unpuzzle__Rt__V1__PresenceUpdate **parts = rt_calloc(n_parts, sizeof(*parts));
    for (size_t k = 0; k < n_parts; k++) {
        size_t from = k * max_entries;
        size_t count = n_entries - from < max_entries ? n_entries - from : max_entries;
        if (!n_entries)
            count = 0;
        parts[k] = new_part(edge_id, instance, interval_ms, sequence, now_ms, count);
        parts[k]->part = (uint32_t)k;
        parts[k]->parts = (uint32_t)n_parts;
        for (size_t i = 0; i < count; i++)
            parts[k]->entries[parts[k]->n_entries++] = entries[from + i];
    }
    free(entries);
    *out = parts;
    return n_parts;
}

void edge_presence_free_parts(Unpuzzle__Rt__V1__PresenceUpdate **parts, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        Unpuzzle__Rt__V1__PresenceUpdate *u = parts[k];
        for (size_t i = 0; i < u->n_entries; i++) {
            free(u->entries[i]->user_id);
            free(u->entries[i]->course_id);
            free(u->entries[i]->lesson_id);
            free(u->entries[i]->since);
            free(u->entries[i]);
        }
        free(u->entries);
        free(u->edge_id);
        free(u->instance);
        free(u->sent_at);
        free(u);
    }
    free(parts);
}
