// Byte comparison of large buffers on the kernels' thread pool.
#pragma once
#include <cstdint>

namespace darknet_py {

// Whether the `bytes` bytes at a and b are identical.
bool same_bytes(const void* a, const void* b, int64_t bytes);

}  // namespace darknet_py
