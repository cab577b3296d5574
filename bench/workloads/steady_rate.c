/* A process that allocates at a steady rate, for the sampled trace's size per minute
 * (bench/sample_rate): for SECONDS seconds, RATE allocations per second (malloc of 16 to
 * 512 bytes, sizes from a fixed-seed generator), each replacing a random block of a pool
 * of 16,384 live blocks (so as many frees), in batches of RATE/1000 every millisecond of
 * the monotonic clock. Prints the allocations made and how many milliseconds fell behind
 * schedule (0 when the machine kept up).
 *
 * usage: steady_rate SECONDS RATE
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define POOL 16384

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t next(void) {
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545F4914F6CDD1Dull;
}

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

__attribute__((noinline)) static void *make(size_t n) { return malloc(n); }

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: steady_rate SECONDS RATE\n");
        return 2;
    }
    double seconds = atof(argv[1]);
    long rate = atol(argv[2]);
    long per_ms = rate / 1000 > 0 ? rate / 1000 : 1;
    static void *pool[POOL];
    uint64_t start = now_ns(), end = start + (uint64_t)(seconds * 1e9);
    uint64_t tick = start;
    long made = 0, behind = 0;
    while (tick < end) {
        for (long i = 0; i < per_ms; i++) {
            size_t k = next() % POOL;
            free(pool[k]);
            pool[k] = make(16 + next() % 497);
            made++;
        }
        tick += 1000000;
        uint64_t t = now_ns();
        if (t < tick) {
            struct timespec d = {0, (long)(tick - t)};
            nanosleep(&d, NULL);
        } else {
            behind++;
        }
    }
    for (int k = 0; k < POOL; k++) {
        free(pool[k]);
    }
    printf("%ld allocations, %ld ms behind\n", made, behind);
    return 0;
}
