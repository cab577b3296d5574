/* Torture 6b: a child that closes the fds it inherited, then execs (what Python's
 * subprocess does with close_fds=True, the default). argv[1] picks the case; "leaf" is
 * what the others start.
 *   vfork_range  vfork, close_range(3, ~0), execv "leaf 1"
 *   vfork_fail   vfork, close_range(3, ~0), execv of a missing file, _exit(127)
 *   fork_loop    fork, close fds 3..1023 one by one, execv "leaf 2"
 * The parent makes 1000 mallocs before and 1000 after the child, so a trace that lost
 * the second half (or was cut short) shows. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

void *volatile sink;

__attribute__((noinline)) static void allocate(int n) {
    for (int i = 0; i < n; i++) {
        void *p = malloc(16 + i % 100);
        sink = p;
        free(p);
    }
}

static int status_of(pid_t pid) {
    int st;
    if (waitpid(pid, &st, 0) != pid) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* The raw system call: glibc's close_range wrapper is newer than some glibcs. */
static void close_from_3(void) { syscall(SYS_close_range, 3U, ~0U, 0U); }

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    allocate(1000);
    if (!strcmp(mode, "leaf")) {
        printf("leaf %s\n", argv[2]);
        return atoi(argv[2]);
    }
    fflush(stdout);
    pid_t pid;
    if (!strcmp(mode, "vfork_range")) {
        char *args[] = {argv[0], "leaf", "1", NULL};
        pid = vfork();
        if (pid == 0) {
            close_from_3();
            execv(argv[0], args);
            _exit(127);
        }
    } else if (!strcmp(mode, "vfork_fail")) {
        char *args[] = {"/nonexistent/program", NULL};
        pid = vfork();
        if (pid == 0) {
            close_from_3();
            execv(args[0], args);
            _exit(127);
        }
    } else if (!strcmp(mode, "fork_loop")) {
        char *args[] = {argv[0], "leaf", "2", NULL};
        pid = fork();
        if (pid == 0) {
            for (int fd = 3; fd < 1024; fd++) close(fd);
            execv(argv[0], args);
            _exit(127);
        }
    } else {
        fprintf(stderr, "unknown mode %s\n", mode);
        return 2;
    }
    int st = status_of(pid);
    allocate(1000);
    printf("%s: child status %d\n", mode, st);
    return 0;
}
