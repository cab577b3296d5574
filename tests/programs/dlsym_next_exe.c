/* An executable that defines malloc and free itself, forwarding every call to the next
 * definition with dlsym(RTLD_NEXT): the next after the executable is the preloaded
 * recorder's, so every block is recorded, with this file's malloc as the first frame.
 * leak_one: a 4001-byte block, lost; make_and_free: a 4002-byte block, freed. Prints with
 * write(2) only, so that stdio makes no allocation of its own. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>

static unsigned long own_calls;

void *malloc(size_t n) {
    void *(*next)(size_t) = (void *(*)(size_t))dlsym(RTLD_NEXT, "malloc");
    own_calls++;
    return next(n);
}

void free(void *p) {
    void (*next)(void *) = (void (*)(void *))dlsym(RTLD_NEXT, "free");
    own_calls++;
    next(p);
}

__attribute__((noinline)) void *leak_one(void) { return malloc(4001); }
__attribute__((noinline)) void make_and_free(void) { free(malloc(4002)); }

int main(void) {
    void *volatile p = leak_one();
    p = NULL;
    (void)p;
    make_and_free();
    const char *msg = own_calls >= 3 ? "own malloc forwarded\n" : "own malloc not called\n";
    write(1, msg, strlen(msg));
    return 0;
}
