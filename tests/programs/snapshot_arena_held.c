/* A process one of whose threads holds the main arena's lock for as long as the test
 * wants, for `memlens snapshot`: glibc's malloc_stats() prints to stderr while it holds
 * each arena's lock, and here stderr is a pipe that is full, so the thread blocks in
 * write() with the lock held. Every stop of the process finds the lock held: the
 * snapshot must still be taken, and say so.
 *
 * The main thread says READY once the thread is blocked in write() (system call 1 in
 * /proc/self/task/TID/syscall), then waits on stdin (it allocates nothing meanwhile:
 * it would wait for the lock too). On 'q' it drains the pipe (the
 * thread's malloc_stats() then finishes and lets the lock go), joins the thread, and
 * prints "OK stats=1" if the drained text is malloc_stats()'s whole report. Exit 0. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static pid_t stats_tid;

static void *stats(void *arg) {
    (void)arg;
    stats_tid = (pid_t)syscall(SYS_gettid);
    malloc_stats();
    return NULL;
}

/* Whether thread `tid` is blocked in write(). (Without stdio, whose fopen would wait
 * for the lock the thread holds.) */
static int in_write(pid_t tid) {
    char path[64], buf[64] = {0};
    snprintf(path, sizeof path, "/proc/self/task/%d/syscall", (int)tid);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    return n > 2 && strncmp(buf, "1 ", 2) == 0;
}

int main(void) {
    int p[2];
    if (pipe(p) != 0)
        return 2;
    /* A full pipe: the smallest the kernel allows, filled without blocking. */
    fcntl(p[1], F_SETPIPE_SZ, 4096);
    fcntl(p[1], F_SETFL, O_NONBLOCK);
    static char fill[4096];
    memset(fill, '.', sizeof fill);
    size_t filled = 0;
    for (;;) {
        ssize_t w = write(p[1], fill, sizeof fill);
        if (w <= 0)
            break;
        filled += (size_t)w;
    }
    fcntl(p[1], F_SETFL, 0);
    dup2(p[1], 2);
    /* Something on the heap, so that there is a heap to walk. */
    void *volatile block = malloc(1000);
    (void)block;
    pthread_t t;
    pthread_create(&t, NULL, stats, NULL);
    while (stats_tid == 0 || !in_write(stats_tid))
        usleep(1000);
    (void)!write(1, "READY\n", 6);
    char c;
    while (read(0, &c, 1) == 1 && c != 'q') {
    }
    /* Drain: first the filler, then malloc_stats()'s report until the thread ends. */
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    static char text[65536];
    size_t got = 0;
    int done = 0;
    for (;;) {
        ssize_t r = read(p[0], text + got, sizeof text - 1 - got);
        if (r > 0) {
            got += (size_t)r;
            if (got >= sizeof text - 1)
                break;
            continue;
        }
        if (done)
            break;
        if (pthread_tryjoin_np(t, NULL) == 0)
            done = 1; /* one more read for what it wrote last */
        else
            usleep(1000);
    }
    text[got] = 0;
    printf("OK stats=%d\n",
           got > filled && strstr(text + filled, "Arena 0:") != NULL &&
               strstr(text + filled, "Total (incl. mmap):") != NULL);
    return 0;
}
