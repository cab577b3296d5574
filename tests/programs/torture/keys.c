/* The recorder leaves the program every pthread key. Threads are created first (each
 * gets the recorder's per-thread state, and with it whatever thread-exit hook the
 * recorder uses), and one is still running; then the program creates keys until
 * pthread_key_create fails and prints how many it got, and checks that every key works
 * and that key destructors run at thread exit. */
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int pipe_fds[2];
static pthread_key_t keys[PTHREAD_KEYS_MAX + 1];
static int nkeys;
static int destructed;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void *alloc_and_leave(void *arg) {
    free(malloc(64));
    return arg;
}

static void *waiter(void *arg) {
    char c;
    free(malloc(64));
    ssize_t n = read(pipe_fds[0], &c, 1);
    (void)n;
    return arg;
}

static void destructor(void *v) {
    pthread_mutex_lock(&lock);
    destructed++;
    pthread_mutex_unlock(&lock);
    free(v);
}

static void *use_every_key(void *arg) {
    for (int i = 0; i < nkeys; i++)
        if (pthread_setspecific(keys[i], malloc(8)) != 0)
            return (void *)1;
    for (int i = 0; i < nkeys; i++)
        if (pthread_getspecific(keys[i]) == NULL)
            return (void *)2;
    return arg;
}

int main(void) {
    if (pipe(pipe_fds) != 0)
        return 2;
    for (int i = 0; i < 8; i++) {
        pthread_t t;
        pthread_create(&t, NULL, alloc_and_leave, NULL);
        pthread_join(t, NULL);
    }
    pthread_t w;
    pthread_create(&w, NULL, waiter, NULL);
    while (nkeys <= PTHREAD_KEYS_MAX && pthread_key_create(&keys[nkeys], destructor) == 0)
        nkeys++;
    printf("keys: %d of PTHREAD_KEYS_MAX %d\n", nkeys, PTHREAD_KEYS_MAX);
    pthread_t u;
    void *r;
    pthread_create(&u, NULL, use_every_key, NULL);
    pthread_join(u, &r);
    printf("every key set and read: %s, destructors run: %d\n", r ? "no" : "yes", destructed);
    ssize_t n = write(pipe_fds[1], "x", 1);
    pthread_join(w, NULL);
    return n == 1 ? 0 : 3;
}
