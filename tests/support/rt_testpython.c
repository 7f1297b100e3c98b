#include "rt_testpython.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rt_alloc.h"
#include "rt_time.h"

extern char **environ;

/* Length of the NAME part of "NAME=VALUE" (the whole string without '='). */
static size_t name_len(const char *entry)
{
    const char *eq = strchr(entry, '=');
    return eq ? (size_t)(eq - entry) : strlen(entry);
}

static bool same_name(const char *a, const char *b)
{
    size_t n = name_len(a);
    return n == name_len(b) && strncmp(a, b, n) == 0;
}

/* environ without the names `extra` sets, then `extra` (a later entry of the
 * same name wins). The strings are borrowed; free only the array. */
static const char **merged_env(const char *const *extra)
{
    size_t n_env = 0, n_extra = 0, n = 0;
    while (environ[n_env])
        n_env++;
    while (extra && extra[n_extra])
        n_extra++;
    const char **out = rt_calloc(n_env + n_extra + 1, sizeof(*out));
    for (size_t i = 0; i < n_env; i++) {
        bool replaced = false;
        for (size_t k = 0; k < n_extra && !replaced; k++)
            replaced = same_name(environ[i], extra[k]);
        if (!replaced)
            out[n++] = environ[i];
    }
    for (size_t k = 0; k < n_extra; k++) {
        bool later = false;
        for (size_t j = k + 1; j < n_extra && !later; j++)
            later = same_name(extra[k], extra[j]);
        if (!later)
            out[n++] = extra[k];
    }
    out[n] = NULL;
    return out;
}

/* The whole content of an open file, from its start, NUL-terminated. */
static char *slurp_fd(int fd)
{
    size_t cap = 4096, len = 0;
    char *buf = rt_malloc(cap);
    ssize_t got;

    lseek(fd, 0, SEEK_SET);
    while ((got = read(fd, buf + len, cap - len - 1)) > 0 || (got < 0 && errno == EINTR)) {
        if (got < 0)
            continue;
        len += (size_t)got;
        if (cap - len < 2) {
            cap *= 2;
            buf = rt_realloc(buf, cap);
        }
    }
    buf[len] = '\0';
    return buf;
}

static int temp_fd(void)
{
    char path[] = "/tmp/rt-test-python-out-XXXXXX";
    int fd = mkstemp(path);
    if (fd >= 0)
        unlink(path);
    return fd;
}

/* Runs `program` (looked up in PATH unless it has a '/') with `argv`
 * (argv[0] included), stdin from /dev/null, stdout and stderr captured, in
 * its own process group (a timeout kills the group: also its children). */
static rt_status run_program(rt_test_python_result *res, const char *program,
                             const char *const *argv, const char *const *env, int timeout_ms)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    int out_fd = temp_fd(), err_fd = temp_fd();
    const char **envp = merged_env(env);
    rt_status s = RT_OK;
    pid_t pid;
    int rc, st = 0;

    memset(res, 0, sizeof(*res));
    res->exit_code = -1;
    if (out_fd < 0 || err_fd < 0) {
        s = RT_ERR(RT_ERR_IO, "mkstemp: %s", strerror(errno));
        goto done;
    }
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
    posix_spawn_file_actions_adddup2(&fa, err_fd, 2);
    posix_spawn_file_actions_addclose(&fa, out_fd);
    posix_spawn_file_actions_addclose(&fa, err_fd);
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attr, 0);
    rc = posix_spawnp(&pid, program, &fa, &attr, (char *const *)argv, (char *const *)envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) {
        s = RT_ERR(RT_ERR_UNAVAILABLE, "cannot run %s: %s", program, strerror(rc));
        goto done;
    }

    uint64_t deadline = rt_time_mono_ns() + (uint64_t)timeout_ms * 1000000u;
    for (;;) {
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid)
            break;
        if (w < 0 && errno != EINTR) {
            s = RT_ERR(RT_ERR_INTERNAL, "waitpid: %s", strerror(errno));
            break;
        }
        if (rt_time_mono_ns() >= deadline) {
            kill(-pid, SIGKILL);
            while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
                ;
            s = RT_ERR(RT_ERR_TIMEOUT, "%s did not finish within %d ms", program, timeout_ms);
            break;
        }
        struct timespec ts = {0, 5 * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (WIFEXITED(st))
        res->exit_code = WEXITSTATUS(st);
    else if (WIFSIGNALED(st))
        res->exit_code = 128 + WTERMSIG(st);
done:
    res->out = out_fd >= 0 ? slurp_fd(out_fd) : rt_strdup("");
    res->err = err_fd >= 0 ? slurp_fd(err_fd) : rt_strdup("");
    if (out_fd >= 0)
        close(out_fd);
    if (err_fd >= 0)
        close(err_fd);
    free(envp);
    return s;
}

rt_status rt_test_python_run(rt_test_python_result *res, const char *const *args,
                             const char *const *env, int timeout_ms)
{
    size_t n_args = 0, n_env = 0;
    while (args && args[n_args])
        n_args++;
    while (env && env[n_env])
        n_env++;
    const char **argv = rt_calloc(n_args + 2, sizeof(*argv));
    const char **envv = rt_calloc(n_env + 2, sizeof(*envv));
    argv[0] = RT_TEST_PYTHON;
    memcpy(argv + 1, args, n_args * sizeof(*argv));
    envv[0] = "PYTHONDONTWRITEBYTECODE=1";
    if (n_env)
        memcpy(envv + 1, env, n_env * sizeof(*envv));
    rt_status s = run_program(res, RT_TEST_PYTHON, argv, envv, timeout_ms);
    free(argv);
    free(envv);
    return s;
}

void rt_test_python_result_free(rt_test_python_result *res)
{
    if (!res)
        return;
    free(res->out);
    free(res->err);
    res->out = res->err = NULL;
}

rt_status rt_test_python_generate(const char *out_dir)
{
    rt_test_python_result res;
    glob_t g;
    rt_status s;

    if (glob(RT_SOURCE_DIR "/proto/unpuzzle/rt/v1/*.proto", 0, NULL, &g) != 0)
        return RT_ERR(RT_ERR_NOT_FOUND, "no .proto files under %s/proto", RT_SOURCE_DIR);
    const char **argv = rt_calloc(g.gl_pathc + 7, sizeof(*argv));
    char *out_arg = rt_asprintf("--python_out=%s", out_dir);
    size_t n = 0;
    argv[n++] = "protoc";
    argv[n++] = out_arg;
    argv[n++] = "-I";
    argv[n++] = RT_SOURCE_DIR "/proto";
    argv[n++] = "-I";
    argv[n++] = "/usr/include";
    for (size_t i = 0; i < g.gl_pathc; i++)
        argv[n++] = g.gl_pathv[i];
    argv[n] = NULL;
    s = run_program(&res, "protoc", argv, NULL, 30000);
    free(argv);
    free(out_arg);
    globfree(&g);
    if (s == RT_ERR_UNAVAILABLE)
        return RT_ERR(s, "protoc not found: install Debian's protobuf-compiler "
                         "(apt-get install protobuf-compiler)");
    if (s == RT_OK && res.exit_code != 0)
        s = RT_ERR(RT_ERR_INTERNAL, "protoc --python_out failed (exit %d): %s", res.exit_code,
                   res.err);
    rt_test_python_result_free(&res);
    if (s != RT_OK)
        return s;

    char *path_env = rt_asprintf("PYTHONPATH=%s", out_dir);
    const char *check[] = {"-c", "import google.protobuf, unpuzzle.rt.v1.events_pb2", NULL};
    const char *env[] = {path_env, NULL};
    s = rt_test_python_run(&res, check, env, 30000);
    free(path_env);
    if (s == RT_ERR_UNAVAILABLE)
        s = RT_ERR(s, "%s not found: install Debian's python3", RT_TEST_PYTHON);
    else if (s == RT_OK && res.exit_code != 0)
        s = RT_ERR(RT_ERR_UNAVAILABLE,
                   "%s cannot import google.protobuf or the generated code (exit %d): install "
                   "Debian's python3-protobuf (apt-get install python3-protobuf): %s",
                   RT_TEST_PYTHON, res.exit_code, res.err);
    rt_test_python_result_free(&res);
    return s;
}
