/* Known allocation sites for the flamegraph / export / diff tests
 * (crates/memlens-cli/tests/profile_cli.rs). main -> run calls, in this order:
 *   make_small      100 x malloc(24), each freed before the next one (temporary)
 *   leak_blocks       5 x malloc(200), none kept: definitely lost
 *   keep_reachable    2 x calloc(8, 16) in a global array: still reachable
 *   extra_leak        only with the argument "extra": 1 x malloc(777), definitely lost
 *   make_big          3 x malloc(4096), all live together (the heap's peak), then freed
 *                   in order (the last is temporary: freed before another allocation)
 * Every function is noinline, so each site has its own frame. Build it as the tests do:
 *   gcc -g -O1 -fno-builtin -fno-optimize-sibling-calls profile.c
 * (without -fno-builtin, gcc deletes the allocations whose memory is never read; with
 * tail calls, run's frame would vanish). Output goes through write(2): stdio would
 * allocate a buffer. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void *volatile reachable[2];

__attribute__((noinline)) void make_small(void) {
    for (int i = 0; i < 100; i++) {
        char *p = malloc(24);
        memset(p, i, 24);
        free(p);
    }
}

__attribute__((noinline)) void leak_blocks(void) {
    for (int i = 0; i < 5; i++) {
        char *p = malloc(200);
        memset(p, i, 200);
    }
}

__attribute__((noinline)) void keep_reachable(void) {
    for (int i = 0; i < 2; i++)
        reachable[i] = calloc(8, 16);
}

__attribute__((noinline)) void extra_leak(void) {
    char *p = malloc(777);
    memset(p, 1, 777);
}

__attribute__((noinline)) void make_big(void) {
    char *big[3];
    for (int i = 0; i < 3; i++) {
        big[i] = malloc(4096);
        memset(big[i], i, 4096);
    }
    for (int i = 0; i < 3; i++)
        free(big[i]);
}

__attribute__((noinline)) void run(int extra) {
    make_small();
    leak_blocks();
    keep_reachable();
    if (extra)
        extra_leak();
    make_big();
}

int main(int argc, char **argv) {
    run(argc > 1 && strcmp(argv[1], "extra") == 0);
    static const char msg[] = "profile: done\n";
    write(1, msg, sizeof msg - 1);
    return 0;
}
