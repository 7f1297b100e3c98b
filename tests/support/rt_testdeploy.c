#include "rt_testdeploy.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rt_alloc.h"
#include "rt_teststack.h"

#define STORE_DIR_LINE "store_dir: \"/data\""
#define USERS_LINE "users = ["

struct rt_test_deploy_nats {
    char *dir;
    char *conf;
    char *url;
    rt_test_proc *proc;
};

/* Test passwords: letters and digits, starting with a letter (the config's
 * header says how nats-server parses environment values). */
static const struct {
    const char *user, *env, *password;
} users[] = {
    {"auth", "AUTH_NATS_PASSWORD", "pAuth0deploy1pw"},
    {"ws-edge", "WS_EDGE_NATS_PASSWORD", "pEdge0deploy2pw"},
    {"analytics-aggregator", "ANALYTICS_AGGREGATOR_NATS_PASSWORD", "pAnalytics0deploy3pw"},
    {"notification-dispatcher", "NOTIFICATION_DISPATCHER_NATS_PASSWORD", "pNotify0deploy4pw"},
    {"django", "DJANGO_NATS_PASSWORD", "pDjango0deploy5pw"},
    {RT_TEST_DEPLOY_READER, NULL, "pReader0deploy6pw"},
};
#define N_USERS (sizeof(users) / sizeof(users[0]))

const char *rt_test_deploy_password(const char *user)
{
    for (size_t i = 0; user && i < N_USERS; i++) {
        if (strcmp(users[i].user, user) == 0)
            return users[i].password;
    }
    return NULL;
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    size_t cap = 16384, len = 0, n;
    char *buf;

    if (!f)
        return NULL;
    buf = rt_malloc(cap);
    while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len < 2) {
            cap *= 2;
            buf = rt_realloc(buf, cap);
        }
    }
    fclose(f);
    buf[len] = '\0';
    return buf;
}

/* `text` with the one occurrence of `what` replaced by `with`; NULL (and an
 * error) unless it occurs exactly once. */
static char *replace_once(const char *text, const char *what, const char *with)
{
    const char *at = strstr(text, what);
    if (!at || strstr(at + 1, what)) {
        RT_ERR(RT_ERR_CONFIG, "%s: expected exactly one '%s'", RT_TEST_DEPLOY_CONF, what);
        return NULL;
    }
    return rt_asprintf("%.*s%s%s", (int)(at - text), text, with, at + strlen(what));
}

/* The deployed config with the store moved and the reader user added. */
static rt_status write_config(const char *path, const char *store)
{
    char *conf = read_text(RT_TEST_DEPLOY_CONF), *moved = NULL, *added = NULL, *line = NULL,
         *user = NULL;
    rt_status s = RT_OK;

    if (!conf)
        return RT_ERR(RT_ERR_IO, "cannot read %s", RT_TEST_DEPLOY_CONF);
    line = rt_asprintf("store_dir: \"%s\"", store);
    user = rt_asprintf(USERS_LINE "\n    # rt_testdeploy: the test's own user, unrestricted\n"
                                  "    { user: \"%s\", password: \"%s\" }\n",
                       RT_TEST_DEPLOY_READER, rt_test_deploy_password(RT_TEST_DEPLOY_READER));
    if (!(moved = replace_once(conf, STORE_DIR_LINE, line)) ||
        !(added = replace_once(moved, USERS_LINE, user))) {
        s = RT_ERR_CONFIG;
        goto done;
    }
    FILE *f = fopen(path, "wb");
    if (!f || fprintf(f, "# copy of %s made by rt_testdeploy\n%s", RT_TEST_DEPLOY_CONF, added) < 0)
        s = RT_ERR(RT_ERR_IO, "cannot write %s", path);
    if (f && fclose(f) != 0 && s == RT_OK)
        s = RT_ERR(RT_ERR_IO, "cannot write %s", path);
done:
    free(conf);
    free(moved);
    free(added);
    free(line);
    free(user);
    return s;
}

static char *find_nats_server(void)
{
    const char *path = getenv("PATH");
    char *copy = rt_strdup(path ? path : ""), *save = NULL;
    for (char *d = strtok_r(copy, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        char *candidate = rt_asprintf("%s/nats-server", d);
        if (access(candidate, X_OK) == 0) {
            free(copy);
            return candidate;
        }
        free(candidate);
    }
    free(copy);
    return rt_strdup("/usr/bin/nats-server");
}

rt_status rt_test_deploy_nats_start(rt_test_deploy_nats **out)
{
    rt_test_deploy_nats *n = rt_calloc(1, sizeof(*n));
    char port[16], mport[16], *env_vals[N_USERS];
    const char *env[N_USERS + 1];
    size_t n_env = 0;
    int nats_port = 0;
    rt_status s = RT_OK;

    *out = NULL;
    if (!(n->dir = rt_test_tmpdir("deploy-nats"))) {
        free(n);
        return rt_error_status();
    }
    n->conf = rt_asprintf("%s/nats-server.conf", n->dir);
    char *store = rt_asprintf("%s/store", n->dir);
    s = write_config(n->conf, store);
    free(store);
    if (s != RT_OK) {
        rt_test_deploy_nats_destroy(n);
        return s;
    }
    for (size_t i = 0; i < N_USERS; i++) {
        env_vals[i] = NULL;
        if (users[i].env)
            env[n_env++] = env_vals[i] = rt_asprintf("%s=%s", users[i].env, users[i].password);
    }
    env[n_env] = NULL;

    char *bin = find_nats_server();
    for (int attempt = 0; attempt < 3; attempt++) {
        nats_port = rt_test_free_port();
        int monitor_port = rt_test_free_port();
        snprintf(port, sizeof(port), "%d", nats_port);
        snprintf(mport, sizeof(mport), "%d", monitor_port);
        const char *argv[] = {"-c", n->conf, "-a", "127.0.0.1", "-p", port, "-m", mport, NULL};
        s = rt_test_proc_start(&n->proc, bin, argv, env);
        if (s == RT_OK)
            s = rt_test_proc_wait_http(n->proc, monitor_port, "/healthz?js-enabled-only=true", 200,
                                       15000);
        if (s == RT_OK)
            break;
        /* Most likely lost a port to someone else: try others. */
        rt_test_proc_destroy(n->proc);
        n->proc = NULL;
    }
    free(bin);
    for (size_t i = 0; i < N_USERS; i++)
        free(env_vals[i]);
    if (s != RT_OK) {
        rt_test_deploy_nats_destroy(n);
        return s;
    }
    n->url = rt_asprintf("nats://127.0.0.1:%d", nats_port);
    *out = n;
    return RT_OK;
}

const char *rt_test_deploy_nats_url(const rt_test_deploy_nats *nats)
{
    return nats ? nats->url : NULL;
}

rt_status rt_test_deploy_connect(natsConnection **nc, const rt_test_deploy_nats *nats,
                                 const char *user)
{
    const char *password = rt_test_deploy_password(user);
    natsOptions *opts = NULL;
    natsStatus ns;

    if (!password)
        return RT_ERR(RT_ERR_INVALID_ARG, "no test password for NATS user '%s'",
                      user ? user : "(null)");
    ns = natsOptions_Create(&opts);
    if (ns == NATS_OK)
        ns = natsOptions_SetURL(opts, nats->url);
    if (ns == NATS_OK)
        ns = natsOptions_SetUserInfo(opts, user, password);
    if (ns == NATS_OK)
        ns = natsOptions_SetMaxReconnect(opts, 0);
    if (ns == NATS_OK)
        ns = natsOptions_SetTimeout(opts, 5000);
    if (ns == NATS_OK)
        ns = natsConnection_Connect(nc, opts);
    natsOptions_Destroy(opts);
    if (ns != NATS_OK)
        return RT_ERR(RT_ERR_NATS, "connect as %s: %s", user, natsStatus_GetText(ns));
    return RT_OK;
}

rt_status rt_test_deploy_start_auth(rt_test_proc **out, int *admin_port,
                                    const rt_test_deploy_nats *nats, rt_test_pg *pg,
                                    const char *const *extra_env)
{
    char nats_url[160], nats_pw[96], db_url[256], port[32];
    const char *env[32];
    size_t n = 0;
    int aport = rt_test_free_port();
    rt_status s;

    snprintf(nats_url, sizeof(nats_url), "NATS_URL=%s", nats->url);
    snprintf(nats_pw, sizeof(nats_pw), "NATS_PASSWORD=%s", rt_test_deploy_password("auth"));
    snprintf(db_url, sizeof(db_url), "DATABASE_URL=%s", rt_test_pg_url(pg));
    snprintf(port, sizeof(port), "ADMIN_PORT=%d", aport);
    env[n++] = nats_url;
    env[n++] = "NATS_USER=auth";
    env[n++] = nats_pw;
    env[n++] = db_url;
    env[n++] = port;
    env[n++] = "SUPABASE_JWT_SECRET=" RT_TEST_JWT_SECRET;
    env[n++] = "LOG_LEVEL=debug";
    for (size_t i = 0; extra_env && extra_env[i] && n < 31; i++)
        env[n++] = extra_env[i];
    env[n] = NULL;
    if ((s = rt_test_proc_start(out, "auth", NULL, env)) != RT_OK)
        return s;
    if (admin_port)
        *admin_port = aport;
    return rt_test_proc_wait_http(*out, aport, "/readyz", 200, 15000);
}

void rt_test_deploy_nats_destroy(rt_test_deploy_nats *nats)
{
    if (!nats)
        return;
    rt_test_proc_destroy(nats->proc);
    if (getenv("RT_TEST_KEEP") && strcmp(getenv("RT_TEST_KEEP"), "1") == 0)
        fprintf(stderr, "rt_testdeploy: RT_TEST_KEEP=1, kept %s\n", nats->dir);
    else
        rt_test_rmtree(nats->dir);
    free(nats->dir);
    free(nats->conf);
    free(nats->url);
    free(nats);
}
