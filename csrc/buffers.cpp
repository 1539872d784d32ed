#include "buffers.h"

#include <algorithm>
#include <atomic>
#include <cstring>

#include "parallel.h"
#include "simd.h"

namespace darknet_py {

namespace {
constexpr int64_t BLOCK = 1 << 16;   // bytes per step: large enough for memcmp's and memcpy's full speed

struct AddRun {
    template <class V>
    static DARKNET_PY_INLINE void run(const float* const* terms, int64_t count, float* out, int64_t begin,
                                      int64_t end) {
        int64_t i = begin;
        for (; i + lanes<V>() <= end; i += lanes<V>()) {
            V sum = load<V>(terms[0] + i);
            for (int64_t t = 1; t < count; ++t) sum += load<V>(terms[t] + i);
            store(out + i, sum);
        }
        for (; i < end; ++i) {
            float sum = terms[0][i];
            for (int64_t t = 1; t < count; ++t) sum += terms[t][i];
            out[i] = sum;
        }
    }
};
}  // namespace

bool same_bytes(const void* a, const void* b, int64_t bytes) {
    const auto* pa = static_cast<const unsigned char*>(a);
    const auto* pb = static_cast<const unsigned char*>(b);
    std::atomic<bool> differ{false};
    parallel_for((bytes + BLOCK - 1) / BLOCK, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end && !differ.load(std::memory_order_relaxed); ++i) {
            const int64_t start = i * BLOCK, n = std::min<int64_t>(BLOCK, bytes - start);
            if (std::memcmp(pa + start, pb + start, size_t(n)) != 0) differ.store(true, std::memory_order_relaxed);
        }
    }, 16);
    return !differ.load();
}

void copy_bytes(const std::vector<ByteCopy>& copies) {
    std::vector<int64_t> first_block{0};    // first_block[i]: blocks before copy i
    for (const ByteCopy& c : copies) first_block.push_back(first_block.back() + (c.bytes + BLOCK - 1) / BLOCK);
    parallel_for(first_block.back(), [&](int64_t begin, int64_t end) {
        for (int64_t block = begin; block < end; ++block) {
            const size_t i = std::upper_bound(first_block.begin(), first_block.end(), block) - first_block.begin() - 1;
            const int64_t start = (block - first_block[i]) * BLOCK, n = std::min(BLOCK, copies[i].bytes - start);
            std::memcpy(static_cast<unsigned char*>(copies[i].destination) + start,
                        static_cast<const unsigned char*>(copies[i].source) + start, size_t(n));
        }
    }, 4);
}

void add_floats(const std::vector<const float*>& terms, float* out, int64_t n) {
    constexpr int64_t FLOATS = BLOCK / sizeof(float);
    parallel_for((n + FLOATS - 1) / FLOATS, [&](int64_t begin, int64_t end) {
        simd_run<AddRun>(terms.data(), int64_t(terms.size()), out, begin * FLOATS, std::min(n, end * FLOATS));
    }, 4);
}

}  // namespace darknet_py
