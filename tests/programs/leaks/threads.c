/* Leaks and threads. argv[1]:
 *   joined   4 threads each leak one 1000-byte block (thread_leak) and are joined:
 *            4 blocks definitely lost, one record.
 *   running  a thread allocates a 2000-byte block (thread_held), keeps the only pointer
 *            in a local on its own stack and blocks forever in read(2) on a pipe; main
 *            returns while it still runs: the block is still reachable from that
 *            thread's stack.
 *   tls      a thread stores a 3000-byte block (thread_tls_block) only in a __thread
 *            variable, ends and is joined. The variable lived in the thread's static TLS,
 *            inside its (now cached, still mapped) stack.
 * main synchronises with the threads, so the result does not depend on scheduling. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define JOINED 4

static int ready_pipe[2], block_pipe[2];
static __thread void *tls_slot;

__attribute__((noinline)) void *thread_leak(void) { return malloc(1000); }
__attribute__((noinline)) void *thread_held(void) { return malloc(2000); }
__attribute__((noinline)) void *thread_tls_block(void) { return malloc(3000); }

static void *joined_main(void *arg) {
    (void)arg;
    void *volatile p = thread_leak();
    p = NULL;
    return p;
}

static void *running_main(void *arg) {
    (void)arg;
    void *volatile held = thread_held();
    char c = 0;
    write(ready_pipe[1], &c, 1);
    /* Nobody ever writes to block_pipe: this thread is still here when main returns. */
    read(block_pipe[0], &c, 1);
    return held;
}

static void *tls_main(void *arg) {
    (void)arg;
    tls_slot = thread_tls_block();
    return NULL;
}

static void say(const char *s) { write(1, s, strlen(s)); }

int main(int argc, char **argv) {
    const char *how = argc > 1 ? argv[1] : "joined";
    pthread_t t[JOINED];
    if (!strcmp(how, "running")) {
        char c;
        if (pipe(ready_pipe) || pipe(block_pipe)) return 1;
        pthread_create(&t[0], NULL, running_main, NULL);
        read(ready_pipe[0], &c, 1);
        say("threads: one still running\n");
        return 0;
    }
    if (!strcmp(how, "tls")) {
        pthread_create(&t[0], NULL, tls_main, NULL);
        pthread_join(t[0], NULL);
        say("threads: tls thread joined\n");
        return 0;
    }
    for (int i = 0; i < JOINED; i++)
        pthread_create(&t[i], NULL, joined_main, NULL);
    for (int i = 0; i < JOINED; i++)
        pthread_join(t[i], NULL);
    say("threads: 4 joined\n");
    return 0;
}
