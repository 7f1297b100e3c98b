#include "auth_members.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "rt_alloc.h"
#include "rt_log.h"
#include "rt_map.h"
#include "rt_time.h"

typedef struct course_set {
    rt_strmap *roles; /* user -> (void *)(uintptr_t)(role + 1); NULL when too big */
    uint64_t expires_ns;
} course_set;

struct auth_members {
    auth_store *store;
    uint64_t ttl_ns;
    size_t max_courses, max_members, max_roles;

    pthread_mutex_t lock;
    rt_strmap *courses; /* course id -> course_set */
    uint64_t generation;

    pthread_rwlock_t roles_lock;
    rt_strmap *roles; /* user -> (role + 1); NULL: no usable table */
};

static void *role_value(int role)
{
    return (void *)(uintptr_t)(role + 1);
}

static int role_of(void *value)
{
    return (int)((uintptr_t)value - 1);
}

static void set_free(course_set *set)
{
    if (set) {
        rt_strmap_destroy(set->roles);
        free(set);
    }
}

static void free_set_entry(void *arg, const char *key, void *value)
{
    (void)arg;
    (void)key;
    set_free(value);
}

rt_status auth_members_create(auth_members **out, auth_store *store, uint64_t set_ttl_ns,
                              size_t max_courses, size_t max_members_per_course, size_t max_roles)
{
    auth_members *m = rt_calloc(1, sizeof(*m));
    m->store = store;
    m->ttl_ns = set_ttl_ns;
    m->max_courses = max_courses ? max_courses : 1;
    m->max_members = max_members_per_course;
    m->max_roles = max_roles;
    m->courses = rt_strmap_create();
    pthread_mutex_init(&m->lock, NULL);
    pthread_rwlock_init(&m->roles_lock, NULL);
    *out = m;
    return RT_OK;
}

void auth_members_destroy(auth_members *m)
{
    if (!m)
        return;
    rt_strmap_each(m->courses, free_set_entry, NULL);
    rt_strmap_destroy(m->courses);
    rt_strmap_destroy(m->roles);
    pthread_mutex_destroy(&m->lock);
    pthread_rwlock_destroy(&m->roles_lock);
    free(m);
}

static void add_member(void *arg, const char *user_id, auth_member_role role)
{
    rt_strmap_put(arg, user_id, role_value((int)role));
}

rt_status auth_members_member_role(auth_member_role *out, void *ctx, const char *course_id,
                                   const char *user_id)
{
    auth_members *m = ctx;
    uint64_t now = rt_time_mono_ns();

    *out = UNPUZZLE__RT__V1__MEMBER_ROLE__MEMBER_ROLE_UNSPECIFIED;
    if (m->ttl_ns == 0)
        return auth_store_member_role(out, m->store, course_id, user_id);
    pthread_mutex_lock(&m->lock);
    course_set *set = rt_strmap_get(m->courses, course_id);
    if (set && set->expires_ns > now) {
        if (set->roles) {
            void *v = rt_strmap_get(set->roles, user_id);
            if (v)
                *out = (auth_member_role)role_of(v);
            pthread_mutex_unlock(&m->lock);
            return RT_OK;
        }
        pthread_mutex_unlock(&m->lock);
        /* Known to be too big to hold: ask for this user only. */
        return auth_store_member_role(out, m->store, course_id, user_id);
    }
    uint64_t generation = m->generation;
    pthread_mutex_unlock(&m->lock);

    rt_strmap *roles = rt_strmap_create();
    size_t count = 0;
    rt_status s =
        auth_store_course_members(m->store, course_id, m->max_members, add_member, roles, &count);
    if (s != RT_OK && s != RT_ERR_LIMIT) {
        rt_strmap_destroy(roles);
        return s;
    }
    if (s == RT_ERR_LIMIT) {
        rt_strmap_destroy(roles);
        roles = NULL;
    } else {
        void *v = rt_strmap_get(roles, user_id);
        if (v)
            *out = (auth_member_role)role_of(v);
    }
    pthread_mutex_lock(&m->lock);
    if (generation == m->generation) {
        if (rt_strmap_count(m->courses) >= m->max_courses) {
            rt_strmap_each(m->courses, free_set_entry, NULL);
            rt_strmap_destroy(m->courses);
            m->courses = rt_strmap_create();
        }
        course_set *fresh = rt_calloc(1, sizeof(*fresh));
        fresh->roles = roles;
        fresh->expires_ns = now + m->ttl_ns;
        set_free(rt_strmap_put(m->courses, course_id, fresh));
        roles = NULL;
    }
    pthread_mutex_unlock(&m->lock);
    rt_strmap_destroy(roles);
    if (s == RT_ERR_LIMIT)
        return auth_store_member_role(out, m->store, course_id, user_id);
    return RT_OK;
}

rt_status auth_members_lesson_course(char out_course_id[RT_ID_MAX + 1], bool *found, void *ctx,
                                     const char *lesson_id)
{
    auth_members *m = ctx;
    return auth_store_lesson_course(out_course_id, found, m->store, lesson_id);
}

void auth_members_drop_course(auth_members *m, const char *course_id)
{
    pthread_mutex_lock(&m->lock);
    m->generation++;
    set_free(rt_strmap_remove(m->courses, course_id));
    pthread_mutex_unlock(&m->lock);
}

static void add_role(void *arg, const char *user_id, auth_role role)
{
    rt_strmap_put(arg, user_id, role_value((int)role));
}

rt_status auth_members_refresh_roles(auth_members *m)
{
    rt_strmap *fresh = rt_strmap_create();
    size_t count = 0;
    rt_status s = auth_store_all_roles(m->store, m->max_roles, add_role, fresh, &count);

    if (s == RT_ERR_LIMIT) {
        /* Too many rows to hold: per-user lookups from now on. */
        rt_strmap_destroy(fresh);
        fresh = NULL;
    } else if (s != RT_OK) {
        rt_strmap_destroy(fresh);
        return s;
    }
    pthread_rwlock_wrlock(&m->roles_lock);
    rt_strmap *old = m->roles;
    m->roles = fresh;
    pthread_rwlock_unlock(&m->roles_lock);
    rt_strmap_destroy(old);
    return RT_OK;
}

bool auth_members_role(auth_members *m, const char *user_id, auth_role *out, bool *found)
{
    bool usable = false;
    pthread_rwlock_rdlock(&m->roles_lock);
    if (m->roles) {
        usable = true;
        void *v = rt_strmap_get(m->roles, user_id);
        *found = v != NULL;
        if (v)
            *out = (auth_role)role_of(v);
    }
    pthread_rwlock_unlock(&m->roles_lock);
    return usable;
}
