/* The leak check's worst case: N small blocks live at exit.
 * argv[1] = N. Keeps every block reachable from one global array, except every 100th,
 * which is dropped (definitely lost), then prints its own VmRSS (kB) and exits.
 * With argv[2] = "wait" (bench/snapshot), it then waits for its stdin to close first,
 * so that `memlens snapshot` can look at it. */
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void **blocks;

static long rss_kb(void) {
    char line[256];
    long kb = -1;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) kb = atol(line + 6);
    fclose(f);
    return kb;
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    blocks = malloc(n * sizeof *blocks);
    for (long i = 0; i < n; i++) {
        blocks[i] = malloc(16 + (i % 4) * 8);
        if (i % 100 == 99) blocks[i] = NULL;
    }
    printf("rss_kb %ld\n", rss_kb());
    if (argc > 2 && !strcmp(argv[2], "wait")) {
        fflush(stdout);
        char c;
        while (read(0, &c, 1) == 1)
            ;
    }
    return 0;
}
