#include "simd.h"

#include <cstdlib>
#include <string>

namespace darknet_py {

namespace {

int pick_level() {
    const char* wanted = std::getenv("DARKNET_PY_SIMD_ISA");
    const std::string cap = wanted ? wanted : "";
    const int limit = cap == "baseline" ? 0 : cap == "avx2" ? 1 : 2;
#if DARKNET_PY_X86_MULTIVERSION
    __builtin_cpu_init();
    if (limit >= 2 && __builtin_cpu_supports("avx512f")) return 2;
    if (limit >= 1 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 1;
#endif
    return 0;
}

}  // namespace

int simd_level() {
    static const int level = pick_level();
    return level;
}

const char* simd_isa() {
    static const char* const names[] = {"baseline", "avx2", "avx512f"};
    return names[simd_level()];
}

}  // namespace darknet_py
