/*
 * rt_alloc: allocation that never returns NULL.
 *
 * Policy (decided once, as Redis does): running out of memory is not a
 * condition the services try to survive. A failed allocation logs one line
 * to stderr and aborts, so Kubernetes restarts the process and clients
 * resume from NATS history. Every module uses these instead of malloc & co,
 * which keeps "if (!p)" branches out of the code.
 */
#ifndef RT_ALLOC_H
#define RT_ALLOC_H

#include <stddef.h>

void *rt_malloc(size_t size);
void *rt_calloc(size_t count, size_t size);
void *rt_realloc(void *ptr, size_t size);
char *rt_strdup(const char *s);
char *rt_strndup(const char *s, size_t n);
/* printf into a new string; the caller frees it. */
char *rt_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
