// Activations of the detection heads (heads.cu): [yolo] and [Gaussian_yolo] (logistic on chosen values of each
// anchor, then x*alpha + beta on x and y: scale_x_y) and [region] (logistic on the objectness of its transposed
// rows; its class softmax is softmax_rows). The heads' losses are computed on the host, as darknet does.
#pragma once
#include <cstdint>

#include "runtime.h"

namespace darknet_py {
namespace cuda {

// Which values of an anchor a map applies to: value v when v >= from, or when bit v of `bits` is set (v < 32).
struct ValueSet {
    uint32_t bits;
    int64_t from;
};

// Where the values lie: `values` values per anchor, each a run of `inner` consecutive elements (h*w for the planes
// of [yolo], 1 for [region]'s transposed rows): element i holds value i / inner % values.
struct HeadLayout {
    int64_t n, values, inner;
};

// y = v*alpha + beta with v = logistic(x) on `logistic` values, else x; the affine map only on `scaled` values.
// y may be x.
void head_activate(const float* x, float* y, HeadLayout layout, ValueSet logistic, ValueSet scaled, float alpha,
                   float beta, cudaStream_t stream);

// dx = dy * (alpha on `scaled` values) * (logistic'(x) on `logistic` values), x the head's input. dx may be dy.
void head_activate_backward(const float* x, const float* dy, float* dx, HeadLayout layout, ValueSet logistic,
                            ValueSet scaled, float alpha, cudaStream_t stream);

}  // namespace cuda
}  // namespace darknet_py
