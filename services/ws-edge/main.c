/*
 * ws-edge: the browser-facing WebSocket service.
 * Configuration: environment variables only (`ws-edge --help` lists them).
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "edge_config.h"
#include "edge_service.h"
#include "rt_admin.h"
#include "rt_log.h"
#include "rt_metrics.h"
#include "rt_signal.h"
#include "rt_time.h"

int main(int argc, char **argv)
{
    edge_config config;
    rt_metrics *metrics = NULL;
    edge_service *service = NULL;
    rt_log_level level = RT_LOG_INFO;
    int exit_code = 1;

    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        rt_config_print_help("ws-edge", edge_config_vars, edge_config_var_count);
        return 0;
    }
    rt_log_init("ws-edge", RT_LOG_INFO);
    if (edge_config_load(&config) != RT_OK) {
        rt_log_error("invalid configuration", "{s:s}", "error", rt_error_message());
        return 2;
    }
    rt_log_level_parse(&level, config.log_level);
    rt_log_init("ws-edge", level);
    rt_config_log(&config, edge_config_vars, edge_config_var_count);
    if (rt_signal_install() != RT_OK || rt_metrics_create(&metrics) != RT_OK)
        goto out;
    rt_admin_route_lws_logs();
    if (edge_service_start(&service, &config, metrics) != RT_OK) {
        rt_log_last_error("ws-edge failed to start");
        goto out;
    }
    rt_log_info("ws-edge started", "{s:i, s:s}", "port", edge_service_port(service), "edge_id",
                config.edge_id);

    while (!rt_signal_stop_requested()) {
        rt_signal_wait(500);
        edge_service_tick(service);
        if (edge_service_failed(service))
            goto out;
    }
    /* Drain: readiness off, closes spread over WS_DRAIN_MS, then exit. */
    rt_log_info("draining", "{s:i, s:i}", "connections", (int)edge_service_connections(service),
                "drain_ms", (int)config.drain_ms);
    edge_service_drain(service);
    uint64_t deadline = rt_time_mono_ns() + (uint64_t)(config.drain_ms + 3000) * 1000000u;
    while (edge_service_connections(service) > 0 && rt_time_mono_ns() < deadline)
        usleep(50 * 1000); /* signals no longer wake us: the stop flag is set */
    exit_code = 0;
out:
    edge_service_stop(service);
    rt_metrics_destroy(metrics);
    edge_config_release(&config);
    if (exit_code == 0)
        rt_log_info("stopped", NULL);
    return exit_code;
}
