// Two allocation sites on one line of the program: a std::string's buffer and a std::map
// node, both made by `cache_put` and kept in a global map. Their stacks differ only in the
// library code inlined there, so the summary tells them apart by it ("through").
#include <cstdio>
#include <map>
#include <string>

static std::map<int, std::string> *cache;

__attribute__((noinline)) void cache_put(int k) { (*cache)[k] = std::string(200, 'x'); }

int main() {
    cache = new std::map<int, std::string>;
    for (int k = 0; k < 10; k++) cache_put(k);
    std::printf("kept %zu\n", cache->size());
    return 0;
}
