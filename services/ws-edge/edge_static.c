#include "edge_static.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const struct {
    const char *ext, *mime;
} mimes[] = {
    {".html", "text/html; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".mjs", "text/javascript; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".json", "application/json"},
    {".svg", "image/svg+xml"},
    {".png", "image/png"},
    {".ico", "image/x-icon"},
    {".map", "application/json"},
    {".txt", "text/plain; charset=utf-8"},
};

static const char *mime_of(const char *path)
{
    const char *dot = strrchr(path, '.');
    for (size_t i = 0; dot && i < sizeof(mimes) / sizeof(mimes[0]); i++)
        if (strcmp(dot, mimes[i].ext) == 0)
            return mimes[i].mime;
    return "application/octet-stream";
}

bool edge_static_resolve(char *out, size_t out_size, const char **mime, const char *root,
                         const char *url_path)
{
    char rel[1024], joined[PATH_MAX + 1024], real_root[PATH_MAX], real_file[PATH_MAX];
    size_t n = 0;

    if (!root || !*root || !url_path || url_path[0] != '/')
        return false;
    for (const char *p = url_path; *p && *p != '?' && *p != '#'; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch < 0x20 || ch == 0x7f || ch == '\\' || n + 1 >= sizeof(rel))
            return false;
        rel[n++] = (char)ch;
    }
    rel[n] = '\0';
    if (strstr(rel, "/..") || strstr(rel, "//"))
        return false;
    if (rel[n - 1] == '/') {
        if (n + 10 >= sizeof(rel))
            return false;
        strcat(rel, "index.html");
    }
    if (!realpath(root, real_root))
        return false;
    snprintf(joined, sizeof(joined), "%s%s", real_root, rel);
    struct stat st;
    if (!realpath(joined, real_file) || stat(real_file, &st) != 0 || !S_ISREG(st.st_mode))
        return false;
    size_t rl = strlen(real_root);
    if (strncmp(real_file, real_root, rl) != 0 || real_file[rl] != '/')
        return false; /* a symlink out of the folder */
    if (strlen(real_file) >= out_size)
        return false;
    memcpy(out, real_file, strlen(real_file) + 1);
    *mime = mime_of(real_file);
    return true;
}
