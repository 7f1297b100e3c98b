/*
 * bench-auth: token verifications per second through NATS against one auth
 * instance, with p50/p99/max latency (request sent -> reply received).
 *
 *   build/bin/bench-auth                    starts its own nats-server,
 *                                           PostgreSQL and auth, then measures
 *   build/bin/bench-auth --nats URL --secret S   measures a running stack
 *
 * Options: --requests N (200000), --concurrency C in-flight requests (512),
 * --users K distinct token subjects (1000), --alg HS256|RS256|ES256 (HS256;
 * RS/ES need the self-started stack, which owns the keys), --warmup N (5000).
 */
#include <getopt.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt_alloc.h"
#include "rt_proto.h"
#include "rt_teststack.h"
#include "rt_time.h"

typedef struct bench {
    natsConnection *nc;
    char inbox[64];
    int total, concurrency;
    uint64_t *sent_ns;
    uint32_t *latency_us;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int in_flight, done, failed;
} bench;

static void on_reply(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    bench *b = closure;
    const char *subject = natsMsg_GetSubject(msg);
    int index = atoi(strrchr(subject, '.') + 1);
    uint64_t now = rt_time_mono_ns();
    (void)nc;
    (void)sub;

    Unpuzzle__Rt__V1__VerifyReply *r = unpuzzle__rt__v1__verify_reply__unpack(
        NULL, (size_t)natsMsg_GetDataLength(msg), (const uint8_t *)natsMsg_GetData(msg));
    pthread_mutex_lock(&b->lock);
    if (index >= 0 && index < b->total)
        b->latency_us[index] = (uint32_t)((now - b->sent_ns[index]) / 1000);
    if (!r || !r->ok)
        b->failed++;
    b->done++;
    b->in_flight--;
    pthread_cond_signal(&b->cond);
    pthread_mutex_unlock(&b->lock);
    if (r)
        unpuzzle__rt__v1__verify_reply__free_unpacked(r, NULL);
    natsMsg_Destroy(msg);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Runs `total` verifications of tokens[i % n_tokens]; returns elapsed s. */
static double run(bench *b, uint8_t **payloads, size_t *lens, int n_tokens, int total)
{
    char reply[96];
    uint64_t start = rt_time_mono_ns();

    b->total = total;
    b->done = b->failed = b->in_flight = 0;
    for (int i = 0; i < total; i++) {
        pthread_mutex_lock(&b->lock);
        while (b->in_flight >= b->concurrency)
            pthread_cond_wait(&b->cond, &b->lock);
        b->in_flight++;
        b->sent_ns[i] = rt_time_mono_ns();
        pthread_mutex_unlock(&b->lock);
        snprintf(reply, sizeof(reply), "%s.%d", b->inbox, i);
        natsConnection_PublishRequest(b->nc, "auth.v1.verify", reply, payloads[i % n_tokens],
                                      (int)lens[i % n_tokens]);
    }
    natsConnection_Flush(b->nc);
    pthread_mutex_lock(&b->lock);
    while (b->done < total) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 10;
        if (pthread_cond_timedwait(&b->cond, &b->lock, &ts) != 0) {
            fprintf(stderr, "timed out waiting for replies (%d of %d)\n", b->done, total);
            b->failed += total - b->done;
            break;
        }
    }
    pthread_mutex_unlock(&b->lock);
    return (double)(rt_time_mono_ns() - start) / 1e9;
}

int main(int argc, char **argv)
{
    const char *nats_url = NULL, *secret = RT_TEST_JWT_SECRET, *alg = "HS256";
    int requests = 200000, concurrency = 512, users = 1000, warmup = 5000;
    rt_test_stack *stack = NULL;
    static const struct option options[] = {{"nats", required_argument, NULL, 'n'},
                                            {"secret", required_argument, NULL, 's'},
                                            {"requests", required_argument, NULL, 'r'},
                                            {"concurrency", required_argument, NULL, 'c'},
                                            {"users", required_argument, NULL, 'u'},
                                            {"alg", required_argument, NULL, 'a'},
                                            {"warmup", required_argument, NULL, 'w'},
                                            {"help", no_argument, NULL, 'h'},
                                            {NULL, 0, NULL, 0}};
    int opt;

    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case 'n':
            nats_url = optarg;
            break;
        case 's':
            secret = optarg;
            break;
        case 'r':
            requests = atoi(optarg);
            break;
        case 'c':
            concurrency = atoi(optarg);
            break;
        case 'u':
            users = atoi(optarg);
            break;
        case 'a':
            alg = optarg;
            break;
        case 'w':
            warmup = atoi(optarg);
            break;
        default:
            fprintf(stderr, "usage: bench-auth [--nats URL --secret S] [--requests N] "
                            "[--concurrency C] [--users K] [--alg HS256|RS256|ES256]\n");
            return opt == 'h' ? 0 : 2;
        }
    }
    if (requests < 1 || concurrency < 1 || users < 1 || warmup < 0) {
        fprintf(stderr, "requests, concurrency and users must be positive\n");
        return 2;
    }
    if (!nats_url) {
        fprintf(stderr, "starting nats-server, PostgreSQL and auth...\n");
        if (rt_test_stack_start(&stack) != RT_OK ||
            rt_test_stack_start_auth(stack, NULL) != RT_OK) {
            fprintf(stderr, "stack: %s\n", rt_error_message());
            rt_test_stack_destroy(stack);
            return 1;
        }
        nats_url = rt_test_nats_url(stack->nats);
    } else if (strcmp(alg, "HS256") != 0) {
        fprintf(stderr, "--alg %s needs the self-started stack (it owns the keys)\n", alg);
        return 2;
    }

    /* Pre-mint and pre-pack one request per user. */
    uint8_t **payloads = rt_calloc((size_t)users, sizeof(uint8_t *));
    size_t *lens = rt_calloc((size_t)users, sizeof(size_t));
    int64_t now = rt_time_now_ms() / 1000;
    for (int i = 0; i < users; i++) {
        char sub[32], *token = NULL;
        snprintf(sub, sizeof(sub), "bench-user-%d", i);
        char *claims = rt_testtoken_claims(sub, NULL, "bench", now, now + 3600);
        const void *key = secret;
        const char *kid = NULL;
        if (strcmp(alg, "RS256") == 0) {
            key = rt_testkeys_rsa_private_pem(stack->keys);
            kid = rt_testkeys_rsa_kid(stack->keys);
        } else if (strcmp(alg, "ES256") == 0) {
            key = rt_testkeys_ec_private_pem(stack->keys);
            kid = rt_testkeys_ec_kid(stack->keys);
        }
        if (rt_testtoken_mint(&token, alg, key, kid, claims) != RT_OK) {
            fprintf(stderr, "mint: %s\n", rt_error_message());
            return 1;
        }
        Unpuzzle__Rt__V1__VerifyRequest req = UNPUZZLE__RT__V1__VERIFY_REQUEST__INIT;
        req.token = token;
        lens[i] = unpuzzle__rt__v1__verify_request__get_packed_size(&req);
        payloads[i] = rt_malloc(lens[i]);
        unpuzzle__rt__v1__verify_request__pack(&req, payloads[i]);
        free(token);
        free(claims);
    }

    bench b = {.concurrency = concurrency};
    pthread_mutex_init(&b.lock, NULL);
    pthread_cond_init(&b.cond, NULL);
    b.sent_ns = rt_calloc((size_t)(requests > warmup ? requests : warmup), sizeof(uint64_t));
    b.latency_us = rt_calloc((size_t)(requests > warmup ? requests : warmup), sizeof(uint32_t));
    natsSubscription *sub = NULL;
    char wildcard[80];
    if (natsConnection_ConnectTo(&b.nc, nats_url) != NATS_OK) {
        fprintf(stderr, "cannot connect to %s\n", nats_url);
        return 1;
    }
    snprintf(b.inbox, sizeof(b.inbox), "_INBOX.bench.%lld", (long long)rt_time_now_ms());
    snprintf(wildcard, sizeof(wildcard), "%s.*", b.inbox);
    natsConnection_Subscribe(&sub, b.nc, wildcard, on_reply, &b);
    natsSubscription_SetPendingLimits(sub, -1, -1);
    natsConnection_Flush(b.nc);

    if (warmup > 0)
        run(&b, payloads, lens, users, warmup);
    double secs = run(&b, payloads, lens, users, requests);
    qsort(b.latency_us, (size_t)requests, sizeof(uint32_t), cmp_u32);
    printf("auth verify benchmark: alg=%s users=%d concurrency=%d requests=%d\n", alg, users,
           concurrency, requests);
    printf("  throughput   %.0f verifications/s\n", requests / secs);
    printf("  latency p50  %.2f ms\n", b.latency_us[requests / 2] / 1000.0);
    printf("  latency p99  %.2f ms\n", b.latency_us[(int)(requests * 0.99)] / 1000.0);
    printf("  latency max  %.2f ms\n", b.latency_us[requests - 1] / 1000.0);
    printf("  failed       %d\n", b.failed);

    natsSubscription_Destroy(sub);
    natsConnection_Destroy(b.nc);
    for (int i = 0; i < users; i++)
        free(payloads[i]);
    free(payloads);
    free(lens);
    free(b.sent_ns);
    free(b.latency_us);
    rt_test_stack_destroy(stack);
    return b.failed ? 1 : 0;
}
