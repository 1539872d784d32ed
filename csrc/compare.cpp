#include "compare.h"

#include <algorithm>
#include <atomic>
#include <cstring>

#include "parallel.h"

namespace darknet_py {

bool same_bytes(const void* a, const void* b, int64_t bytes) {
    constexpr int64_t BLOCK = 1 << 16;   // bytes per step: large enough for memcmp's full speed
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

}  // namespace darknet_py
