/* memlens html test (crates/memlens-cli/tests/html.rs) and the README's screenshot: a small
 * "server" with one of each problem, spread over about 200 ms so that RSS samples draw a
 * timeline. The function names are distinctive; the test looks for them in the page as
 * Chromium rendered it.
 *   leak_session_token    malloc(96) per request, the pointer dropped: definitely lost
 *   hot_parse_scratch     20 x (malloc(64), use, free) per request: the most allocations,
 *                         all temporary
 *   registry_grow_insert  malloc(512 + 8) per request kept in a global list: grows all
 *                         along (growth), still reachable at exit
 *   burst_buffer_fill     64 x malloc(4096) every 50 requests, freed 25 requests later by
 *                         burst_buffer_drain: waves, the largest site at the heap's peak
 * No stdio: its buffer would be one more allocation. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define REQUESTS 400
#define BURST 64

struct node {
    struct node *next;
    char data[512];
};

struct node *registry;
void *burst[BURST];
volatile int sink;

static void pause_us(long us) {
    struct timespec ts = {0, us * 1000};
    nanosleep(&ts, 0);
}

__attribute__((noinline)) char *leak_session_token(int id) {
    char *t = malloc(96);
    memset(t, id, 96);
    return t;
}

__attribute__((noinline)) void hot_parse_scratch(int id) {
    for (int i = 0; i < 20; i++) {
        char *p = malloc(64);
        memset(p, id + i, 64);
        sink += p[3];
        free(p);
    }
}

__attribute__((noinline)) void registry_grow_insert(int id) {
    struct node *n = malloc(sizeof *n);
    memset(n->data, id, sizeof n->data);
    n->next = registry;
    registry = n;
}

__attribute__((noinline)) void burst_buffer_fill(void) {
    for (int i = 0; i < BURST; i++) {
        burst[i] = malloc(4096);
        memset(burst[i], i, 4096);
    }
}

__attribute__((noinline)) void burst_buffer_drain(void) {
    for (int i = 0; i < BURST; i++) free(burst[i]);
}

__attribute__((noinline)) void handle_request(int id) {
    char *token = leak_session_token(id);
    sink += token[1]; /* and the token is dropped: leaked */
    hot_parse_scratch(id);
    registry_grow_insert(id);
}

int main(void) {
    for (int id = 0; id < REQUESTS; id++) {
        handle_request(id);
        if (id % 50 == 0) burst_buffer_fill();
        if (id % 50 == 25) burst_buffer_drain();
        pause_us(400);
    }
    return 0;
}
