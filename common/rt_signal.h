/*
 * rt_signal: SIGTERM/SIGINT ask the service to drain and stop, SIGHUP asks it
 * to reload what it can (auth: the JWKS file). The handlers only set flags
 * and write one byte to a self-pipe, so the main thread can sleep in
 * rt_signal_wait() and wake at once. SIGPIPE is ignored (a closed peer is an
 * ordinary write error).
 */
#ifndef RT_SIGNAL_H
#define RT_SIGNAL_H

#include <stdbool.h>

#include "rt_status.h"

/* Installs the handlers; call once from main before starting threads. */
rt_status rt_signal_install(void);

/* True once SIGTERM or SIGINT arrived (or rt_signal_request_stop() ran). */
bool rt_signal_stop_requested(void);
/* True once per SIGHUP: returns and clears the reload request. */
bool rt_signal_take_reload(void);
/* Asks for a stop from inside the process (tests, fatal errors). */
void rt_signal_request_stop(void);

/* Sleeps until a signal arrives or timeout_ms passes (whichever is first). */
void rt_signal_wait(int timeout_ms);

#endif
