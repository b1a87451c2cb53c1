/*
 * plughost.h: the plughost plugin ABI, version 1.1 (PH_ABI_MAJOR.PH_ABI_MINOR),
 * for plugins written in C. 1.1 added ph_handler_vtbl.flags; a plugin built
 * against the 1.0 header still loads (the host reads `flags` only when the
 * table's struct_size covers it).
 *
 * This header mirrors plugins/sdk/src/abi.rs field for field; a test
 * (plugins/sdk/tests/c_header.rs) compiles it and checks every size and offset
 * against the Rust definitions.
 *
 * Contract (see the SDK docs for the full text):
 *  - Export exactly two symbols: `plughost_abi` (use PLUGHOST_EXPORT_HANDSHAKE) and
 *    `plughost_plugin_v1`, which returns a static descriptor and has no side effects.
 *  - `create` may run once per configured section; `call` runs on many threads at
 *    once and must be thread-safe; `destroy` runs once, after the last call.
 *  - Strings (ph_str) and arrays are borrowed for the duration of the call: copy
 *    what you keep. Never free memory the host allocated.
 *  - A ph_body is owned by whoever holds it: call `release` exactly once, also on
 *    bodies you stop reading early. `call` always consumes its request body.
 *  - Fill a ph_response with your own storage and set `release`/`owner` so the
 *    host can free it through you; the host takes `body` separately.
 *  - Return PH_OK or a negative code; report messages through the error sink.
 *    Nothing may unwind or longjmp out of a plugin function.
 *
 * ABI evolution: a minor version only adds fields at the end of a struct that
 * starts with `struct_size` (the size its writer was built with; readers ignore
 * what lies beyond it), or functions at the end of such a table. Growable:
 * ph_body_vtbl, ph_request, ph_host, ph_handler_vtbl, ph_plugin_desc. Every other
 * struct is FROZEN for all of ABI 1 (the reason is at each one); changing one
 * needs a new major version.
 *
 * Which pointers may be NULL:
 *  - ph_str.ptr when len is 0.
 *  - ph_body.vtbl: the empty body (then `self` is ignored).
 *  - ph_response.headers when header_count is 0; ph_response.release when there
 *    is nothing to free (owner is then ignored).
 *  - the `next` argument of a handler's `call`: NULL for apps, set for filters.
 *  - the `err` sink argument may be NULL when the host has nowhere to put a
 *    message; check before calling `err->set`.
 *  - ph_request.headers / extras when their count is 0.
 * Never NULL (the host refuses a library that hands these over NULL): the
 * descriptor, each entry's `create` and `vtbl`, the table's `call` and
 * `destroy`, and the `next`, `size_hint` and `release` of a body table a plugin
 * returns (a body with a NULL function is a plugin fault: a 500, never called).
 * The `plugin_name`, `plugin_version`, `build_info` and entry `name` strings
 * may be NULL (read as empty); entry names should not be.
 *
 * Helpers at the end of this header (ph_cstr, PH_STR_LIT, ph_static_body) are
 * inline code for plugins, not part of the binary ABI.
 *
 * Build: cc -shared -fPIC -O2 -I plugins/sdk/include -o libNAME.so NAME.c
 */
#ifndef PLUGHOST_H
#define PLUGHOST_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PH_MAGIC 0x504C5547u /* "PLUG" */
#define PH_ABI_MAJOR 1
#define PH_ABI_MINOR 1

#define PH_OK 0
#define PH_EOF 1
#define PH_ERR (-1)
#define PH_ERR_PANIC (-2)

#define PH_KIND_APP 1u
#define PH_KIND_FILTER 2u

#define PH_FLAG_PANIC_UNWIND 1u

/* ph_handler_vtbl.flags (ABI 1.1). NONBLOCKING: `call`, and the first 64 KiB of the
 * body it returns, never block (no I/O, no sleeping, microseconds of work), so the
 * host may run the app on its event loop when the request has no body. One slow
 * call and the host moves the instance back to its worker pool. Apps only. */
#define PH_HANDLER_NONBLOCKING 1u

#define PH_LOG_ERROR 1
#define PH_LOG_WARN 2
#define PH_LOG_INFO 3
#define PH_LOG_DEBUG 4
#define PH_LOG_TRACE 5

/* A borrowed byte string; not NUL-terminated.
 * FROZEN: passed by value and embedded everywhere, so its size is in every signature. */
typedef struct ph_str {
    const uint8_t *ptr;
    size_t len;
} ph_str;

/* FROZEN: pairs travel in arrays, so the size is the arrays' stride. */
typedef struct ph_pair {
    ph_str name;
    ph_str value;
} ph_pair;

/* Growable (struct_size). */
typedef struct ph_body_vtbl {
    uint32_t struct_size;
    /* PH_OK with *chunk set (valid until the next call or release), PH_EOF, or < 0. */
    int32_t (*next)(void *self, ph_str *chunk);
    /* Exact remaining length, or -1. */
    int64_t (*size_hint)(void *self);
    /* Exactly once. */
    void (*release)(void *self);
} ph_body_vtbl;

/* vtbl == NULL is the empty body.
 * FROZEN: a handle passed by value; capabilities grow in ph_body_vtbl instead. */
typedef struct ph_body {
    const ph_body_vtbl *vtbl;
    void *self;
} ph_body;

/* Growable (struct_size). Borrowed for the duration of the call. */
typedef struct ph_request {
    uint32_t struct_size;
    ph_str method;
    ph_str scheme;
    ph_str script_name;
    ph_str path_info;
    ph_str raw_path;
    ph_str query_string;
    ph_str protocol;
    ph_str server_name;
    ph_str remote_addr;
    uint16_t server_port;
    uint16_t remote_port;
    const ph_pair *headers; /* lower-case names, in order */
    size_t header_count;
    const ph_pair *extras;
    size_t extra_count;
    int64_t content_length; /* -1 when unknown */
} ph_request;

/* FROZEN: the receiver allocates it and the callee writes into it, with no
 * struct_size, so a callee built with a larger struct would write past an older
 * receiver's. */
typedef struct ph_response {
    uint16_t status;
    ph_str reason; /* empty: the standard phrase */
    const ph_pair *headers;
    size_t header_count;
    ph_body body; /* taken by the receiver */
    void *owner;
    void (*release)(void *owner); /* frees reason/headers storage; may be NULL */
} ph_response;

/* FROZEN: a per-call host handle a plugin cannot size-check; new host services
 * go into ph_host. */
typedef struct ph_error_sink {
    void *self;
    void (*set)(void *self, ph_str message); /* copies the message */
} ph_error_sink;

/* FROZEN: as ph_error_sink. `call` at most once per request; consumes `body`. */
typedef struct ph_next {
    void *self;
    int32_t (*call)(void *self, const ph_request *req, ph_body body, ph_response *out);
} ph_next;

/* Growable (struct_size). Valid for the life of the process. */
typedef struct ph_host {
    uint32_t struct_size;
    uint16_t abi_major;
    uint16_t abi_minor;
    void (*log)(int32_t level, ph_str target, ph_str message);
} ph_host;

/* Growable (struct_size; 1.1 added `flags`). */
typedef struct ph_handler_vtbl {
    uint32_t struct_size;
    /* `next` is NULL for apps. */
    int32_t (*call)(void *self, const ph_request *req, ph_body body, const ph_next *next,
                    ph_response *out, const ph_error_sink *err);
    void (*destroy)(void *self);
    /* ABI 1.1: PH_HANDLER_* flags (a 1.0 table ends before this field). */
    uint32_t flags;
} ph_handler_vtbl;

typedef int32_t (*ph_create_fn)(const ph_host *host, ph_str entry,
                                const ph_pair *global_conf, size_t global_count,
                                const ph_pair *local_conf, size_t local_count,
                                void **self_out, const ph_error_sink *err);

/* FROZEN: entries form an array whose stride the host must know; per-entry
 * additions go into ph_handler_vtbl, as 1.1's `flags` did. */
typedef struct ph_entry {
    uint32_t kind;
    const char *name;
    ph_create_fn create;
    const ph_handler_vtbl *vtbl;
} ph_entry;

/* Growable (struct_size). Static, never freed. */
typedef struct ph_plugin_desc {
    uint32_t magic;
    uint16_t abi_major;
    uint16_t abi_minor;
    uint32_t struct_size;
    uint32_t flags;
    const char *plugin_name;
    const char *plugin_version;
    const char *build_info;
    const ph_entry *entries;
    size_t entry_count;
} ph_plugin_desc;

/* FROZEN forever, across major versions too: the host reads it to learn the
 * version before anything else, so its layout cannot depend on the version. */
typedef struct ph_handshake {
    uint32_t magic;
    uint16_t abi_major;
    uint16_t abi_minor;
} ph_handshake;

#if defined(_WIN32)
#define PH_EXPORT __declspec(dllexport)
#else
#define PH_EXPORT __attribute__((visibility("default")))
#endif

/* Defines the `plughost_abi` handshake symbol for this header's ABI version. */
#define PLUGHOST_EXPORT_HANDSHAKE() \
    PH_EXPORT const ph_handshake plughost_abi = {PH_MAGIC, PH_ABI_MAJOR, PH_ABI_MINOR}

/* A small helper: a ph_str of a NUL-terminated C string. */
static inline ph_str ph_cstr(const char *s) {
    ph_str out;
    size_t n = 0;
    while (s[n]) n++;
    out.ptr = (const uint8_t *)s;
    out.len = n;
    return out;
}

/* A ph_str of a string literal, as an initializer: PH_STR_LIT("text/plain"). */
#define PH_STR_LIT(s) {(const uint8_t *)(s), sizeof(s) - 1}

/* The state behind a ph_static_body: one borrowed chunk, handed out once. */
typedef struct ph_static_body_state {
    const uint8_t *ptr;
    size_t len;
    int done;
} ph_static_body_state;

static inline int32_t ph_static_body_next_(void *self, ph_str *chunk) {
    ph_static_body_state *s = (ph_static_body_state *)self;
    if (s->done || s->len == 0) return PH_EOF;
    s->done = 1;
    chunk->ptr = s->ptr;
    chunk->len = s->len;
    return PH_OK;
}

static inline int64_t ph_static_body_size_hint_(void *self) {
    ph_static_body_state *s = (ph_static_body_state *)self;
    return s->done ? 0 : (int64_t)s->len;
}

static inline void ph_static_body_release_(void *self) { free(self); }

/* A response body of `len` bytes at `ptr`, not copied: `ptr` must stay valid
 * until the host releases the body (a string literal, or memory the instance
 * owns until `destroy`). No body table of your own is needed. Returns PH_OK, or
 * PH_ERR when the body's small state cannot be allocated (*out is then the
 * empty body). */
static inline int32_t ph_static_body(const void *ptr, size_t len, ph_body *out) {
    static const ph_body_vtbl vtbl = {sizeof(ph_body_vtbl), ph_static_body_next_,
                                      ph_static_body_size_hint_, ph_static_body_release_};
    ph_static_body_state *s = (ph_static_body_state *)malloc(sizeof *s);
    out->vtbl = NULL;
    out->self = NULL;
    if (!s) return PH_ERR;
    s->ptr = (const uint8_t *)ptr;
    s->len = len;
    s->done = 0;
    out->vtbl = &vtbl;
    out->self = s;
    return PH_OK;
}

#ifdef __cplusplus
}
#endif

#endif /* PLUGHOST_H */
