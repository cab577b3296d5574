/* A single-threaded process for `memlens snapshot`: the only pointer to a 50-byte block
 * lies in a 64-byte block that was freed (into the thread's tcache, where the pointer
 * stays). The 50-byte block is definitely lost, as the exit check and memcheck say, if
 * the snapshot knows the freed block for a free one: it must find the main thread's
 * tcache. Says READY, waits for 'q' on stdin, then prints "OK" and exits 0. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(void) {
    void **holder = malloc(64);
    holder[2] = malloc(50);
    free(holder);
    holder = NULL;
    (void)!write(1, "READY\n", 6);
    char c;
    while (read(0, &c, 1) == 1 && c != 'q') {
    }
    (void)!write(1, "OK\n", 3);
    return 0;
}
