#include "rt_consumer.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include "rt_alloc.h"
#include "rt_log.h"

struct rt_consumer {
    rt_nats *nats;
    rt_consumer_options opts;
    char *stream, *durable, *filter;
    natsSubscription *sub;
    pthread_t thread;
    atomic_bool stop;
};

static rt_status subscribe(rt_consumer *c)
{
    jsSubOptions so;
    jsErrCode jerr = 0;
    natsStatus s;

    jsSubOptions_Init(&so);
    so.Stream = c->stream;
    so.Config.Durable = c->durable;
    so.Config.FilterSubject = c->filter;
    so.Config.AckPolicy = js_AckExplicit;
    so.Config.DeliverPolicy = js_DeliverAll;
    so.Config.AckWait = (int64_t)c->opts.ack_wait_ms * 1000000;
    so.Config.MaxAckPending = c->opts.max_ack_pending;
    so.Config.MaxDeliver = -1;
    s = js_PullSubscribe(&c->sub, rt_nats_jetstream(c->nats), c->filter, c->durable, NULL, &so,
                         &jerr);
    if (s != NATS_OK) {
        c->sub = NULL;
        return RT_NATS_ERR(s, c->durable);
    }
    rt_log_info("consumer subscribed", "{s:s, s:s, s:s}", "stream", c->stream, "durable",
                c->durable, "subject", c->filter);
    return RT_OK;
}

static void apply_verdicts(rt_consumer *c, natsMsgList *list, rt_msg_verdict *verdicts)
{
    jsOptions jo;
    jsOptions_Init(&jo);
    for (int i = 0; i < list->Count; i++) {
        natsMsg *m = list->Msgs[i];
        natsStatus s = NATS_OK;
        switch (verdicts[i]) {
        case RT_MSG_ACK:
            s = natsMsg_Ack(m, &jo);
            break;
        case RT_MSG_NAK:
            s = natsMsg_NakWithDelay(m, (int64_t)c->opts.nak_delay_ms, &jo);
            break;
        case RT_MSG_TERM:
            rt_log_error("message can never be processed; dropped", "{s:s, s:s}", "durable",
                         c->durable, "subject", natsMsg_GetSubject(m));
            s = natsMsg_Term(m, &jo);
            break;
        }
        if (s != NATS_OK) {
            /* The server will redeliver after AckWait; processing is
             * idempotent, so this costs only time. */
            rt_log_warn("ack failed; message will be redelivered", "{s:s, s:s}", "durable",
                        c->durable, "error", natsStatus_GetText(s));
        }
    }
}

static void *consumer_main(void *p)
{
    rt_consumer *c = p;
    int backoff_ms = 100;
    rt_msg_verdict *verdicts = rt_calloc((size_t)c->opts.batch, sizeof(rt_msg_verdict));

    while (!atomic_load(&c->stop)) {
        if (!c->sub) {
            if (!rt_nats_is_connected(c->nats) || subscribe(c) != RT_OK) {
                if (rt_nats_is_connected(c->nats))
                    rt_log_last_error("consumer subscribe failed; retrying");
                for (int waited = 0; waited < backoff_ms && !atomic_load(&c->stop); waited += 50)
                    nats_Sleep(50);
                backoff_ms = backoff_ms < 5000 ? backoff_ms * 2 : 5000;
                continue;
            }
            backoff_ms = 100;
        }
        natsMsgList list = {0};
        jsErrCode jerr = 0;
        natsStatus s = natsSubscription_Fetch(&list, c->sub, c->opts.batch, 500, &jerr);
        if (s == NATS_OK && list.Count > 0) {
            for (int i = 0; i < list.Count; i++)
                verdicts[i] = RT_MSG_NAK;
            c->opts.handler(c->opts.arg, list.Msgs, list.Count, verdicts);
            apply_verdicts(c, &list, verdicts);
            natsMsgList_Destroy(&list);
            continue;
        }
        natsMsgList_Destroy(&list);
        if (s == NATS_TIMEOUT)
            continue;
        if (s == NATS_CONNECTION_DISCONNECTED || s == NATS_CONNECTION_CLOSED ||
            !rt_nats_is_connected(c->nats)) {
            nats_Sleep(100);
            continue;
        }
        /* Anything else (consumer deleted, stream recreated, permissions):
         * start over with a fresh subscription. */
        rt_log_warn("consumer fetch failed; re-subscribing", "{s:s, s:s, s:i}", "durable",
                    c->durable, "error", natsStatus_GetText(s), "js_error", (int)jerr);
        natsSubscription_Destroy(c->sub);
        c->sub = NULL;
    }
    free(verdicts);
    return NULL;
}

rt_status rt_consumer_start(rt_consumer **out, rt_nats *nats, const rt_consumer_options *options)
{
    rt_consumer *c;

    if (!options->stream || !options->durable || !options->filter_subject || !options->handler)
        return RT_ERR(RT_ERR_INVALID_ARG, "consumer needs stream, durable, subject and handler");
    c = rt_calloc(1, sizeof(*c));
    c->nats = nats;
    c->opts = *options;
    c->stream = rt_strdup(options->stream);
    c->durable = rt_strdup(options->durable);
    c->filter = rt_strdup(options->filter_subject);
    if (c->opts.batch <= 0)
        c->opts.batch = 64;
    if (c->opts.max_ack_pending <= 0)
        c->opts.max_ack_pending = 1000;
    if (c->opts.ack_wait_ms <= 0)
        c->opts.ack_wait_ms = 30000;
    if (c->opts.nak_delay_ms <= 0)
        c->opts.nak_delay_ms = 1000;
    atomic_init(&c->stop, false);
    if (pthread_create(&c->thread, NULL, consumer_main, c) != 0) {
        free(c->stream);
        free(c->durable);
        free(c->filter);
        free(c);
        return RT_ERR(RT_ERR_INTERNAL, "pthread_create failed");
    }
    *out = c;
    return RT_OK;
}

void rt_consumer_stop(rt_consumer *c)
{
    if (!c)
        return;
    atomic_store(&c->stop, true);
    pthread_join(c->thread, NULL);
    if (c->sub) {
        /* Unsubscribe only the client side: the durable stays on the server
         * so the next start resumes where this one stopped. */
        natsSubscription_Destroy(c->sub);
    }
    free(c->stream);
    free(c->durable);
    free(c->filter);
    free(c);
}
