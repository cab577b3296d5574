/* main() ends with pthread_exit while a worker runs on: the process must end when the
 * worker does (glibc exits with status 0 as its last thread ends), with the recorder's
 * own thread still there. The worker allocates after main has gone: one block kept in a
 * global (still reachable), one dropped (definitely lost); main drops one too. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void *g_kept;

static void *worker(void *arg) {
    (void)arg;
    usleep(100 * 1000);
    g_kept = malloc(64);
    char *dropped = malloc(32);
    memset(dropped, 1, 32);
    printf("worker done\n");
    fflush(stdout);
    return NULL;
}

int main(void) {
    pthread_t t;
    pthread_create(&t, NULL, worker, NULL);
    char *dropped = malloc(16);
    memset(dropped, 2, 16);
    dropped = NULL;
    pthread_exit(NULL);
}
