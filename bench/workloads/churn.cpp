// cxx-churn: churns std::map<std::string, std::string> with string keys and values.
// Usage: churn OPS [THREADS]
// Each thread owns its map; deterministic (per-thread LCG seeded by thread index).
// Prints a checksum so a changed behaviour under a profiler is visible.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <thread>
#include <vector>

namespace {

struct Lcg {
    uint64_t s;
    uint64_t next() {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        return s >> 33;
    }
};

// A key long enough to defeat the small-string optimisation half of the time.
__attribute__((noinline)) std::string make_key(uint64_t k) {
    std::string s = "key/";
    s += std::to_string(k);
    if (k & 1) s += "/with-a-longer-suffix";
    return s;
}

__attribute__((noinline)) std::string make_value(uint64_t v) {
    return std::string(8 + (v % 48), static_cast<char>('a' + v % 26));
}

uint64_t churn(uint64_t ops, unsigned seed) {
    Lcg rng{0x9E3779B97F4A7C15ULL ^ seed};
    std::map<std::string, std::string> m;
    const uint64_t keyspace = 50000;
    uint64_t sum = 0;
    for (uint64_t i = 0; i < ops; ++i) {
        uint64_t r = rng.next();
        uint64_t k = r % keyspace;
        switch ((r >> 20) % 4) {
        case 0:
        case 1:
            m[make_key(k)] = make_value(r);
            break;
        case 2:
            m.erase(make_key(k));
            break;
        default: {
            auto it = m.find(make_key(k));
            if (it != m.end()) sum += it->second.size();
        }
        }
    }
    return sum + m.size();
}

}  // namespace

int main(int argc, char **argv) {
    uint64_t ops = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 1000000;
    unsigned threads = argc > 2 ? std::atoi(argv[2]) : 1;
    std::vector<uint64_t> sums(threads);
    if (threads <= 1) {
        sums[0] = churn(ops, 0);
    } else {
        std::vector<std::thread> ts;
        for (unsigned t = 0; t < threads; ++t)
            ts.emplace_back([&sums, ops, t] { sums[t] = churn(ops, t); });
        for (auto &t : ts) t.join();
    }
    uint64_t total = 0;
    for (auto s : sums) total += s;
    std::printf("checksum %llu\n", static_cast<unsigned long long>(total));
    return 0;
}
