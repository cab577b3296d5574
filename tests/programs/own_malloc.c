/* An executable with an allocator of its own: malloc, calloc, realloc and free defined
 * here (a bump allocator over a static arena; free does nothing). They take the place of
 * the C library's for the whole process, glibc's own calls included, so a preloaded
 * recorder never sees these blocks. Requests of 64 KiB or more are passed on to the C
 * library by its `__libc_malloc` (recorded: the 100,000-byte block), as allocators that
 * wrap glibc's do. posix_memalign is not replaced: its 5000-byte block still comes from
 * the C library (and is recorded). Prints "own allocator: done".
 * With argv[1] = "fork", a child is forked first and exits at once (its own trace). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static unsigned char arena[1 << 20];
static size_t used;

extern void *__libc_malloc(size_t n);

void *malloc(size_t n) {
    if (n >= 65536) return __libc_malloc(n);
    size_t start = (used + 15) & ~(size_t)15;
    if (start + n + 16 > sizeof arena) return NULL;
    memcpy(arena + start, &n, sizeof n);
    used = start + 16 + n;
    return arena + start + 16;
}

void *calloc(size_t k, size_t n) {
    void *p = malloc(k * n);
    if (p) memset(p, 0, k * n);
    return p;
}

void *realloc(void *old, size_t n) {
    void *p = malloc(n);
    if (p && old) {
        size_t was;
        memcpy(&was, (unsigned char *)old - 16, sizeof was);
        memcpy(p, old, was < n ? was : n);
    }
    return p;
}

void free(void *p) { (void)p; }

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "fork")) {
        pid_t child = fork();
        if (child == 0) _exit(0);
        if (child < 0 || waitpid(child, NULL, 0) != child) return 1;
    }
    void *volatile a = malloc(3000);
    void *volatile b = calloc(10, 100);
    void *volatile big = malloc(100000);
    void *c = NULL;
    if (posix_memalign(&c, 64, 5000) != 0) return 1;
    (void)a;
    (void)b;
    (void)big;
    printf("own allocator: %s\n", used >= 4000 ? "done" : "not used");
    return 0;
}
