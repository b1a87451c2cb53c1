/*
 * c-hello: the hello app written in C against plughost.h.
 * Answers "Hello, world!" or the `greeting` key of its section.
 *
 * Build: cc -shared -fPIC -O2 -I plugins/sdk/include -o libc_hello.so plugins/c-hello/hello.c
 *
 * Test builds: -DC_HELLO_THREAD answers with the name of the thread the call ran
 * on; -DC_HELLO_ABI_1_0 builds the plugin as ABI 1.0 knew it (a handler table that
 * ends before `flags`, though the word after it is set), which the host must honour.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "plughost.h"

/* The answer when no `greeting` is configured (overridable at build time). */
#ifndef C_HELLO_DEFAULT
#define C_HELLO_DEFAULT "Hello, world!"
#endif

#ifdef C_HELLO_ABI_1_0
#define HELLO_ABI_MINOR 0
#define HELLO_VTBL_SIZE offsetof(ph_handler_vtbl, flags)
PH_EXPORT const ph_handshake plughost_abi = {PH_MAGIC, PH_ABI_MAJOR, 0};
#else
#define HELLO_ABI_MINOR PH_ABI_MINOR
#define HELLO_VTBL_SIZE sizeof(ph_handler_vtbl)
PLUGHOST_EXPORT_HANDSHAKE();
#endif

typedef struct hello {
    char *greeting;
    size_t len;
} hello;

#ifdef C_HELLO_THREAD
/* The thread's name lives in the body's own memory: a body of our own. */
typedef struct thread_body {
    char name[32];
    size_t len;
    int done;
} thread_body;

static int32_t thread_next(void *self, ph_str *chunk) {
    thread_body *b = self;
    if (b->done) return PH_EOF;
    b->done = 1;
    chunk->ptr = (const uint8_t *)b->name;
    chunk->len = b->len;
    return PH_OK;
}

static int64_t thread_size_hint(void *self) {
    thread_body *b = self;
    return b->done ? 0 : (int64_t)b->len;
}

static void thread_release(void *self) { free(self); }

static const ph_body_vtbl THREAD_VTBL = {sizeof(ph_body_vtbl), thread_next, thread_size_hint,
                                         thread_release};
#endif

static const ph_pair HEADERS[] = {
    {PH_STR_LIT("Content-Type"), PH_STR_LIT("text/plain; charset=utf-8")},
};

static void error(const ph_error_sink *err, const char *msg) {
    if (err) err->set(err->self, ph_cstr(msg));
}

static int32_t hello_call(void *self, const ph_request *req, ph_body body, const ph_next *next,
                          ph_response *out, const ph_error_sink *err) {
    (void)req;
    (void)next;
    /* The request body is ours: release it (we do not read it). */
    if (body.vtbl) body.vtbl->release(body.self);
#ifdef C_HELLO_THREAD
    (void)self;
    thread_body *b = malloc(sizeof *b);
    if (!b || pthread_getname_np(pthread_self(), b->name, sizeof b->name) != 0) {
        free(b);
        error(err, "cannot name the thread");
        return PH_ERR;
    }
    b->len = strlen(b->name);
    b->done = 0;
    out->body.vtbl = &THREAD_VTBL;
    out->body.self = b;
#else
    /* The greeting lives until destroy, longer than any response: borrow it. */
    const hello *app = self;
    if (ph_static_body(app->greeting, app->len, &out->body) != PH_OK) {
        error(err, "out of memory");
        return PH_ERR;
    }
#endif
    out->status = 200;
    out->reason.ptr = NULL;
    out->reason.len = 0;
    out->headers = HEADERS; /* static storage: nothing to release */
    out->header_count = 1;
    out->owner = NULL;
    out->release = NULL;
    return PH_OK;
}

static void hello_destroy(void *self) {
    hello *h = self;
    free(h->greeting);
    free(h);
}

/* hello_call only copies memory, so it may run on the host's event loop. */
static const ph_handler_vtbl HELLO_VTBL = {HELLO_VTBL_SIZE, hello_call, hello_destroy,
                                           PH_HANDLER_NONBLOCKING};

static int32_t hello_create(const ph_host *host, ph_str entry, const ph_pair *global_conf,
                            size_t global_count, const ph_pair *local_conf, size_t local_count,
                            void **self_out, const ph_error_sink *err) {
    (void)host;
    (void)entry;
    (void)global_conf;
    (void)global_count;
    const char *text = C_HELLO_DEFAULT;
    size_t len = strlen(text);
    for (size_t i = 0; i < local_count; i++) {
        if (local_conf[i].name.len == 8 && memcmp(local_conf[i].name.ptr, "greeting", 8) == 0) {
            text = (const char *)local_conf[i].value.ptr;
            len = local_conf[i].value.len;
        }
    }
    hello *h = malloc(sizeof *h);
    char *copy = malloc(len + 1);
    if (!h || !copy) {
        free(h);
        free(copy);
        error(err, "out of memory");
        return PH_ERR;
    }
    memcpy(copy, text, len); /* borrowed for this call only: copy it */
    copy[len] = 0;
    h->greeting = copy;
    h->len = len;
    *self_out = h;
    return PH_OK;
}

static const ph_entry ENTRIES[] = {
    {PH_KIND_APP, "main", hello_create, &HELLO_VTBL},
};

static const ph_plugin_desc DESC = {
    PH_MAGIC, PH_ABI_MAJOR, HELLO_ABI_MINOR, sizeof(ph_plugin_desc), 0,
    "c-hello", "0.1.0", "C, plughost.h",
    ENTRIES, sizeof ENTRIES / sizeof ENTRIES[0],
};

PH_EXPORT const ph_plugin_desc *plughost_plugin_v1(void) { return &DESC; }
