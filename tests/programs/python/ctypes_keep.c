/* A library that Python loads with ctypes: keep_one() stores a 777-byte block in a
 * static of its own, still reachable through the library's data (memcheck: "still
 * reachable"); leak_one() drops a 333-byte one. */
#include <stdlib.h>
#include <string.h>

static char *volatile keep;

static char *make_buf(int n) {
    char *p = malloc(n);
    memset(p, 1, n);
    return p;
}

void keep_one(void) { keep = make_buf(777); }

void leak_one(void) {
    char *volatile p = make_buf(333);
    p = 0;
    (void)p;
}
