/* A process for `memlens snapshot` tests: known live blocks in the main arena, a second
 * arena (a worker thread), mmapped chunks, tcache and fastbin frees, definitely and
 * indirectly lost blocks and a global cache that grows on request. It says what it holds
 * (usable sizes, as glibc's heap has them) on one READY line, then obeys its stdin:
 *   g  grow the cache by 100 nodes ("GROWN ...")
 *   l  leak 3 more blocks ("LEAKED ...")
 *   q  exit(0)
 * stdout is written with write(2) only and stdin read with read(2): stdio allocates no
 * buffer, so every block below is one this program made (or glibc's for the thread). */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct node {
    struct node *next;
    char pad[32];
}; /* 40 bytes: malloc(40) has 40 usable bytes */

struct node *g_cache;
static size_t g_cache_n, g_cache_bytes;
void *g_big[2];
void *g_keep56[6];
void *g_worker_blocks[5];
static size_t lost_n, lost_bytes, indirect_n, indirect_bytes;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int ready;
static size_t worker_local_bytes;

static void say(const char *s) { (void)!write(1, s, strlen(s)); }

__attribute__((noinline)) static void grow(int n) {
    for (int i = 0; i < n; i++) {
        struct node *x = malloc(sizeof *x);
        memset(x, 0, sizeof *x);
        x->next = g_cache;
        g_cache = x;
        g_cache_n++;
        g_cache_bytes += malloc_usable_size(x);
    }
}

/* Three definitely lost 24-byte blocks; the first leads a chain of two 72-byte blocks
 * (indirectly lost). */
__attribute__((noinline)) static void leak(void) {
    for (int i = 0; i < 3; i++) {
        void **p = malloc(24);
        memset(p, 0, 24);
        lost_n++;
        lost_bytes += malloc_usable_size(p);
        if (i == 0) {
            void **a = malloc(72);
            void **b = malloc(72);
            memset(a, 0, 72);
            memset(b, 0, 72);
            p[0] = a;
            a[0] = b;
            indirect_n += 2;
            indirect_bytes += malloc_usable_size(a) + malloc_usable_size(b);
        }
    }
}

/* Frees into the tcache (7 per size) and, past that, the fastbins. */
__attribute__((noinline)) static void churn(void) {
    void *p[20];
    for (int i = 0; i < 20; i++)
        p[i] = malloc(56);
    for (int i = 0; i < 6; i++)
        g_keep56[i] = p[i];
    for (int i = 6; i < 20; i++)
        free(p[i]);
    void *q[5];
    for (int i = 0; i < 5; i++)
        q[i] = malloc(1000);
    for (int i = 0; i < 5; i++)
        free(q[i]);
}

static void *worker(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "worker");
    for (int i = 0; i < 5; i++)
        g_worker_blocks[i] = malloc(88);
    /* Held only by this thread's stack. */
    void *volatile local = malloc(120);
    worker_local_bytes = malloc_usable_size(local);
    pthread_mutex_lock(&mu);
    ready = 1;
    pthread_cond_broadcast(&cv);
    for (;;)
        pthread_cond_wait(&cv, &mu);
    return local;
}

static void report(const char *what) {
    char buf[512];
    size_t big = malloc_usable_size(g_big[0]) + malloc_usable_size(g_big[1]);
    snprintf(buf, sizeof buf,
             "%s cache=%zu cache_bytes=%zu lost=%zu lost_bytes=%zu indirect=%zu "
             "indirect_bytes=%zu big=2 big_bytes=%zu keep56=6 keep56_bytes=%zu worker=5 "
             "worker_bytes=%zu worker_local_bytes=%zu\n",
             what, g_cache_n, g_cache_bytes, lost_n, lost_bytes, indirect_n, indirect_bytes,
             big, 6 * malloc_usable_size(g_keep56[0]), 5 * malloc_usable_size(g_worker_blocks[0]),
             worker_local_bytes);
    say(buf);
}

int main(void) {
    pthread_t t;
    pthread_create(&t, NULL, worker, NULL);
    pthread_mutex_lock(&mu);
    while (!ready)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    grow(100);
    leak();
    churn();
    g_big[0] = malloc(1 << 20);
    g_big[1] = malloc(3 << 20);
    memset(g_big[0], 0, 64);
    memset(g_big[1], 0, 64);
    report("READY");
    char c;
    while (read(0, &c, 1) == 1) {
        if (c == 'g') {
            grow(100);
            report("GROWN");
        } else if (c == 'l') {
            leak();
            report("LEAKED");
        } else if (c == 'q') {
            exit(0);
        }
    }
    return 0;
}
