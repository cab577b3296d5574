/* The "signal thread" pattern: every thread blocks all signals and one thread takes them
 * with sigwaitinfo. The exit scan must not send it anything: a signal it received would
 * be the program's (here: it reports it and exits 3). Also a thread in the middle of
 * pthread_create when main exits (it blocks every signal for a moment). Prints one line
 * and exits 0. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static sigset_t all;

static void *signal_thread(void *arg) {
    for (;;) {
        siginfo_t si;
        int s = sigwaitinfo(&all, &si);
        if (s > 0) {
            fprintf(stderr, "signal thread: got signal %d\n", s);
            _exit(3);
        }
    }
    return arg;
}

static void *idle(void *arg) {
    pause();
    return arg;
}

int main(void) {
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    pthread_t t;
    pthread_create(&t, NULL, signal_thread, NULL);
    void *volatile keep = malloc(10);
    (void)keep;
    for (int i = 0; i < 4; i++) {
        pthread_t u;
        pthread_create(&u, NULL, idle, NULL);
    }
    printf("main: done\n");
    return 0;
}
