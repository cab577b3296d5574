// A program whose allocations happen inside libstdc++'s templates, inlined into its own
// functions at -O2 (std::vector's growth, std::string's): a summary line should name the
// program's function, not the header the inlined code came from.
#include <cstdio>
#include <string>
#include <vector>

std::vector<std::string> *g_names;

__attribute__((noinline)) void fill_names(int n) {
    g_names = new std::vector<std::string>;
    for (int i = 0; i < n; i++)
        g_names->push_back(std::string(40, 'a' + i % 26));
}

int main() {
    fill_names(500);
    std::printf("names %zu\n", g_names->size());
    return 0;
}
