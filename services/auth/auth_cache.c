#include "auth_cache.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt_alloc.h"
#include "rt_time.h"

/* Per user, the few rooms a person's devices join (their course, lesson,
 * user and instructor rooms); past this the oldest entry is replaced. */
#define ROOMS_PER_USER 8

typedef struct cached_room {
    char room[RT_ROOM_NAME_MAX];
    auth_decision decision;
    uint64_t expires_ns;
} cached_room;

typedef struct cached_user {
    struct cached_user *next;
    char user_id[RT_ID_MAX + 1];
    auth_role role;
    bool role_from_db;
    uint64_t role_expires_ns;
    cached_room rooms[ROOMS_PER_USER];
} cached_user;

struct auth_cache {
    pthread_mutex_t lock;
    cached_user **buckets;
    size_t n_buckets;
    size_t n_users, max_users;
    uint64_t generation; /* under lock */
};

static uint64_t hash_id(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    while (*s) {
        h ^= (unsigned char)*s++;
        h *= 1099511628211ull;
    }
    return h;
}

rt_status auth_cache_create(auth_cache **out, size_t max_users)
{
    auth_cache *c = rt_calloc(1, sizeof(*c));
    c->max_users = max_users ? max_users : 1;
    c->n_buckets = 1;
    while (c->n_buckets < c->max_users)
        c->n_buckets <<= 1;
    c->buckets = rt_calloc(c->n_buckets, sizeof(cached_user *));
    pthread_mutex_init(&c->lock, NULL);
    *out = c;
    return RT_OK;
}

static void clear_all__(auth_cache *c)
{
    for (size_t i = 0; i < c->n_buckets; i++) {
        cached_user *u = c->buckets[i];
        while (u) {
            cached_user *next = u->next;
            free(u);
            u = next;
        }
        c->buckets[i] = NULL;
    }
    c->n_users = 0;
}

void auth_cache_destroy(auth_cache *c)
{
    if (!c)
        return;
    clear_all__(c);
    pthread_mutex_destroy(&c->lock);
    free(c->buckets);
    free(c);
}

static bool user_expired(const cached_user *u, uint64_t now_ns)
{
    if (u->role_expires_ns > now_ns)
        return false;
    for (int i = 0; i < ROOMS_PER_USER; i++)
        if (u->rooms[i].room[0] && u->rooms[i].expires_ns > now_ns)
            return false;
    return true;
}

static void sweep__(auth_cache *c, uint64_t now_ns)
{
    for (size_t i = 0; i < c->n_buckets; i++) {
        cached_user **link = &c->buckets[i];
        while (*link) {
            cached_user *u = *link;
            if (user_expired(u, now_ns)) {
                *link = u->next;
                free(u);
                c->n_users--;
            } else {
                link = &u->next;
            }
        }
    }
}

static cached_user *find__(auth_cache *c, const char *user_id)
{
    cached_user *u = c->buckets[hash_id(user_id) & (c->n_buckets - 1)];
    while (u && strcmp(u->user_id, user_id) != 0)
        u = u->next;
    return u;
}

static cached_user *find_or_add__(auth_cache *c, const char *user_id, uint64_t now_ns)
{
    cached_user *u = find__(c, user_id);
    if (u)
        return u;
    if (c->n_users >= c->max_users) {
        sweep__(c, now_ns);
        if (c->n_users >= c->max_users)
            clear_all__(c);
    }
    u = rt_calloc(1, sizeof(*u));
    snprintf(u->user_id, sizeof(u->user_id), "%s", user_id);
    size_t b = hash_id(user_id) & (c->n_buckets - 1);
    u->next = c->buckets[b];
    c->buckets[b] = u;
    c->n_users++;
    return u;
}

bool auth_cache_get_role(auth_cache *c, const char *user_id, auth_role *role, bool *from_db,
                         uint64_t now_ns)
{
    bool hit = false;
    pthread_mutex_lock(&c->lock);
    cached_user *u = find__(c, user_id);
    if (u && u->role_expires_ns > now_ns) {
        *role = u->role;
        *from_db = u->role_from_db;
        hit = true;
    }
    pthread_mutex_unlock(&c->lock);
    return hit;
}

void auth_cache_put_role(auth_cache *c, const char *user_id, auth_role role, bool from_db,
                         uint64_t expires_ns, uint64_t generation)
{
    if (strlen(user_id) > RT_ID_MAX)
        return;
    pthread_mutex_lock(&c->lock);
    if (generation != c->generation) {
        pthread_mutex_unlock(&c->lock);
        return;
    }
    cached_user *u = find_or_add__(c, user_id, rt_time_mono_ns());
    u->role = role;
    u->role_from_db = from_db;
    u->role_expires_ns = expires_ns;
    pthread_mutex_unlock(&c->lock);
}

bool auth_cache_get_decision(auth_cache *c, const char *user_id, const char *room,
                             auth_decision *out, uint64_t now_ns)
{
    bool hit = false;
    pthread_mutex_lock(&c->lock);
    cached_user *u = find__(c, user_id);
    for (int i = 0; u && i < ROOMS_PER_USER; i++) {
        if (u->rooms[i].expires_ns > now_ns && strcmp(u->rooms[i].room, room) == 0) {
            *out = u->rooms[i].decision;
            hit = true;
            break;
        }
    }
    pthread_mutex_unlock(&c->lock);
    return hit;
}

void auth_cache_put_decision(auth_cache *c, const char *user_id, const char *room,
                             auth_decision decision, uint64_t expires_ns, uint64_t generation)
{
    if (strlen(user_id) > RT_ID_MAX || strlen(room) >= RT_ROOM_NAME_MAX)
        return;
    pthread_mutex_lock(&c->lock);
    if (generation != c->generation) {
        pthread_mutex_unlock(&c->lock);
        return;
    }
    cached_user *u = find_or_add__(c, user_id, rt_time_mono_ns());
    cached_room *slot = NULL;
    for (int i = 0; i < ROOMS_PER_USER && !slot; i++)
        if (strcmp(u->rooms[i].room, room) == 0)
            slot = &u->rooms[i];
    /* Otherwise a free slot (never used, or emptied by a drop), else the
     * entry that expires first: with one TTL, the oldest one written. A
     * fixed round-robin would evict a live entry while a slot is free, and
     * the entry just refreshed rather than the oldest. */
    for (int i = 0; i < ROOMS_PER_USER && !slot; i++)
        if (u->rooms[i].room[0] == '\0')
            slot = &u->rooms[i];
    if (!slot) {
        slot = &u->rooms[0];
        for (int i = 1; i < ROOMS_PER_USER; i++)
            if (u->rooms[i].expires_ns < slot->expires_ns)
                slot = &u->rooms[i];
    }
    snprintf(slot->room, sizeof(slot->room), "%s", room);
    slot->decision = decision;
    slot->expires_ns = expires_ns;
    pthread_mutex_unlock(&c->lock);
}

uint64_t auth_cache_generation(auth_cache *c)
{
    pthread_mutex_lock(&c->lock);
    uint64_t g = c->generation;
    pthread_mutex_unlock(&c->lock);
    return g;
}

void auth_cache_drop_user(auth_cache *c, const char *user_id)
{
    pthread_mutex_lock(&c->lock);
    c->generation++;
    cached_user **link = &c->buckets[hash_id(user_id) & (c->n_buckets - 1)];
    while (*link) {
        cached_user *u = *link;
        if (strcmp(u->user_id, user_id) == 0) {
            *link = u->next;
            free(u);
            c->n_users--;
            break;
        }
        link = &u->next;
    }
    pthread_mutex_unlock(&c->lock);
}

void auth_cache_drop_rooms_with_prefix(auth_cache *c, const char *room_prefix)
{
    size_t n = strlen(room_prefix);
    pthread_mutex_lock(&c->lock);
    c->generation++;
    for (size_t i = 0; i < c->n_buckets; i++)
        for (cached_user *u = c->buckets[i]; u; u = u->next)
            for (int r = 0; r < ROOMS_PER_USER; r++)
                if (strncmp(u->rooms[r].room, room_prefix, n) == 0)
                    memset(&u->rooms[r], 0, sizeof(u->rooms[r]));
    pthread_mutex_unlock(&c->lock);
}

size_t auth_cache_users(auth_cache *c)
{
    pthread_mutex_lock(&c->lock);
    size_t n = c->n_users;
    pthread_mutex_unlock(&c->lock);
    return n;
}
