/* A library attach_server.c loads with dlopen while memlens may be attached
 * (crates/memlens-cli/tests/attach.rs): memlens routes modules loaded later too. */
#include <stdlib.h>

/* The address this library's code calls for malloc, read from its GOT at each call:
 * the server waits until memlens has routed it (an observable state, not a delay). */
__attribute__((noinline)) void *plugin_malloc_address(void) {
    void *(*volatile f)(size_t) = malloc;
    return (void *)f;
}

__attribute__((noinline)) void *plugin_site(size_t size) {
    return malloc(size);
}
