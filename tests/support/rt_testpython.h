/*
 * rt_testpython: Python next to the C tests, run the way Django's side runs —
 * Debian's /usr/bin/python3 with python3-protobuf, and the code generated
 * from proto/ with Debian's protoc (`protoc --python_out`, docs/contract.md).
 * Nothing is skipped: a missing protoc or python3-protobuf is an error that
 * names the Debian package to install.
 */
#ifndef RT_TESTPYTHON_H
#define RT_TESTPYTHON_H

#include "rt_status.h"

#define RT_TEST_PYTHON "/usr/bin/python3"

/*
 * protoc --python_out=out_dir -I proto -I /usr/include proto/unpuzzle/rt/v1/<each>.proto
 * (proto/ of RT_SOURCE_DIR; out_dir must exist), then checks that
 * RT_TEST_PYTHON imports the generated unpuzzle.rt.v1.events_pb2.
 */
rt_status rt_test_python_generate(const char *out_dir);

typedef struct rt_test_python_result {
    int exit_code; /* the exit status; 128 + signal when killed */
    char *out;     /* everything written to stdout, NUL-terminated */
    char *err;     /* everything written to stderr, NUL-terminated */
} rt_test_python_result;

/*
 * Runs RT_TEST_PYTHON with `args` (NULL-terminated: the script, then its
 * arguments) and the current environment plus `env` ("NAME=VALUE",
 * NULL-terminated, may be NULL; they replace inherited variables of the same
 * name). PYTHONDONTWRITEBYTECODE=1 is always set, so no __pycache__ lands in
 * the source tree. Waits up to timeout_ms, then kills it and returns
 * RT_ERR_TIMEOUT (res still holds the output so far). A script that runs and
 * fails is RT_OK with its exit_code; free res with rt_test_python_result_free.
 */
rt_status rt_test_python_run(rt_test_python_result *res, const char *const *args,
                             const char *const *env, int timeout_ms);
void rt_test_python_result_free(rt_test_python_result *res);

#endif
