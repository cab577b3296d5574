/* Blocks allocated through allocator pointers that the program got from dlsym, as Python's
 * ctypes (`ctypes.CDLL("libc.so.6").malloc`), plugin loaders and JITs get them. A pointer
 * taken from glibc's own handle is glibc's malloc itself, not the interposed one.
 *   default_malloc    dlsym(RTLD_DEFAULT, "malloc"), 1001 B            definitely lost
 *   libc_malloc       dlsym(dlopen("libc.so.6"), "malloc"), 1002 B    definitely lost
 *   libc_calloc       the same handle's calloc(3, 401), 1203 B         definitely lost
 *   libc_realloc      malloc(10), grown by the handle's realloc to 1004 B  definitely lost
 *   libc_memalign     the handle's memalign(64, 1005)                  definitely lost
 *   libc_posix_memalign  posix_memalign(&p, 128, 1006)                 definitely lost
 *   libc_aligned_alloc   aligned_alloc(256, 1280)                      definitely lost
 *   libc_valloc       valloc(1008)                                     definitely lost
 *   libc_kept         the handle's malloc(1009), held by a global      still reachable
 *   crossed frees     a block from the handle's malloc freed by free(), and one from
 *                     malloc() freed by the handle's free: nothing left, no heap error
 * Build with -ldl on glibc < 2.34 (dlopen is in libc since 2.34). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void say(const char *s) { write(1, s, strlen(s)); }

void *volatile libc_kept;

typedef void *(*malloc_fn)(size_t);

static void *libc_handle(void) {
    void *h = dlopen("libc.so.6", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        say("dlopen libc.so.6 failed\n");
        exit(1);
    }
    return h;
}

static void *sym(void *h, const char *name) {
    void *f = dlsym(h, name);
    if (!f) {
        say("dlsym failed\n");
        exit(1);
    }
    return f;
}

__attribute__((noinline)) void *default_malloc(void) {
    return ((malloc_fn)sym(RTLD_DEFAULT, "malloc"))(1001);
}
__attribute__((noinline)) void *libc_malloc(void *h) {
    return ((malloc_fn)sym(h, "malloc"))(1002);
}
__attribute__((noinline)) void *libc_calloc(void *h) {
    return ((void *(*)(size_t, size_t))sym(h, "calloc"))(3, 401);
}
__attribute__((noinline)) void *libc_realloc(void *h) {
    void *p = malloc(10);
    return ((void *(*)(void *, size_t))sym(h, "realloc"))(p, 1004);
}
__attribute__((noinline)) void *libc_memalign(void *h) {
    return ((void *(*)(size_t, size_t))sym(h, "memalign"))(64, 1005);
}
__attribute__((noinline)) void *libc_posix_memalign(void *h) {
    void *p = NULL;
    int (*f)(void **, size_t, size_t) = (int (*)(void **, size_t, size_t))sym(h, "posix_memalign");
    return f(&p, 128, 1006) ? NULL : p;
}
__attribute__((noinline)) void *libc_aligned_alloc(void *h) {
    return ((void *(*)(size_t, size_t))sym(h, "aligned_alloc"))(256, 1280);
}
__attribute__((noinline)) void *libc_valloc(void *h) {
    return ((malloc_fn)sym(h, "valloc"))(1008);
}
__attribute__((noinline)) void crossed_frees(void *h) {
    void (*libc_free)(void *) = (void (*)(void *))sym(h, "free");
    free(((malloc_fn)sym(h, "malloc"))(1011));
    libc_free(malloc(1012));
}

int main(void) {
    void *h = libc_handle();
    void *(*const lost[])(void *) = {libc_malloc, libc_calloc, libc_realloc,
                                     libc_memalign, libc_posix_memalign,
                                     libc_aligned_alloc, libc_valloc};
    void *volatile p = default_malloc();
    for (unsigned i = 0; i < sizeof lost / sizeof lost[0]; i++) p = lost[i](h);
    p = NULL;
    (void)p;
    libc_kept = ((malloc_fn)sym(h, "malloc"))(1009);
    crossed_frees(h);
    say("dlsym: done\n");
    return 0;
}
