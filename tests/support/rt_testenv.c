/*
 * rt_testenv: real nats-server, PostgreSQL and service processes for
 * integration tests (see rt_testenv.h for the contract).
 *
 * Every child is forked with the same recipe (child_exec): its own process
 * group, default signal dispositions, PR_SET_PDEATHSIG so that a test that
 * crashes (an ASan report exits without running atexit handlers) takes its
 * servers with it, stdout/stderr appended to a log file, every inherited
 * descriptor closed on exec. A close-on-exec pipe tells the parent whether
 * exec itself failed, so "no such binary" is an error of the start call and
 * not a mysterious early exit.
 *
 * The only global state is the registry of live children, read by an atexit
 * handler and by a SIGINT/SIGTERM/SIGABRT handler: both kill what is still
 * registered. The signal handler is the one place here that does more than
 * set a flag; it uses only async-signal-safe calls (kill, waitpid,
 * nanosleep, sigaction, raise) because its job is to leave no orphan server.
 */
#include "rt_testenv.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <glob.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "rt_alloc.h"

extern char **environ;

/* Bounds of every wait in this file. */
#define NATS_READY_TIMEOUT_MS 15000
#define NATS_STOP_TIMEOUT_MS 10000
#define PG_INITDB_TIMEOUT_MS 60000
#define PG_READY_TIMEOUT_MS 30000
#define PG_STOP_TIMEOUT_MS 30000
#define EXEC_REPORT_TIMEOUT_MS 10000
#define EMERGENCY_GRACE_MS 3000
#define START_ATTEMPTS 3 /* a "free" port can be taken before the server binds it */
#define LOG_TAIL_LINES 40
#define HTTP_MAX_RESPONSE (64u * 1024 * 1024)

/* ------------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------------ */

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static int remaining_ms(int64_t deadline)
{
    int64_t left = deadline - mono_ms();
    return left < 0 ? 0 : (int)left;
}

static bool keep_dirs(void)
{
    const char *keep = getenv("RT_TEST_KEEP");
    return keep && strcmp(keep, "1") == 0;
}

/* Reads at most the last `max` bytes of a file into a NUL-terminated
 * buffer; the caller frees it. NULL if the file cannot be read. */
static char *read_file_tail(const char *path, size_t max, size_t *out_len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0) {
        long size = ftell(f);
        if (size > 0 && (size_t)size > max)
            fseek(f, size - (long)max, SEEK_SET);
        else
            fseek(f, 0, SEEK_SET);
    }
    size_t cap = 4096, len = 0;
    char *buf = rt_malloc(cap);
    for (;;) {
        if (cap - len < 2048) {
            cap *= 2;
            buf = rt_realloc(buf, cap);
        }
        size_t n = fread(buf + len, 1, cap - len - 1, f);
        if (n == 0)
            break;
        len += n;
        if (len >= max)
            break;
    }
    fclose(f);
    buf[len] = '\0';
    if (out_len)
        *out_len = len;
    return buf;
}

static void print_log_tail(const char *what, const char *log_path)
{
    size_t len = 0;
    char *text = read_file_tail(log_path, 64 * 1024, &len);
    if (!text) {
        fprintf(stderr, "rt_testenv: %s: no log at %s\n", what, log_path);
        return;
    }
    /* Walk back LOG_TAIL_LINES newlines (ignoring a trailing one). */
    size_t start = len;
    int lines = 0;
    if (start > 0 && text[start - 1] == '\n')
        start--;
    while (start > 0) {
        if (text[start - 1] == '\n' && ++lines == LOG_TAIL_LINES)
            break;
        start--;
    }
    fprintf(stderr, "---- rt_testenv: %s: last lines of %s ----\n%s%s---- end of %s ----\n", what,
            log_path, text + start, (len > 0 && text[len - 1] != '\n') ? "\n" : "", log_path);
    free(text);
}

static void describe_wait_status(char *buf, size_t size, int status)
{
    if (WIFEXITED(status))
        snprintf(buf, size, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, size, "killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else
        snprintf(buf, size, "wait status 0x%x", (unsigned)status);
}

static rt_status write_text_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return RT_ERR(RT_ERR_IO, "cannot create %s: %s", path, strerror(errno));
    size_t len = strlen(text);
    bool ok = fwrite(text, 1, len, f) == len;
    ok = (fclose(f) == 0) && ok;
    if (!ok)
        return RT_ERR(RT_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    return RT_OK;
}

/* The current environment with `extra` ("NAME=VALUE") added; an extra entry
 * replaces an inherited one of the same name, and a later extra entry an
 * earlier one. Frees with env_free(). */
static char **env_build(const char *const *extra)
{
    size_t n_env = 0, n_extra = 0;
    while (environ && environ[n_env])
        n_env++;
    while (extra && extra[n_extra])
        n_extra++;
    char **env = rt_calloc(n_env + n_extra + 1, sizeof(*env));
    size_t out = 0;
    for (size_t i = 0; i < n_env; i++) {
        const char *eq = strchr(environ[i], '=');
        size_t name_len = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
        bool overridden = false;
        for (size_t j = 0; j < n_extra && !overridden; j++)
            overridden = strncmp(extra[j], environ[i], name_len) == 0 &&
                         (extra[j][name_len] == '=' || extra[j][name_len] == '\0');
        if (!overridden)
            env[out++] = rt_strdup(environ[i]);
    }
    /* Among the extra entries, a later one replaces an earlier one of the
     * same name (getenv() would see the first). */
    for (size_t j = 0; j < n_extra; j++) {
        const char *eq = strchr(extra[j], '=');
        size_t name_len = eq ? (size_t)(eq - extra[j]) : strlen(extra[j]);
        bool replaced = false;
        for (size_t k = j + 1; k < n_extra && !replaced; k++)
            replaced = strncmp(extra[k], extra[j], name_len) == 0 &&
                       (extra[k][name_len] == '=' || extra[k][name_len] == '\0');
        if (!replaced)
            env[out++] = rt_strdup(extra[j]);
    }
    env[out] = NULL;
    return env;
}

static void env_free(char **env)
{
    for (size_t i = 0; env && env[i]; i++)
        free(env[i]);
    free(env);
}

/* ------------------------------------------------------------------------
 * Ports and temp dirs
 * ------------------------------------------------------------------------ */

int rt_test_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        RT_ERR(RT_ERR_IO, "socket: %s", strerror(errno));
        return -1;
    }
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    int port = -1;
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 ||
        getsockname(fd, (struct sockaddr *)&addr, &len) != 0)
        RT_ERR(RT_ERR_IO, "cannot find a free loopback port: %s", strerror(errno));
    else
        port = ntohs(addr.sin_port);
    close(fd);
    return port;
}

char *rt_test_tmpdir(const char *tag)
{
    char *path = rt_asprintf("/tmp/rt-test-%s-XXXXXX", tag && *tag ? tag : "tmp");
    if (!mkdtemp(path)) {
        RT_ERR(RT_ERR_IO, "mkdtemp %s: %s", path, strerror(errno));
        free(path);
        return NULL;
    }
    return path;
}

static int rmtree_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    remove(path); /* best effort: rm -rf does not stop at the first error */
    return 0;
}

void rt_test_rmtree(const char *path)
{
    /* Refuse the obviously catastrophic; everything else is the caller's call. */
    if (!path || !*path || strcmp(path, "/") == 0)
        return;
    nftw(path, rmtree_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Removes a dir a destroy function owns, or says where it was kept. */
static void dir_release(const char *dir)
{
    if (!dir)
        return;
    if (keep_dirs())
        fprintf(stderr, "rt_testenv: RT_TEST_KEEP=1, kept %s\n", dir);
    else
        rt_test_rmtree(dir);
}

/* ------------------------------------------------------------------------
 * Registry of live children (the only global state)
 * ------------------------------------------------------------------------ */

#define REGISTRY_SLOTS 64

static struct {
    volatile sig_atomic_t pid;      /* 0 = free slot */
    volatile sig_atomic_t kill_sig; /* what to send first if the test dies */
} registry[REGISTRY_SLOTS];

static pid_t registry_owner; /* a forked child must not kill its siblings */
static bool registry_hooks_installed;
static const int registry_signals[] = {SIGINT, SIGTERM, SIGABRT};
static struct sigaction registry_old_actions[3];

/* Kills every registered child's process group and reaps it, politely first
 * (each child's kill_sig), then with SIGKILL. Async-signal-safe. */
static void registry_kill_all(void)
{
    bool any = false;
    for (int i = 0; i < REGISTRY_SLOTS; i++) {
        pid_t pid = registry[i].pid;
        if (pid > 0) {
            kill(-pid, registry[i].kill_sig);
            kill(pid, registry[i].kill_sig);
            any = true;
        }
    }
    if (!any)
        return;
    struct timespec tick = {.tv_sec = 0, .tv_nsec = 10 * 1000000L};
    for (int round = 0; round < EMERGENCY_GRACE_MS / 10 + 100; round++) {
        bool left = false;
        if (round == EMERGENCY_GRACE_MS / 10) {
            for (int i = 0; i < REGISTRY_SLOTS; i++) {
                pid_t pid = registry[i].pid;
                if (pid > 0) {
                    kill(-pid, SIGKILL);
                    kill(pid, SIGKILL);
                }
            }
        }
        for (int i = 0; i < REGISTRY_SLOTS; i++) {
            pid_t pid = registry[i].pid;
            if (pid <= 0)
                continue;
            pid_t r = waitpid(pid, NULL, WNOHANG);
            if (r == pid || (r < 0 && errno == ECHILD))
                registry[i].pid = 0;
            else
                left = true;
        }
        if (!left)
            return;
        nanosleep(&tick, NULL);
    }
}

static void registry_atexit(void)
{
    if (getpid() == registry_owner)
        registry_kill_all();
}

static void registry_on_signal(int sig)
{
    int saved_errno = errno;
    if (getpid() == registry_owner)
        registry_kill_all();
    /* Put back what was there and deliver the signal again, so the process
     * dies (or dumps core) exactly as it would have without us. */
    for (size_t i = 0; i < sizeof(registry_signals) / sizeof(registry_signals[0]); i++)
        if (registry_signals[i] == sig)
            sigaction(sig, &registry_old_actions[i], NULL);
    raise(sig);
    errno = saved_errno;
}

static void registry_install(void)
{
    if (registry_hooks_installed)
        return;
    registry_hooks_installed = true;
    registry_owner = getpid();
    atexit(registry_atexit);
    for (size_t i = 0; i < sizeof(registry_signals) / sizeof(registry_signals[0]); i++) {
        struct sigaction old;
        if (sigaction(registry_signals[i], NULL, &old) != 0)
            continue;
        /* Respect a signal someone chose to ignore or handle already. */
        if ((old.sa_flags & SA_SIGINFO) || old.sa_handler != SIG_DFL)
            continue;
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = registry_on_signal;
        sigemptyset(&sa.sa_mask);
        registry_old_actions[i] = old;
        sigaction(registry_signals[i], &sa, NULL);
    }
}

static void registry_add(pid_t pid, int kill_sig)
{
    for (int i = 0; i < REGISTRY_SLOTS; i++) {
        if (registry[i].pid == 0) {
            registry[i].kill_sig = kill_sig;
            registry[i].pid = pid;
            return;
        }
    }
    /* Not fatal: PR_SET_PDEATHSIG still covers this child. */
    fprintf(stderr, "rt_testenv: more than %d live children; pid %d is not tracked\n",
            REGISTRY_SLOTS, (int)pid);
}

static void registry_remove(pid_t pid)
{
    for (int i = 0; i < REGISTRY_SLOTS; i++)
        if (registry[i].pid == pid)
            registry[i].pid = 0;
}

/* ------------------------------------------------------------------------
 * Spawning and supervising children
 * ------------------------------------------------------------------------ */

struct rt_test_proc {
    char *name;     /* for messages */
    char *dir;      /* temp dir this proc owns (removed on destroy), or NULL */
    char *log_path; /* stdout + stderr, appended */
    pid_t pid;
    bool reaped;
    int wait_status; /* valid once reaped */
    int stop_sig;    /* the signal the test asked for, 0 if none */
    int stop_exit;   /* besides 0, the exit status that answers stop_sig */
    bool failed;     /* destroy prints the log tail */
};

typedef struct {
    const char *path; /* absolute */
    char **argv;
    char **envp;
    const char *log_path;
    bool switch_user; /* run as uid/gid/groups below */
    uid_t uid;
    gid_t gid;
    gid_t *groups;
    int ngroups;
    int death_sig;     /* PR_SET_PDEATHSIG */
    int emergency_sig; /* registry's first signal if the test dies */
} spawn_spec;

/* What a child reports through the close-on-exec pipe when it cannot exec. */
typedef struct {
    int stage;
    int err;
} child_failure;

enum { STAGE_SETGROUPS = 1, STAGE_SETGID, STAGE_SETUID, STAGE_PDEATHSIG, STAGE_DUP, STAGE_EXEC };

static const char *stage_name(int stage)
{
    switch (stage) {
    case STAGE_SETGROUPS:
        return "setgroups";
    case STAGE_SETGID:
        return "setgid";
    case STAGE_SETUID:
        return "setuid";
    case STAGE_PDEATHSIG:
        return "prctl(PR_SET_PDEATHSIG)";
    case STAGE_DUP:
        return "dup2";
    case STAGE_EXEC:
        return "execve";
    }
    return "?";
}

static void child_fail(int report_fd, int stage) __attribute__((noreturn));
static void child_fail(int report_fd, int stage)
{
    child_failure f = {.stage = stage, .err = errno};
    ssize_t n = write(report_fd, &f, sizeof(f));
    (void)n;
    _exit(127);
}

/* Runs in the forked child of a possibly multi-threaded parent (nats.c has
 * threads): async-signal-safe calls only, everything else was prepared. */
static void child_exec(const spawn_spec *spec, int log_fd, int null_fd, int report_fd, pid_t parent,
                       int max_fd) __attribute__((noreturn));
static void child_exec(const spawn_spec *spec, int log_fd, int null_fd, int report_fd, pid_t parent,
                       int max_fd)
{
    struct sigaction dfl;
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    /* Ignored signals survive exec; the parent may ignore SIGPIPE. */
    const int reset[] = {SIGINT, SIGTERM, SIGABRT, SIGPIPE, SIGCHLD, SIGHUP, SIGQUIT, SIGUSR1};
    for (size_t i = 0; i < sizeof(reset) / sizeof(reset[0]); i++)
        sigaction(reset[i], &dfl, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);

    /* Own process group, so a stop reaches the child's own children too. */
    setpgid(0, 0);

    if (spec->switch_user) {
        if (setgroups((size_t)spec->ngroups, spec->groups) != 0)
            child_fail(report_fd, STAGE_SETGROUPS);
        if (setgid(spec->gid) != 0)
            child_fail(report_fd, STAGE_SETGID);
        if (setuid(spec->uid) != 0)
            child_fail(report_fd, STAGE_SETUID);
    }
    /* After setuid: a credential change clears the parent-death signal. */
    if (prctl(PR_SET_PDEATHSIG, spec->death_sig) != 0)
        child_fail(report_fd, STAGE_PDEATHSIG);
    if (getppid() != parent)
        _exit(126); /* the test died before we got here */

    if (dup2(null_fd, STDIN_FILENO) < 0 || dup2(log_fd, STDOUT_FILENO) < 0 ||
        dup2(log_fd, STDERR_FILENO) < 0)
        child_fail(report_fd, STAGE_DUP);
    /* Nothing else of the test (sockets, listeners, pipes) leaks into the
     * child; the report pipe stays open until exec succeeds. */
    if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
        for (int fd = 3; fd <= max_fd; fd++)
            fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
    execve(spec->path, spec->argv, spec->envp);
    child_fail(report_fd, STAGE_EXEC);
}

static rt_status proc_spawn(rt_test_proc **out, const spawn_spec *spec)
{
    int log_fd = open(spec->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd < 0)
        return RT_ERR(RT_ERR_IO, "cannot open log %s: %s", spec->log_path, strerror(errno));
    int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null_fd < 0) {
        close(log_fd);
        return RT_ERR(RT_ERR_IO, "cannot open /dev/null: %s", strerror(errno));
    }
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) {
        close(log_fd);
        close(null_fd);
        return RT_ERR(RT_ERR_IO, "pipe: %s", strerror(errno));
    }
    long open_max = sysconf(_SC_OPEN_MAX);
    int max_fd = (open_max <= 0 || open_max > 65536) ? 65536 : (int)open_max;

    registry_install();
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0)
        child_exec(spec, log_fd, null_fd, report[1], parent, max_fd);
    int fork_errno = errno;
    close(report[1]);
    close(log_fd);
    close(null_fd);
    if (pid < 0) {
        close(report[0]);
        return RT_ERR(RT_ERR_IO, "fork for %s: %s", spec->path, strerror(fork_errno));
    }
    setpgid(pid, pid); /* also in the child: whoever runs first wins the race */
    registry_add(pid, spec->emergency_sig);

    /* EOF = exec succeeded (the pipe was close-on-exec); a record = it failed. */
    child_failure failure;
    size_t got = 0;
    int64_t deadline = mono_ms() + EXEC_REPORT_TIMEOUT_MS;
    while (got < sizeof(failure)) {
        struct pollfd pfd = {.fd = report[0], .events = POLLIN};
        int pr = poll(&pfd, 1, remaining_ms(deadline));
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            break;
        ssize_t n = read(report[0], (char *)&failure + got, sizeof(failure) - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(report[0]);
    if (got == sizeof(failure)) {
        waitpid(pid, NULL, 0);
        registry_remove(pid);
        return RT_ERR(RT_ERR_IO, "cannot start %s: %s failed: %s", spec->path,
                      stage_name(failure.stage), strerror(failure.err));
    }

    rt_test_proc *proc = rt_calloc(1, sizeof(*proc));
    const char *base = strrchr(spec->path, '/');
    proc->name = rt_strdup(base ? base + 1 : spec->path);
    proc->log_path = rt_strdup(spec->log_path);
    proc->pid = pid;
    *out = proc;
    return RT_OK;
}

/* Did the child end in a way the test asked for? Otherwise its log is worth
 * printing. */
static bool exit_was_expected(const rt_test_proc *proc)
{
    int st = proc->wait_status;
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
        return true;
    if (proc->stop_sig == 0)
        return false;
    if (WIFSIGNALED(st))
        return WTERMSIG(st) == proc->stop_sig;
    return WIFEXITED(st) && WEXITSTATUS(st) == proc->stop_exit;
}

/* Reaps the child if it has exited, waiting up to wait_ms. True once reaped. */
static bool proc_reap(rt_test_proc *proc, int wait_ms)
{
    if (proc->reaped)
        return true;
    int64_t deadline = mono_ms() + wait_ms;
    for (;;) {
        int st = 0;
        pid_t r = waitpid(proc->pid, &st, WNOHANG);
        if (r == proc->pid || (r < 0 && errno == ECHILD)) {
            /* ECHILD: someone else reaped it; treat as a plain exit. */
            proc->wait_status = r == proc->pid ? st : 0;
            proc->reaped = true;
            registry_remove(proc->pid);
            if (!exit_was_expected(proc))
                proc->failed = true;
            return true;
        }
        if (mono_ms() >= deadline)
            return false;
        sleep_ms(5);
    }
}

/* Sends `sig` and waits; escalates to SIGKILL after timeout_ms (then it is
 * a failure). RT_OK if the child had exited or exited in time. */
static rt_status proc_terminate(rt_test_proc *proc, int sig, bool whole_group, int timeout_ms)
{
    if (proc_reap(proc, 0))
        return RT_OK;
    proc->stop_sig = sig;
    if (whole_group)
        kill(-proc->pid, sig);
    kill(proc->pid, sig);
    if (proc_reap(proc, timeout_ms))
        return RT_OK;
    proc->failed = true;
    kill(-proc->pid, SIGKILL);
    kill(proc->pid, SIGKILL);
    proc_reap(proc, 5000);
    return RT_ERR(RT_ERR_TIMEOUT, "%s (pid %d) did not exit within %d ms of signal %d; killed",
                  proc->name, (int)proc->pid, timeout_ms, sig);
}

/* Kills if running, reaps, prints the log tail if something went wrong;
 * frees the struct (not the dir, which the caller handles). */
static void proc_free(rt_test_proc *proc, const char *what)
{
    if (!proc)
        return;
    if (!proc_reap(proc, 0)) {
        proc->stop_sig = SIGKILL;
        kill(-proc->pid, SIGKILL);
        kill(proc->pid, SIGKILL);
        proc_reap(proc, 5000);
    }
    if (proc->failed) {
        char how[96] = "still running";
        if (proc->reaped)
            describe_wait_status(how, sizeof(how), proc->wait_status);
        char title[160];
        snprintf(title, sizeof(title), "%s (pid %d) %s", what ? what : proc->name, (int)proc->pid,
                 how);
        print_log_tail(title, proc->log_path);
    }
    free(proc->name);
    free(proc->log_path);
    free(proc);
}

static rt_status proc_dead_error(rt_test_proc *proc, const char *waiting_for)
{
    char how[96];
    describe_wait_status(how, sizeof(how), proc->wait_status);
    return RT_ERR(RT_ERR_UNAVAILABLE, "%s (pid %d) %s while waiting for %s; log: %s", proc->name,
                  (int)proc->pid, how, waiting_for, proc->log_path);
}

rt_status rt_test_proc_start(rt_test_proc **out, const char *path, const char *const *argv,
                             const char *const *env)
{
    if (!out || !path || !*path)
        return RT_ERR(RT_ERR_INVALID_ARG, "rt_test_proc_start: out and path are required");
    char *full = path[0] == '/' ? rt_strdup(path) : rt_asprintf("%s/%s", RT_BIN_DIR, path);
    const char *base = strrchr(full, '/') + 1;
    char *dir = rt_test_tmpdir("proc");
    if (!dir) {
        free(full);
        return rt_error_status();
    }
    char *log_path = rt_asprintf("%s/%s.log", dir, base);

    size_t argc = 0;
    while (argv && argv[argc])
        argc++;
    char **args = rt_calloc(argc + 2, sizeof(*args));
    args[0] = (char *)full;
    for (size_t i = 0; i < argc; i++)
        args[i + 1] = (char *)argv[i];
    char **envp = env_build(env);

    spawn_spec spec = {.path = full,
                       .argv = args,
                       .envp = envp,
                       .log_path = log_path,
                       .death_sig = SIGKILL,
                       .emergency_sig = SIGKILL};
    rt_test_proc *proc = NULL;
    rt_status s = proc_spawn(&proc, &spec);
    env_free(envp);
    free(args);
    free(log_path);
    free(full);
    if (s != RT_OK) {
        rt_test_rmtree(dir);
        free(dir);
        return s;
    }
    proc->dir = dir;
    *out = proc;
    return RT_OK;
}

pid_t rt_test_proc_pid(const rt_test_proc *proc)
{
    return proc ? proc->pid : -1;
}

const char *rt_test_proc_log_path(const rt_test_proc *proc)
{
    return proc ? proc->log_path : NULL;
}

bool rt_test_proc_running(rt_test_proc *proc)
{
    return proc && !proc_reap(proc, 0);
}

rt_status rt_test_proc_wait_http(rt_test_proc *proc, int port, const char *path, int status,
                                 int timeout_ms)
{
    int64_t deadline = mono_ms() + timeout_ms;
    char last[256] = "no attempt";
    for (;;) {
        if (proc && proc_reap(proc, 0)) {
            char what[128];
            snprintf(what, sizeof(what), "HTTP %d on :%d%s", status, port, path);
            return proc_dead_error(proc, what);
        }
        int got = 0;
        int attempt_ms = remaining_ms(deadline);
        if (attempt_ms > 1000)
            attempt_ms = 1000;
        if (attempt_ms < 50)
            attempt_ms = 50;
        rt_status s = rt_test_http_get(&got, NULL, port, path, attempt_ms);
        if (s == RT_OK && got == status)
            return RT_OK;
        if (s == RT_OK)
            snprintf(last, sizeof(last), "last answer was HTTP %d", got);
        else
            snprintf(last, sizeof(last), "last attempt: %s", rt_error_message());
        if (mono_ms() >= deadline)
            break;
        sleep_ms(20);
    }
    return RT_ERR(RT_ERR_TIMEOUT, "GET http://127.0.0.1:%d%s did not answer %d within %d ms (%s)",
                  port, path, status, timeout_ms, last);
}

static bool text_has_line_with(const char *text, size_t len, const char *needle)
{
    size_t needle_len = strlen(needle);
    const char *line = text, *end = text + len;
    while (line < end) {
        const char *nl = memchr(line, '\n', (size_t)(end - line));
        size_t line_len = nl ? (size_t)(nl - line) : (size_t)(end - line);
        if (memmem(line, line_len, needle, needle_len))
            return true;
        if (!nl)
            break;
        line = nl + 1;
    }
    return false;
}

rt_status rt_test_proc_wait_log(rt_test_proc *proc, const char *needle, int timeout_ms)
{
    if (!proc || !needle)
        return RT_ERR(RT_ERR_INVALID_ARG, "rt_test_proc_wait_log: proc and needle are required");
    int64_t deadline = mono_ms() + timeout_ms;
    for (;;) {
        /* Reap first, then read: a child that printed and exited is still found. */
        bool exited = proc_reap(proc, 0);
        size_t len = 0;
        char *text = read_file_tail(proc->log_path, 64u * 1024 * 1024, &len);
        bool found = text && text_has_line_with(text, len, needle);
        free(text);
        if (found)
            return RT_OK;
        if (exited) {
            char what[160];
            snprintf(what, sizeof(what), "\"%.100s\" in its log", needle);
            return proc_dead_error(proc, what);
        }
        if (mono_ms() >= deadline)
            return RT_ERR(RT_ERR_TIMEOUT, "no line with \"%.100s\" in %s within %d ms", needle,
                          proc->log_path, timeout_ms);
        sleep_ms(10);
    }
}

rt_status rt_test_proc_stop(rt_test_proc *proc, int sig, int timeout_ms, int *exit_status)
{
    if (!proc)
        return RT_ERR(RT_ERR_INVALID_ARG, "rt_test_proc_stop: proc is NULL");
    rt_status s = proc_terminate(proc, sig, true, timeout_ms);
    if (exit_status)
        *exit_status = proc->wait_status;
    return s;
}

void rt_test_proc_destroy(rt_test_proc *proc)
{
    if (!proc)
        return;
    char *dir = proc->dir;
    proc_free(proc, NULL);
    dir_release(dir);
    free(dir);
}

/* ------------------------------------------------------------------------
 * HTTP/1.0 GET on loopback
 * ------------------------------------------------------------------------ */

/* Waits for `events` on fd until the deadline. RT_OK, or RT_ERR_TIMEOUT/IO. */
static rt_status wait_fd(int fd, short events, int64_t deadline, const char *what)
{
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = events};
        int r = poll(&pfd, 1, remaining_ms(deadline));
        if (r > 0)
            return RT_OK;
        if (r == 0)
            return RT_ERR(RT_ERR_TIMEOUT, "%s: timed out", what);
        if (errno != EINTR)
            return RT_ERR(RT_ERR_IO, "%s: poll: %s", what, strerror(errno));
    }
}

static const char *header_value(const char *headers, const char *headers_end, const char *name)
{
    size_t name_len = strlen(name);
    const char *line = headers;
    while (line < headers_end) {
        const char *nl = memchr(line, '\n', (size_t)(headers_end - line));
        if (!nl)
            nl = headers_end;
        if ((size_t)(nl - line) > name_len && strncasecmp(line, name, name_len) == 0 &&
            line[name_len] == ':') {
            const char *v = line + name_len + 1;
            while (v < nl && (*v == ' ' || *v == '\t'))
                v++;
            return v;
        }
        line = nl + 1;
    }
    return NULL;
}

/* Decodes a chunked body in place; returns its length or -1 if malformed. */
static long dechunk(char *body, size_t len)
{
    size_t in = 0, out = 0;
    for (;;) {
        char *end = NULL;
        if (in >= len)
            return -1;
        unsigned long size = strtoul(body + in, &end, 16);
        char *crlf = memchr(body + in, '\n', len - in);
        if (!crlf || end == body + in)
            return -1;
        in = (size_t)(crlf - body) + 1;
        if (size == 0)
            return (long)out;
        if (size > len - in)
            return -1;
        memmove(body + out, body + in, size);
        out += size;
        in += size;
        if (in < len && body[in] == '\r')
            in++;
        if (in < len && body[in] == '\n')
            in++;
    }
}

rt_status rt_test_http_get(int *status, char **body, int port, const char *path, int timeout_ms)
{
    if (body)
        *body = NULL;
    if (!status || !path || port <= 0 || port > 65535)
        return RT_ERR(RT_ERR_INVALID_ARG, "rt_test_http_get: status, path and a port needed");
    int64_t deadline = mono_ms() + timeout_ms;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return RT_ERR(RT_ERR_IO, "socket: %s", strerror(errno));

    rt_status s = RT_OK;
    char *resp = NULL;
    char *req = NULL;
    size_t len = 0, cap = 0;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        if (errno != EINPROGRESS) {
            s = RT_ERR(errno == ECONNREFUSED ? RT_ERR_UNAVAILABLE : RT_ERR_IO,
                       "connect 127.0.0.1:%d: %s", port, strerror(errno));
            goto done;
        }
        if ((s = wait_fd(fd, POLLOUT, deadline, "connect")) != RT_OK)
            goto done;
        int err = 0;
        socklen_t err_len = sizeof(err);
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &err_len);
        if (err != 0) {
            s = RT_ERR(err == ECONNREFUSED ? RT_ERR_UNAVAILABLE : RT_ERR_IO,
                       "connect 127.0.0.1:%d: %s", port, strerror(err));
            goto done;
        }
    }

    req = rt_asprintf("GET %s HTTP/1.0\r\nHost: 127.0.0.1:%d\r\nUser-Agent: rt_testenv\r\n"
                      "Connection: close\r\n\r\n",
                      path, port);
    size_t req_len = strlen(req), sent = 0;
    while (sent < req_len) {
        ssize_t n = send(fd, req + sent, req_len - sent, MSG_NOSIGNAL);
        if (n > 0) {
            sent += (size_t)n;
        } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            if ((s = wait_fd(fd, POLLOUT, deadline, "send")) != RT_OK)
                goto done;
        } else {
            s = RT_ERR(RT_ERR_IO, "send to 127.0.0.1:%d: %s", port, strerror(errno));
            goto done;
        }
    }

    for (;;) {
        if (cap - len < 4096) {
            cap = cap ? cap * 2 : 16384;
            resp = rt_realloc(resp, cap);
        }
        ssize_t n = recv(fd, resp + len, cap - len - 1, 0);
        if (n > 0) {
            len += (size_t)n;
            if (len > HTTP_MAX_RESPONSE) {
                s = RT_ERR(RT_ERR_LIMIT, "GET :%d%s: response over %u bytes", port, path,
                           HTTP_MAX_RESPONSE);
                goto done;
            }
        } else if (n == 0) {
            break;
        } else if (errno == EAGAIN || errno == EINTR) {
            char what[128];
            snprintf(what, sizeof(what), "GET :%d%s: reading response", port, path);
            if ((s = wait_fd(fd, POLLIN, deadline, what)) != RT_OK)
                goto done;
        } else {
            s = RT_ERR(RT_ERR_IO, "recv from 127.0.0.1:%d: %s", port, strerror(errno));
            goto done;
        }
    }
    if (!resp) {
        s = RT_ERR(RT_ERR_IO, "GET :%d%s: connection closed without a response", port, path);
        goto done;
    }
    resp[len] = '\0';

    int code = 0;
    if (sscanf(resp, "HTTP/1.%*d %d", &code) != 1 || code < 100 || code > 999) {
        s = RT_ERR(RT_ERR_IO, "GET :%d%s: not an HTTP response", port, path);
        goto done;
    }
    char *head_end = strstr(resp, "\r\n\r\n");
    size_t sep = 4;
    if (!head_end) {
        head_end = strstr(resp, "\n\n");
        sep = 2;
    }
    if (!head_end) {
        s = RT_ERR(RT_ERR_IO, "GET :%d%s: response headers never ended", port, path);
        goto done;
    }
    char *content = head_end + sep;
    size_t content_len = len - (size_t)(content - resp);
    const char *te = header_value(resp, head_end, "Transfer-Encoding");
    const char *cl = header_value(resp, head_end, "Content-Length");
    if (te && strncasecmp(te, "chunked", 7) == 0) {
        long n = dechunk(content, content_len);
        if (n < 0) {
            s = RT_ERR(RT_ERR_IO, "GET :%d%s: malformed chunked body", port, path);
            goto done;
        }
        content_len = (size_t)n;
    } else if (cl) {
        unsigned long want = strtoul(cl, NULL, 10);
        if (want > content_len) {
            s = RT_ERR(RT_ERR_IO, "GET :%d%s: body truncated (%zu of %lu bytes)", port, path,
                       content_len, want);
            goto done;
        }
        content_len = want;
    }
    *status = code;
    if (body)
        *body = rt_strndup(content, content_len);

done:
    free(req);
    free(resp);
    close(fd);
    return s;
}

/* ------------------------------------------------------------------------
 * Prometheus text
 * ------------------------------------------------------------------------ */

/* `p` is at '{'; returns just past the matching '}' (quotes and escapes
 * honoured), or NULL if the label set does not close before `end`. */
static const char *skip_labels(const char *p, const char *end)
{
    bool quoted = false;
    for (p++; p < end; p++) {
        if (quoted && *p == '\\')
            p++;
        else if (*p == '"')
            quoted = !quoted;
        else if (!quoted && *p == '}')
            return p + 1;
    }
    return NULL;
}

double rt_test_metric_value(const char *metrics_body, const char *series)
{
    if (!metrics_body || !series || !*series)
        return -1;
    size_t series_len = strlen(series);
    bool has_labels = strchr(series, '{') != NULL;
    const char *line = metrics_body;
    while (*line) {
        const char *nl = strchr(line, '\n');
        const char *end = nl ? nl : line + strlen(line);
        if (*line != '#' && (size_t)(end - line) > series_len &&
            strncmp(line, series, series_len) == 0) {
            const char *p = line + series_len;
            /* "foo" also names "foo{...}" samples, but never "foo_total". */
            if (!has_labels && *p == '{')
                p = skip_labels(p, end);
            if (p && p < end && (*p == ' ' || *p == '\t')) {
                char *num_end = NULL;
                double v = strtod(p, &num_end);
                if (num_end != p && num_end <= end)
                    return v;
            }
        }
        if (!nl)
            break;
        line = nl + 1;
    }
    return -1;
}

/* ------------------------------------------------------------------------
 * nats-server
 * ------------------------------------------------------------------------ */

struct rt_test_nats {
    char *dir;
    char *conf_path;
    char *log_path;
    char *config_extra;
    char *url;
    int port;
    int http_port;
    rt_test_proc *server;
};

static char *find_in_path(const char *name, const char *fallback)
{
    const char *path = getenv("PATH");
    if (path) {
        char *copy = rt_strdup(path), *save = NULL;
        for (char *d = strtok_r(copy, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
            char *candidate = rt_asprintf("%s/%s", d, name);
            if (access(candidate, X_OK) == 0) {
                free(copy);
                return candidate;
            }
            free(candidate);
        }
        free(copy);
    }
    return rt_strdup(fallback);
}

static rt_status nats_write_config(rt_test_nats *nats)
{
    char *conf = rt_asprintf("# generated by rt_testenv\n"
                             "listen: 127.0.0.1:%d\n"
                             "http: 127.0.0.1:%d\n"
                             "jetstream {\n  store_dir: \"%s/jetstream\"\n}\n"
                             "%s\n",
                             nats->port, nats->http_port, nats->dir,
                             nats->config_extra ? nats->config_extra : "");
    rt_status s = write_text_file(nats->conf_path, conf);
    free(conf);
    return s;
}

/* TCP connect and read the server's INFO line: it accepts clients. */
static bool nats_answers(int port, int timeout_ms)
{
    int64_t deadline = mono_ms() + timeout_ms;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = false;
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        if (errno != EINPROGRESS || wait_fd(fd, POLLOUT, deadline, "nats connect") != RT_OK)
            goto done;
        int err = 0;
        socklen_t err_len = sizeof(err);
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &err_len);
        if (err != 0)
            goto done;
    }
    char buf[8];
    size_t got = 0;
    while (got < 5) {
        ssize_t n = recv(fd, buf + got, 5 - got, 0);
        if (n > 0)
            got += (size_t)n;
        else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (wait_fd(fd, POLLIN, deadline, "nats INFO") != RT_OK)
                goto done;
        } else
            goto done;
    }
    ok = memcmp(buf, "INFO ", 5) == 0;
done:
    close(fd);
    return ok;
}

static rt_status nats_spawn_and_wait(rt_test_nats *nats)
{
    char *bin = find_in_path("nats-server", "/usr/bin/nats-server");
    char *args[] = {bin, "-c", nats->conf_path, NULL};
    spawn_spec spec = {.path = bin,
                       .argv = args,
                       .envp = environ,
                       .log_path = nats->log_path,
                       .death_sig = SIGKILL,
                       .emergency_sig = SIGKILL};
    rt_status s = proc_spawn(&nats->server, &spec);
    free(bin);
    if (s != RT_OK)
        return s;
    nats->server->stop_exit = 1; /* nats-server's answer to SIGTERM */

    int64_t deadline = mono_ms() + NATS_READY_TIMEOUT_MS;
    while (!nats_answers(nats->port, 500)) {
        if (proc_reap(nats->server, 0))
            return proc_dead_error(nats->server, "its client port");
        if (mono_ms() >= deadline) {
            nats->server->failed = true;
            return RT_ERR(RT_ERR_TIMEOUT,
                          "nats-server did not accept clients on 127.0.0.1:%d within %d ms; "
                          "log: %s",
                          nats->port, NATS_READY_TIMEOUT_MS, nats->log_path);
        }
        sleep_ms(10);
    }
    /* Clients are accepted a moment before JetStream is; wait for both. */
    s = rt_test_proc_wait_http(nats->server, nats->http_port, "/healthz?js-enabled-only=true", 200,
                               remaining_ms(deadline));
    if (s != RT_OK && !nats->server->reaped)
        nats->server->failed = true;
    return s;
}

static rt_status nats_start_server(rt_test_nats *nats, bool new_ports)
{
    rt_status s = RT_ERR_INTERNAL;
    for (int attempt = 1; attempt <= START_ATTEMPTS; attempt++) {
        if (new_ports || attempt > 1) {
            nats->port = rt_test_free_port();
            nats->http_port = rt_test_free_port();
            if (nats->port < 0 || nats->http_port < 0)
                return rt_error_status();
            if (nats->http_port == nats->port)
                continue;
            if ((s = nats_write_config(nats)) != RT_OK)
                return s;
        }
        s = nats_spawn_and_wait(nats);
        if (s == RT_OK)
            return RT_OK;
        bool died_early = nats->server && nats->server->reaped;
        /* A server that died at start most likely lost its port to someone
         * else; only on first start may we move to other ports. */
        if (!new_ports || !died_early)
            break; /* its log tail is printed when it is freed */
        proc_free(nats->server, "nats-server (retrying on other ports)");
        nats->server = NULL;
    }
    return s;
}

rt_status rt_test_nats_start(rt_test_nats **out, const char *config_extra)
{
    if (!out)
        return RT_ERR(RT_ERR_INVALID_ARG, "rt_test_nats_start: out is NULL");
    *out = NULL;
    rt_test_nats *nats = rt_calloc(1, sizeof(*nats));
    nats->dir = rt_test_tmpdir("nats");
    if (!nats->dir) {
        free(nats);
        return rt_error_status();
    }
    nats->conf_path = rt_asprintf("%s/nats.conf", nats->dir);
    nats->log_path = rt_asprintf("%s/nats-server.log", nats->dir);
    nats->config_extra = config_extra ? rt_strdup(config_extra) : NULL;
    rt_status s = nats_start_server(nats, true);
    if (s != RT_OK) {
        rt_test_nats_destroy(nats);
        return s;
    }
    nats->url = rt_asprintf("nats://127.0.0.1:%d", nats->port);
    *out = nats;
    return RT_OK;
}

const char *rt_test_nats_url(const rt_test_nats *nats)
{
    return nats ? nats->url : NULL;
}

int rt_test_nats_port(const rt_test_nats *nats)
{
    return nats ? nats->port : -1;
}

int rt_test_nats_monitor_port(const rt_test_nats *nats)
{
    return nats ? nats->http_port : -1;
}

const char *rt_test_nats_log_path(const rt_test_nats *nats)
{
    return nats ? nats->log_path : NULL;
}

rt_status rt_test_nats_stop(rt_test_nats *nats)
{
    if (!nats)
        return RT_ERR(RT_ERR_INVALID_ARG, "rt_test_nats_stop: nats is NULL");
    if (!nats->server)
        return RT_OK;
    bool had_exited = proc_reap(nats->server, 0);
    rt_status s = proc_terminate(nats->server, SIGTERM, false, NATS_STOP_TIMEOUT_MS);
    if (s == RT_OK && had_exited && nats->server->failed) {
        char how[96];
        describe_wait_status(how, sizeof(how), nats->server->wait_status);
        s = RT_ERR(RT_ERR_UNAVAILABLE, "nats-server had already %s; log: %s", how, nats->log_path);
    }
    proc_free(nats->server, "nats-server");
    nats->server = NULL;
    return s;
}

rt_status rt_test_nats_restart(rt_test_nats *nats)
{
    if (!nats)
        return RT_ERR(RT_ERR_INVALID_ARG, "rt_test_nats_restart: nats is NULL");
    rt_status s = rt_test_nats_stop(nats);
    if (s != RT_OK && s != RT_ERR_UNAVAILABLE)
        return s;
    return nats_start_server(nats, false);
}

void rt_test_nats_destroy(rt_test_nats *nats)
{
    if (!nats)
        return;
    if (nats->server) {
        proc_terminate(nats->server, SIGTERM, false, NATS_STOP_TIMEOUT_MS);
        proc_free(nats->server, "nats-server");
    }
    dir_release(nats->dir);
    free(nats->dir);
    free(nats->conf_path);
    free(nats->log_path);
    free(nats->config_extra);
    free(nats->url);
    free(nats);
}

/* ------------------------------------------------------------------------
 * PostgreSQL
 * ------------------------------------------------------------------------ */

struct rt_test_pg {
    char *dir;
    char *data_dir;
    char *sock_dir;
    char *log_path;
    char *bin_dir;
    char *url;
    char *conninfo;       /* as unpuzzle, with a connect timeout */
    char *admin_conninfo; /* as postgres, to the postgres db */
    int port;
    bool switch_user;
    uid_t uid;
    gid_t gid;
    gid_t *groups;
    int ngroups;
    rt_test_proc *server;
};

/* The newest /usr/lib/postgresql/<version>/bin, or $RT_PG_BINDIR. */
static char *pg_find_bin_dir(void)
{
    const char *env = getenv("RT_PG_BINDIR");
    if (env && *env)
        return rt_strdup(env);
    glob_t g;
    char *best = NULL;
    double best_version = -1;
    if (glob("/usr/lib/postgresql/*/bin/postgres", 0, NULL, &g) == 0) {
        for (size_t i = 0; i < g.gl_pathc; i++) {
            double version = strtod(g.gl_pathv[i] + strlen("/usr/lib/postgresql/"), NULL);
            if (version > best_version) {
                best_version = version;
                free(best);
                best = rt_strndup(g.gl_pathv[i], strlen(g.gl_pathv[i]) - strlen("/postgres"));
            }
        }
        globfree(&g);
    }
    if (!best)
        RT_ERR(RT_ERR_NOT_FOUND, "no PostgreSQL server found (/usr/lib/postgresql/*/bin/postgres; "
                                 "install the postgresql package or set RT_PG_BINDIR)");
    return best;
}

/* PostgreSQL refuses to run as root; as root we run it as "postgres". */
static rt_status pg_prepare_user(rt_test_pg *pg)
{
    if (geteuid() != 0)
        return RT_OK;
    struct passwd *pw = getpwnam("postgres");
    if (!pw)
        return RT_ERR(RT_ERR_CONFIG, "running as root but there is no \"postgres\" user to run "
                                     "PostgreSQL as (install the postgresql package)");
    pg->switch_user = true;
    pg->uid = pw->pw_uid;
    pg->gid = pw->pw_gid;
    int n = 16;
    pg->groups = rt_calloc((size_t)n, sizeof(gid_t));
    if (getgrouplist("postgres", pw->pw_gid, pg->groups, &n) < 0) {
        pg->groups = rt_realloc(pg->groups, (size_t)n * sizeof(gid_t));
        if (getgrouplist("postgres", pw->pw_gid, pg->groups, &n) < 0)
            n = 0;
    }
    pg->ngroups = n;
    return RT_OK;
}

static void pg_spec(const rt_test_pg *pg, spawn_spec *spec, const char *path, char **argv,
                    const char *log_path)
{
    memset(spec, 0, sizeof(*spec));
    spec->path = path;
    spec->argv = argv;
    spec->envp = environ;
    spec->log_path = log_path;
    spec->switch_user = pg->switch_user;
    spec->uid = pg->uid;
    spec->gid = pg->gid;
    spec->groups = pg->groups;
    spec->ngroups = pg->ngroups;
    /* SIGQUIT is PostgreSQL's immediate shutdown: the postmaster takes its
     * backends down and removes its shared memory; SIGKILL would leak it. */
    spec->death_sig = SIGQUIT;
    spec->emergency_sig = SIGQUIT;
}

static rt_status pg_initdb(rt_test_pg *pg)
{
    char *bin = rt_asprintf("%s/initdb", pg->bin_dir);
    char *log_path = rt_asprintf("%s/initdb.log", pg->dir);
    /* --locale=C: no dependency on which locales the machine generated. */
    char *args[] = {bin,        "-D",        pg->data_dir, "-A",   "trust",      "-U",
                    "postgres", "--no-sync", "-E",         "UTF8", "--locale=C", NULL};
    spawn_spec spec;
    pg_spec(pg, &spec, bin, args, log_path);
    spec.death_sig = SIGKILL;
    spec.emergency_sig = SIGKILL;
    rt_test_proc *proc = NULL;
    rt_status s = proc_spawn(&proc, &spec);
    if (s == RT_OK) {
        if (!proc_reap(proc, PG_INITDB_TIMEOUT_MS))
            s = RT_ERR(RT_ERR_TIMEOUT, "initdb did not finish within %d ms; log: %s",
                       PG_INITDB_TIMEOUT_MS, log_path);
        else if (!WIFEXITED(proc->wait_status) || WEXITSTATUS(proc->wait_status) != 0)
            s = RT_ERR(RT_ERR_UNAVAILABLE, "initdb failed; log: %s", log_path);
        if (s != RT_OK)
            proc->failed = true;
        proc_free(proc, "initdb");
    }
    free(bin);
    free(log_path);
    return s;
}

static rt_status pg_spawn_and_wait(rt_test_pg *pg)
{
    char *bin = rt_asprintf("%s/postgres", pg->bin_dir);
    char port[16];
    snprintf(port, sizeof(port), "%d", pg->port);
    char *args[] = {bin,
                    "-D",
                    pg->data_dir,
                    "-p",
                    port,
                    "-k",
                    pg->sock_dir,
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "shared_buffers=32MB",
                    "-c",
                    "max_connections=100",
                    NULL};
    spawn_spec spec;
    pg_spec(pg, &spec, bin, args, pg->log_path);
    rt_status s = proc_spawn(&pg->server, &spec);
    free(bin);
    if (s != RT_OK)
        return s;

    char *ping = rt_asprintf("host=127.0.0.1 port=%d dbname=postgres user=postgres "
                             "connect_timeout=2",
                             pg->port);
    int64_t deadline = mono_ms() + PG_READY_TIMEOUT_MS;
    for (;;) {
        if (PQping(ping) == PQPING_OK)
            break;
        if (proc_reap(pg->server, 0)) {
            s = proc_dead_error(pg->server, "it to accept connections");
            break;
        }
        if (mono_ms() >= deadline) {
            pg->server->failed = true;
            s = RT_ERR(RT_ERR_TIMEOUT,
                       "PostgreSQL did not accept connections on 127.0.0.1:%d within %d ms; "
                       "log: %s",
                       pg->port, PG_READY_TIMEOUT_MS, pg->log_path);
            break;
        }
        sleep_ms(20);
    }
    free(ping);
    return s;
}

static rt_status pg_start_server(rt_test_pg *pg, bool new_port)
{
    rt_status s = RT_ERR_INTERNAL;
    for (int attempt = 1; attempt <= START_ATTEMPTS; attempt++) {
        if (new_port || attempt > 1) {
            if ((pg->port = rt_test_free_port()) < 0)
                return rt_error_status();
        }
        s = pg_spawn_and_wait(pg);
        if (s == RT_OK)
            return RT_OK;
        bool died_early = pg->server && pg->server->reaped;
        if (!new_port || !died_early)
            break; /* its log tail is printed when it is freed */
        proc_free(pg->server, "postgres (retrying on another port)");
        pg->server = NULL;
    }
    return s;
}

static void pg_quiet_notices(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

static rt_status pg_connect(PGconn **out, const char *conninfo, int port)
{
    PGconn *conn = PQconnectdb(conninfo);
    if (!conn || PQstatus(conn) != CONNECTION_OK) {
        char msg[300];
        snprintf(msg, sizeof(msg), "%s", conn ? PQerrorMessage(conn) : "out of memory");
        msg[strcspn(msg, "\n")] = '\0';
        PQfinish(conn);
        return RT_ERR(RT_ERR_UNAVAILABLE, "cannot connect to PostgreSQL on 127.0.0.1:%d: %s", port,
                      msg);
    }
    /* Idempotent migrations say "already exists, skipping"; tests need not. */
    PQsetNoticeProcessor(conn, pg_quiet_notices, NULL);
    *out = conn;
    return RT_OK;
}

static rt_status pg_result_error(PGresult *res, PGconn *conn, const char *what)
{
    char msg[400];
    snprintf(msg, sizeof(msg), "%s", res ? PQresultErrorMessage(res) : PQerrorMessage(conn));
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
        msg[--n] = '\0';
    return RT_ERR(RT_ERR_PG, "%s: %s", what, msg);
}

static rt_status pg_run(PGconn *conn, const char *sql, const char *what)
{
    PGresult *res = PQexec(conn, sql);
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    rt_status s = RT_OK;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_EMPTY_QUERY)
        s = pg_result_error(res, conn, what);
    PQclear(res);
    return s;
}

static rt_status pg_bootstrap(rt_test_pg *pg)
{
    PGconn *conn = NULL;
    rt_status s = pg_connect(&conn, pg->admin_conninfo, pg->port);
    if (s != RT_OK)
        return s;
    /* Separate calls: CREATE DATABASE cannot run inside the implicit
     * transaction of a multi-statement PQexec. */
    s = pg_run(conn, "CREATE ROLE unpuzzle LOGIN SUPERUSER", "create role unpuzzle");
    if (s == RT_OK)
        s = pg_run(conn, "CREATE DATABASE unpuzzle OWNER unpuzzle", "create database unpuzzle");
    PQfinish(conn);
    return s;
}

rt_status rt_test_pg_start(rt_test_pg **out)
{
    if (!out)
        return RT_ERR(RT_ERR_INVALID_ARG, "rt_test_pg_start: out is NULL");
    *out = NULL;
    rt_test_pg *pg = rt_calloc(1, sizeof(*pg));
    rt_status s = RT_OK;
    if (!(pg->bin_dir = pg_find_bin_dir()) || !(pg->dir = rt_test_tmpdir("pg"))) {
        s = rt_error_status();
        goto fail;
    }
    pg->data_dir = rt_asprintf("%s/data", pg->dir);
    pg->sock_dir = rt_asprintf("%s/sock", pg->dir);
    pg->log_path = rt_asprintf("%s/postgres.log", pg->dir);
    if ((s = pg_prepare_user(pg)) != RT_OK)
        goto fail;
    /* The server user must reach its dirs inside our (root-owned) temp dir. */
    if (chmod(pg->dir, 0755) != 0 || mkdir(pg->data_dir, 0700) != 0 ||
        mkdir(pg->sock_dir, 0700) != 0) {
        s = RT_ERR(RT_ERR_IO, "cannot prepare %s: %s", pg->dir, strerror(errno));
        goto fail;
    }
    if (pg->switch_user && (chown(pg->data_dir, pg->uid, pg->gid) != 0 ||
                            chown(pg->sock_dir, pg->uid, pg->gid) != 0)) {
        s = RT_ERR(RT_ERR_IO, "cannot chown %s to postgres: %s", pg->dir, strerror(errno));
        goto fail;
    }
    if ((s = pg_initdb(pg)) != RT_OK || (s = pg_start_server(pg, true)) != RT_OK)
        goto fail;
    pg->url = rt_asprintf("postgresql://unpuzzle@127.0.0.1:%d/unpuzzle", pg->port);
    pg->conninfo = rt_asprintf("host=127.0.0.1 port=%d dbname=unpuzzle user=unpuzzle "
                               "connect_timeout=5",
                               pg->port);
    pg->admin_conninfo = rt_asprintf("host=127.0.0.1 port=%d dbname=postgres user=postgres "
                                     "connect_timeout=5",
                                     pg->port);
    if ((s = pg_bootstrap(pg)) != RT_OK)
        goto fail;
    *out = pg;
    return RT_OK;

fail:
    rt_test_pg_destroy(pg);
    return s;
}

const char *rt_test_pg_url(const rt_test_pg *pg)
{
    return pg ? pg->url : NULL;
}

int rt_test_pg_port(const rt_test_pg *pg)
{
    return pg ? pg->port : -1;
}

rt_status rt_test_pg_exec(rt_test_pg *pg, const char *sql)
{
    if (!pg || !sql)
        return RT_ERR(RT_ERR_INVALID_ARG, "rt_test_pg_exec: pg and sql are required");
    PGconn *conn = NULL;
    rt_status s = pg_connect(&conn, pg->conninfo, pg->port);
    if (s != RT_OK)
        return s;
    s = pg_run(conn, sql, "SQL failed");
    PQfinish(conn);
    return s;
}

rt_status rt_test_pg_query_value(char **out, rt_test_pg *pg, const char *sql)
{
    if (!out || !pg || !sql)
        return RT_ERR(RT_ERR_INVALID_ARG, "rt_test_pg_query_value: out, pg and sql are required");
    *out = NULL;
    PGconn *conn = NULL;
    rt_status s = pg_connect(&conn, pg->conninfo, pg->port);
    if (s != RT_OK)
        return s;
    PGresult *res = PQexec(conn, sql);
    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK)
        s = pg_result_error(res, conn, "query failed");
    else if (PQntuples(res) > 0 && PQnfields(res) > 0 && !PQgetisnull(res, 0, 0))
        *out = rt_strdup(PQgetvalue(res, 0, 0));
    PQclear(res);
    PQfinish(conn);
    return s;
}

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

rt_status rt_test_pg_migrate(rt_test_pg *pg)
{
    if (!pg)
        return RT_ERR(RT_ERR_INVALID_ARG, "rt_test_pg_migrate: pg is NULL");
    glob_t g;
    int gr = glob(RT_SOURCE_DIR "/deploy/sql/*.sql", 0, NULL, &g);
    if (gr == GLOB_NOMATCH)
        return RT_OK;
    if (gr != 0)
        return RT_ERR(RT_ERR_IO, "cannot list %s/deploy/sql", RT_SOURCE_DIR);
    /* Byte order, whatever the locale: 001_x.sql before 002_y.sql. */
    qsort(g.gl_pathv, g.gl_pathc, sizeof(char *), compare_strings);

    PGconn *conn = NULL;
    rt_status s = pg_connect(&conn, pg->conninfo, pg->port);
    for (size_t i = 0; s == RT_OK && i < g.gl_pathc; i++) {
        size_t len = 0;
        char *sql = read_file_tail(g.gl_pathv[i], SIZE_MAX / 2, &len);
        if (!sql) {
            s = RT_ERR(RT_ERR_IO, "cannot read %s: %s", g.gl_pathv[i], strerror(errno));
            break;
        }
        const char *base = strrchr(g.gl_pathv[i], '/') + 1;
        char what[200];
        snprintf(what, sizeof(what), "migration %s failed", base);
        s = pg_run(conn, sql, what);
        free(sql);
    }
    PQfinish(conn);
    globfree(&g);
    return s;
}

rt_status rt_test_pg_stop(rt_test_pg *pg)
{
    if (!pg)
        return RT_ERR(RT_ERR_INVALID_ARG, "rt_test_pg_stop: pg is NULL");
    if (!pg->server)
        return RT_OK;
    bool had_exited = proc_reap(pg->server, 0);
    /* SIGINT = fast shutdown: roll back open transactions, checkpoint, exit.
     * Only the postmaster is signalled; it stops its own backends. */
    rt_status s = proc_terminate(pg->server, SIGINT, false, PG_STOP_TIMEOUT_MS);
    if (s == RT_OK && had_exited && pg->server->failed) {
        char how[96];
        describe_wait_status(how, sizeof(how), pg->server->wait_status);
        s = RT_ERR(RT_ERR_UNAVAILABLE, "PostgreSQL had already %s; log: %s", how, pg->log_path);
    }
    proc_free(pg->server, "postgres");
    pg->server = NULL;
    return s;
}

rt_status rt_test_pg_start_again(rt_test_pg *pg)
{
    if (!pg)
        return RT_ERR(RT_ERR_INVALID_ARG, "rt_test_pg_start_again: pg is NULL");
    if (pg->server && !proc_reap(pg->server, 0))
        return RT_ERR(RT_ERR_INVALID_ARG, "PostgreSQL on port %d is still running", pg->port);
    if (pg->server) {
        proc_free(pg->server, "postgres");
        pg->server = NULL;
    }
    return pg_start_server(pg, false);
}

void rt_test_pg_destroy(rt_test_pg *pg)
{
    if (!pg)
        return;
    if (pg->server) {
        proc_terminate(pg->server, SIGINT, false, PG_STOP_TIMEOUT_MS);
        proc_free(pg->server, "postgres");
    }
    dir_release(pg->dir);
    free(pg->dir);
    free(pg->data_dir);
    free(pg->sock_dir);
    free(pg->log_path);
    free(pg->bin_dir);
    free(pg->url);
    free(pg->conninfo);
    free(pg->admin_conninfo);
    free(pg->groups);
    free(pg);
}
