/* fork and exec each produce their own trace.
 *   stage 1 (no argument): alloc_parent leaks 111 B; fork; the child's alloc_child
 *   leaks 3 x 222 B and exits 0; the parent waits, then execs itself with "stage2".
 *   stage 2: alloc_stage2 leaks 333 B, exit 0. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

void *keep[8]; /* external: the compiler may not drop the stores */

__attribute__((noinline)) void alloc_parent(void) { keep[0] = malloc(111); }
__attribute__((noinline)) void alloc_child(void) {
    for (int i = 0; i < 3; i++) keep[1 + i] = malloc(222);
}
__attribute__((noinline)) void alloc_stage2(void) { keep[5] = malloc(333); }

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "stage2") == 0) {
        alloc_stage2();
        printf("stage2 done\n");
        return 0;
    }
    alloc_parent();
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        alloc_child();
        exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
    printf("child exited %d\n", WEXITSTATUS(st));
    fflush(stdout);
    execl("/proc/self/exe", argv[0], "stage2", (char *)NULL);
    perror("execl");
    return 1;
}
