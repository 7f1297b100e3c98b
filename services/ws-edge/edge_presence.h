/*
 * edge_presence: who is on this edge, per course — the "who is watching"
 * feed of the instructor dashboard (spec/subjects.md, Presence).
 *
 * Loops report each membership of a course: or lesson: room (a user may
 * hold several: devices, tabs); a snapshot collapses them to one entry per
 * (user, course): the lesson room joined last and the earliest join still
 * held. Snapshots are published on presence.v1.edge.<edge_id> by
 * edge_service at once after a change (at most every PRESENCE_MIN_GAP_MS)
 * and every PRESENCE_INTERVAL_MS.
 *
 * Thread-safety: every function may be called from any thread (one mutex,
 * held for a map update).
 */
#ifndef EDGE_PRESENCE_H
#define EDGE_PRESENCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rt_proto.h"

typedef struct edge_presence edge_presence;

edge_presence *edge_presence_create(void);
/* NULL harmless. */
void edge_presence_destroy(edge_presence *p);

/* A connection of user_id joined (left) a room of course_id; lesson_id is
 * the lesson of a lesson: room, "" for the course: room. */
void edge_presence_join(edge_presence *p, const char *user_id, const char *course_id,
                        const char *lesson_id, int64_t now_ms);
void edge_presence_leave(edge_presence *p, const char *user_id, const char *course_id,
                         const char *lesson_id);

/* Waits up to timeout_ms for a change (returns at once if one is pending). */
void edge_presence_wait(edge_presence *p, int timeout_ms);
/* Changed since the last snapshot. */
bool edge_presence_changed(edge_presence *p);

/* The current presence as a PresenceUpdate split into parts of at most
 * max_entries entries (at least one part, possibly empty), numbered with the
 * next sequence; clears the changed flag. Free with edge_presence_free_parts. */
size_t edge_presence_snapshot(edge_presence *p, Unpuzzle__Rt__V1__PresenceUpdate ***parts,
                              size_t max_entries, const char *edge_id, const char *instance,
                              uint32_t interval_ms, int64_t now_ms);
void edge_presence_free_parts(Unpuzzle__Rt__V1__PresenceUpdate **parts, size_t n);

#endif
