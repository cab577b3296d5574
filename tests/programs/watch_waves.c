/* memlens watch test: allocates and frees in waves, never growing.
 *   watch_waves MIB RAMP_MS HOLD_MS REST_MS
 * Each wave maps MIB MiB and touches it gradually over RAMP_MS, holds it HOLD_MS, unmaps
 * it (so RSS really drops), and rests REST_MS. Runs until killed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv) {
    long size = (argc > 1 ? atol(argv[1]) : 30) * 1024L * 1024L;
    long ramp = argc > 2 ? atol(argv[2]) : 150;
    long hold = argc > 3 ? atol(argv[3]) : 100;
    long rest = argc > 4 ? atol(argv[4]) : 200;
    const int steps = 10;
    for (;;) {
        char *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            perror("mmap");
            return 1;
        }
        for (int i = 0; i < steps; i++) {
            memset(p + i * (size / steps), 0x5a, size / steps);
            usleep(ramp * 1000 / steps);
        }
        usleep(hold * 1000);
        munmap(p, size);
        usleep(rest * 1000);
    }
}
