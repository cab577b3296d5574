/* A multi-threaded process for `memlens snapshot` tests: four workers allocate, fill,
 * check and free blocks without pause (each block's bytes are a function of its address
 * and size), sleep briefly now and then, and meet on a condition variable; the main
 * thread waits on stdin. On 'q' the workers stop, every kept block is checked once more,
 * and the program prints "OK rounds=N errors=E eintr=I" and exits with 0 if E is 0.
 * Snapshots taken meanwhile must not change what it computes. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define THREADS 4
#define KEEP 512

static atomic_int stop;
static atomic_long rounds, errors, eintr;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static long shared_ticks;
/* Every worker's kept blocks: reachable through this global. */
void *g_kept[THREADS][KEEP];
size_t g_kept_size[THREADS][KEEP];

static unsigned char pattern(void *p, size_t size, size_t i) {
    return (unsigned char)(((unsigned long)p >> 4) ^ size ^ (i * 131));
}

static void fill(void *p, size_t size) {
    unsigned char *b = p;
    for (size_t i = 0; i < size; i++)
        b[i] = pattern(p, size, i);
}

static int check(void *p, size_t size) {
    unsigned char *b = p;
    for (size_t i = 0; i < size; i++)
        if (b[i] != pattern(p, size, i))
            return 0;
    return 1;
}

static void *worker(void *arg) {
    long id = (long)arg;
    unsigned seed = (unsigned)id * 7919u + 1;
    while (!atomic_load(&stop)) {
        for (int k = 0; k < 64; k++) {
            int slot = rand_r(&seed) % KEEP;
            if (g_kept[id][slot]) {
                if (!check(g_kept[id][slot], g_kept_size[id][slot]))
                    atomic_fetch_add(&errors, 1);
                free(g_kept[id][slot]);
            }
            size_t size = 16 + rand_r(&seed) % (rand_r(&seed) % 16 == 0 ? 300000 : 2000);
            void *p = malloc(size);
            fill(p, size);
            g_kept[id][slot] = p;
            g_kept_size[id][slot] = size;
            void *t = malloc(1 + rand_r(&seed) % 128);
            free(t);
        }
        atomic_fetch_add(&rounds, 1);
        if (rand_r(&seed) % 8 == 0) {
            struct timespec ts = {0, 200000};
            if (nanosleep(&ts, NULL) != 0 && errno == EINTR)
                atomic_fetch_add(&eintr, 1);
        }
        pthread_mutex_lock(&mu);
        shared_ticks++;
        pthread_cond_broadcast(&cv);
        pthread_mutex_unlock(&mu);
    }
    return NULL;
}

int main(void) {
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, worker, (void *)i);
    (void)!write(1, "READY\n", 6);
    char c;
    for (;;) {
        ssize_t n = read(0, &c, 1);
        if (n < 0 && errno == EINTR) {
            atomic_fetch_add(&eintr, 1);
            continue;
        }
        if (n != 1 || c == 'q')
            break;
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < THREADS; i++)
        for (int k = 0; k < KEEP; k++)
            if (g_kept[i][k] && !check(g_kept[i][k], g_kept_size[i][k]))
                atomic_fetch_add(&errors, 1);
    char buf[128];
    snprintf(buf, sizeof buf, "OK rounds=%ld errors=%ld eintr=%ld ticks=%ld\n", atomic_load(&rounds),
             atomic_load(&errors), atomic_load(&eintr), shared_ticks);
    (void)!write(1, buf, strlen(buf));
    return atomic_load(&errors) ? 1 : 0;
}
