/* Torture 1: 64 threads allocate 1000 blocks each and push them on a shared queue; every
 * other iteration a thread pops a block (usually another thread's) and frees it. main
 * joins them and frees what is left. At least 64 * 1000 mallocs, every one freed. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define THREADS 64
#define PER_THREAD 1000

struct node { struct node *next; };
static struct node *queue;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_barrier_t start;

static void *worker(void *arg) {
    unsigned long id = (unsigned long)arg;
    pthread_barrier_wait(&start);
    for (int i = 0; i < PER_THREAD; i++) {
        struct node *n = malloc(sizeof *n + (id * 7 + (unsigned)i) % 200);
        if (!n) abort();
        pthread_mutex_lock(&lock);
        n->next = queue;
        queue = n;
        struct node *victim = NULL;
        if (i & 1) {
            victim = queue;
            queue = victim->next;
        }
        pthread_mutex_unlock(&lock);
        free(victim);
    }
    return NULL;
}

int main(void) {
    pthread_t t[THREADS];
    pthread_barrier_init(&start, NULL, THREADS);
    for (unsigned long i = 0; i < THREADS; i++)
        if (pthread_create(&t[i], NULL, worker, (void *)i)) abort();
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    long left = 0;
    while (queue) {
        struct node *n = queue;
        queue = n->next;
        free(n);
        left++;
    }
    printf("threads %d x %d, %ld left on the queue\n", THREADS, PER_THREAD, left);
    return 0;
}
