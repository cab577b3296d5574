/* A worker calls exit() while main, which blocks every signal (so the exit scan cannot
 * stop it), runs on holding a block only in a local of its frame: main's frames are live,
 * its stack a root, and the block still reachable. The worker drops a block of its own
 * (definitely lost). */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Where the worker's block is dropped from (the compiler keeps a malloc whose pointer it
 * stores here). */
static void *volatile g_dropped;

static void *worker(void *arg) {
    (void)arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_UNBLOCK, &all, NULL);
    usleep(100 * 1000);
    g_dropped = malloc(24);
    memset(g_dropped, 3, 24);
    g_dropped = NULL;
    (void)!write(1, "worker exits\n", 13);
    exit(0);
}

int main(void) {
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    pthread_t t;
    pthread_create(&t, NULL, worker, NULL);
    char *volatile held = malloc(40);
    memset(held, 1, 40);
    for (;;)
        __asm__ volatile("" ::: "memory");
}
