/* File-descriptor hostility. argv[1]:
 *   closeall  close every fd from 3 to 4095 (as daemons do), then open a file of its
 *             own (it gets fd 3), allocate 5000 x 40 B (kept) while writing to it.
 *   rlimit16  lower RLIMIT_NOFILE to 16, then the same allocations.
 *   fsize     files are limited to 64 KiB (RLIMIT_FSIZE, SIGXFSZ ignored: writes past it
 *             fail with EFBIG, as on a full disk); 200,000 extra malloc/free pairs of
 *             pseudo-random sizes (which no compression folds away) make the recorder's
 *             trace outgrow that, while the program's own file fits.
 * argv[2] is the file to write; it must end up holding exactly "line 0".."line 4999". */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

void *keep[5000];

__attribute__((noinline)) void work(int fd) {
    char buf[32];
    for (int i = 0; i < 5000; i++) {
        keep[i] = malloc(40);
        int n = snprintf(buf, sizeof buf, "line %d\n", i);
        if (write(fd, buf, n) != n) abort();
    }
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    if (!strcmp(argv[1], "closeall")) {
        for (int fd = 3; fd < 4096; fd++) close(fd);
    } else if (!strcmp(argv[1], "fsize")) {
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit r = {64 << 10, 64 << 10};
        if (setrlimit(RLIMIT_FSIZE, &r) != 0) abort();
        unsigned x = 1;
        for (int i = 0; i < 200000; i++) {
            x = x * 1103515245u + 12345u;
            void *volatile p = malloc(24 + (x >> 8) % 4000);
            free(p);
        }
    } else if (!strcmp(argv[1], "rlimit16")) {
        struct rlimit r = {16, 16};
        if (setrlimit(RLIMIT_NOFILE, &r) != 0) abort();
    }
    int fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) { perror("open"); return 1; }
    work(fd);
    close(fd);
    printf("fds %s done, fd was %d\n", argv[1], fd);
    return 0;
}
