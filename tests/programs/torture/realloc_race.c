/* Threads that share one arena move blocks with realloc while the others allocate blocks
 * of the old size. The sizes are above tcache's largest (1032 bytes), so a moved block's
 * old chunk goes back to the shared arena, where another thread's malloc can take it
 * before the realloc has even returned: the recorder must still write the release
 * first. Every block is freed; each thread's last allocation is freed right after it. */
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define THREADS 4
#define KEPT 8
static int rounds = 20000;

static void *work(void *arg) {
    unsigned seed = (unsigned)(size_t)arg;
    char *kept[KEPT] = {0};
    for (int i = 0; i < rounds; i++) {
        size_t n = 1100 + (rand_r(&seed) % 4) * 16;
        char *p = malloc(n);
        memset(p, i, 16);
        p = realloc(p, n * 3);
        if (p[15] != (char)i) abort();
        char *q = malloc(n);
        q[0] = 1;
        int k = rand_r(&seed) % KEPT;
        free(kept[k]);
        kept[k] = q;
        free(p);
    }
    for (int k = 0; k < KEPT; k++) free(kept[k]);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc > 1) rounds = atoi(argv[1]);
    mallopt(M_ARENA_MAX, 1);
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, work, (void *)(i + 1));
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    printf("realloc_race %d threads x %d rounds\n", THREADS, rounds);
    return 0;
}
