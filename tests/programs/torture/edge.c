/* Torture 5: edge allocations. Prints what it got; at least 1,000,000 allocations. */
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *volatile sink;

int main(void) {
    /* malloc(0): NULL or a unique pointer, either is fine; free it */
    void *z = malloc(0);
    sink = z;
    free(z);
    /* realloc(NULL, n) is malloc(n); realloc(p, 0) frees p (glibc returns NULL) */
    char *r = realloc(NULL, 100);
    memset(r, 1, 100);
    r = realloc(r, 5000);
    r = realloc(r, 10);
    void *r0 = realloc(r, 0);
    printf("realloc(p, 0) %s\n", r0 ? "returned a block" : "returned NULL");
    free(r0);
    free(NULL);
    /* every power-of-two alignment up to 1 MiB */
    int aligned = 0;
    for (size_t a = sizeof(void *); a <= (1u << 20); a <<= 1) {
        void *p = NULL;
        if (posix_memalign(&p, a, 3 * a / 2 + 1) == 0 && ((uintptr_t)p & (a - 1)) == 0) aligned++;
        free(p);
        void *q = aligned_alloc(a, 2 * a);
        if (q && ((uintptr_t)q & (a - 1)) == 0) aligned++;
        free(q);
        void *m = memalign(a, 100);
        if (m && ((uintptr_t)m & (a - 1)) == 0) aligned++;
        free(m);
    }
    printf("aligned allocations correct: %d\n", aligned);
    /* 64 TiB: more than the address space allows */
    errno = 0;
    void *huge = malloc(1ULL << 46);
    printf("malloc(1 << 46) %s\n", huge ? "succeeded" : (errno == ENOMEM ? "NULL, ENOMEM" : "NULL"));
    free(huge);
    void *cz = calloc(1ULL << 40, 1ULL << 20);
    printf("calloc overflow %s\n", cz ? "succeeded" : "NULL");
    free(cz);
    /* a million tiny blocks, all live at once, then freed */
    enum { N = 1000000 };
    void **v = malloc(N * sizeof *v);
    for (int i = 0; i < N; i++) v[i] = malloc(1 + i % 8);
    for (int i = 0; i < N; i++) free(v[i]);
    free(v);
    printf("a million tiny blocks\n");
    /* one 4 GiB block: not touched, just allocated and freed */
    void *big = malloc(4ULL << 30);
    if (big) {
        printf("4 GiB block allocated\n");
        free(big);
    } else {
        printf("4 GiB block refused (note: not tested)\n");
    }
    return 0;
}
