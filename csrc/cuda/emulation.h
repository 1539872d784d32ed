// Host emulation of the CUDA subset darknet_py's kernels use, so that the very same kernel source compiles with the
// host C++ compiler and runs on the CPU (darknet_py._cuda_emu): tests check every kernel and the whole CUDA engine
// on machines without a GPU. Included by common.cuh instead of cuda_runtime.h when DN_CUDA_EMULATION is defined.
//
// Model (emulation.cpp has the scheduler):
// - A launch runs its blocks on the kernels' thread pool (csrc/parallel.h); the threads of one block run as fibers
//   (own stack, hand-written context switch) on one OS thread, one after the other: a thread runs until it
//   finishes or reaches __syncthreads or a warp operation, then the next one runs. `__shared__` variables are
//   `static thread_local`, so the threads of a block share them and blocks on other OS threads do not.
// - __syncthreads releases the block when all of its threads wait there; a warp operation (shuffles, ballot,
//   any/all, __syncwarp) completes when every existing, unfinished lane its mask names waits at one.
// - Launches are synchronous; streams, events and memory copies are plain host calls.
// What raises (std::runtime_error, "CUDA emulation: ..."): a block over 1024 threads or another invalid launch
// configuration, dynamic shared memory over 48 KiB, a barrier that can never complete (threads split between
// __syncthreads and a warp operation, or some threads finished while others wait at __syncthreads), lanes of
// one warp operation calling different operations, __trap().
// What it cannot show: speed, every race between the threads of a block (they never interleave between
// synchronisation points; running them in reverse order, set_reverse_order, shows the races that depend on which
// thread runs first), register/shared-memory limits, inline PTX, tensor cores, exact float results (no FMA
// contraction control, library expf instead of __expf).
#pragma once
#if defined(__CUDACC__)
#error "emulation.h is the host build of the kernels; nvcc includes cuda_runtime.h"
#endif

#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <type_traits>

// -- runtime types and calls -------------------------------------------------------------------------------------
struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct uint3 {
    unsigned x, y, z;
};

enum cudaError_t { cudaSuccess = 0, cudaErrorInvalidValue = 1, cudaErrorInvalidConfiguration = 9 };
using cudaStream_t = struct CUstream_st*;
enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0, cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2, cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4
};

inline const char* cudaGetErrorString(cudaError_t error) {
    switch (error) {
        case cudaSuccess: return "no error";
        case cudaErrorInvalidValue: return "invalid argument";
        case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    }
    return "unknown error";
}
// Emulated calls raise at once, so there is never a pending error.
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline cudaError_t cudaPeekAtLastError() { return cudaSuccess; }
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
inline cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
inline cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t = nullptr) {
    if (bytes) std::memset(dst, value, bytes);
    return cudaSuccess;
}
inline cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind, cudaStream_t = nullptr) {
    if (bytes) std::memmove(dst, src, bytes);
    return cudaSuccess;
}
inline cudaError_t cudaMemcpy2DAsync(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t width,
                                     size_t height, cudaMemcpyKind, cudaStream_t = nullptr) {
    if (width > dst_pitch || width > src_pitch) return cudaErrorInvalidValue;
    for (size_t row = 0; row < height && width; ++row)
        std::memmove(static_cast<char*>(dst) + row * dst_pitch, static_cast<const char*>(src) + row * src_pitch, width);
    return cudaSuccess;
}

// -- qualifiers ------------------------------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __launch_bounds__(...)
#define __shared__ static thread_local

namespace dn_emu {

// One emulated CUDA thread's registers that the kernel can read.
struct ThreadState {
    uint3 idx;
    unsigned linear;   // idx.x + idx.y * blockDim.x + idx.z * blockDim.x * blockDim.y
};

// Every emulated thread runs on a stack of FIBER_STACK_BYTES aligned to its size, with its ThreadState in the top
// THREAD_STATE_BYTES: a kernel finds its threadIdx from its own frame address, without a thread-local lookup.
constexpr uintptr_t FIBER_STACK_BYTES = 256 * 1024;
constexpr uintptr_t THREAD_STATE_BYTES = 64;
__attribute__((always_inline)) inline ThreadState& this_thread() {
    const uintptr_t frame = reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
    return *reinterpret_cast<ThreadState*>((frame | (FIBER_STACK_BYTES - 1)) + 1 - THREAD_STATE_BYTES);
}

extern thread_local uint3 block_index;
extern thread_local dim3 block_dim;
extern thread_local dim3 grid_dim;

enum class WarpOp : int { sync, shfl, shfl_up, shfl_down, shfl_xor, ballot, any, all };

// Block barrier; returns the number of threads that passed a non-zero `predicate`.
int barrier(int predicate);
// One warp operation of the calling lane; returns its 64-bit result (the shuffled value's bits, or the vote).
uint64_t warp_op(WarpOp op, unsigned mask, uint64_t value, int param, int width);
// Lanes of the calling thread's warp that exist and have not finished.
unsigned active_mask();
// The dynamic shared memory of the running block (16-byte aligned).
void* dynamic_shared();
[[noreturn]] void trap();

// Threads of a block (between synchronisation points) and blocks of a grid run in increasing order, or with
// `reverse` from the last to the first: a kernel whose results change with the order has a race (a thread reading
// what another writes without a barrier between), which the tests look for by running the kernels both ways.
void set_reverse_order(bool reverse);

// Runs body() once per thread of every block of `grid` (block shape `block`), `shared_bytes` of dynamic shared
// memory per block; returns when every block has finished. `name` is used in error messages.
void run_grid(const char* name, dim3 grid, dim3 block, size_t shared_bytes, const std::function<void()>& body);

template <typename T>
inline uint64_t to_bits(T value) {
    static_assert(sizeof(T) <= 8, "warp operations move at most 64 bits");
    uint64_t bits = 0;
    std::memcpy(&bits, &value, sizeof(T));
    return bits;
}
template <typename T>
inline T from_bits(uint64_t bits) {
    T value;
    std::memcpy(&value, &bits, sizeof(T));
    return value;
}

}  // namespace dn_emu

#define threadIdx (::dn_emu::this_thread().idx)
#define blockIdx (::dn_emu::block_index)
#define blockDim (::dn_emu::block_dim)
#define gridDim (::dn_emu::grid_dim)
constexpr int warpSize = 32;

// `DN_DYNAMIC_SHARED(float, tile)` declares the block's dynamic shared memory as `float* tile` (common.cuh has the
// nvcc form).
#define DN_DYNAMIC_SHARED(type, name) type* name = static_cast<type*>(::dn_emu::dynamic_shared())

// -- synchronisation and warp intrinsics -------------------------------------------------------------------------
inline void __syncthreads() { dn_emu::barrier(0); }
inline int __syncthreads_count(int predicate) { return dn_emu::barrier(predicate != 0); }
inline int __syncthreads_or(int predicate) { return dn_emu::barrier(predicate != 0) != 0; }
inline int __syncthreads_and(int predicate) {
    return dn_emu::barrier(predicate != 0) == static_cast<int>(blockDim.x * blockDim.y * blockDim.z);
}
inline void __syncwarp(unsigned mask = 0xffffffffu) { dn_emu::warp_op(dn_emu::WarpOp::sync, mask, 0, 0, 32); }
inline unsigned __activemask() { return dn_emu::active_mask(); }
inline unsigned __ballot_sync(unsigned mask, int predicate) {
    return static_cast<unsigned>(dn_emu::warp_op(dn_emu::WarpOp::ballot, mask, predicate != 0, 0, 32));
}
inline int __any_sync(unsigned mask, int predicate) {
    return static_cast<int>(dn_emu::warp_op(dn_emu::WarpOp::any, mask, predicate != 0, 0, 32));
}
inline int __all_sync(unsigned mask, int predicate) {
    return static_cast<int>(dn_emu::warp_op(dn_emu::WarpOp::all, mask, predicate != 0, 0, 32));
}
template <typename T>
inline T __shfl_sync(unsigned mask, T value, int src_lane, int width = warpSize) {
    return dn_emu::from_bits<T>(dn_emu::warp_op(dn_emu::WarpOp::shfl, mask, dn_emu::to_bits(value), src_lane, width));
}
template <typename T>
inline T __shfl_up_sync(unsigned mask, T value, unsigned delta, int width = warpSize) {
    return dn_emu::from_bits<T>(dn_emu::warp_op(dn_emu::WarpOp::shfl_up, mask, dn_emu::to_bits(value),
                                                static_cast<int>(delta), width));
}
template <typename T>
inline T __shfl_down_sync(unsigned mask, T value, unsigned delta, int width = warpSize) {
    return dn_emu::from_bits<T>(dn_emu::warp_op(dn_emu::WarpOp::shfl_down, mask, dn_emu::to_bits(value),
                                                static_cast<int>(delta), width));
}
template <typename T>
inline T __shfl_xor_sync(unsigned mask, T value, int lane_mask, int width = warpSize) {
    return dn_emu::from_bits<T>(dn_emu::warp_op(dn_emu::WarpOp::shfl_xor, mask, dn_emu::to_bits(value), lane_mask,
                                                width));
}
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }
[[noreturn]] inline void __trap() { dn_emu::trap(); }

// -- atomics (blocks run on several OS threads: these are real atomics) --------------------------------------------
template <typename T, typename F>
inline T dn_emu_atomic_update(T* address, F update) {
    static_assert(sizeof(T) == 4 || sizeof(T) == 8, "atomics on 32- or 64-bit values");
    using Bits = typename std::conditional<sizeof(T) == 4, uint32_t, uint64_t>::type;
    Bits* bits = reinterpret_cast<Bits*>(address);
    Bits expected = __atomic_load_n(bits, __ATOMIC_RELAXED);
    while (true) {
        T old;
        std::memcpy(&old, &expected, sizeof(T));
        const T desired_value = update(old);
        Bits desired;
        std::memcpy(&desired, &desired_value, sizeof(T));
        if (__atomic_compare_exchange_n(bits, &expected, desired, true, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) return old;
    }
}
inline float atomicAdd(float* a, float v) { return dn_emu_atomic_update(a, [v](float old) { return old + v; }); }
inline double atomicAdd(double* a, double v) { return dn_emu_atomic_update(a, [v](double old) { return old + v; }); }
inline int atomicAdd(int* a, int v) { return __atomic_fetch_add(a, v, __ATOMIC_SEQ_CST); }
inline unsigned atomicAdd(unsigned* a, unsigned v) { return __atomic_fetch_add(a, v, __ATOMIC_SEQ_CST); }
inline unsigned long long atomicAdd(unsigned long long* a, unsigned long long v) {
    return __atomic_fetch_add(a, v, __ATOMIC_SEQ_CST);
}
inline int atomicSub(int* a, int v) { return __atomic_fetch_sub(a, v, __ATOMIC_SEQ_CST); }
inline unsigned atomicSub(unsigned* a, unsigned v) { return __atomic_fetch_sub(a, v, __ATOMIC_SEQ_CST); }
inline int atomicExch(int* a, int v) { return __atomic_exchange_n(a, v, __ATOMIC_SEQ_CST); }
inline unsigned atomicExch(unsigned* a, unsigned v) { return __atomic_exchange_n(a, v, __ATOMIC_SEQ_CST); }
inline float atomicExch(float* a, float v) { return dn_emu_atomic_update(a, [v](float) { return v; }); }
inline int atomicMax(int* a, int v) { return dn_emu_atomic_update(a, [v](int old) { return old > v ? old : v; }); }
inline unsigned atomicMax(unsigned* a, unsigned v) {
    return dn_emu_atomic_update(a, [v](unsigned old) { return old > v ? old : v; });
}
inline int atomicMin(int* a, int v) { return dn_emu_atomic_update(a, [v](int old) { return old < v ? old : v; }); }
inline unsigned atomicMin(unsigned* a, unsigned v) {
    return dn_emu_atomic_update(a, [v](unsigned old) { return old < v ? old : v; });
}
template <typename T>
inline T dn_emu_atomic_cas(T* a, T compare, T value) {
    __atomic_compare_exchange_n(a, &compare, value, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    return compare;   // the old value either way
}
inline int atomicCAS(int* a, int compare, int value) { return dn_emu_atomic_cas(a, compare, value); }
inline unsigned atomicCAS(unsigned* a, unsigned compare, unsigned value) { return dn_emu_atomic_cas(a, compare, value); }
inline unsigned long long atomicCAS(unsigned long long* a, unsigned long long compare, unsigned long long value) {
    return dn_emu_atomic_cas(a, compare, value);
}

// -- math intrinsics: the library functions (exact where CUDA's are approximate) -----------------------------------
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __powf(float x, float y) { return powf(x, y); }
inline float __fdividef(float x, float y) { return x / y; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return sqrtf(x); }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline int __float_as_int(float x) { return dn_emu::from_bits<int>(dn_emu::to_bits(x)); }
inline unsigned __float_as_uint(float x) { return dn_emu::from_bits<unsigned>(dn_emu::to_bits(x)); }
inline float __int_as_float(int x) { return dn_emu::from_bits<float>(dn_emu::to_bits(x)); }
inline float __uint_as_float(unsigned x) { return dn_emu::from_bits<float>(dn_emu::to_bits(x)); }
inline int __float2int_rn(float x) { return static_cast<int>(nearbyintf(x)); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(static_cast<unsigned>(x)); }
inline int __ffs(int x) { return __builtin_ffs(x); }
template <typename T>
inline T __ldg(const T* p) { return *p; }

// CUDA's min/max overloads for device code (same-type arguments)
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline long min(long a, long b) { return a < b ? a : b; }
inline long max(long a, long b) { return a > b ? a : b; }
inline unsigned long long min(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
inline unsigned long long max(unsigned long long a, unsigned long long b) { return a > b ? a : b; }
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }
