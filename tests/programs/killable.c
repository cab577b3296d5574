/* A program to kill at chosen moments (robustness.rs). It allocates and frees in
 * batches of 1,000 allocations through 50 different stacks, keeping a ring of 256 live
 * blocks, and after each batch prints "batch B allocations N" (N counts its own
 * allocations so far) and flushes stdout.
 *   killable step N   after each batch, wait for one byte on stdin (EOF: carry on);
 *                     exit 0 after N batches. The first line is "pid P".
 *   killable run N    no waiting: N batches, then exit 0. The first line is "pid P".
 * The output does not depend on timing, so a bare run and a recorded one print the same. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RING 256
static void *ring[RING];
static unsigned long allocations;

__attribute__((noinline)) static void *alloc_at(int depth, size_t size) {
    if (depth > 0) {
        void *p = alloc_at(depth - 1, size);
        __asm__ volatile("" ::: "memory"); /* not a tail call */
        return p;
    }
    allocations++;
    return malloc(size);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: killable step|run BATCHES\n");
        return 2;
    }
    int step = !strcmp(argv[1], "step");
    long batches = atol(argv[2]);
    printf("pid %d\n", (int)getpid());
    fflush(stdout);
    unsigned long i = 0;
    for (long b = 1; b <= batches; b++) {
        for (int k = 0; k < 1000; k++, i++) {
            void *p = alloc_at((int)(i % 50), 16 + (i * 7) % 500);
            if (!p) abort();
            memset(p, 1, 16);
            free(ring[i % RING]);
            ring[i % RING] = p;
        }
        printf("batch %ld allocations %lu\n", b, allocations);
        fflush(stdout);
        if (step) {
            char c;
            if (read(0, &c, 1) < 0) return 3;
        }
    }
    return 0;
}
