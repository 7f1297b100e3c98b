/*
 * analytics-aggregator: live course metrics from the EVENTS stream, for the
 * instructor dashboard (spec/analytics.md). Configuration: environment
 * variables only (`analytics-aggregator --help` lists them).
 */
#include <stdio.h>
#include <string.h>

#include "agg_service.h"
#include "rt_admin.h"
#include "rt_log.h"
#include "rt_metrics.h"
#include "rt_signal.h"

int main(int argc, char **argv)
{
    agg_service_config config;
    rt_metrics *metrics = NULL;
    rt_admin *admin = NULL;
    agg_service *service = NULL;
    rt_log_level level = RT_LOG_INFO;
    int exit_code = 1;

    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        rt_config_print_help("analytics-aggregator", agg_service_config_vars,
                             agg_service_config_var_count);
        return 0;
    }
    rt_log_init("analytics-aggregator", RT_LOG_INFO);
    if (agg_service_config_load(&config) != RT_OK) {
        rt_log_error("invalid configuration", "{s:s}", "error", rt_error_message());
        return 2;
    }
    rt_log_level_parse(&level, config.log_level);
    rt_log_init("analytics-aggregator", level);
    rt_config_log(&config, agg_service_config_vars, agg_service_config_var_count);
    if (rt_signal_install() != RT_OK || rt_metrics_create(&metrics) != RT_OK)
        goto out;
    if (agg_service_start(&service, &config, metrics) != RT_OK) {
        rt_log_last_error("analytics-aggregator failed to start");
        goto out;
    }
    rt_admin_options admin_options = {.port = (int)config.admin_port,
                                      .metrics = metrics,
                                      .ready = agg_service_ready,
                                      .ready_arg = service};
    if (rt_admin_start(&admin, &admin_options) != RT_OK) {
        rt_log_last_error("admin server failed to start");
        goto out;
    }
    rt_log_info("analytics-aggregator started", "{s:i, s:s}", "admin_port", rt_admin_port(admin),
                "replica_id", config.replica_id);
    while (!rt_signal_stop_requested()) {
        rt_signal_wait(1000);
        if (agg_service_failed(service))
            goto out;
    }
    rt_log_info("draining: checkpoint, then hand partitions over", NULL);
    exit_code = 0;
out:
    agg_service_stop(service);
    rt_admin_stop(admin);
    rt_metrics_destroy(metrics);
    agg_service_config_release(&config);
    if (exit_code == 0)
        rt_log_info("stopped", NULL);
    return exit_code;
}
