/* Mappings the exit scan must read safely or skip, each holding the only pointer to a
 * block of its own size (memcheck agrees on every one):
 *   a private writable mapping of 3 pages over a 1-page file: page 0 (rewritten, so a
 *     private copy) holds a pointer (still reachable); pages 1-2 lie past the end of the
 *     file, where any access raises SIGBUS;
 *   a mapping made PROT_NONE after a pointer was stored in it: unreadable, so its block
 *     is definitely lost;
 *   a 64 MiB MAP_NORESERVE mapping, untouched but for one page holding a pointer
 *     (still reachable);
 *   a private mapping of /dev/zero holding a pointer (anonymous memory: still reachable);
 *   a thread that blocks every signal (the scan cannot stop it) and maps and unmaps a
 *     page in a loop while the program exits.
 * Plus one plain leak. Exits 0 after printing one line. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096

static void *churn(void *arg) {
    (void)arg;
    for (;;) {
        void *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p != MAP_FAILED) {
            memset(p, 1, PAGE);
            munmap(p, PAGE);
        }
    }
    return NULL;
}

int main(void) {
    char path[] = "/tmp/memlens-mappings-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0 || ftruncate(fd, PAGE) != 0)
        return 2;
    unlink(path);
    void **file = mmap(NULL, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    void **hidden = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *sparse = mmap(NULL, 64 << 20, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    int zfd = open("/dev/zero", O_RDWR);
    void **zero = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, zfd, 0);
    if (file == MAP_FAILED || hidden == MAP_FAILED || sparse == MAP_FAILED || zero == MAP_FAILED)
        return 2;
    file[0] = malloc(11);
    hidden[0] = malloc(22);
    mprotect(hidden, PAGE, PROT_NONE);
    *(void **)(sparse + (32 << 20)) = malloc(33);
    zero[0] = malloc(44);
    void *volatile lost = malloc(55);
    lost = NULL;

    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    pthread_t t;
    pthread_create(&t, NULL, churn, NULL);
    sigemptyset(&all);
    pthread_sigmask(SIG_SETMASK, &all, NULL);

    printf("mapped\n");
    return 0;
}
