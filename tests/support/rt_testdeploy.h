/*
 * rt_testdeploy: nats-server running deploy/nats/nats-server.conf as
 * deployed — one user per service with the permissions of spec/subjects.md
 * "Security" — for tests that prove something works under a service's own
 * permissions (e.g. Django publishing as the django user).
 *
 * Changes to the deployed file, made in a copy in the temp dir: the JetStream
 * store_dir moves into the temp dir (host and ports come from -a/-p/-m), and
 * one user is added for the test itself, RT_TEST_DEPLOY_READER, without any
 * restriction, to look at what the others did (stream contents, any subject).
 * Each user's test password is rt_test_deploy_password(user); nats-server
 * gets them through the *_NATS_PASSWORD variables the config names.
 */
#ifndef RT_TESTDEPLOY_H
#define RT_TESTDEPLOY_H

#include <nats/nats.h>

#include "rt_testenv.h"

#define RT_TEST_DEPLOY_CONF RT_SOURCE_DIR "/deploy/nats/nats-server.conf"
#define RT_TEST_DEPLOY_READER "rt-test-reader"

typedef struct rt_test_deploy_nats rt_test_deploy_nats;

/* Starts it on free loopback ports; returns once JetStream is ready. */
rt_status rt_test_deploy_nats_start(rt_test_deploy_nats **out);
const char *rt_test_deploy_nats_url(const rt_test_deploy_nats *nats); /* nats://127.0.0.1:<port> */
/* The test password of a user of the config ("auth", "ws-edge", "django",
 * ...) or of RT_TEST_DEPLOY_READER; NULL for any other name. */
const char *rt_test_deploy_password(const char *user);
/* Connects as `user` with its test password (no reconnect, 5 s timeout). */
rt_status rt_test_deploy_connect(natsConnection **nc, const rt_test_deploy_nats *nats,
                                 const char *user);
/*
 * Starts the auth binary as NATS user "auth" against `pg` with the test
 * secret RT_TEST_JWT_SECRET (rt_teststack.h), plus `extra_env` (may be
 * NULL; later entries win), and waits for /readyz, which auth answers once
 * the EVENTS stream exists. *admin_port (may be NULL) gets its ADMIN_PORT.
 */
rt_status rt_test_deploy_start_auth(rt_test_proc **out, int *admin_port,
                                    const rt_test_deploy_nats *nats, rt_test_pg *pg,
                                    const char *const *extra_env);
/* Stops nats-server, removes its dir; NULL harmless. */
void rt_test_deploy_nats_destroy(rt_test_deploy_nats *nats);

#endif
