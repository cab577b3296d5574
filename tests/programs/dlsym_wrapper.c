/* libdlsym_wrapper.so: malloc and free that count their calls and forward to the next
 * definition, found with dlsym(RTLD_NEXT), as malloc wrappers do. Linked by
 * dlsym_next_lib.c, so it is loaded after the recorder: RTLD_NEXT from here must answer
 * the definition after this library (glibc's), never this library's own (which would
 * recurse forever). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>

static unsigned long wrapper_calls;

void *malloc(size_t n) {
    void *(*next)(size_t) = (void *(*)(size_t))dlsym(RTLD_NEXT, "malloc");
    wrapper_calls++;
    return next(n);
}

void free(void *p) {
    void (*next)(void *) = (void (*)(void *))dlsym(RTLD_NEXT, "free");
    wrapper_calls++;
    next(p);
}

unsigned long wrapper_call_count(void) { return wrapper_calls; }
