/* Leaks ten blocks (100 to 109 bytes) just before it returns: their allocations are among
 * the last events the recorder writes before the leak check at exit. */
#include <stdlib.h>
#include <string.h>

/* Where each block is dropped from (the compiler keeps a malloc whose pointer it stores
 * here). */
void *volatile g_last;

int main(void) {
    for (int i = 0; i < 10; i++) {
        g_last = malloc(100 + i);
        memset(g_last, 1, 100 + i);
    }
    g_last = NULL;
    return 0;
}
