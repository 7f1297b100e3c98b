/*
 * auth_cache: short-lived memory of answers auth gave, per user.
 *
 * For each user it keeps the platform role (ROLE_CACHE_TTL_MS) and recent
 * room decisions (AUTHZ_CACHE_TTL_MS), so a reconnect storm does not turn
 * into a query storm. Correctness does not depend on the TTL: after auth
 * stores an enrollment change it broadcasts an invalidation that every auth
 * instance applies (auth_cache_drop_user), and a lesson change drops every
 * lesson decision (auth_cache_drop_rooms_with_prefix). Memory is bounded by
 * max_users; when full, expired users are swept, and if that frees nothing
 * the whole cache is cleared (a rare, safe fallback: it only costs queries).
 *
 * Thread-safe (one mutex; every operation is O(1) except the sweeps).
 */
#ifndef AUTH_CACHE_H
#define AUTH_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth_rooms.h"

typedef struct auth_cache auth_cache;

rt_status auth_cache_create(auth_cache **out, size_t max_users);
void auth_cache_destroy(auth_cache *cache); /* NULL harmless */

bool auth_cache_get_role(auth_cache *cache, const char *user_id, auth_role *role, bool *from_db,
                         uint64_t now_ns);
void auth_cache_put_role(auth_cache *cache, const char *user_id, auth_role role, bool from_db,
                         uint64_t expires_ns, uint64_t generation);

bool auth_cache_get_decision(auth_cache *cache, const char *user_id, const char *room,
                             auth_decision *out, uint64_t now_ns);
/*
 * Stores a decision computed from data read after auth_cache_generation()
 * returned `generation`. If any invalidation happened since, the decision
 * may rest on stale rows and is not stored (it is still answered once).
 */
void auth_cache_put_decision(auth_cache *cache, const char *user_id, const char *room,
                             auth_decision decision, uint64_t expires_ns, uint64_t generation);

/* Bumped by every drop; read it before querying the database. */
uint64_t auth_cache_generation(auth_cache *cache);

/* Forgets everything about one user (enrollment changed). */
void auth_cache_drop_user(auth_cache *cache, const char *user_id);
/* Forgets every decision about rooms of one kind, e.g. "lesson:" (a lesson
 * moved or was deleted). */
void auth_cache_drop_rooms_with_prefix(auth_cache *cache, const char *room_prefix);

size_t auth_cache_users(auth_cache *cache);

#endif
