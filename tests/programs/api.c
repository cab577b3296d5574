/* The recorder's API through include/memlens.h, for crates/memlens-cli/tests/api.rs.
 * It prints "memlens active: N" and runs the same code with or without the recorder.
 * Exact figures (every thread names itself before it allocates; no stdio, which would
 * allocate):
 *   region "parse" (main thread)    parse_input: malloc(100) freed; inside it the region
 *                                   "parse.inner": malloc(50) freed; then malloc(200)
 *                                   kept: 3 allocations, 350 bytes, peak 200, 200 live
 *                                   at exit. "parse.inner" alone: 1 allocation, 50 bytes
 *   assertion "clean"               malloc(64) freed between the mark and the assertion:
 *                                   passes
 *   assertion "heap under 1 MiB"    passes
 *   assertion "peak 4000"           malloc(1000) and malloc(3000) live at once, then
 *                                   freed: a peak of 4000 bytes, limit 4000 (3999 with
 *                                   "bad": fails)
 *   thread "dsp"                    malloc(8) and free before it marks itself real-time,
 *                                   malloc(16) and free after it unmarks: never a
 *                                   violation
 * With the argument "bad", also:
 *   assertion "leaky"               leaky_helper: malloc(48) kept between the mark and
 *                                   the assertion: fails, 48 bytes in 1 block
 *   assertion "heap under 100 B"    fails (the 200 and 48 bytes above are live)
 *   thread "dsp"                    while real-time: dsp_tick's malloc(32) and free, two
 *                                   violations
 * Build: gcc -g -O1 -fno-builtin -fno-optimize-sibling-calls -pthread -Iinclude */
#define _GNU_SOURCE
#include <memlens.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void *volatile kept[2];
static int bad;

static void say(const char *s) {
    ssize_t r = write(1, s, strlen(s));
    (void)r;
}

__attribute__((noinline)) void parse_input(void) {
    uint64_t outer = memlens_region_begin("parse");
    char *volatile tmp = malloc(100);
    tmp[0] = 1;
    free(tmp);
    uint64_t inner = memlens_region_begin("parse.inner");
    char *volatile t2 = malloc(50);
    t2[0] = 2;
    free(t2);
    memlens_region_end(inner);
    kept[0] = malloc(200);
    memlens_region_end(outer);
}

__attribute__((noinline)) void leaky_helper(void) {
    kept[1] = malloc(48);
}

__attribute__((noinline)) void dsp_tick(void) {
    char *volatile p = malloc(32);
    p[0] = 3;
    free(p);
}

static void *dsp(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "dsp");
    char *volatile before = malloc(8);
    free(before);
    memlens_set_realtime(1);
    if (bad)
        dsp_tick();
    memlens_set_realtime(0);
    char *volatile after = malloc(16);
    free(after);
    return NULL;
}

int main(int argc, char **argv) {
    bad = argc > 1 && strcmp(argv[1], "bad") == 0;
    say(memlens_is_active() ? "memlens active: 1\n" : "memlens active: 0\n");
    parse_input();

    uint64_t mark = memlens_now();
    char *volatile p = malloc(64);
    p[0] = 4;
    free(p);
    memlens_assert_no_leaks_since(mark, "clean");

    uint64_t m3 = memlens_now();
    char *volatile a = malloc(1000);
    char *volatile b = malloc(3000);
    free((void *)a);
    free((void *)b);
    memlens_assert_peak_since(m3, bad ? 3999 : 4000, "peak 4000");

    if (bad) {
        uint64_t m2 = memlens_now();
        leaky_helper();
        memlens_assert_no_leaks_since(m2, "leaky");
        memlens_assert_max_live(100, "heap under 100 B");
    }
    memlens_assert_max_live(1 << 20, "heap under 1 MiB");

    pthread_t t;
    pthread_create(&t, NULL, dsp, NULL);
    pthread_join(t, NULL);
    return 0;
}
