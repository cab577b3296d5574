/* A program that dies by SIGSEGV right after dropping its only pointer to a block. The
 * pointer's stale copies (in the dead frames of the allocation below the stack pointer,
 * and in the signal frame the kernel builds there) are not roots: the block is definitely
 * lost, as memcheck says, and the program dies by SIGSEGV under memlens too. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct node {
    struct node *next;
    char pad[40];
};

__attribute__((noinline)) static struct node *make(void) {
    struct node *n = malloc(sizeof *n);
    memset(n, 0, sizeof *n);
    return n;
}

int main(void) {
    struct node *p = make();
    ssize_t w = write(1, p ? "made\n" : "none\n", 5);
    (void)w;
    p = NULL;
    *(volatile int *)(long)p = 1;
    return 0;
}
