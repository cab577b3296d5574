/* memlens watch test: grows its resident memory at a known rate, by the clock.
 *   watch_grow STEP_KIB PERIOD_MS [MAX_MIB]
 * Every PERIOD_MS milliseconds of CLOCK_MONOTONIC, STEP_KIB more KiB are mapped and
 * touched (memset), so RSS grows by exactly STEP_KIB per period, whatever the
 * scheduling: a late wake-up catches up. The true rate is STEP_KIB / PERIOD_MS. It stops
 * growing at MAX_MIB (default 1024) and runs until killed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    long step = (argc > 1 ? atol(argv[1]) : 2048) * 1024L;
    double period = (argc > 2 ? atof(argv[2]) : 100) / 1000.0;
    long max = (argc > 3 ? atol(argv[3]) : 1024) * 1024L * 1024L;
    double start = now();
    long grown = 0;
    for (;;) {
        long due = (long)((now() - start) / period) * step;
        while (grown < due && grown + step <= max) {
            char *p = mmap(NULL, step, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (p == MAP_FAILED) {
                perror("mmap");
                return 1;
            }
            memset(p, 0x5a, step);
            grown += step;
        }
        usleep(period * 1e6 / 4);
    }
}
