/*
 * rt_map: small hash maps for hot paths (rooms by name, connections and
 * requests by id). Open addressing with linear probing and backward-shift
 * deletion: no tombstones, no per-entry allocation, O(1) expected.
 *
 * Keys: rt_strmap copies string keys; rt_u64map takes uint64_t keys
 * (0 is a valid key). Values are opaque pointers the caller owns.
 * Not thread-safe: each map belongs to one thread or is guarded by its
 * owner's lock.
 */
#ifndef RT_MAP_H
#define RT_MAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct rt_strmap rt_strmap;
typedef struct rt_u64map rt_u64map;

rt_strmap *rt_strmap_create(void);
void rt_strmap_destroy(rt_strmap *map); /* frees keys, not values; NULL harmless */
void *rt_strmap_get(const rt_strmap *map, const char *key);
/* Sets key -> value (value must not be NULL); returns the previous value or NULL. */
void *rt_strmap_put(rt_strmap *map, const char *key, void *value);
/* Removes key; returns its value or NULL. */
void *rt_strmap_remove(rt_strmap *map, const char *key);
size_t rt_strmap_count(const rt_strmap *map);
/* Calls fn for every entry (do not modify the map inside). */
void rt_strmap_each(const rt_strmap *map, void (*fn)(void *arg, const char *key, void *value),
                    void *arg);

rt_u64map *rt_u64map_create(void);
void rt_u64map_destroy(rt_u64map *map);
void *rt_u64map_get(const rt_u64map *map, uint64_t key);
void *rt_u64map_put(rt_u64map *map, uint64_t key, void *value);
void *rt_u64map_remove(rt_u64map *map, uint64_t key);
size_t rt_u64map_count(const rt_u64map *map);
void rt_u64map_each(const rt_u64map *map, void (*fn)(void *arg, uint64_t key, void *value),
                    void *arg);

#endif
