// C++ containers and std::string. Each container object is allocated with new in a named
// function, so its record names that function; the elements' records name the library
// function that allocated them (std::vector<...>::_M_..., std::_Rb_tree<...>::..., and
// so on, as inlined at -O1) with the named function further out in the stack.
//   keep_vector          g_vector --> vector (24 B) --> 100 longs: still reachable
//   keep_string          g_string --> std::string (32 B) --> 200 chars: still reachable
//   lose_vector          vector (24 B) --> 50 longs: lost
//   lose_string          std::string (32 B) --> 300 chars: lost
//   lose_short_string    std::string of 5 chars (32 B, in place, no heap buffer): lost
//   lose_map             std::map<int, long> (48 B) with 10 nodes: lost
//   lose_list            std::list<int> (24 B) with 5 nodes: lost; the nodes point back
//                        at the list object (its sentinel), a cycle
//   lose_unordered_map   std::unordered_map<int, int> (56 B), buckets array and 20 nodes:
//                        lost; the bucket of the first node points at
//                        _M_before_begin inside the map object (an interior pointer)
//   lose_shared_cycle    two make_shared<Peer> blocks holding shared_ptrs to each other:
//                        a cycle, lost
//   g_static_vector      a global std::vector<int> with 64 elements: its destructor runs
//                        at exit, nothing remains
// Only the lost totals of the cyclic structures are meaningful (see cycles.c).
#include <list>
#include <map>
#include <memory>
#include <string>
#include <unistd.h>
#include <unordered_map>
#include <vector>

std::vector<long> *volatile g_vector;
std::string *volatile g_string;
std::vector<int> g_static_vector;

// Makes the compiler materialise everything p points to: without it GCC drops the stores
// into a new'd object whose pointer is only kept in a local (lose_vector's 24-byte vector
// then holds no pointer to its buffer, and both blocks are "definitely lost").
template <class T> static inline void escape(T *p) { __asm__ volatile("" : : "r"(p) : "memory"); }

struct Peer {
    std::shared_ptr<Peer> other;
    long payload[4] = {};
};

__attribute__((noinline)) void keep_vector() { g_vector = new std::vector<long>(100, 7); }
__attribute__((noinline)) void keep_string() { g_string = new std::string(200, 'k'); }
__attribute__((noinline)) void lose_vector() {
    auto *v = new std::vector<long>(50, 1);
    escape(v);
}
__attribute__((noinline)) void lose_string() {
    auto *s = new std::string(300, 's');
    escape(s);
}
__attribute__((noinline)) void lose_short_string() {
    auto *s = new std::string("short");
    escape(s);
}
__attribute__((noinline)) void lose_map() {
    auto *m = new std::map<int, long>;
    for (int i = 0; i < 10; i++)
        (*m)[i] = i;
    escape(m);
}
__attribute__((noinline)) void lose_list() {
    auto *l = new std::list<int>;
    for (int i = 0; i < 5; i++)
        l->push_back(i);
    escape(l);
}
__attribute__((noinline)) void lose_unordered_map() {
    auto *m = new std::unordered_map<int, int>;
    for (int i = 0; i < 20; i++)
        (*m)[i] = i;
    escape(m);
}
__attribute__((noinline)) void lose_shared_cycle() {
    auto a = std::make_shared<Peer>();
    auto b = std::make_shared<Peer>();
    a->other = b;
    b->other = a;
    escape(a.get());
    escape(b.get());
}

__attribute__((noinline)) void fill_static_vector() {
    for (int i = 0; i < 64; i++)
        g_static_vector.push_back(i);
}

__attribute__((noinline)) void make_containers() {
    keep_vector();
    keep_string();
    lose_vector();
    lose_string();
    lose_short_string();
    lose_map();
    lose_list();
    lose_unordered_map();
    lose_shared_cycle();
    fill_static_vector();
}

int main() {
    make_containers();
    static const char msg[] = "containers: made\n";
    write(1, msg, sizeof msg - 1);
    return 0;
}
