/* Torture 6: a hostile environment for the recorder. argv[1] picks the case.
 *   closeall FILE  close fds 0..1024, allocate, then write a line to FILE (which reuses
 *                  fd 0) and allocate again; exit 3
 *   dup2           dup2 stderr over every fd 3..1023 (the trace's too), allocating in
 *                  between, close them all, allocate
 *   rlimit         RLIMIT_NOFILE 16, allocate, open /dev/null until EMFILE and say whether
 *                  it got every free number below 16, fork a child that allocates
 *   cwd DIR        chdir to DIR (not writable), allocate, fork a child that allocates
 *   fdflags        allocate, fork, then count the open fds >= 3 that are not close-on-exec
 *                  (the same bare and recorded: the recorder's own fds are all CLOEXEC)
 * Each case makes at least 10,000 mallocs. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
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

static int child_status(void) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        allocate(1000);
        exit(4);
    }
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    if (!strcmp(mode, "closeall") && argc > 2) {
        for (int fd = 0; fd <= 1024; fd++) close(fd);
        allocate(5000);
        int fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
        allocate(5000);
        char line[64];
        int n = snprintf(line, sizeof line, "closeall: file on fd %d\n", fd);
        if (write(fd, line, (size_t)n) != n) return 1;
        close(fd);
        allocate(1000);
        return 3;
    } else if (!strcmp(mode, "dup2")) {
        for (int fd = 3; fd < 1024; fd++) {
            dup2(2, fd);
            allocate(10);
        }
        for (int fd = 3; fd < 1024; fd++) close(fd);
        allocate(1000);
        printf("dup2: done\n");
    } else if (!strcmp(mode, "rlimit")) {
        struct rlimit rl = {16, 16};
        if (setrlimit(RLIMIT_NOFILE, &rl)) return 1;
        allocate(10000);
        /* Numbers free below the limit: what the shell left open varies, so count. */
        int free_fds = 0;
        for (int fd = 0; fd < 16; fd++) free_fds += fcntl(fd, F_GETFD) < 0 && errno == EBADF;
        int fds[64], n = 0;
        while (n < 64 && (fds[n] = open("/dev/null", O_RDONLY)) >= 0) n++;
        printf("rlimit: opened %s free fd, then %s\n", n == free_fds ? "every" : "NOT every",
               strerror(errno));
        while (n > 0) close(fds[--n]);
        printf("rlimit: child exit %d\n", child_status());
    } else if (!strcmp(mode, "fdflags")) {
        allocate(10000);
        printf("fdflags: child exit %d\n", child_status());
        int inherited = 0;
        for (int fd = 3; fd < 65536; fd++) {
            int fl = fcntl(fd, F_GETFD);
            if (fl >= 0 && !(fl & FD_CLOEXEC)) inherited++;
        }
        printf("fdflags: %d fds >= 3 would survive exec\n", inherited);
    } else if (!strcmp(mode, "cwd") && argc > 2) {
        if (chdir(argv[2])) return 1;
        allocate(10000);
        int fd = open("probe", O_WRONLY | O_CREAT, 0644);
        printf("cwd: can create files here: %s\n", fd >= 0 ? "yes" : "no");
        printf("cwd: child exit %d\n", child_status());
    } else {
        fprintf(stderr, "unknown mode %s\n", mode);
        return 2;
    }
    return 0;
}
