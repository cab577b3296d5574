/* Torture 2: processes. argv[1] picks the case; "leaf" is what the others start.
 *   forkloop   20 children in turn, each 100 mallocs, exit(i)
 *   threadfork a non-main thread forks; the child makes 100 mallocs and _exit(5)s
 *   spawn      posix_spawn of "leaf 7"
 *   vfork      vfork + execv of "leaf 8"
 *   system     system("<self> leaf 9")
 *   execchain  the program execs itself 5 times (execl, execle, execv, execvp, execve),
 *              each stage printing "chain K" and making 100 mallocs; the last exits 6
 *   daemon     double fork + setsid; the grandchild makes 100 mallocs, writes to a pipe
 *              and exits; the parent reads the pipe to EOF (the grandchild is gone then)
 *   vfork_range  vfork, close_range(3, ~0), execv "leaf 1" (Python's subprocess with
 *              close_fds=True); then 1000 mallocs in the parent
 *   vfork_fail vfork, close_range(3, ~0), execv of a missing file, _exit(127); then 1000
 *   fork_loop  fork, close fds 3..1023 one by one, execv "leaf 2"; then 1000
 * Every process makes at least 100 mallocs of its own. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;
void *volatile sink;

__attribute__((noinline)) static void allocate(int n) {
    for (int i = 0; i < n; i++) {
        void *p = malloc(16 + i);
        sink = p;
        free(p);
    }
}

static int status_of(pid_t pid) {
    int st;
    if (waitpid(pid, &st, 0) != pid) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void *fork_from_thread(void *arg) {
    (void)arg;
    pid_t pid = fork();
    if (pid == 0) {
        allocate(100);
        _exit(5);
    }
    return (void *)(long)status_of(pid);
}

/* A child that closes every fd it inherited (the trace's too), then execs `args`. The
 * raw system call: glibc's close_range wrapper is newer than some glibcs. */
static int closing_child(int use_vfork, char **args) {
    pid_t pid = use_vfork ? vfork() : fork();
    if (pid == 0) {
        if (use_vfork)
            syscall(SYS_close_range, 3U, ~0U, 0U);
        else
            for (int fd = 3; fd < 1024; fd++) close(fd);
        execv(args[0], args);
        _exit(127);
    }
    int st = status_of(pid);
    allocate(1000);
    return st;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    allocate(100);
    if (!strcmp(mode, "leaf")) {
        printf("leaf %s\n", argv[2]);
        return atoi(argv[2]);
    }
    if (!strcmp(mode, "execchain")) {
        int k = argc > 2 ? atoi(argv[2]) : 0;
        printf("chain %d\n", k);
        fflush(stdout);
        char next[16];
        snprintf(next, sizeof next, "%d", k + 1);
        char *av[] = {argv[0], "execchain", next, NULL};
        switch (k) {
        case 0: execl(argv[0], argv[0], "execchain", next, (char *)NULL); break;
        case 1: execle(argv[0], argv[0], "execchain", next, (char *)NULL, environ); break;
        case 2: execv(argv[0], av); break;
        case 3: execvp(argv[0], av); break;
        case 4: execve(argv[0], av, environ); break;
        default: return 6;
        }
        return 99; /* the exec failed */
    }
    fflush(stdout);
    if (!strcmp(mode, "forkloop")) {
        int sum = 0;
        for (int i = 0; i < 20; i++) {
            pid_t pid = fork();
            if (pid == 0) {
                allocate(100);
                exit(i);
            }
            sum += status_of(pid);
        }
        printf("forkloop: exit statuses sum to %d\n", sum);
    } else if (!strcmp(mode, "threadfork")) {
        pthread_t t;
        void *r;
        pthread_create(&t, NULL, fork_from_thread, NULL);
        pthread_join(t, &r);
        printf("threadfork: child status %ld\n", (long)r);
    } else if (!strcmp(mode, "spawn")) {
        pid_t pid;
        char *args[] = {argv[0], "leaf", "7", NULL};
        if (posix_spawn(&pid, argv[0], NULL, NULL, args, environ)) abort();
        printf("spawn: child status %d\n", status_of(pid));
    } else if (!strcmp(mode, "vfork")) {
        char *args[] = {argv[0], "leaf", "8", NULL};
        pid_t pid = vfork();
        if (pid == 0) {
            execv(argv[0], args);
            _exit(127);
        }
        printf("vfork: child status %d\n", status_of(pid));
    } else if (!strcmp(mode, "system")) {
        char cmd[4096];
        snprintf(cmd, sizeof cmd, "'%s' leaf 9", argv[0]);
        int st = system(cmd);
        printf("system: status %d\n", WEXITSTATUS(st));
    } else if (!strcmp(mode, "daemon")) {
        int p[2];
        if (pipe(p)) abort();
        pid_t pid = fork();
        if (pid == 0) {
            close(p[0]);
            if (setsid() < 0) _exit(1);
            if (fork() != 0) _exit(0);
            /* the daemon: no controlling terminal, stdio on /dev/null */
            int null = open("/dev/null", O_RDWR);
            dup2(null, 0), dup2(null, 1), dup2(null, 2);
            if (null > 2) close(null);
            chdir("/");
            allocate(100);
            write(p[1], "daemon alive\n", 13);
            exit(0);
        }
        close(p[1]);
        int mid = status_of(pid);
        char buf[64];
        size_t n = 0;
        ssize_t r;
        while ((r = read(p[0], buf + n, sizeof buf - 1 - n)) > 0) n += (size_t)r;
        buf[n] = 0;
        printf("daemon: middle status %d, grandchild said: %s", mid, buf);
    } else if (!strcmp(mode, "vfork_range")) {
        char *args[] = {argv[0], "leaf", "1", NULL};
        printf("vfork_range: child status %d\n", closing_child(1, args));
    } else if (!strcmp(mode, "vfork_fail")) {
        char *args[] = {"/nonexistent/program", NULL};
        printf("vfork_fail: child status %d\n", closing_child(1, args));
    } else if (!strcmp(mode, "fork_loop")) {
        char *args[] = {argv[0], "leaf", "2", NULL};
        printf("fork_loop: child status %d\n", closing_child(0, args));
    } else {
        fprintf(stderr, "unknown mode %s\n", mode);
        return 2;
    }
    return 0;
}
