// Scratch memory the kernels fill before they read it: left uninitialized (std::vector would zero it, and zeroing
// each thread's panel of B cost as much as a small layer's multiplication).
#pragma once
#include <cstdint>
#include <memory>

namespace darknet_py {

inline std::unique_ptr<float[]> scratch_floats(int64_t n) { return std::unique_ptr<float[]>(new float[n > 0 ? n : 1]); }

}  // namespace darknet_py
