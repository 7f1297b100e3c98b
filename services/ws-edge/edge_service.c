#include "edge_service.h"

#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "edge_hub.h"
#include "edge_loop.h"
#include "edge_metrics.h"
#include "edge_presence.h"
#include "rt_alloc.h"
#include "rt_log.h"
#include "rt_time.h"

#define MAX_LOOPS 64
/* Presence after a join/leave goes out within this long (joins in a connect
 * storm share one update). */
#define PRESENCE_MIN_GAP_MS 200
/* Entries per presence message (~150 bytes each: well under NATS's 1 MiB). */
#define PRESENCE_PART_ENTRIES 4000

struct edge_service {
    const edge_config *config;
    rt_metrics *registry;
    edge_metrics metrics;
    edge_hub *hub;
    edge_loop *loops[MAX_LOOPS];
    int n_loops;
    int port;
    atomic_bool draining;
    edge_presence *presence;
    pthread_t presence_thread;
    bool presence_started;
    atomic_bool presence_stop;
    char instance[24]; /* random per process: presence sequences restart with it */
    char presence_subject[128];
    int64_t last_trim_ms;
};

/* Publishes the whole presence of this edge (in parts when large). */
static void publish_presence(edge_service *svc)
{
    Unpuzzle__Rt__V1__PresenceUpdate **parts = NULL;
    size_t n = edge_presence_snapshot(
        svc->presence, &parts, PRESENCE_PART_ENTRIES, svc->config->edge_id, svc->instance,
        (uint32_t)svc->config->presence_interval_ms, rt_time_now_ms());
    for (size_t k = 0; k < n; k++) {
        size_t len = unpuzzle__rt__v1__presence_update__get_packed_size(parts[k]);
        uint8_t *buf = rt_malloc(len ? len : 1);
        unpuzzle__rt__v1__presence_update__pack(parts[k], buf);
        if (edge_hub_publish(svc->hub, svc->presence_subject, buf, len) != RT_OK)
            rt_log_debug("presence not published (NATS down); the next interval retries", NULL);
        free(buf);
    }
    edge_presence_free_parts(parts, n);
}

/* At once after a change (at most every PRESENCE_MIN_GAP_MS), and every
 * PRESENCE_INTERVAL_MS so the aggregator's TTL never expires a live edge. */
static void *presence_main(void *arg)
{
    edge_service *svc = arg;
    int64_t interval = svc->config->presence_interval_ms, last = 0;
    while (!atomic_load(&svc->presence_stop)) {
        int64_t now = rt_time_now_ms();
        int64_t wait = last + interval - now;
        edge_presence_wait(svc->presence, (int)(wait > 0 ? (wait < 1000 ? wait : 1000) : 0));
        if (atomic_load(&svc->presence_stop))
            break;
        now = rt_time_now_ms();
        bool changed = edge_presence_changed(svc->presence);
        if (changed && now - last < PRESENCE_MIN_GAP_MS) {
            nats_Sleep(PRESENCE_MIN_GAP_MS - (now - last));
            now = rt_time_now_ms();
        }
        if (changed || now - last >= interval) {
            publish_presence(svc);
            last = now;
        }
    }
    return NULL;
}

rt_status edge_service_start(edge_service **out, const edge_config *config, rt_metrics *registry)
{
    edge_service *svc = rt_calloc(1, sizeof(*svc));
    rt_status s;

    svc->config = config;
    svc->registry = registry;
    atomic_init(&svc->draining, false);
    edge_metrics_register(&svc->metrics, registry);
    svc->n_loops = (int)config->threads;
    if (svc->n_loops <= 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        svc->n_loops = cores > 0 ? (int)cores : 1;
    }
    if (svc->n_loops > MAX_LOOPS)
        svc->n_loops = MAX_LOOPS;

    svc->presence = edge_presence_create();
    atomic_init(&svc->presence_stop, false);
    snprintf(svc->instance, sizeof(svc->instance), "%016llx",
             (unsigned long long)(rt_time_mono_ns() ^ ((uint64_t)rt_time_now_ms() << 20) ^
                                  (uint64_t)getpid()));
    snprintf(svc->presence_subject, sizeof(svc->presence_subject), "presence.v1.edge.%s",
             config->edge_id);
    if ((s = edge_hub_create(&svc->hub, config, &svc->metrics)) != RT_OK)
        goto fail;
    edge_hub_set_loops(svc->hub, svc->loops, svc->n_loops);
    if ((s = edge_hub_connect(svc->hub)) != RT_OK)
        goto fail;
    svc->port = (int)config->port;
    for (int i = 0; i < svc->n_loops; i++) {
        edge_loop_options lo = {.index = i,
                                .port = svc->port,
                                .config = config,
                                .hub = svc->hub,
                                .metrics = &svc->metrics,
                                .presence = svc->presence,
                                .registry = registry,
                                .ready = edge_service_ready,
                                .ready_arg = svc};
        if ((s = edge_loop_start(&svc->loops[i], &lo)) != RT_OK)
            goto fail;
        /* With WS_PORT=0 the first loop picks the port; the others share it. */
        svc->port = edge_loop_port(svc->loops[i]);
    }
    edge_hub_tick(svc->hub);
    if (config->static_dir[0])
        rt_log_warn("serving static files on the WebSocket port (development only)", "{s:s}", "dir",
                    config->static_dir);
    if (pthread_create(&svc->presence_thread, NULL, presence_main, svc) != 0) {
        s = RT_ERR(RT_ERR_INTERNAL, "cannot start the presence thread");
        goto fail;
    }
    svc->presence_started = true;
    *out = svc;
    return RT_OK;
fail:
    edge_service_stop(svc);
    return s;
}

int edge_service_port(const edge_service *svc)
{
    return svc->port;
}

void edge_service_tick(edge_service *svc)
{
    edge_hub_tick(svc->hub);
    /* After a mass disconnect or a resume burst, give freed memory back to
     * the system instead of holding the peak for good (glibc keeps it). */
    int64_t now = rt_time_now_ms();
    if (now - svc->last_trim_ms >= 30000) {
        svc->last_trim_ms = now;
        malloc_trim(0);
    }
}

bool edge_service_ready(void *arg, char *why, size_t why_size)
{
    edge_service *svc = arg;
    if (atomic_load(&svc->draining)) {
        snprintf(why, why_size, "draining");
        return false;
    }
    return edge_hub_ready(svc->hub, why, why_size);
}

bool edge_service_failed(edge_service *svc)
{
    return edge_hub_failed(svc->hub);
}

void edge_service_drain(edge_service *svc)
{
    atomic_store(&svc->draining, true);
    for (int i = 0; i < svc->n_loops; i++)
        edge_loop_post_drain(svc->loops[i], (int)svc->config->drain_ms);
}

size_t edge_service_connections(edge_service *svc)
{
    size_t n = 0;
    for (int i = 0; i < svc->n_loops; i++)
        if (svc->loops[i])
            n += edge_loop_connections(svc->loops[i]);
    return n;
}

void edge_service_stop(edge_service *svc)
{
    if (!svc)
        return;
    if (svc->presence_started) {
        atomic_store(&svc->presence_stop, true);
        pthread_join(svc->presence_thread, NULL);
    }
    /* NATS callbacks must not post to loops that are being freed. */
    if (svc->hub)
        edge_hub_detach_loops(svc->hub);
    for (int i = 0; i < svc->n_loops; i++)
        edge_loop_stop(svc->loops[i]);
    if (svc->hub && svc->presence_started) {
        /* Nobody is here any more: say so rather than wait for the TTL. */
        edge_presence_destroy(svc->presence);
        svc->presence = edge_presence_create();
        publish_presence(svc);
    }
    edge_hub_destroy(svc->hub);
    edge_presence_destroy(svc->presence);
    free(svc);
}
