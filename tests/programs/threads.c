/* 8 threads allocating concurrently. Each worker does ROUNDS malloc/free pairs of
 * 24 bytes and leaks one block of (index+1)*16 bytes. Expected: worker_churn has
 * exactly 8*ROUNDS allocations and no live blocks; worker_leak has 8 allocations and
 * 8 live blocks totalling 16*(1+...+8) = 576 bytes. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define THREADS 8
#define ROUNDS 20000

static void *leaked[THREADS];

__attribute__((noinline)) void worker_churn(void) {
    for (int i = 0; i < ROUNDS; i++) {
        void *volatile p = malloc(24);
        free(p);
    }
}

__attribute__((noinline)) void *worker_leak(long idx) { return malloc((idx + 1) * 16); }

static void *worker(void *arg) {
    long idx = (long)arg;
    worker_churn();
    leaked[idx] = worker_leak(idx);
    return NULL;
}

int main(void) {
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, worker, (void *)i);
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    printf("threads done\n");
    return 0;
}
