/* memlens watch test: a steady process with one large spike.
 *   watch_spike MIB AT_MS HOLD_MS
 * Touches 4 MiB at start, then at AT_MS maps and touches MIB MiB, holds it HOLD_MS,
 * unmaps it, and idles until killed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv) {
    long size = (argc > 1 ? atol(argv[1]) : 200) * 1024L * 1024L;
    long at = argc > 2 ? atol(argv[2]) : 1500;
    long hold = argc > 3 ? atol(argv[3]) : 200;
    long base = 4L << 20;
    char *b = mmap(NULL, base, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (b == MAP_FAILED)
        return 1;
    memset(b, 1, base);
    usleep(at * 1000);
    char *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    memset(p, 0x5a, size);
    usleep(hold * 1000);
    munmap(p, size);
    for (;;)
        pause();
}
