/* Calls the malloc and free of libdlsym_wrapper.so (linked; see dlsym_wrapper.c) through
 * the library's handle: a 3001-byte block made and freed through the wrapper, which
 * forwards both with dlsym(RTLD_NEXT) and counts 2 calls. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>

unsigned long wrapper_call_count(void);

int main(void) {
    void *w = dlopen("libdlsym_wrapper.so", RTLD_NOW | RTLD_NOLOAD);
    if (!w) {
        fprintf(stderr, "%s\n", dlerror());
        return 1;
    }
    void *(*wrapped_malloc)(size_t) = (void *(*)(size_t))dlsym(w, "malloc");
    void (*wrapped_free)(void *) = (void (*)(void *))dlsym(w, "free");
    wrapped_free(wrapped_malloc(3001));
    printf("wrapper calls: %lu\n", wrapper_call_count());
    return 0;
}
