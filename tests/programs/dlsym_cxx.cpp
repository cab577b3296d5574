// C++'s allocation operators taken with dlsym from libstdc++'s handle: a 6001-byte block
// from its operator new, kept and never freed (lost), and a 6002-byte block from its
// operator new released with a plain `delete`-family call (operator delete(void*)), which
// must be no heap error: both calls are one family.
#include <cstdio>
#include <dlfcn.h>
#include <new>

int main() {
    void *h = dlopen("libstdc++.so.6", RTLD_NOW | RTLD_NOLOAD);
    if (!h) {
        std::fprintf(stderr, "%s\n", dlerror());
        return 1;
    }
    auto op_new = reinterpret_cast<void *(*)(std::size_t)>(dlsym(h, "_Znwm"));
    if (!op_new) return 1;
    void *volatile lost = op_new(6001);
    lost = nullptr;
    (void)lost;
    ::operator delete(op_new(6002));
    std::puts("dlsym operators done");
    return 0;
}
