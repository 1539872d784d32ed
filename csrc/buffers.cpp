#include "buffers.h"

#include <algorithm>
#include <atomic>
#include <cstring>

#include "parallel.h"

namespace darknet_py {

namespace {
constexpr int64_t BLOCK = 1 << 16;   // bytes per step: large enough for memcmp's and memcpy's full speed
}

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

}  // namespace darknet_py
