// Cross-thread frees: a producer thread allocates BLOCKS blocks of 16 to 512 bytes (sizes
// from a fixed-seed generator), fills their first and last bytes, and hands them to a
// consumer thread through a bounded queue (a mutex and two condition variables; blocks
// travel in batches of BATCH so that the queue's locking does not dwarf the allocations).
// The consumer reads every block and frees it, every other batch in reverse order. The
// checksum depends only on the blocks' contents and order, not on the scheduling.
// usage: producer_consumer [blocks=2000000]
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BATCH 64
#define QUEUE_BATCHES 16

struct batch {
    size_t n;
    unsigned char *blocks[BATCH];
    size_t sizes[BATCH];
};

static struct batch queue[QUEUE_BATCHES];
static size_t head, tail; // batches pushed, batches popped
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t not_full = PTHREAD_COND_INITIALIZER, not_empty = PTHREAD_COND_INITIALIZER;
static size_t total_blocks;

static void push(const struct batch *b) {
    pthread_mutex_lock(&lock);
    while (head - tail == QUEUE_BATCHES)
        pthread_cond_wait(&not_full, &lock);
    queue[head % QUEUE_BATCHES] = *b;
    head++;
    pthread_cond_signal(&not_empty);
    pthread_mutex_unlock(&lock);
}

static void pop(struct batch *b) {
    pthread_mutex_lock(&lock);
    while (head == tail)
        pthread_cond_wait(&not_empty, &lock);
    *b = queue[tail % QUEUE_BATCHES];
    tail++;
    pthread_cond_signal(&not_full);
    pthread_mutex_unlock(&lock);
}

static void *producer(void *arg) {
    (void)arg;
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    struct batch b = {0};
    for (size_t i = 0; i < total_blocks; i++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        size_t size = 16 + (size_t)((rng >> 33) % 497); // 16..512
        unsigned char *p = malloc(size);
        if (!p) {
            perror("malloc");
            exit(1);
        }
        uint64_t seq = i;
        uint32_t size32 = (uint32_t)size; // bytes 8-11: the last byte (>= 15) is apart
        memcpy(p, &seq, sizeof seq);
        memcpy(p + 8, &size32, sizeof size32);
        p[size - 1] = (unsigned char)(rng >> 56);
        b.blocks[b.n] = p;
        b.sizes[b.n] = size;
        if (++b.n == BATCH || i + 1 == total_blocks) {
            push(&b);
            b.n = 0;
        }
    }
    return NULL;
}

static void *consumer(void *arg) {
    uint64_t *check = arg, sum = 0;
    size_t seen = 0, batches = 0;
    struct batch b;
    while (seen < total_blocks) {
        pop(&b);
        for (size_t k = 0; k < b.n; k++) {
            size_t j = (batches & 1) ? b.n - 1 - k : k;
            unsigned char *p = b.blocks[j];
            uint64_t seq;
            uint32_t size;
            memcpy(&seq, p, sizeof seq);
            memcpy(&size, p + 8, sizeof size);
            if (size != b.sizes[j]) {
                fprintf(stderr, "producer_consumer: block %llu corrupted\n", (unsigned long long)seq);
                exit(1);
            }
            sum = sum * 31 + seq * 1000003 + (uint64_t)size * 17 + p[size - 1];
            free(p);
        }
        seen += b.n;
        batches++;
    }
    *check = sum;
    return NULL;
}

int main(int argc, char **argv) {
    total_blocks = argc > 1 ? strtoull(argv[1], NULL, 10) : 2000000;
    uint64_t check = 0;
    pthread_t prod, cons;
    pthread_create(&cons, NULL, consumer, &check);
    pthread_create(&prod, NULL, producer, NULL);
    pthread_join(prod, NULL);
    pthread_join(cons, NULL);
    printf("producer_consumer: %zu blocks of 16-512 bytes, check %llu\n", total_blocks,
           (unsigned long long)check);
    return 0;
}
