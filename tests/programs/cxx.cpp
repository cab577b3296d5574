// C++ allocation families and allocations made inside libstdc++.so.
// Expected: make_objects: 3 x operator new(sizeof(Obj)=24), 2 freed;
//           make_arrays: 2 x operator new[](40 ints = 160 B), 1 freed with delete[];
//           build_stream: std::ostringstream grows its buffer inside libstdc++
//           (basic_stringbuf::overflow / _M_mutate frames in libstdc++.so).
#include <cstdio>
#include <new>
#include <sstream>
#include <string>

struct Obj {
    long a, b, c;
};

Obj *kept_obj;
int *kept_arr;

__attribute__((noinline)) void make_objects() {
    Obj *o[3];
    for (auto &p : o) p = new Obj{1, 2, 3};
    delete o[0];
    delete o[1];
    kept_obj = o[2];
}

__attribute__((noinline)) void make_arrays() {
    int *a = new int[40];
    int *b = new int[40];
    delete[] a;
    kept_arr = b;
}

__attribute__((noinline)) std::string build_stream() {
    std::ostringstream os;
    for (int i = 0; i < 200; i++) os << "line " << i << " of a stream that grows\n";
    return os.str();
}

int main() {
    make_objects();
    make_arrays();
    std::string s = build_stream();
    std::printf("cxx done %zu %ld %d\n", s.size(), kept_obj->a, kept_arr[0] = 7);
    return 0;
}
