/* How the program ends, argv[1]:
 *   return   main returns 0
 *   exit     exit(3) from main
 *   _exit    _exit(4) from main: no atexit handlers, no stdio flush
 *   sigterm  raise(SIGTERM) with the default action: the process dies by signal 15
 * Every variant first makes a 500-byte block nobody points to (exit_lost_block:
 * definitely lost) and a 600-byte block held by a global (exit_kept_block: still
 * reachable), then prints one line with printf and fflush, so stdout (a pipe or a file in
 * the tests: fully buffered) gets its 4096-byte stdio buffer from malloc
 * (_IO_file_doallocate). glibc never frees that buffer at exit; valgrind's
 * __libc_freeres does, at the exit_group system call (after return, exit() and _exit),
 * but not when the process dies by a signal, where it shows as still reachable. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void *volatile exit_kept;

__attribute__((noinline)) void *exit_lost_block(void) {
    void *p = malloc(500);
    memset(p, 0, 500);
    return p;
}

__attribute__((noinline)) void *exit_kept_block(void) {
    void *p = malloc(600);
    memset(p, 0, 600);
    return p;
}

__attribute__((noinline)) void make_blocks(void) {
    (void)exit_lost_block();
    exit_kept = exit_kept_block();
}

int main(int argc, char **argv) {
    const char *how = argc > 1 ? argv[1] : "return";
    make_blocks();
    printf("exit_modes: ending by %s\n", how);
    fflush(stdout);
    if (!strcmp(how, "exit")) exit(3);
    if (!strcmp(how, "_exit")) _exit(4);
    if (!strcmp(how, "sigterm")) raise(SIGTERM);
    return 0;
}
