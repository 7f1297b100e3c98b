/*
 * notification-dispatcher: stored notifications from the EVENTS stream,
 * delivered to the recipients' user: rooms and listed for those who were
 * offline (notify.v1.list). Configuration: environment variables only
 * (`notification-dispatcher --help` lists them).
 */
#include <stdio.h>
#include <string.h>

#include "notify_service.h"
#include "rt_admin.h"
#include "rt_log.h"
#include "rt_metrics.h"
#include "rt_signal.h"

#define SERVICE "notification-dispatcher"

int main(int argc, char **argv)
{
    notify_config config;
    rt_metrics *metrics = NULL;
    rt_admin *admin = NULL;
    notify_service *service = NULL;
    rt_log_level level = RT_LOG_INFO;
    int exit_code = 1;

    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        rt_config_print_help(SERVICE, notify_config_vars, notify_config_var_count);
        return 0;
    }
    rt_log_init(SERVICE, RT_LOG_INFO);
    if (notify_config_load(&config) != RT_OK) {
        rt_log_error("invalid configuration", "{s:s}", "error", rt_error_message());
        return 2;
    }
    rt_log_level_parse(&level, config.log_level);
    rt_log_init(SERVICE, level);
    rt_config_log(&config, notify_config_vars, notify_config_var_count);
    if (rt_signal_install() != RT_OK || rt_metrics_create(&metrics) != RT_OK)
        goto out;
    if (notify_service_start(&service, &config, metrics) != RT_OK) {
        rt_log_last_error(SERVICE " failed to start");
        goto out;
    }
    rt_admin_options admin_options = {.port = (int)config.admin_port,
                                      .metrics = metrics,
                                      .ready = notify_service_ready,
                                      .ready_arg = service};
    if (rt_admin_start(&admin, &admin_options) != RT_OK) {
        rt_log_last_error("admin server failed to start");
        goto out;
    }
    rt_log_info(SERVICE " started", "{s:i}", "admin_port", rt_admin_port(admin));

    int wait_ms = config.sweep_interval_ms < 1000 ? (int)config.sweep_interval_ms : 1000;
    while (!rt_signal_stop_requested()) {
        rt_signal_wait(wait_ms);
        if (rt_signal_stop_requested())
            break;
        notify_service_tick(service);
        if (notify_service_failed(service))
            goto out;
    }
    rt_log_info("draining", NULL);
    exit_code = 0;
out:
    notify_service_stop(service);
    rt_admin_stop(admin);
    rt_metrics_destroy(metrics);
    notify_config_release(&config);
    if (exit_code == 0)
        rt_log_info("stopped", NULL);
    return exit_code;
}
