/*
 * edge_service: ws-edge's wiring — the hub (NATS), one event loop per core
 * on the shared port, metrics, readiness and the SIGTERM drain.
 */
#ifndef EDGE_SERVICE_H
#define EDGE_SERVICE_H

#include <stdbool.h>
#include <stddef.h>

#include "edge_config.h"
#include "rt_metrics.h"
#include "rt_status.h"

typedef struct edge_service edge_service;

/* Connects to NATS (in the background if it is down) and starts the loops.
 * `config` and `metrics` are borrowed and must outlive the service. */
rt_status edge_service_start(edge_service **out, const edge_config *config, rt_metrics *metrics);
/* The port the loops listen on (useful with WS_PORT=0). */
int edge_service_port(const edge_service *service);
/* Main thread, periodically. */
void edge_service_tick(edge_service *service);
/* rt_admin ready callback: NATS up, ROOMS stream known, not draining. */
bool edge_service_ready(void *service, char *why, size_t why_size);
/* True when it can never recover (NATS closed for good). */
bool edge_service_failed(edge_service *service);
/* Starts the drain: /readyz turns 503 at once, no new upgrades, every
 * connection is closed 1012, spread over WS_DRAIN_MS. */
void edge_service_drain(edge_service *service);
/* Open connections over all loops. */
size_t edge_service_connections(edge_service *service);
/* Stops the loops and NATS, frees. NULL harmless. */
void edge_service_stop(edge_service *service);

#endif
