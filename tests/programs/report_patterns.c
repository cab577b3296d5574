/* memlens report test: allocation patterns whose numbers are known exactly.
 * Expected (asserted by crates/memlens-cli/tests/report_sections.rs):
 *   make_temporaries  1000 x (malloc(48), use, free): 1000 temporary allocations
 *   grow_by_realloc   realloc(NULL, 16) then 999 reallocs adding 16 bytes each, to 16000 B,
 *                     kept: 1000 allocations, 999 growing reallocs (advice)
 *   then 2000 iterations of:
 *     cache_add       malloc(1024) kept in a global array: grows all along (growth)
 *     wave_up/down    250 x malloc(2048), then 250 x free, 4 times: waves (not growth)
 *   peak heap:  16000 + 1751 * 1024 + 250 * 2048 = 2,321,024 B, after cache_add of
 *               iteration 1750 (the top of the last wave)
 *   at exit:    16000 + 2000 * 1024 = 2,064,000 B in 2001 blocks, all still reachable
 * No stdio: its buffer would be one more allocation. */
#include <stdlib.h>
#include <string.h>

#define CACHE_N 2000
#define WAVE_HALF 250

void *cache[CACHE_N];
int ncache;
void *wave[WAVE_HALF];
int nwave;
char *buffer;
volatile int sink;

__attribute__((noinline)) void make_temporaries(void) {
    for (int i = 0; i < 1000; i++) {
        char *p = malloc(48);
        memset(p, i, 48);
        sink += p[7];
        free(p);
    }
}

__attribute__((noinline)) void grow_by_realloc(void) {
    for (int k = 1; k <= 1000; k++) {
        buffer = realloc(buffer, 16 * k);
        buffer[16 * k - 1] = (char)k;
    }
}

__attribute__((noinline)) void cache_add(void) {
    cache[ncache] = malloc(1024);
    memset(cache[ncache], 1, 1024);
    ncache++;
}

__attribute__((noinline)) void wave_up(void) {
    wave[nwave] = malloc(2048);
    memset(wave[nwave], 2, 2048);
    nwave++;
}

__attribute__((noinline)) void wave_down(void) { free(wave[--nwave]); }

int main(void) {
    make_temporaries();
    grow_by_realloc();
    for (int i = 0; i < CACHE_N; i++) {
        cache_add();
        if ((i / WAVE_HALF) % 2 == 0)
            wave_up();
        else
            wave_down();
    }
    return 0;
}
