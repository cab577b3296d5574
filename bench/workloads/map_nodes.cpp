// Allocation-dense C++: a std::map<int, std::unique_ptr<Node>> of NODES nodes, each with a
// ~45-character std::string and a small std::vector<int>, built and destroyed ROUNDS times
// on each of THREADS threads. Frees come in map order (by key), allocations in the shuffled
// insertion order: the live-block table is touched at random.
// usage: map_nodes [rounds=100] [threads=1] [nodes=20000]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

struct Node {
    std::string name;
    std::vector<int> values;
};

static unsigned long work(int rounds, int nodes, unsigned seed) {
    std::vector<int> keys(nodes);
    std::iota(keys.begin(), keys.end(), 0);
    std::mt19937 rng(seed);
    std::shuffle(keys.begin(), keys.end(), rng);
    unsigned long check = 0;
    for (int r = 0; r < rounds; r++) {
        std::map<int, std::unique_ptr<Node>> m;
        for (int k : keys) {
            auto n = std::make_unique<Node>();
            n->name = "node-" + std::to_string(k) + "-of-the-map-built-in-round-" + std::to_string(r);
            n->values.assign(1 + k % 7, k);
            m.emplace(k, std::move(n));
        }
        for (auto &[k, n] : m)
            check += n->name.size() + n->values.size();
    }
    return check;
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 100;
    int threads = argc > 2 ? atoi(argv[2]) : 1;
    int nodes = argc > 3 ? atoi(argv[3]) : 20000;
    std::vector<unsigned long> out(threads);
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; t++)
        ts.emplace_back([&, t] { out[t] = work(rounds / threads, nodes, 1234 + t); });
    for (auto &t : ts)
        t.join();
    unsigned long sum = std::accumulate(out.begin(), out.end(), 0ul);
    printf("map_nodes: %d rounds x %d nodes on %d thread(s), check %lu\n", rounds, nodes, threads, sum);
    return 0;
}
