/*
 * null_fns: a C plugin that hands the host NULL where a pointer belongs, for
 * tests/ffi_guards.rs.
 *
 * Entries (always present):
 *   good      an app answering "good"
 *   badbody   an app whose response body table has a NULL `next` (its release is
 *             set and counts releases, which `good` reports)
 *   nullargs  a filter that calls the host's callbacks with NULL arguments and
 *             answers with what each returned
 *
 * Build with one of -DNULL_CREATE, -DNULL_VTBL, -DNULL_CALL, -DNULL_DESTROY to add
 * an entry `broken` with that pointer NULL: the host must refuse the library at
 * load, naming `broken`. -DDUPLICATE_ENTRY adds a second app named `good`, which
 * the host must refuse too (an app and a filter may share a name; two apps may not).
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plughost.h"

PLUGHOST_EXPORT_HANDSHAKE();

static const ph_host *HOST;
/* Releases of `badbody`'s bodies (the host must release one it refuses). */
static atomic_int BAD_RELEASED;

/* A body of one static chunk. */
typedef struct text_body {
    char text[256];
    size_t len;
    int done;
} text_body;

static int32_t text_next(void *self, ph_str *chunk) {
    text_body *b = self;
    if (b->done) return PH_EOF;
    b->done = 1;
    chunk->ptr = (const uint8_t *)b->text;
    chunk->len = b->len;
    return PH_OK;
}

static int64_t text_size_hint(void *self) {
    text_body *b = self;
    return b->done ? 0 : (int64_t)b->len;
}

static void text_release(void *self) { free(self); }

static void bad_release(void *self) {
    atomic_fetch_add(&BAD_RELEASED, 1);
    free(self);
}

static const ph_body_vtbl TEXT_VTBL = {sizeof(ph_body_vtbl), text_next, text_size_hint,
                                       text_release};
/* NULL `next`: the host must not call it, and must release the body. */
static const ph_body_vtbl NULL_NEXT_VTBL = {sizeof(ph_body_vtbl), NULL, text_size_hint,
                                            bad_release};

static int32_t answer(ph_response *out, const ph_body_vtbl *vtbl, const char *text) {
    text_body *b = malloc(sizeof *b);
    if (!b) return PH_ERR;
    snprintf(b->text, sizeof b->text, "%s", text);
    b->len = strlen(b->text);
    b->done = 0;
    memset(out, 0, sizeof *out);
    out->status = 200;
    out->body.vtbl = vtbl;
    out->body.self = b;
    out->release = NULL; /* allowed: nothing to free */
    return PH_OK;
}

static void drop_body(ph_body body) {
    if (body.vtbl) body.vtbl->release(body.self);
}

static int32_t good_call(void *self, const ph_request *req, ph_body body, const ph_next *next,
                         ph_response *out, const ph_error_sink *err) {
    (void)self;
    (void)req;
    (void)next;
    (void)err;
    drop_body(body);
    char text[64];
    snprintf(text, sizeof text, "good released=%d", atomic_load(&BAD_RELEASED));
    return answer(out, &TEXT_VTBL, text);
}

static int32_t badbody_call(void *self, const ph_request *req, ph_body body,
                            const ph_next *next, ph_response *out, const ph_error_sink *err) {
    (void)self;
    (void)req;
    (void)next;
    (void)err;
    drop_body(body);
    return answer(out, &NULL_NEXT_VTBL, "never read");
}

static int32_t nullargs_call(void *self, const ph_request *req, ph_body body,
                             const ph_next *next, ph_response *out, const ph_error_sink *err) {
    (void)self;
    (void)req;
    /* Logging with empty strings whose pointers are NULL, and an unknown level. */
    ph_str empty = {NULL, 0};
    HOST->log(99, empty, empty);
    HOST->log(PH_LOG_WARN, ph_cstr("null_fns"), ph_cstr("nullargs filter called"));
    /* An error sink with a NULL self. */
    err->set(NULL, ph_cstr("dropped"));
    int64_t hint = 0;
    int32_t next_rc = 0, read_rc = 0;
    if (body.vtbl) {
        hint = body.vtbl->size_hint(NULL);
        read_rc = body.vtbl->next(body.self, NULL);
        body.vtbl->release(NULL);
    }
    /* NULL request and out: the host refuses, and still consumes the body. */
    next_rc = next->call(next->self, NULL, body, NULL);
    char text[128];
    snprintf(text, sizeof text, "size_hint=%lld next=%d call=%d", (long long)hint, read_rc,
             next_rc);
    return answer(out, &TEXT_VTBL, text);
}

static void plain_destroy(void *self) { (void)self; }

static int32_t plain_create(const ph_host *host, ph_str entry, const ph_pair *global_conf,
                            size_t global_count, const ph_pair *local_conf, size_t local_count,
                            void **self_out, const ph_error_sink *err) {
    (void)entry;
    (void)global_conf;
    (void)global_count;
    (void)local_conf;
    (void)local_count;
    (void)err;
    HOST = host;
    static int token;
    *self_out = &token;
    return PH_OK;
}

static const ph_handler_vtbl GOOD_VTBL = {sizeof(ph_handler_vtbl), good_call, plain_destroy, 0};
static const ph_handler_vtbl BADBODY_VTBL = {sizeof(ph_handler_vtbl), badbody_call,
                                             plain_destroy, 0};
static const ph_handler_vtbl NULLARGS_VTBL = {sizeof(ph_handler_vtbl), nullargs_call,
                                              plain_destroy, 0};
#ifdef NULL_CALL
static const ph_handler_vtbl BROKEN_VTBL = {sizeof(ph_handler_vtbl), NULL, plain_destroy, 0};
#endif
#ifdef NULL_DESTROY
static const ph_handler_vtbl BROKEN_VTBL = {sizeof(ph_handler_vtbl), good_call, NULL, 0};
#endif

static const ph_entry ENTRIES[] = {
    {PH_KIND_APP, "good", plain_create, &GOOD_VTBL},
    {PH_KIND_APP, "badbody", plain_create, &BADBODY_VTBL},
    {PH_KIND_FILTER, "nullargs", plain_create, &NULLARGS_VTBL},
#if defined(NULL_CREATE)
    {PH_KIND_APP, "broken", NULL, &GOOD_VTBL},
#elif defined(NULL_VTBL)
    {PH_KIND_APP, "broken", plain_create, NULL},
#elif defined(NULL_CALL) || defined(NULL_DESTROY)
    {PH_KIND_APP, "broken", plain_create, &BROKEN_VTBL},
#elif defined(DUPLICATE_ENTRY)
    {PH_KIND_APP, "good", plain_create, &BADBODY_VTBL},
#endif
};

static const ph_plugin_desc DESC = {
    PH_MAGIC, PH_ABI_MAJOR, PH_ABI_MINOR, sizeof(ph_plugin_desc), 0,
    "null_fns", "0.1.0", "C, plughost.h",
    ENTRIES, sizeof ENTRIES / sizeof ENTRIES[0],
};

PH_EXPORT const ph_plugin_desc *plughost_plugin_v1(void) { return &DESC; }
