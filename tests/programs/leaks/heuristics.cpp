// Blocks that only an interior pointer reaches, in the four shapes memcheck's
// --leak-check-heuristics accept (default: all). Each pointer is held by a global, so with
// the heuristics on each block is "still reachable" ("reachable via heuristic"), and with
// --leak-check-heuristics=none it is "possibly lost".
//   newarray_objects      new Counted[6]: libstdc++ stores the count in the first word and
//                         returns start + 8                                     8 + 6*16 B
//   newarray_zero         new Counted[0]: 8-byte block, the pointer is start + 8, one past
//                         the end: no block contains it, so definitely lost      8 B
//   multiple_inheritance  new Derived, held as Right*: start + 16, a vtable pointer at both
//                         the pointer and the start of the block                 40 B
//   length64_block        malloc(1000) whose first u64 is 992 (the size that follows), held
//                         as start + 8 (sqlite does this)                        1000 B
//   stdstring_block       malloc(3*8 + 100 + 1) laid out like the old copy-on-write
//                         std::string rep (length, capacity = 100, refcount, chars),
//                         held as start + 24                                     125 B
#include <cstdlib>
#include <cstring>
#include <unistd.h>

struct Counted {
    long a = 1, b = 2;
    ~Counted();
};
__attribute__((noinline)) Counted::~Counted() { a = 0; }

struct Left {
    long l = 1;
    virtual ~Left() {}
};
struct Right {
    long r = 2;
    virtual ~Right() {}
    virtual long get() { return r; }
};
struct Derived : Left, Right {
    long d = 3;
};

Counted *volatile g_array;
Counted *volatile g_zero;
Right *volatile g_right;
void *volatile g_length64;
void *volatile g_stdstring;

__attribute__((noinline)) Counted *newarray_objects() { return new Counted[6]; }
__attribute__((noinline)) Counted *newarray_zero() { return new Counted[0]; }
__attribute__((noinline)) Right *multiple_inheritance() { return new Derived; }

__attribute__((noinline)) void *length64_block() {
    unsigned long *p = static_cast<unsigned long *>(malloc(1000));
    memset(p, 0, 1000);
    p[0] = 1000 - 8;
    return p + 1;
}

__attribute__((noinline)) void *stdstring_block() {
    const unsigned long capacity = 100;
    unsigned long *p = static_cast<unsigned long *>(malloc(3 * 8 + capacity + 1));
    memset(p, 0, 3 * 8 + capacity + 1);
    p[0] = 5;        // length
    p[1] = capacity; // capacity
    p[2] = 0;        // refcount
    memcpy(p + 3, "hello", 6);
    return p + 3;
}

__attribute__((noinline)) void make_blocks() {
    g_array = newarray_objects();
    g_zero = newarray_zero();
    g_right = multiple_inheritance();
    g_length64 = length64_block();
    g_stdstring = stdstring_block();
}

int main() {
    make_blocks();
    static const char msg[] = "heuristics: 5 blocks held by interior pointers\n";
    write(1, msg, sizeof msg - 1);
    return 0;
}
