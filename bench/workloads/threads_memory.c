/* bench/threads: THREADS threads each make EVENTS/2 malloc+free pairs (64 blocks in
 * turn, 16-215 bytes), then wait at a barrier while the main thread prints its VmRSS in
 * KiB; the threads are then joined. Run bare and under memlens, the difference over the
 * threads is the recorder's memory per thread. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pthread_barrier_t ready, done;
static long pairs;

static void *work(void *arg) {
    (void)arg;
    void *slot[64] = {0};
    for (long i = 0; i < pairs; i++) {
        int k = (int)(i & 63);
        free(slot[k]);
        slot[k] = malloc(16 + (size_t)(i * 7) % 200);
    }
    for (int k = 0; k < 64; k++)
        free(slot[k]);
    pthread_barrier_wait(&ready);
    pthread_barrier_wait(&done);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: threads_memory THREADS EVENTS\n");
        return 2;
    }
    int threads = atoi(argv[1]);
    pairs = atol(argv[2]) / 2;
    pthread_t *t = calloc((size_t)threads, sizeof *t);
    pthread_barrier_init(&ready, NULL, (unsigned)threads + 1);
    pthread_barrier_init(&done, NULL, (unsigned)threads + 1);
    for (int i = 0; i < threads; i++)
        pthread_create(&t[i], NULL, work, NULL);
    pthread_barrier_wait(&ready);
    char line[256];
    FILE *f = fopen("/proc/self/status", "r");
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6))
            printf("%ld\n", strtol(line + 6, NULL, 10));
    if (f)
        fclose(f);
    fflush(stdout);
    pthread_barrier_wait(&done);
    for (int i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    free(t);
    return 0;
}
