#include "rt_signal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t stop_flag;
static volatile sig_atomic_t reload_flag;
static int wake_pipe[2] = {-1, -1};

static void wake(void)
{
    int saved = errno;
    if (wake_pipe[1] >= 0) {
        ssize_t n = write(wake_pipe[1], "x", 1);
        (void)n; /* a full pipe already wakes the reader */
    }
    errno = saved;
}

static void on_signal(int sig)
{
    if (sig == SIGHUP)
        reload_flag = 1;
    else
        stop_flag = 1;
    wake();
}

rt_status rt_signal_install(void)
{
    struct sigaction sa;

    if (wake_pipe[0] < 0) {
        if (pipe2(wake_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
            return RT_ERR(RT_ERR_IO, "pipe2: %s", strerror(errno));
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    if (sigaction(SIGTERM, &sa, NULL) != 0 || sigaction(SIGINT, &sa, NULL) != 0 ||
        sigaction(SIGHUP, &sa, NULL) != 0)
        return RT_ERR(RT_ERR_IO, "sigaction: %s", strerror(errno));
    signal(SIGPIPE, SIG_IGN);
    return RT_OK;
}

bool rt_signal_stop_requested(void)
{
    return stop_flag != 0;
}

bool rt_signal_take_reload(void)
{
    if (!reload_flag)
        return false;
    reload_flag = 0;
    return true;
}

void rt_signal_request_stop(void)
{
    stop_flag = 1;
    wake();
}

void rt_signal_wait(int timeout_ms)
{
    struct pollfd pfd = {.fd = wake_pipe[0], .events = POLLIN};
    char drain[64];

    if (stop_flag || reload_flag)
        return;
    if (wake_pipe[0] < 0) {
        usleep((useconds_t)timeout_ms * 1000);
        return;
    }
    if (poll(&pfd, 1, timeout_ms) > 0) {
        while (read(wake_pipe[0], drain, sizeof(drain)) > 0) {
        }
    }
}
