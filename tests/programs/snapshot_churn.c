/* A process whose threads spend their time inside glibc's allocator, for `memlens
 * snapshot`: four workers replace random blocks of their own table (a global, so every
 * block stays reachable) with new ones of random sizes, without pause. Some blocks are
 * above the mmap threshold (fixed, so that it does not rise): their free is a munmap.
 * A snapshot that stops a thread anywhere in malloc or free must still find every block
 * and nothing lost. The main thread says READY once every table is full and waits on
 * stdin; on 'q' the workers stop and the program prints "OK rounds=N" and exits with 0. */
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define THREADS 4
#define KEEP 256

static atomic_int stop, filled;
static atomic_long rounds;
void *g_blocks[THREADS][KEEP];

static void *worker(void *arg) {
    long id = (long)arg;
    unsigned seed = (unsigned)id * 7919u + 1;
    for (int k = 0; k < KEEP; k++)
        g_blocks[id][k] = malloc(16 + k);
    atomic_fetch_add(&filled, 1);
    while (!atomic_load(&stop)) {
        for (int k = 0; k < 1024; k++) {
            int slot = rand_r(&seed) % KEEP;
            free(g_blocks[id][slot]);
            /* Mostly small blocks (tcache and fast bins), some that split and merge
             * chunks in the arena's bins. */
            int r = rand_r(&seed) % 64;
            size_t size = r < 4    ? 200000 + rand_r(&seed) % 100000
                          : r < 16 ? 1100 + rand_r(&seed) % 6000
                                   : 16 + rand_r(&seed) % 500;
            char *p = malloc(size);
            /* Every page of a large block touched: its munmap takes a while. */
            memset(p, 1, size);
            g_blocks[id][slot] = p;
        }
        atomic_fetch_add(&rounds, 1);
    }
    return NULL;
}

int main(void) {
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, worker, (void *)i);
    while (atomic_load(&filled) < THREADS)
        sched_yield();
    (void)!write(1, "READY\n", 6);
    char c;
    while (read(0, &c, 1) == 1 && c != 'q') {
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    printf("OK rounds=%ld\n", atomic_load(&rounds));
    return 0;
}
