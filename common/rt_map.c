#include "rt_map.h"

#include <stdlib.h>
#include <string.h>

#include "rt_alloc.h"

/* ---- string keys ---- */

typedef struct str_slot {
    char *key; /* NULL = empty */
    uint64_t hash;
    void *value;
} str_slot;

struct rt_strmap {
    str_slot *slots;
    size_t cap, count; /* cap is a power of two */
};

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a, then a final mix */
    while (*s) {
        h ^= (unsigned char)*s++;
        h *= 1099511628211ull;
    }
    h ^= h >> 33;
    return h;
}

rt_strmap *rt_strmap_create(void)
{
    rt_strmap *m = rt_calloc(1, sizeof(*m));
    m->cap = 16;
    m->slots = rt_calloc(m->cap, sizeof(str_slot));
    return m;
}

void rt_strmap_destroy(rt_strmap *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->cap; i++)
        free(m->slots[i].key);
    free(m->slots);
    free(m);
}

static size_t str_find(const rt_strmap *m, const char *key, uint64_t h)
{
    size_t mask = m->cap - 1, i = h & mask;
    while (m->slots[i].key && (m->slots[i].hash != h || strcmp(m->slots[i].key, key) != 0))
        i = (i + 1) & mask;
    return i;
}

static void str_grow(rt_strmap *m)
{
    str_slot *old = m->slots;
    size_t old_cap = m->cap;
    m->cap *= 2;
    m->slots = rt_calloc(m->cap, sizeof(str_slot));
    for (size_t i = 0; i < old_cap; i++) {
        if (old[i].key) {
            size_t j = str_find(m, old[i].key, old[i].hash);
            m->slots[j] = old[i];
        }
    }
    free(old);
}

void *rt_strmap_get(const rt_strmap *m, const char *key)
{
    size_t i = str_find(m, key, hash_str(key));
    return m->slots[i].key ? m->slots[i].value : NULL;
}

void *rt_strmap_put(rt_strmap *m, const char *key, void *value)
{
    uint64_t h = hash_str(key);
    if ((m->count + 1) * 4 > m->cap * 3)
        str_grow(m);
    size_t i = str_find(m, key, h);
    if (m->slots[i].key) {
        void *prev = m->slots[i].value;
        m->slots[i].value = value;
        return prev;
    }
    m->slots[i].key = rt_strdup(key);
    m->slots[i].hash = h;
    m->slots[i].value = value;
    m->count++;
    return NULL;
}

void *rt_strmap_remove(rt_strmap *m, const char *key)
{
    size_t mask = m->cap - 1, i = str_find(m, key, hash_str(key));
    if (!m->slots[i].key)
        return NULL;
    void *value = m->slots[i].value;
    free(m->slots[i].key);
    m->slots[i].key = NULL;
    m->count--;
    /* Backward-shift: move later entries of the probe run into the hole. */
    size_t hole = i, j = (i + 1) & mask;
    while (m->slots[j].key) {
        size_t home = m->slots[j].hash & mask;
        if (((j - home) & mask) >= ((j - hole) & mask)) {
            m->slots[hole] = m->slots[j];
            m->slots[j].key = NULL;
            hole = j;
        }
        j = (j + 1) & mask;
    }
    return value;
}

size_t rt_strmap_count(const rt_strmap *m)
{
    return m->count;
}

void rt_strmap_each(const rt_strmap *m, void (*fn)(void *arg, const char *key, void *value),
                    void *arg)
{
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key)
            fn(arg, m->slots[i].key, m->slots[i].value);
}

/* ---- uint64 keys ---- */

typedef struct u64_slot {
    uint64_t key;
    void *value; /* NULL = empty */
} u64_slot;

struct rt_u64map {
    u64_slot *slots;
    size_t cap, count;
};

static uint64_t hash_u64(uint64_t x)
{
    /* splitmix64 finalizer */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

rt_u64map *rt_u64map_create(void)
{
    rt_u64map *m = rt_calloc(1, sizeof(*m));
    m->cap = 16;
    m->slots = rt_calloc(m->cap, sizeof(u64_slot));
    return m;
}

void rt_u64map_destroy(rt_u64map *m)
{
    if (!m)
        return;
    free(m->slots);
    free(m);
}

static size_t u64_find(const rt_u64map *m, uint64_t key)
{
    size_t mask = m->cap - 1, i = hash_u64(key) & mask;
    while (m->slots[i].value && m->slots[i].key != key)
        i = (i + 1) & mask;
    return i;
}

static void u64_grow(rt_u64map *m)
{
    u64_slot *old = m->slots;
    size_t old_cap = m->cap;
    m->cap *= 2;
    m->slots = rt_calloc(m->cap, sizeof(u64_slot));
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].value)
            m->slots[u64_find(m, old[i].key)] = old[i];
    free(old);
}

void *rt_u64map_get(const rt_u64map *m, uint64_t key)
{
    return m->slots[u64_find(m, key)].value;
}

void *rt_u64map_put(rt_u64map *m, uint64_t key, void *value)
{
    if ((m->count + 1) * 4 > m->cap * 3)
        u64_grow(m);
    size_t i = u64_find(m, key);
    void *prev = m->slots[i].value;
    if (!prev)
        m->count++;
    m->slots[i].key = key;
    m->slots[i].value = value;
    return prev;
}

void *rt_u64map_remove(rt_u64map *m, uint64_t key)
{
    size_t mask = m->cap - 1, i = u64_find(m, key);
    void *value = m->slots[i].value;
    if (!value)
        return NULL;
    m->slots[i].value = NULL;
    m->count--;
    size_t hole = i, j = (i + 1) & mask;
    while (m->slots[j].value) {
        size_t home = hash_u64(m->slots[j].key) & mask;
        if (((j - home) & mask) >= ((j - hole) & mask)) {
            m->slots[hole] = m->slots[j];
            m->slots[j].value = NULL;
            hole = j;
        }
        j = (j + 1) & mask;
    }
    return value;
}

size_t rt_u64map_count(const rt_u64map *m)
{
    return m->count;
}

void rt_u64map_each(const rt_u64map *m, void (*fn)(void *arg, uint64_t key, void *value), void *arg)
{
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].value)
            fn(arg, m->slots[i].key, m->slots[i].value);
}
