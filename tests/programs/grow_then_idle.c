/* Builds a table at start-up (2,000 blocks of 1 KiB, kept in a global) and then runs on
 * for 300 ms without allocating: a site that filled up and stayed level, not a growing
 * one. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void *g_table[2000];

int main(void) {
    for (int i = 0; i < 2000; i++) {
        g_table[i] = malloc(1024);
        memset(g_table[i], 1, 1024);
    }
    usleep(300 * 1000);
    return 0;
}
