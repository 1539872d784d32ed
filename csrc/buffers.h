// Large buffers on the kernels' thread pool: byte comparison, and copies (a route layer's concatenation).
#pragma once
#include <cstdint>
#include <vector>

namespace darknet_py {

// Whether the `bytes` bytes at a and b are identical.
bool same_bytes(const void* a, const void* b, int64_t bytes);

// One run of bytes to copy.
struct ByteCopy {
    const void* source;
    void* destination;
    int64_t bytes;
};

// Performs every copy, split into blocks over the threads.
void copy_bytes(const std::vector<ByteCopy>& copies);

}  // namespace darknet_py
