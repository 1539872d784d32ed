#include "activations.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "parallel.h"
#include "simd.h"

namespace darknet_py {

namespace {

// The activations are written once for a float and for a vector V of floats (simd.h: lane by lane, `mask ? a :
// b` selects), and run with explicit native vectors (simd_run): left to the auto-vectorizer, the exp-based ones
// stayed scalar in the AVX2 and baseline variants. Everything is DARKNET_PY_INLINE: inlined into the plane loops.

template <class V>
DARKNET_PY_INLINE V maximum(V a, V b) { return a < b ? b : a; }    // std::max's choice, NaN a kept

template <class V>
DARKNET_PY_INLINE V minimum(V a, V b) { return b < a ? b : a; }    // std::min's

// exp(x) for float32, branch-free: Cody-Waite reduction x = n*ln2 + r and Cephes' expf polynomial on
// |r| <= ln2/2 (about 1 ulp), then 2^n through the exponent bits. The input is clamped to [-87, 88], where 2^n
// stays a normal float; the activations below only need it there.
template <class V>
DARKNET_PY_INLINE V exp_fast(V x) {
    x = minimum(maximum(x, splat<V>(-87.0f)), splat<V>(88.0f));
    // n = round(x / ln2): adding 1.5 * 2^23 leaves no fraction bits in a float32 (no floor, which SSE2 lacks)
    const V n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    V r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    V p = splat<V>(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    const V e = p * r * r + r + 1.0f;
    return e * from_bits<V>((to_int(n) + 127) << 23);
}

template <class V>
DARKNET_PY_INLINE V sigmoid(V x) { return 1.0f / (1.0f + exp_fast(-x)); }

// tanh(x) = sign(x) (1 - e^-2|x|) / (1 + e^-2|x|)
template <class V>
DARKNET_PY_INLINE V tanh_fast(V x) {
    const V t = exp_fast(-2.0f * (x < 0.0f ? -x : x));
    const V v = (1.0f - t) / (1.0f + t);
    return x < 0.0f ? -v : v;
}

DARKNET_PY_INLINE float stair(float x) {
    const float n = std::floor(x), half = std::floor(x / 2);
    return std::fmod(n, 2.0f) == 0 ? half : (x - n) + half;
}

// The activation at one point (or lane by lane), with darknet's formulas and constants (activations.py lists them).
template <Activation A, class V>
DARKNET_PY_INLINE V activate(V x) {
    const V zero = splat<V>(0.0f);
    switch (A) {
        case Activation::linear: return x;
        case Activation::logistic: return sigmoid(x);
        case Activation::loggy: return 2.0f * sigmoid(x) - 1.0f;
        case Activation::tanh: return tanh_fast(x);
        case Activation::relu: return x > 0.0f ? x : zero;
        case Activation::relu6: return minimum(maximum(x, zero), splat<V>(6.0f));
        case Activation::leaky: return x > 0.0f ? x : 0.1f * x;
        case Activation::relie: return x > 0.0f ? x : 0.01f * x;
        case Activation::ramp: return (x > 0.0f ? x : zero) + 0.1f * x;
        case Activation::elu: {
            const V e = exp_fast(minimum(x, zero)) - 1.0f;
            return x >= 0.0f ? x : e;
        }
        case Activation::selu: {
            const V e = 1.0507f * 1.6732f * (exp_fast(minimum(x, zero)) - 1.0f);
            return x >= 0.0f ? 1.0507f * x : e;
        }
        // .5x(1 + tanh(u)) = x * sigmoid(2u)
        case Activation::gelu: return x * sigmoid(2.0f * (0.797885f * x + 0.035677f * x * x * x));
        case Activation::plse:
            return x < -4.0f ? 0.01f * (x + 4.0f) : (x > 4.0f ? 0.01f * (x - 4.0f) + 1.0f : 0.125f * x + 0.5f);
        case Activation::hardtan: return minimum(maximum(x, splat<V>(-1.0f)), splat<V>(1.0f));
        case Activation::lhtan: return x < 0.0f ? 0.001f * x : (x > 1.0f ? 0.001f * (x - 1.0f) + 1.0f : x);
        case Activation::stair:   // floor and fmod have no vector form here: lane by lane
            if constexpr (lanes<V>() == 1) {
                return stair(x);
            } else {
                V y;
                for (int64_t i = 0; i < lanes<V>(); ++i) y[i] = stair(x[i]);
                return y;
            }
        case Activation::swish: return x * sigmoid(x);
        // tanh(log(1 + e^x)) = e^x (e^x + 2) / (e^x (e^x + 2) + 2); darknet's softplus is x itself above 20
        case Activation::mish: {
            const V e = exp_fast(minimum(x, splat<V>(20.0f))), q = e * (e + 2.0f);
            return x > 20.0f ? x : x * q / (q + 2.0f);
        }
        case Activation::hard_mish: return x > 0.0f ? x : (x > -2.0f ? 0.5f * x * x + x : zero);
    }
    return x;
}

// One scale or shift for every value (EACH false: p points at it) or one per value (EACH true: p[i]), as a float or
// as the vector of lanes i, i+1, ...
template <class V, bool EACH>
DARKNET_PY_INLINE V coefficient(const float* p, int64_t i) {
    if constexpr (EACH) {
        return load<V>(p + i);
    } else {
        return splat<V>(*p);
    }
}

// y[i] = act(x[i] * scale + shift) (y may be x), the coefficients per value or shared (coefficient): whole
// vectors, then the last values one by one.
template <Activation A, bool EACH>
struct AffineRun {
    template <class V>
    static DARKNET_PY_INLINE void run(const float* x, float* y, int64_t n, const float* scale, const float* shift) {
        // shared coefficients read once: y may alias them, so the compiler would reload them every vector
        float one_scale = 0.0f, one_shift = 0.0f;
        if constexpr (!EACH) {
            one_scale = *scale, one_shift = *shift;
            scale = &one_scale, shift = &one_shift;
        }
        int64_t i = 0;
        for (; i + lanes<V>() <= n; i += lanes<V>())
            store(y + i, activate<A>(load<V>(x + i) * coefficient<V, EACH>(scale, i) + coefficient<V, EACH>(shift, i)));
        for (; i < n; ++i)
            y[i] = activate<A>(x[i] * coefficient<float, EACH>(scale, i) + coefficient<float, EACH>(shift, i));
    }
};

// affine_activate_interleaved: with vectors of `width` lanes, the coefficients are one vector each
template <Activation A>
struct AffineInterleaved {
    template <class V>
    static DARKNET_PY_INLINE void run(float* x, int64_t n, int64_t width, const float* scale, const float* shift) {
        int64_t i = 0;
        if (lanes<V>() == width) {
            const V s = load<V>(scale), b = load<V>(shift);
            for (; i + lanes<V>() <= n; i += lanes<V>()) store(x + i, activate<A>(load<V>(x + i) * s + b));
        }
        for (; i < n; ++i) x[i] = activate<A>(x[i] * scale[i % width] + shift[i % width]);
    }
};

// simd_run<Kernel<act>>(args...): the kernel instantiated for each activation, picked at run time.
template <template <Activation> class Kernel, class... Args>
void for_activation(Activation act, Args... args) {
    switch (act) {
#define DARKNET_PY_CASE(A) \
    case Activation::A: simd_run<Kernel<Activation::A>>(args...); break;
        DARKNET_PY_CASE(linear) DARKNET_PY_CASE(logistic) DARKNET_PY_CASE(loggy) DARKNET_PY_CASE(tanh)
        DARKNET_PY_CASE(relu) DARKNET_PY_CASE(relu6) DARKNET_PY_CASE(leaky) DARKNET_PY_CASE(relie)
        DARKNET_PY_CASE(ramp) DARKNET_PY_CASE(elu) DARKNET_PY_CASE(selu) DARKNET_PY_CASE(gelu)
        DARKNET_PY_CASE(plse) DARKNET_PY_CASE(hardtan) DARKNET_PY_CASE(lhtan) DARKNET_PY_CASE(stair)
        DARKNET_PY_CASE(swish) DARKNET_PY_CASE(mish) DARKNET_PY_CASE(hard_mish)
#undef DARKNET_PY_CASE
    }
}

template <Activation A> using AffineShared = AffineRun<A, false>;
template <Activation A> using AffineEach = AffineRun<A, true>;

struct Named { const char* name; Activation act; };
const Named NAMES[] = {
    {"linear", Activation::linear}, {"logistic", Activation::logistic}, {"loggy", Activation::loggy},
    {"tanh", Activation::tanh}, {"relu", Activation::relu}, {"relu6", Activation::relu6},
    {"leaky", Activation::leaky}, {"revleaky", Activation::leaky}, {"relie", Activation::relie},
    {"ramp", Activation::ramp}, {"elu", Activation::elu}, {"selu", Activation::selu}, {"gelu", Activation::gelu},
    {"plse", Activation::plse}, {"hardtan", Activation::hardtan}, {"lhtan", Activation::lhtan},
    {"stair", Activation::stair}, {"swish", Activation::swish}, {"mish", Activation::mish},
    {"hard_mish", Activation::hard_mish},
};

}  // namespace

bool activation_from_name(const std::string& name, Activation* act) {
    for (const Named& entry : NAMES) {
        if (name == entry.name) {
            *act = entry.act;
            return true;
        }
    }
    return false;
}

std::vector<std::string> activation_names() {
    std::vector<std::string> names;
    for (const Named& entry : NAMES) names.emplace_back(entry.name);
    return names;
}

void affine_activate_copy(const float* x, float* y, int64_t n, float scale, float shift, Activation act) {
    for_activation<AffineShared>(act, x, y, n, &scale, &shift);
}

void affine_activate_each(const float* x, float* y, int64_t n, const float* scale, const float* shift,
                          Activation act) {
    for_activation<AffineEach>(act, x, y, n, scale, shift);
}

void affine_activate_interleaved(float* x, int64_t n, int64_t width, const float* scale, const float* shift,
                                 Activation act) {
    for_activation<AffineInterleaved>(act, x, n, width, scale, shift);
}

void affine_activate_plane(float* x, int64_t n, float scale, float shift, Activation act) {
    affine_activate_copy(x, x, n, scale, shift, act);
}

void fold_batchnorm(const float* scales, const float* biases, const float* mean, const float* variance, int64_t n,
                    float* scale, float* shift) {
    for (int64_t i = 0; i < n; ++i) {
        const double a = double(scales[i]) / std::sqrt(double(variance[i]) + .00001);
        scale[i] = float(a);
        shift[i] = float(double(biases[i]) - double(mean[i]) * a);
    }
}

void affine_activate(const float* x, float* y, int64_t planes, int64_t channels, int64_t spatial, const float* scale,
                     const float* shift, Activation act) {
    parallel_for(planes, [&](int64_t begin, int64_t end) {
        for (int64_t p = begin; p < end; ++p) {
            const int64_t c = p % channels;
            affine_activate_copy(x + p * spatial, y + p * spatial, spatial, scale ? scale[c] : 1.0f, shift[c], act);
        }
    }, 1 + 16384 / std::max<int64_t>(1, spatial));
}

}  // namespace darknet_py
