/* Exact allocation counts per function, through every C allocation entry point.
 * Expected (asserted by crates/memlens-cli/tests/record.rs):
 *   do_malloc      10 x malloc(100), all freed
 *   do_calloc       5 x calloc(4, 25), none freed (500 B in 5 blocks at exit)
 *   do_realloc      malloc(10) -> realloc 20 -> realloc 30 -> free
 *   do_aligned      posix_memalign(64,64), aligned_alloc(128,256), memalign(32,40),
 *                   valloc(10), pvalloc(10): all freed
 *   do_reallocarray reallocarray(NULL, 7, 9) = 63 B, kept */
#define _GNU_SOURCE
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>

void *keep[64]; /* external: the compiler may not drop the stores */
int nkeep;

__attribute__((noinline)) void do_malloc(void) {
    void *p[10];
    for (int i = 0; i < 10; i++) p[i] = malloc(100);
    for (int i = 0; i < 10; i++) free(p[i]);
}

__attribute__((noinline)) void do_calloc(void) {
    for (int i = 0; i < 5; i++) keep[nkeep++] = calloc(4, 25);
}

__attribute__((noinline)) void do_realloc(void) {
    char *p = malloc(10);
    p = realloc(p, 20);
    p = realloc(p, 30);
    free(p);
}

__attribute__((noinline)) void do_aligned(void) {
    void *a;
    if (posix_memalign(&a, 64, 64) != 0) abort();
    void *b = aligned_alloc(128, 256);
    void *c = memalign(32, 40);
    void *d = valloc(10);
    void *e = pvalloc(10);
    if (((unsigned long)a & 63) || ((unsigned long)b & 127) || ((unsigned long)c & 31)) abort();
    free(a); free(b); free(c); free(d); free(e);
}

__attribute__((noinline)) void do_reallocarray(void) {
    keep[nkeep++] = reallocarray(NULL, 7, 9);
}

int main(void) {
    do_malloc();
    do_calloc();
    do_realloc();
    do_aligned();
    do_reallocarray();
    /* Keep the pointers visible to the compiler so nothing is optimised away. */
    printf("sites done %d\n", nkeep);
    return 0;
}
