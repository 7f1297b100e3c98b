/*
 * auth: verifies Supabase access tokens and decides who may join which room.
 * Configuration: environment variables only (`auth --help` lists them).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth_service.h"
#include "rt_admin.h"
#include "rt_log.h"
#include "rt_metrics.h"
#include "rt_signal.h"

int main(int argc, char **argv)
{
    auth_config config;
    rt_metrics *metrics = NULL;
    rt_admin *admin = NULL;
    auth_service *service = NULL;
    rt_log_level level = RT_LOG_INFO;
    int exit_code = 1;

    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        rt_config_print_help("auth", auth_config_vars, auth_config_var_count);
        return 0;
    }
    rt_log_init("auth", RT_LOG_INFO);
    if (rt_config_load(&config, auth_config_vars, auth_config_var_count) != RT_OK) {
        rt_log_error("invalid configuration", "{s:s}", "error", rt_error_message());
        return 2;
    }
    if (!config.jwt_secret[0] && !config.jwks_file[0]) {
        rt_log_error("invalid configuration", "{s:s}", "error",
                     "SUPABASE_JWT_SECRET or SUPABASE_JWKS_FILE: at least one must be set");
        rt_config_release(&config, auth_config_vars, auth_config_var_count);
        return 2;
    }
    rt_log_level_parse(&level, config.log_level);
    rt_log_init("auth", level);
    rt_config_log(&config, auth_config_vars, auth_config_var_count);
    if (rt_signal_install() != RT_OK || rt_metrics_create(&metrics) != RT_OK)
        goto out;

    if (auth_service_start(&service, &config, metrics) != RT_OK) {
        rt_log_last_error("auth failed to start");
        goto out;
    }
    rt_admin_options admin_options = {.port = (int)config.admin_port,
                                      .metrics = metrics,
                                      .ready = auth_service_ready,
                                      .ready_arg = service};
    if (rt_admin_start(&admin, &admin_options) != RT_OK) {
        rt_log_last_error("admin server failed to start");
        goto out;
    }
    rt_log_info("auth started", "{s:i}", "admin_port", rt_admin_port(admin));

    while (!rt_signal_stop_requested()) {
        rt_signal_wait(1000);
        if (rt_signal_take_reload())
            auth_service_reload_keys(service);
        auth_service_tick(service);
        if (auth_service_failed(service)) {
            exit_code = 1;
            goto out;
        }
    }
    rt_log_info("draining", NULL);
    exit_code = 0;
out:
    auth_service_stop(service);
    rt_admin_stop(admin);
    rt_metrics_destroy(metrics);
    rt_config_release(&config, auth_config_vars, auth_config_var_count);
    if (exit_code == 0)
        rt_log_info("stopped", NULL);
    return exit_code;
}
