/* Components with known figures for the budget tests (crates/memlens-cli/tests/budgets.rs).
 * The threads run one after the other, so every figure is exact:
 *   parse_config (main thread)  malloc(64) dropped (definitely lost), malloc(32) freed:
 *                               2 allocations, 96 bytes, peak 96, 64 lost
 *   worker-1, then worker-2     each: malloc(4096) held while 100 x malloc(1000) are
 *                               freed at once, then freed; then malloc(100) kept in a
 *                               global (still reachable). Together: 204 allocations,
 *                               208,392 bytes, peak 100 + 4096 + 1000 = 5,196, 200 live
 *                               at exit
 *   audio                       50 blocks processed in a buffer main allocated before;
 *                               only with the argument "audio-alloc", every 10th block
 *                               calls audio_reconfigure: malloc(256) and free, 5 times
 *   extra_leak (main thread)    only with the argument "extra": malloc(777) dropped
 * Every thread names itself before it allocates anything (the recorder takes a thread's
 * name at its first allocation). Output goes through write(2): stdio would allocate.
 * Build it as the tests do: gcc -g -O1 -fno-builtin -fno-optimize-sibling-calls -pthread */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void *volatile kept[2];
static char *audio_buffer;
static int audio_alloc;

__attribute__((noinline)) void parse_config(void) {
    char *lost = malloc(64);
    memset(lost, 1, 64);
    char *tmp = malloc(32);
    memset(tmp, 2, 32);
    free(tmp);
}

__attribute__((noinline)) void worker_job(long idx) {
    char *hold = malloc(4096);
    memset(hold, 3, 4096);
    for (int i = 0; i < 100; i++) {
        char *volatile p = malloc(1000);
        p[0] = (char)i;
        free(p);
    }
    free(hold);
    kept[idx] = malloc(100);
}

static void *worker(void *arg) {
    long idx = (long)arg;
    char name[16] = "worker-1";
    name[7] = (char)('1' + idx);
    pthread_setname_np(pthread_self(), name);
    worker_job(idx);
    return NULL;
}

__attribute__((noinline)) void audio_reconfigure(void) {
    char *volatile table = malloc(256);
    table[0] = 1;
    free(table);
}

__attribute__((noinline)) void process_block(int n) {
    if (audio_alloc && n % 10 == 0)
        audio_reconfigure();
    for (int i = 0; i < 512; i++)
        audio_buffer[i] = (char)(audio_buffer[i] + n);
}

static void *audio(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "audio");
    for (int n = 0; n < 50; n++)
        process_block(n);
    return NULL;
}

__attribute__((noinline)) void extra_leak(void) {
    char *p = malloc(777);
    memset(p, 4, 777);
}

int main(int argc, char **argv) {
    int extra = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "extra") == 0)
            extra = 1;
        if (strcmp(argv[i], "audio-alloc") == 0)
            audio_alloc = 1;
    }
    parse_config();
    pthread_t t;
    for (long i = 0; i < 2; i++) {
        pthread_create(&t, NULL, worker, (void *)i);
        pthread_join(t, NULL);
    }
    audio_buffer = malloc(512);
    memset(audio_buffer, 0, 512);
    pthread_create(&t, NULL, audio, NULL);
    pthread_join(t, NULL);
    free(audio_buffer);
    if (extra)
        extra_leak();
    static const char msg[] = "budgets: done\n";
    write(1, msg, sizeof msg - 1);
    return 0;
}
