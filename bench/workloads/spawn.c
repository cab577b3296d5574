/* spawn FD PROG [ARGS...]: run a command, then print
 * "<wall seconds> <max RSS KiB> exit|signal <N> <CPU seconds>" to file descriptor FD
 * (CPU: user + system time of the waited-for tree).
 *
 * Used by bench/run instead of forking the workload from Python: on Linux, exec records
 * the pre-exec memory of the forked process into the child's peak RSS, so a child forked
 * from a Python interpreter would never report less than the interpreter's own RSS.
 * This process is tiny; ru_maxrss from wait4 is the maximum over the waited-for tree.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: spawn FD PROG [ARGS...]\n");
        return 2;
    }
    int fd = atoi(argv[1]);
    FILE *res = fdopen(fd, "w");
    if (!res) {
        perror("spawn: result fd");
        return 2;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t pid = fork();
    if (pid < 0) {
        perror("spawn: fork");
        return 2;
    }
    if (pid == 0) {
        close(fd);
        execvp(argv[2], argv + 2);
        perror("spawn: exec");
        _exit(127);
    }
    int status;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) < 0) {
        perror("spawn: wait4");
        return 2;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double wall = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
                 ru.ru_stime.tv_usec / 1e6;
    fprintf(res, "%.6f %ld %s %d %.6f\n", wall, ru.ru_maxrss, WIFEXITED(status) ? "exit" : "signal",
            WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), cpu);
    fclose(res);
    return 0;
}
