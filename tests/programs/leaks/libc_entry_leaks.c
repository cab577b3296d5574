/* Blocks allocated through glibc's other names for its allocator: the `__libc_*` entry
 * points a program may call directly (allocator wrappers, old malloc-hook code), and the
 * versioned lookup `dlvsym(..., "malloc", "GLIBC_2.2.5")`, which passes over an
 * unversioned interposer. Their blocks must reach the recorder like malloc's: otherwise a
 * free() of one would be a free of memory never allocated, and the block would never go
 * back to glibc.
 *   libc_malloc      __libc_malloc(1101)                             definitely lost
 *   libc_calloc      __libc_calloc(2, 551), 1102 B                   definitely lost
 *   libc_realloc     malloc(10) grown by __libc_realloc to 1103 B    definitely lost
 *   libc_memalign    __libc_memalign(64, 1104)                       definitely lost
 *   libc_valloc      __libc_valloc(1105)                             definitely lost
 *   next_malloc      dlvsym(RTLD_NEXT, "malloc", "GLIBC_2.2.5")(1106)  definitely lost
 *   handle_calloc    dlvsym(dlopen("libc.so.6"), "calloc", ...)(1, 1107)  definitely lost
 *   libc_kept        __libc_malloc(1108), held by a global           still reachable
 *   crossed          blocks from one name freed or resized by another (__libc_malloc and
 *                    free, malloc and __libc_free, __libc_malloc and realloc, dlvsym's
 *                    malloc and free, 1,000 times): nothing left, no heap error, and
 *                    every realloc succeeds
 * Build with -ldl on glibc < 2.34 (dlopen is in libc since 2.34). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
extern void *__libc_memalign(size_t, size_t);
extern void *__libc_valloc(size_t);

static void say(const char *s) { write(1, s, strlen(s)); }

void *volatile libc_kept;

typedef void *(*malloc_fn)(size_t);

static void *vsym(void *h, const char *name) {
    void *f = dlvsym(h, name, "GLIBC_2.2.5");
    if (!f) {
        say("dlvsym failed\n");
        exit(1);
    }
    return f;
}

__attribute__((noinline)) void *libc_malloc(void) { return __libc_malloc(1101); }
__attribute__((noinline)) void *libc_calloc(void) { return __libc_calloc(2, 551); }
__attribute__((noinline)) void *libc_realloc(void) { return __libc_realloc(malloc(10), 1103); }
__attribute__((noinline)) void *libc_memalign(void) { return __libc_memalign(64, 1104); }
__attribute__((noinline)) void *libc_valloc(void) { return __libc_valloc(1105); }
__attribute__((noinline)) void *next_malloc(void) {
    return ((malloc_fn)vsym(RTLD_NEXT, "malloc"))(1106);
}
__attribute__((noinline)) void *handle_calloc(void) {
    void *h = dlopen("libc.so.6", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        say("dlopen libc.so.6 failed\n");
        exit(1);
    }
    void *p = ((void *(*)(size_t, size_t))vsym(h, "calloc"))(1, 1107);
    dlclose(h);
    return p;
}

__attribute__((noinline)) int crossed(void) {
    malloc_fn next = (malloc_fn)vsym(RTLD_NEXT, "malloc");
    int failed = 0;
    for (int i = 0; i < 1000; i++) {
        free(__libc_malloc(64 + i));
        __libc_free(malloc(64 + i));
        char *p = __libc_malloc(16);
        strcpy(p, "payload");
        char *q = realloc(p, 4096 + i);
        failed += !q || strcmp(q, "payload") != 0;
        q = __libc_realloc(q, 8);
        failed += !q;
        free(q);
        free(next(32 + i));
    }
    return failed;
}

int main(void) {
    void *(*const lost[])(void) = {libc_malloc, libc_calloc, libc_realloc, libc_memalign,
                                   libc_valloc, next_malloc, handle_calloc};
    void *volatile p = NULL;
    for (unsigned i = 0; i < sizeof lost / sizeof lost[0]; i++) p = lost[i]();
    p = NULL;
    (void)p;
    libc_kept = __libc_malloc(1108);
    say(crossed() ? "a realloc failed\n" : "libc entry points: done\n");
    return 0;
}
