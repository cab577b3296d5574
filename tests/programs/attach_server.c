/* A server-like program for `memlens attach` (crates/memlens-cli/tests/attach.rs): two
 * worker threads allocate and free in a loop for the whole run, the main thread answers
 * commands read from stdin, one per line, with one deterministic line each:
 *
 *   alloc N SIZE   N blocks of SIZE bytes from labelled_site(), kept  -> "allocated N"
 *   free_new N     free N of them (oldest first)                       -> "freed N"
 *   free_pre       free the 100 blocks allocated before any attach     -> "freed_pre"
 *   realloc_pre    realloc 10 blocks from before any attach            -> "realloced_pre"
 *   check          a checksum of everything kept                       -> "checksum X"
 *   plugin LIB N SIZE [wait]
 *                  dlopen LIB (attach_plugin.c), N blocks of SIZE from its plugin_site(),
 *                  kept; with `wait`, first wait (at most 10 s) until the library's calls
 *                  to malloc no longer go to the malloc they went to when it was loaded
 *                  (memlens routed it)                              -> "plugin N"
 *   leak N SIZE    N blocks of SIZE bytes from leaky_site(), each pointing to a block of
 *                  SIZE bytes from leaky_child(); no pointer to either is kept (N
 *                  definitely lost, N indirectly lost)                 -> "leaked N"
 *   quit CODE      stop the workers, exit(CODE)                        -> "bye"
 *
 * The workers' results never reach stdout: only the main thread writes there. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PRE 100
static char *pre[PRE];
static char *kept[100000];
static int nkept, firstkept;
static volatile int stop;

__attribute__((noinline)) static char *labelled_site(size_t size, int i) {
    char *p = malloc(size);
    memset(p, i & 0xff, size);
    return p;
}

/* The empty asm makes the block's contents observable, so that the compiler keeps the
 * allocation and the stores that a block nobody reads again would let it drop. */
#define KEEP(p) __asm__ volatile("" : : "r"(p) : "memory")

__attribute__((noinline)) static void *leaky_child(size_t size) {
    void **p = malloc(size);
    memset(p, 0, size);
    KEEP(p);
    return p;
}

/* Leaves no pointer behind: the blocks' addresses die in this frame and in registers
 * that later calls reuse. */
__attribute__((noinline)) static void leaky_site(size_t size) {
    void **p = malloc(size);
    memset(p, 0, size);
    p[0] = leaky_child(size);
    KEEP(p);
}

/* Overwrite the dead stack below the caller's frame, where leaky_site's frame was (a
 * heap snapshot scans a stack from its pointer up only, but the test does not rely on
 * what the next calls happen to overwrite). */
__attribute__((noinline)) static void scrub(void) {
    volatile char dead[4096];
    memset((char *)dead, 0, sizeof dead);
}

static void *worker(void *arg) {
    unsigned seed = (unsigned)(size_t)arg;
    struct timespec pause = {0, 200000};
    while (!stop) {
        char *ring[16] = {0};
        for (int i = 0; i < 64; i++) {
            seed = seed * 1103515245u + 12345u;
            int slot = seed % 16;
            free(ring[slot]);
            ring[slot] = malloc(16 + seed % 2000);
            ring[slot][0] = 1;
        }
        for (int i = 0; i < 16; i++)
            free(ring[i]);
        nanosleep(&pause, NULL);
    }
    return NULL;
}

int main(void) {
    for (int i = 0; i < PRE; i++) {
        pre[i] = malloc(777);
        memset(pre[i], 7, 777);
    }
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, worker, (void *)(size_t)(i + 1));
    printf("ready\n");
    fflush(stdout);
    char line[4352];
    while (fgets(line, sizeof line, stdin)) {
        int n = 0, size = 0;
        if (sscanf(line, "alloc %d %d", &n, &size) == 2) {
            for (int i = 0; i < n && nkept < 100000; i++)
                kept[nkept++] = labelled_site((size_t)size, i);
            printf("allocated %d\n", n);
        } else if (sscanf(line, "leak %d %d", &n, &size) == 2 && size >= 8) {
            for (int i = 0; i < n; i++)
                leaky_site((size_t)size);
            scrub();
            printf("leaked %d\n", n);
        } else if (sscanf(line, "free_new %d", &n) == 1) {
            for (int i = 0; i < n && firstkept < nkept; i++) {
                free(kept[firstkept]);
                kept[firstkept++] = NULL;
            }
            printf("freed %d\n", n);
        } else if (strncmp(line, "plugin ", 7) == 0) {
            char lib[4096], wait[8] = "";
            int k = sscanf(line, "plugin %4095s %d %d %7s", lib, &n, &size, wait);
            void *h = k >= 3 ? dlopen(lib, RTLD_NOW) : NULL;
            void *(*addr)(void) = h ? (void *(*)(void))dlsym(h, "plugin_malloc_address") : NULL;
            void *(*site)(size_t) = h ? (void *(*)(size_t))dlsym(h, "plugin_site") : NULL;
            if (!addr || !site) {
                printf("plugin error\n");
            } else {
                int routed = 1;
                if (strcmp(wait, "wait") == 0) {
                    void *first = addr();
                    struct timespec tick = {0, 1000000};
                    routed = 0;
                    for (int i = 0; i < 10000 && !routed; i++) {
                        routed = addr() != first;
                        if (!routed)
                            nanosleep(&tick, NULL);
                    }
                }
                for (int i = 0; i < n && nkept < 100000; i++) {
                    kept[nkept] = site((size_t)size);
                    kept[nkept++][0] = 1;
                }
                printf(routed ? "plugin %d\n" : "plugin %d (never routed)\n", n);
            }
        } else if (strncmp(line, "free_pre", 8) == 0) {
            for (int i = 10; i < PRE; i++) {
                free(pre[i]);
                pre[i] = NULL;
            }
            printf("freed_pre\n");
        } else if (strncmp(line, "realloc_pre", 11) == 0) {
            for (int i = 0; i < 10; i++)
                pre[i] = realloc(pre[i], 4000);
            printf("realloced_pre\n");
        } else if (strncmp(line, "check", 5) == 0) {
            unsigned long sum = 0;
            for (int i = firstkept; i < nkept; i++)
                sum = sum * 31 + (unsigned char)kept[i][0];
            for (int i = 0; i < PRE; i++)
                if (pre[i])
                    sum = sum * 31 + (unsigned char)pre[i][5];
            printf("checksum %lu\n", sum);
        } else if (sscanf(line, "quit %d", &n) == 1) {
            stop = 1;
            for (int i = 0; i < 2; i++)
                pthread_join(t[i], NULL);
            printf("bye\n");
            fflush(stdout);
            exit(n);
        } else {
            printf("unknown command\n");
        }
        fflush(stdout);
    }
    return 3;
}
