/* A process that runs on without its main thread: main() ends with pthread_exit, the
 * worker prints READY and waits for a line on stdin, then the process exits 0. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

void *g_keep;

static void *worker(void *arg) {
    (void)arg;
    g_keep = malloc(100);
    printf("READY\n");
    fflush(stdout);
    char c;
    while (read(0, &c, 1) == 1 && c != '\n') {
    }
    return NULL;
}

int main(void) {
    pthread_t t;
    pthread_create(&t, NULL, worker, NULL);
    pthread_exit(NULL);
}
