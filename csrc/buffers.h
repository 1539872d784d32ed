// Large buffers on the kernels' thread pool: byte comparison, copies (a route layer's concatenation) and sums (a
// shortcut layer's).
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

// out[i] = terms[0][i] + terms[1][i] + ... (added in that order) for i < n.
void add_floats(const std::vector<const float*>& terms, float* out, int64_t n);

}  // namespace darknet_py
