/* Pointers left in the stacks of threads that have ended. Four threads, alive at the same
 * time (a barrier), each leak 1,000 blocks (32..35 bytes: thread k allocates 32 + k) whose
 * last pointer was a local variable, and are joined; glibc keeps their four stacks for
 * later threads, so each last block's pointer is still in a cached stack. A fifth thread
 * (which takes one of those stacks) is still running, blocked in read, when the program
 * exits. Only live threads' stacks are roots, from their stack pointer up: all 4,000
 * blocks are definitely lost (memcheck agrees). Nothing is printed to
 * stdout through stdio, so glibc's stdout buffer plays no part. */
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

static int pipe_fds[2];
static pthread_barrier_t all_alive;

static void *leaker(void *arg) {
    long k = (long)arg;
    pthread_barrier_wait(&all_alive);
    for (int i = 0; i < 1000; i++) {
        char *volatile p = malloc(32 + k);
        p[0] = 1;
    }
    return NULL;
}

static void *waiter(void *arg) {
    char c;
    ssize_t n = read(pipe_fds[0], &c, 1);
    (void)n;
    return arg;
}

int main(void) {
    if (pipe(pipe_fds) != 0)
        return 2;
    pthread_barrier_init(&all_alive, NULL, 4);
    pthread_t t[4];
    for (long k = 0; k < 4; k++)
        pthread_create(&t[k], NULL, leaker, (void *)k);
    for (int k = 0; k < 4; k++)
        pthread_join(t[k], NULL);
    pthread_t w;
    pthread_create(&w, NULL, waiter, NULL);
    ssize_t n = write(1, "joined 4\n", 9);
    (void)n;
    exit(0);
}
