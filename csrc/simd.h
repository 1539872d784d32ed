// Vectorized kernels, one build for every x86-64 CPU (no -march=native):
// - DARKNET_PY_SIMD_CLONES: function multiversioning (ELF ifunc) for plain loops the compiler vectorizes: the
//   function is compiled for AVX-512, AVX2 and the baseline, and the loader picks the best the CPU has.
// - simd_run<Kernel>(args...): for kernels written with explicit vectors (GCC vector extensions), which need the
//   native width of each instruction set (a 16-float vector compiled for AVX2 is split through the stack):
//   Kernel::run<V> is instantiated with V = 16 floats under AVX-512, 8 under AVX2+FMA, 4 on the baseline, and the
//   widest the CPU has runs, capped by DARKNET_PY_SIMD_ISA=avx2|baseline (the tests check every variant on one
//   machine that way; other values are ignored).
// Elsewhere (not x86-64 GCC/Clang) everything is compiled once, for the baseline.
#pragma once
#include <cstdint>
#include <cstring>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && defined(__ELF__)
#define DARKNET_PY_X86_MULTIVERSION 1
#else
#define DARKNET_PY_X86_MULTIVERSION 0
#endif

#if DARKNET_PY_X86_MULTIVERSION
#define DARKNET_PY_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define DARKNET_PY_SIMD_CLONES
#endif

// For helpers called inside the vectorized loops: always inlined, since GCC's inlining budget would otherwise
// leave scalar calls in loops that use many of them (and an explicit-vector helper must be compiled inside its
// caller's instruction set).
#define DARKNET_PY_INLINE inline __attribute__((always_inline))

namespace darknet_py {

typedef float Vec16 __attribute__((vector_size(64)));
typedef float Vec8 __attribute__((vector_size(32)));
typedef float Vec4 __attribute__((vector_size(16)));

typedef int32_t Int16 __attribute__((vector_size(64)));
typedef int32_t Int8 __attribute__((vector_size(32)));
typedef int32_t Int4 __attribute__((vector_size(16)));

// Code written once for a float and for each vector type V (math on V works lane by lane; a comparison gives a
// mask of the lanes' int type, and `mask ? a : b` picks lane by lane): lanes<V>() floats, IntOf<V> their ints.
template <class V>
constexpr int64_t lanes() { return sizeof(V) / sizeof(float); }

template <class V> struct IntOfT { using type = int32_t; };
template <> struct IntOfT<Vec16> { using type = Int16; };
template <> struct IntOfT<Vec8> { using type = Int8; };
template <> struct IntOfT<Vec4> { using type = Int4; };
template <class V> using IntOf = typename IntOfT<V>::type;

// c in every lane
template <class V>
DARKNET_PY_INLINE V splat(float c) {
    if constexpr (lanes<V>() == 1) {
        return c;
    } else {
        return V{} + c;
    }
}

// Truncation toward zero to int32 (the float's value must fit)
template <class V>
DARKNET_PY_INLINE IntOf<V> to_int(V x) {
    if constexpr (lanes<V>() == 1) {
        return static_cast<int32_t>(x);
    } else {
        return __builtin_convertvector(x, IntOf<V>);
    }
}

// The floats whose bits are `bits`
template <class V>
DARKNET_PY_INLINE V from_bits(IntOf<V> bits) {
    V v;
    std::memcpy(&v, &bits, sizeof v);
    return v;
}

// Unaligned vector load and store (memcpy: no alignment or aliasing question; one instruction each).
template <class V>
DARKNET_PY_INLINE V load(const float* p) {
    V v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

template <class V>
DARKNET_PY_INLINE void store(float* p, V v) { std::memcpy(p, &v, sizeof v); }

// 0: baseline, 1: AVX2+FMA, 2: AVX-512: the widest the CPU has within DARKNET_PY_SIMD_ISA's cap.
int simd_level();
// Its name, "baseline", "avx2" or "avx512f".
const char* simd_isa();

#if DARKNET_PY_X86_MULTIVERSION
template <class Kernel, class... Args>
__attribute__((target("avx512f,avx2,fma"))) void run_avx512(Args... args) {
    Kernel::template run<Vec16>(args...);
}

template <class Kernel, class... Args>
__attribute__((target("avx2,fma"))) void run_avx2(Args... args) {
    Kernel::template run<Vec8>(args...);
}
#endif

template <class Kernel, class... Args>
void run_baseline(Args... args) {
    Kernel::template run<Vec4>(args...);
}

// Kernel::run<V>(args...) (a DARKNET_PY_INLINE static member template) in the widest variant simd_level() allows.
template <class Kernel, class... Args>
void simd_run(Args... args) {
#if DARKNET_PY_X86_MULTIVERSION
    const int level = simd_level();
    if (level >= 2) return run_avx512<Kernel>(args...);
    if (level == 1) return run_avx2<Kernel>(args...);
#endif
    run_baseline<Kernel>(args...);
}

}  // namespace darknet_py
