/*
 * edge_static: a folder of static files served on ws-edge's port for
 * development (the demo pages), when WS_STATIC_DIR names one. Off unless
 * set; never meant for production (no caching headers, no compression).
 *
 * edge_static_resolve() maps a URL path to a file inside the folder: "/"
 * and paths ending in "/" mean index.html; a query string is ignored; "..",
 * backslashes, NUL and control characters are refused; and the file's
 * real path (symlinks resolved) must stay inside the folder's. Pure apart
 * from realpath(); any thread.
 */
#ifndef EDGE_STATIC_H
#define EDGE_STATIC_H

#include <stdbool.h>
#include <stddef.h>

/* True and the file's path in out (and its MIME type) when `url_path`
 * names a regular file inside `root`. */
bool edge_static_resolve(char *out, size_t out_size, const char **mime, const char *root,
                         const char *url_path);

#endif
