/* memlens watch test: a parent that stays the same size and a child that grows.
 *   watch_forkgrow STEP_KIB PERIOD_MS
 * The parent forks one child, which execs nothing and grows like watch_grow (STEP_KIB
 * more touched KiB every PERIOD_MS, by the clock); the parent only waits. Killing the
 * parent with SIGTERM kills the child too. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static pid_t child;

static void on_term(int sig) {
    (void)sig;
    if (child > 0)
        kill(child, SIGKILL);
    _exit(0);
}

int main(int argc, char **argv) {
    long step = (argc > 1 ? atol(argv[1]) : 2048) * 1024L;
    double period = (argc > 2 ? atof(argv[2]) : 100) / 1000.0;
    signal(SIGTERM, on_term);
    child = fork();
    if (child < 0) {
        perror("fork");
        return 1;
    }
    if (child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        double start = now();
        long grown = 0, max = 1024L << 20;
        for (;;) {
            long due = (long)((now() - start) / period) * step;
            while (grown < due && grown + step <= max) {
                char *p = mmap(NULL, step, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                if (p == MAP_FAILED)
                    _exit(1);
                memset(p, 0x5a, step);
                grown += step;
            }
            usleep(period * 1e6 / 4);
        }
    }
    int st;
    waitpid(child, &st, 0);
    return 0;
}
