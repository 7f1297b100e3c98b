#include "edge_service.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "edge_hub.h"
#include "edge_loop.h"
#include "edge_metrics.h"
#include "rt_alloc.h"
#include "rt_log.h"

#define MAX_LOOPS 64

struct edge_service {
    const edge_config *config;
    rt_metrics *registry;
    edge_metrics metrics;
    edge_hub *hub;
    edge_loop *loops[MAX_LOOPS];
    int n_loops;
    int port;
    atomic_bool draining;
};

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
                                .registry = registry,
                                .ready = edge_service_ready,
                                .ready_arg = svc};
        if ((s = edge_loop_start(&svc->loops[i], &lo)) != RT_OK)
            goto fail;
        /* With WS_PORT=0 the first loop picks the port; the others share it. */
        svc->port = edge_loop_port(svc->loops[i]);
    }
    edge_hub_tick(svc->hub);
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
    /* NATS callbacks must not post to loops that are being freed. */
    if (svc->hub)
        edge_hub_detach_loops(svc->hub);
    for (int i = 0; i < svc->n_loops; i++)
        edge_loop_stop(svc->loops[i]);
    edge_hub_destroy(svc->hub);
    free(svc);
}
