/* memlens top test: a process whose memory changes only when told, by known amounts.
 *   top_child STEP_KIB TAG
 * Reads one command byte at a time from stdin and answers each with one byte on stdout
 * once done: 'g' maps and touches STEP_KIB more KiB (kept), 'w' maps and touches
 * STEP_KIB KiB and 'f' unmaps it again (a wave), '.' does nothing, 'q' or the end of
 * stdin exits. TAG only tells the processes apart in their command lines. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv) {
    long step = (argc > 1 ? atol(argv[1]) : 1024) * 1024L;
    char *wave = NULL;
    char c;
    /* Warm up: the code a step runs (mmap, memset, munmap) is faulted in now, not by
     * the first step, whose RSS would otherwise grow by those pages too. */
    char *warm = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (warm != MAP_FAILED) {
        memset(warm, 0x5a, 4096);
        munmap(warm, 4096);
    }
    while (read(0, &c, 1) == 1 && c != 'q') {
        if (c == 'g' || (c == 'w' && !wave)) {
            char *p = mmap(NULL, step, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (p == MAP_FAILED) {
                perror("mmap");
                return 1;
            }
            memset(p, 0x5a, step);
            if (c == 'w')
                wave = p;
        } else if (c == 'f' && wave) {
            munmap(wave, step);
            wave = NULL;
        }
        if (write(1, &c, 1) != 1)
            return 1;
    }
    return 0;
}
