/* Torture 4: the library dlloop opens and closes 1,000 times. Each call mallocs n blocks. */
#include <stdlib.h>

void *volatile plugin_sink;
static char *state;

__attribute__((constructor)) static void init(void) { state = malloc(32); }
__attribute__((destructor)) static void fini(void) { free(state); }

__attribute__((noinline)) long plugin_work(int n) {
    long sum = 0;
    for (int i = 0; i < n; i++) {
        char *p = malloc(24 + (size_t)i);
        plugin_sink = p;
        sum += i;
        free(p);
    }
    return sum;
}
