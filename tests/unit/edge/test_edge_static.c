/* edge_static: URL paths map to files inside the folder, and nothing
 * outside it is reachable (.., symlinks, odd characters). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "edge_static.h"

static char root[] = "/tmp/edge-static-XXXXXX";
static char outside[512];

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int setup(void **state)
{
    (void)state;
    char path[512];
    if (!mkdtemp(root))
        return -1;
    snprintf(path, sizeof(path), "%s/index.html", root);
    write_file(path, "<html></html>");
    snprintf(path, sizeof(path), "%s/app", root);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/app/main.js", root);
    write_file(path, "export {}");
    snprintf(path, sizeof(path), "%s/app/index.html", root);
    write_file(path, "<p>app</p>");
    snprintf(outside, sizeof(outside), "%s-secret", root);
    write_file(outside, "secret");
    snprintf(path, sizeof(path), "%s/link.txt", root);
    return symlink(outside, path);
}

static int teardown(void **state)
{
    (void)state;
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s' '%s'", root, outside);
    return system(cmd) == 0 ? 0 : -1;
}

static void serves_files_inside(void **state)
{
    (void)state;
    char out[4096];
    const char *mime = NULL;
    assert_true(edge_static_resolve(out, sizeof(out), &mime, root, "/"));
    assert_non_null(strstr(out, "/index.html"));
    assert_string_equal(mime, "text/html; charset=utf-8");
    assert_true(edge_static_resolve(out, sizeof(out), &mime, root, "/app/main.js?v=2"));
    assert_string_equal(mime, "text/javascript; charset=utf-8");
    assert_true(edge_static_resolve(out, sizeof(out), &mime, root, "/app/"));
    assert_non_null(strstr(out, "/app/index.html"));
}

static void refuses_everything_else(void **state)
{
    (void)state;
    char out[4096];
    const char *mime = NULL;
    assert_false(edge_static_resolve(out, sizeof(out), &mime, root, "/missing.html"));
    assert_false(edge_static_resolve(out, sizeof(out), &mime, root, "/../etc/passwd"));
    assert_false(edge_static_resolve(out, sizeof(out), &mime, root, "/app/../../x"));
    assert_false(edge_static_resolve(out, sizeof(out), &mime, root, "/link.txt"));
    assert_false(edge_static_resolve(out, sizeof(out), &mime, root, "/app\\main.js"));
    assert_false(edge_static_resolve(out, sizeof(out), &mime, root, "/app"));
    assert_false(edge_static_resolve(out, sizeof(out), &mime, root, "relative"));
    assert_false(edge_static_resolve(out, sizeof(out), &mime, "", "/"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(serves_files_inside),
        cmocka_unit_test(refuses_everything_else),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
