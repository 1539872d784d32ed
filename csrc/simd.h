// Function multiversioning for the vectorized kernels: on x86-64 with GCC or Clang (ELF ifunc), a function marked
// DARKNET_PY_SIMD_CLONES is compiled for AVX-512, AVX2 and the baseline, and the loader picks the best the CPU
// has, so one build runs everywhere (no -march=native). Elsewhere it is compiled once, for the baseline.
#pragma once

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && defined(__ELF__)
#define DARKNET_PY_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define DARKNET_PY_SIMD_CLONES
#endif

// For helpers called inside the vectorized loops: always inlined, since GCC's inlining budget would otherwise
// leave scalar calls in loops that use many of them.
#define DARKNET_PY_INLINE inline __attribute__((always_inline))
