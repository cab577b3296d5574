/* memlens report test: two phases split by the heap's peak.
 * Expected (asserted by crates/memlens-cli/tests/report_sections.rs):
 *   phase_one   500 x malloc(100), all freed at the end of the phase
 *   marker      malloc(1 MiB), freed at once: the heap's peak (1,048,576 B), between the
 *               phases, so --to/--from at the peak's time split the run
 *   phase_two   300 x malloc(200), all freed at the end */
#include <stdlib.h>
#include <string.h>

void *blocks[500];

__attribute__((noinline)) void phase_one(void) {
    for (int i = 0; i < 500; i++) {
        blocks[i] = malloc(100);
        memset(blocks[i], 1, 100);
    }
    for (int i = 0; i < 500; i++) free(blocks[i]);
}

__attribute__((noinline)) void marker(void) {
    char *p = malloc(1 << 20);
    p[0] = 1;
    blocks[0] = p;
    free(p);
}

__attribute__((noinline)) void phase_two(void) {
    for (int i = 0; i < 300; i++) {
        blocks[i] = malloc(200);
        memset(blocks[i], 2, 200);
    }
    for (int i = 0; i < 300; i++) free(blocks[i]);
}

int main(void) {
    phase_one();
    marker();
    phase_two();
    return 0;
}
