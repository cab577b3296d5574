/* Blocks a forked child inherits, for the reports of a child's trace (tests/record.rs,
 * with --trace-children=yes). The parent allocates three blocks and forks:
 *   parent_lost (100 B): its pointer dropped before the fork: lost in every process
 *   parent_kept (50 B): kept in a global: reachable in every process
 *   freed_by_child (70 B): kept in a global, which the child frees (an inherited block,
 *     not an untracked free)
 * The child leaks child_lost (200 B), then forks a grandchild, which keeps
 * grandchild_kept (30 B) and exits 0; the child waits for it and exits 0; the parent
 * waits for the child, prints "done", exits 0. So: parent 100 lost, 120 reachable;
 * child 300 lost (100 + 200), 50 reachable; grandchild 300 lost, 80 reachable. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

void *kept, *to_free, *grandchild_block; /* external: the stores stay */

__attribute__((noinline)) void parent_lost(void) {
    char *p = malloc(100);
    memset(p, 1, 100);
}
__attribute__((noinline)) void parent_kept(void) { kept = malloc(50); }
__attribute__((noinline)) void freed_by_child(void) { to_free = malloc(70); }
__attribute__((noinline)) void child_lost(void) {
    char *p = malloc(200);
    memset(p, 2, 200);
}
__attribute__((noinline)) void grandchild_kept(void) { grandchild_block = malloc(30); }

int main(void) {
    parent_lost();
    parent_kept();
    freed_by_child();
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        free(to_free);
        to_free = NULL;
        child_lost();
        pid_t grandchild = fork();
        if (grandchild == 0) {
            grandchild_kept();
            exit(0);
        }
        int st;
        waitpid(grandchild, &st, 0);
        exit(WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1);
    }
    int st;
    waitpid(child, &st, 0);
    printf("done\n");
    return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}
