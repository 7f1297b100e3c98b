#include "notify_publish.h"

#include <stdatomic.h>
#include <stdlib.h>

#include "rt_alloc.h"
#include "rt_log.h"

struct notify_publisher {
    jsCtx *js;
    int timeout_ms;
    atomic_int failures; /* acks that came back as errors (nats.c threads) */
    int refused;         /* messages the client did not take (this thread) */
    size_t count;
};

static void on_publish_error(jsCtx *js, jsPubAckErr *pae, void *closure)
{
    notify_publisher *p = closure;
    (void)js;
    atomic_fetch_add(&p->failures, 1);
    rt_log_warn("room publish not stored", "{s:s, s:s, s:s}", "subject",
                pae->Msg ? natsMsg_GetSubject(pae->Msg) : "", "error", natsStatus_GetText(pae->Err),
                "detail", pae->ErrText ? pae->ErrText : "");
}

rt_status notify_publisher_create(notify_publisher **out, rt_nats *nats, int timeout_ms)
{
    notify_publisher *p = rt_calloc(1, sizeof(*p));
    jsOptions jo;

    atomic_init(&p->failures, 0);
    p->timeout_ms = timeout_ms;
    jsOptions_Init(&jo);
    jo.PublishAsync.MaxPending = 4096;
    jo.PublishAsync.ErrHandler = on_publish_error;
    jo.PublishAsync.ErrHandlerClosure = p;
    natsStatus s = natsConnection_JetStream(&p->js, rt_nats_connection(nats), &jo);
    if (s != NATS_OK) {
        free(p);
        return RT_NATS_ERR(s, "jetstream context");
    }
    *out = p;
    return RT_OK;
}

void notify_publisher_destroy(notify_publisher *p)
{
    if (!p)
        return;
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = 1000;
    js_PublishAsyncComplete(p->js, &po);
    jsCtx_Destroy(p->js);
    free(p);
}

void notify_publish_begin(notify_publisher *p)
{
    atomic_store(&p->failures, 0);
    p->refused = 0;
    p->count = 0;
}

void notify_publish_add(notify_publisher *p, const char *subject, const uint8_t *data, size_t len,
                        const char *msg_id)
{
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MsgId = msg_id;
    po.MaxWait = p->timeout_ms;
    p->count++;
    natsStatus s = js_PublishAsync(p->js, subject, data, (int)len, &po);
    if (s != NATS_OK) {
        p->refused++;
        rt_log_debug("room publish refused by the client", "{s:s, s:s}", "subject", subject,
                     "error", natsStatus_GetText(s));
    }
}

rt_status notify_publish_row(notify_publisher *p, const notify_row *row)
{
    char subject[RT_ROOM_SUBJECT_MAX], id[NOTIFY_MSG_ID_MAX];
    uint8_t *data = NULL;
    size_t len = 0;

    rt_status st = notify_user_subject(subject, row->user_id);
    if (st != RT_OK)
        return st;
    if (row->extra) {
        notify_msg_id_companion(id, row->notification_id);
        notify_publish_add(p, subject, row->extra, row->extra_len, id);
    }
    notify_pack_notification(&data, &len, row);
    notify_msg_id_notification(id, row->notification_id);
    notify_publish_add(p, subject, data, len, id);
    free(data);
    return RT_OK;
}

rt_status notify_publish_wait(notify_publisher *p, size_t *messages)
{
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = p->timeout_ms;
    if (messages)
        *messages = p->count;
    natsStatus s = js_PublishAsyncComplete(p->js, &po);
    if (s != NATS_OK) {
        /* Give up on what is still unacknowledged: it is published again
         * later under the same ids. */
        natsMsgList pending = {0};
        if (js_PublishAsyncGetPendingList(&pending, p->js) == NATS_OK)
            natsMsgList_Destroy(&pending);
        return RT_NATS_ERR(s, "room publishes not acknowledged");
    }
    int failures = atomic_load(&p->failures);
    if (failures || p->refused)
        return RT_ERR(RT_ERR_UNAVAILABLE, "%d of %zu room publishes failed", failures + p->refused,
                      p->count);
    return RT_OK;
}
