/* memlens demo: a small "server" with three memory problems.
 *   1. handle_request() forgets to free a scratch buffer (a real leak, 20 x 256 B);
 *   2. cache_put() keeps every entry in a global cache that is never trimmed
 *      (still reachable, but it grows: a logical leak);
 *   3. format_line() allocates and frees many short-lived strings (churn).
 * Build: gcc -g -O1 -o leaky leaky.c    Run: memlens run -- ./leaky */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct entry {
    struct entry *next;
    char key[32];
    char *value;
};

struct entry *cache; /* global: everything in it stays reachable */

__attribute__((noinline)) void cache_put(int id) {
    struct entry *e = malloc(sizeof *e);
    snprintf(e->key, sizeof e->key, "user:%d", id);
    e->value = strdup("profile data for this user");
    e->next = cache;
    cache = e;
}

__attribute__((noinline)) char *format_line(int id) {
    char *s = malloc(64);
    snprintf(s, 64, "request %d handled", id);
    return s;
}

__attribute__((noinline)) size_t parse(const char *buf) { return strlen(buf); }

__attribute__((noinline)) void handle_request(int id) {
    char *scratch = malloc(256); /* never freed: leaks 256 B per request */
    snprintf(scratch, 256, "GET /users/%d", id);
    if (parse(scratch) == 0) puts("empty request");
    for (int i = 0; i < 50; i++) {
        char *line = format_line(id * 100 + i);
        if (strlen(line) == 0) puts(line);
        free(line);
    }
    cache_put(id);
}

int main(void) {
    for (int id = 0; id < 20; id++) handle_request(id);
    printf("handled 20 requests\n");
    return 0;
}
