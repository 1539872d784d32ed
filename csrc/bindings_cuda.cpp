// pybind11 module of the CUDA engine's kernels, compiled twice from the same kernel sources: darknet_py._cuda (nvcc,
// device pointers from CuPy arrays, CuPy's stream) and darknet_py._cuda_emu (the host compiler with
// cuda/emulation.h: NumPy arrays' addresses, the kernels run on the CPU). Every entry point takes addresses as
// integers (0 for an optional array left out) and the stream last. Shapes are checked by darknet_py/cuda_backend.py.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "cuda/activations.h"
#include "cuda/blas.h"
#include "cuda/runtime.h"
#include "cuda/selftest.h"
// convolution (area headers, one per line):
#include "cuda/conv.h"
#include "cuda/depthwise.h"
// batch normalization:
#include "cuda/batchnorm.h"
// pooling, resampling, routing:
#include "cuda/pooling.h"
#include "cuda/resample.h"
#include "cuda/route.h"
// heads, losses, optimizer:
#include "cuda/cost.h"
#include "cuda/dropout.h"
#include "cuda/heads.h"
#include "cuda/optimizer.h"
#include "cuda/softmax.h"

namespace py = pybind11;
namespace cu = darknet_py::cuda;
using darknet_py::Activation;

#if defined(DN_CUDA_EMULATION)
#define DN_MODULE_NAME _cuda_emu
constexpr bool EMULATED = true;
#else
#define DN_MODULE_NAME _cuda
constexpr bool EMULATED = false;
#endif

namespace {

template <typename T = float>
T* address(uintptr_t value) {
    return reinterpret_cast<T*>(value);
}

Activation activation_named(const std::string& name) {
    Activation act;
    if (!darknet_py::activation_from_name(name, &act))
        throw py::value_error("activation '" + name + "' has no elementwise CUDA kernel");
    return act;
}

cu::ChannelNorm channel_norm_named(const std::string& name) {
    if (name == "normalize_channels") return cu::ChannelNorm::positive;
    if (name == "normalize_channels_softmax") return cu::ChannelNorm::softmax;
    if (name == "normalize_channels_softmax_maxval") return cu::ChannelNorm::softmax_maxval;
    throw py::value_error("'" + name + "' is not a normalize_channels activation");
}

cu::CostType cost_named(const std::string& name) {
    if (name == "sse") return cu::CostType::sse;
    if (name == "masked") return cu::CostType::masked;
    if (name == "smooth") return cu::CostType::smooth;
    throw py::value_error("cost type '" + name + "': expected sse, masked or smooth");
}

}  // namespace

PYBIND11_MODULE(DN_MODULE_NAME, m) {
    m.doc() = EMULATED ? "darknet_py CUDA kernels run on the CPU (cuda/emulation.h)" : "darknet_py CUDA kernels";
    m.attr("emulated") = EMULATED;
#if defined(DN_CUDA_EMULATION)
    // DARKNET_PY_EMU_ORDER=reverse: threads and blocks from the last to the first (cuda/emulation.h), for race tests
    const char* order = std::getenv("DARKNET_PY_EMU_ORDER");
    dn_emu::set_reverse_order(order && std::string(order) == "reverse");
    m.def("set_thread_order", [](const std::string& order) {
        if (order != "forward" && order != "reverse")
            throw py::value_error("thread order: expected forward or reverse; got '" + order + "'");
        dn_emu::set_reverse_order(order == "reverse");
    }, "run the threads of each block and the blocks of each grid first to last (forward) or last to first");
#endif
    m.def("device_count", [] {
#if defined(DN_CUDA_EMULATION)
        return 1;
#else
        int count = 0;
        if (cudaGetDeviceCount(&count) != cudaSuccess) {
            cudaGetLastError();   // no driver or no device: zero, not an error
            return 0;
        }
        return count;
#endif
    });
    m.def("driver_version", [] {
#if defined(DN_CUDA_EMULATION)
        return 0;
#else
        int version = 0;
        if (cudaDriverGetVersion(&version) != cudaSuccess) cudaGetLastError();
        return version;
#endif
    }, "the CUDA driver's version (0: no driver)");

    // -- self-test kernels (cuda/selftest.cu) --
    m.def("selftest", [](const std::string& name, uintptr_t x, int64_t n, uintptr_t out, unsigned blocks,
                         unsigned threads, uintptr_t stream) {
        cu::selftest(name, address(x), n, address(out), blocks, threads, cu::as_stream(stream));
    });

    // -- activations (cuda/activations.cu) --
    m.def("affine_activate", [](uintptr_t x, uintptr_t y, int64_t planes, int64_t channels, int64_t spatial,
                                uintptr_t scale, uintptr_t shift, const std::string& act, uintptr_t stream) {
        cu::affine_activate(address(x), address(y), planes, channels, spatial, address(scale), address(shift),
                            activation_named(act), cu::as_stream(stream));
    });
    m.def("activate_backward", [](uintptr_t x, uintptr_t dy, uintptr_t dx, int64_t n, const std::string& act,
                                  uintptr_t stream) {
        cu::activate_backward(address(x), address(dy), address(dx), n, activation_named(act), cu::as_stream(stream));
    });
    m.def("normalize_channels", [](uintptr_t x, uintptr_t y, int64_t batch, int64_t channels, int64_t spatial,
                                   const std::string& kind, uintptr_t stream) {
        cu::normalize_channels(address(x), address(y), batch, channels, spatial, channel_norm_named(kind),
                               cu::as_stream(stream));
    });
    m.def("normalize_channels_backward", [](uintptr_t x, uintptr_t dy, uintptr_t dx, int64_t batch, int64_t channels,
                                            int64_t spatial, const std::string& kind, uintptr_t stream) {
        cu::normalize_channels_backward(address(x), address(dy), address(dx), batch, channels, spatial,
                                        channel_norm_named(kind), cu::as_stream(stream));
    });

    // -- GEMM (cuda/blas.cpp) --
    m.def("blas_init", &cu::blas_init, py::arg("libraries"));
    m.def("blas_set_tf32", &cu::blas_set_tf32);
    m.def("blas_set_workspace", [](uintptr_t workspace, size_t bytes) {
        cu::blas_set_workspace(address<void>(workspace), bytes);
    });
    m.def("gemm", [](bool trans_a, bool trans_b, int64_t m_, int64_t n, int64_t k, float alpha, uintptr_t a,
                     int64_t lda, int64_t stride_a, uintptr_t b, int64_t ldb, int64_t stride_b, float beta,
                     uintptr_t c, int64_t ldc, int64_t stride_c, int64_t batch, uintptr_t stream) {
        cu::gemm_strided_batched(trans_a, trans_b, m_, n, k, alpha, address(a), lda, stride_a, address(b), ldb,
                                 stride_b, beta, address(c), ldc, stride_c, batch, cu::as_stream(stream));
    });

    // -- convolution: im2col/col2im, depthwise and grouped kernels --
    // module_local: _cuda and _cuda_emu both bind this type and may be imported together
    py::class_<cu::ConvShape>(m, "ConvShape", py::module_local())
        .def(py::init([](int64_t channels, int64_t height, int64_t width, int64_t filters, int64_t groups,
                         int64_t size, int64_t stride_x, int64_t stride_y, int64_t dilation, int64_t offset,
                         int64_t out_h, int64_t out_w) {
                 return cu::ConvShape{channels, height, width, filters, groups, size, stride_x, stride_y, dilation,
                                      offset, out_h, out_w};
             }),
             py::arg("channels"), py::arg("height"), py::arg("width"), py::arg("filters"), py::arg("groups"),
             py::arg("size"), py::arg("stride_x"), py::arg("stride_y"), py::arg("dilation"), py::arg("offset"),
             py::arg("out_h"), py::arg("out_w"));
    m.def("im2col", [](uintptr_t x, int64_t images, const cu::ConvShape& s, uintptr_t cols, uintptr_t stream) {
        cu::im2col(address(x), images, s, address(cols), cu::as_stream(stream));
    });
    m.def("col2im", [](uintptr_t cols, int64_t images, const cu::ConvShape& s, uintptr_t dx, uintptr_t stream) {
        cu::col2im(address(cols), images, s, address(dx), cu::as_stream(stream));
    });
    m.def("swap_leading_axes", [](uintptr_t in, uintptr_t out, int64_t outer, int64_t inner, int64_t n,
                                  uintptr_t stream) {
        cu::swap_leading_axes(address(in), address(out), outer, inner, n, cu::as_stream(stream));
    });
    m.def("grouped_conv_fits", &cu::grouped_conv_fits);
    m.def("grouped_conv_forward", [](uintptr_t x, uintptr_t w, uintptr_t scale, uintptr_t shift, const std::string& act,
                                     uintptr_t out, int64_t images, const cu::ConvShape& s, uintptr_t stream) {
        cu::grouped_conv_forward(address(x), address(w), address(scale), address(shift), activation_named(act),
                                 address(out), images, s, cu::as_stream(stream));
    });
    m.def("grouped_conv_dgrad", [](uintptr_t dy, uintptr_t w, uintptr_t dx, int64_t images, const cu::ConvShape& s,
                                   uintptr_t stream) {
        cu::grouped_conv_dgrad(address(dy), address(w), address(dx), images, s, cu::as_stream(stream));
    });
    m.def("grouped_conv_wgrad_partials", &cu::grouped_conv_wgrad_partials);
    m.def("grouped_conv_wgrad", [](uintptr_t x, uintptr_t dy, uintptr_t partials, uintptr_t dw, int64_t images,
                                   const cu::ConvShape& s, uintptr_t stream) {
        cu::grouped_conv_wgrad(address(x), address(dy), address(partials), address(dw), images, s,
                               cu::as_stream(stream));
    });

    // -- batch normalization (cuda/batchnorm.cu) --
    m.def("batchnorm_workspace_floats", &cu::batchnorm_workspace_floats);
    m.def("batchnorm_statistics", [](uintptr_t x, int64_t batch, int64_t channels, int64_t spatial, float momentum,
                                     uintptr_t mean, uintptr_t inv_std, uintptr_t rolling_mean,
                                     uintptr_t rolling_variance, uintptr_t workspace, uintptr_t stream) {
        cu::batchnorm_statistics(address(x), batch, channels, spatial, momentum, address(mean), address(inv_std),
                                 address(rolling_mean), address(rolling_variance), address(workspace),
                                 cu::as_stream(stream));
    });
    m.def("batchnorm_inverse_std", [](uintptr_t variance, uintptr_t inv_std, int64_t channels, uintptr_t stream) {
        cu::batchnorm_inverse_std(address(variance), address(inv_std), channels, cu::as_stream(stream));
    });
    m.def("batchnorm_normalize", [](uintptr_t x, uintptr_t y, int64_t batch, int64_t channels, int64_t spatial,
                                    uintptr_t mean, uintptr_t inv_std, uintptr_t scale, uintptr_t bias,
                                    const std::string& act, uintptr_t stream) {
        cu::batchnorm_normalize(address(x), address(y), batch, channels, spatial, address(mean), address(inv_std),
                                address(scale), address(bias), activation_named(act), cu::as_stream(stream));
    });
    m.def("batchnorm_backward", [](uintptr_t dy, uintptr_t x, int64_t batch, int64_t channels, int64_t spatial,
                                   uintptr_t mean, uintptr_t inv_std, uintptr_t scale, uintptr_t bias,
                                   const std::string& act, bool train, uintptr_t dx, uintptr_t dscale, uintptr_t dbias,
                                   uintptr_t workspace, uintptr_t stream) {
        cu::batchnorm_backward(address(dy), address(x), batch, channels, spatial, address(mean), address(inv_std),
                               address(scale), address(bias), activation_named(act), train, address(dx),
                               address(dscale), address(dbias), address(workspace), cu::as_stream(stream));
    });
    m.def("channel_sum", [](uintptr_t x, int64_t batch, int64_t channels, int64_t spatial, uintptr_t sums,
                            uintptr_t workspace, uintptr_t stream) {
        cu::channel_sum(address(x), batch, channels, spatial, address(sums), address(workspace), cu::as_stream(stream));
    });

    // -- pooling, resampling, routing, shortcut --
    auto windows = [](int64_t planes, int64_t h, int64_t w, int64_t out_h, int64_t out_w, int64_t size,
                      int64_t stride_x, int64_t stride_y, int64_t offset) {
        return cu::PoolWindows{planes, h, w, out_h, out_w, size, stride_x, stride_y, offset};
    };
    m.def("maxpool", [windows](uintptr_t x, uintptr_t out, uintptr_t argmax, int64_t planes, int64_t h, int64_t w,
                               int64_t out_h, int64_t out_w, int64_t size, int64_t stride_x, int64_t stride_y,
                               int64_t offset, uintptr_t stream) {
        cu::maxpool(address(x), address(out), address<int32_t>(argmax),
                    windows(planes, h, w, out_h, out_w, size, stride_x, stride_y, offset), cu::as_stream(stream));
    });
    m.def("maxpool_backward", [windows](uintptr_t dy, uintptr_t argmax, uintptr_t dx, int64_t planes, int64_t h,
                                        int64_t w, int64_t out_h, int64_t out_w, int64_t size, int64_t stride_x,
                                        int64_t stride_y, int64_t offset, uintptr_t stream) {
        cu::maxpool_backward(address(dy), address<int32_t>(argmax), address(dx),
                             windows(planes, h, w, out_h, out_w, size, stride_x, stride_y, offset),
                             cu::as_stream(stream));
    });
    m.def("maxpool_depth", [](uintptr_t x, uintptr_t out, uintptr_t argmax, int64_t batch, int64_t channels,
                              int64_t out_channels, int64_t spatial, uintptr_t stream) {
        cu::maxpool_depth(address(x), address(out), address<int32_t>(argmax), batch, channels, out_channels, spatial,
                          cu::as_stream(stream));
    });
    m.def("maxpool_depth_backward", [](uintptr_t dy, uintptr_t argmax, uintptr_t dx, int64_t batch, int64_t channels,
                                       int64_t out_channels, int64_t spatial, uintptr_t stream) {
        cu::maxpool_depth_backward(address(dy), address<int32_t>(argmax), address(dx), batch, channels, out_channels,
                                   spatial, cu::as_stream(stream));
    });
    m.def("local_avgpool", [windows](uintptr_t x, uintptr_t out, int64_t planes, int64_t h, int64_t w, int64_t out_h,
                                     int64_t out_w, int64_t size, int64_t stride_x, int64_t stride_y, int64_t offset,
                                     uintptr_t stream) {
        cu::local_avgpool(address(x), address(out), windows(planes, h, w, out_h, out_w, size, stride_x, stride_y,
                                                            offset), cu::as_stream(stream));
    });
    m.def("local_avgpool_backward", [windows](uintptr_t dy, uintptr_t dx, int64_t planes, int64_t h, int64_t w,
                                              int64_t out_h, int64_t out_w, int64_t size, int64_t stride_x,
                                              int64_t stride_y, int64_t offset, uintptr_t stream) {
        cu::local_avgpool_backward(address(dy), address(dx), windows(planes, h, w, out_h, out_w, size, stride_x,
                                                                     stride_y, offset), cu::as_stream(stream));
    });
    m.def("avgpool", [](uintptr_t x, uintptr_t out, int64_t planes, int64_t spatial, uintptr_t stream) {
        cu::avgpool(address(x), address(out), planes, spatial, cu::as_stream(stream));
    });
    m.def("avgpool_backward", [](uintptr_t dy, uintptr_t dx, int64_t planes, int64_t spatial, uintptr_t stream) {
        cu::avgpool_backward(address(dy), address(dx), planes, spatial, cu::as_stream(stream));
    });
    m.def("upsample", [](uintptr_t x, uintptr_t out, int64_t planes, int64_t h, int64_t w, int64_t stride,
                         float scale, uintptr_t stream) {
        cu::upsample(address(x), address(out), planes, h, w, stride, scale, cu::as_stream(stream));
    });
    m.def("downsample", [](uintptr_t x, uintptr_t out, int64_t planes, int64_t h, int64_t w, int64_t stride,
                           float scale, uintptr_t stream) {
        cu::downsample(address(x), address(out), planes, h, w, stride, scale, cu::as_stream(stream));
    });
    m.def("reorg", [](uintptr_t x, uintptr_t out, int64_t batch, int64_t channels, int64_t h, int64_t w,
                      int64_t stride, bool to_big, uintptr_t stream) {
        cu::reorg(address(x), address(out), batch, channels, h, w, stride, to_big, cu::as_stream(stream));
    });
    m.def("crop", [](uintptr_t x, uintptr_t out, int64_t planes, int64_t h, int64_t w, int64_t out_h, int64_t out_w,
                     int64_t top, int64_t left, bool flip, float scale, float shift, uintptr_t stream) {
        cu::crop(address(x), address(out), cu::CropWindow{planes, h, w, out_h, out_w, top, left, flip}, scale, shift,
                 cu::as_stream(stream));
    });
    m.def("crop_backward", [](uintptr_t dy, uintptr_t dx, int64_t planes, int64_t h, int64_t w, int64_t out_h,
                              int64_t out_w, int64_t top, int64_t left, bool flip, float scale, uintptr_t stream) {
        cu::crop_backward(address(dy), address(dx), cu::CropWindow{planes, h, w, out_h, out_w, top, left, flip},
                          scale, cu::as_stream(stream));
    });
    m.def("copy_2d", [](uintptr_t src, int64_t src_pitch, uintptr_t dst, int64_t dst_pitch, int64_t rows,
                        int64_t width, bool accumulate, uintptr_t stream) {
        cu::copy_2d(address(src), src_pitch, address(dst), dst_pitch, rows, width, accumulate, cu::as_stream(stream));
    });
    m.def("scale_add_channels", [](uintptr_t src, int64_t src_channels, uintptr_t dst, int64_t dst_channels,
                                   int64_t batch, int64_t channels, int64_t spatial, uintptr_t weights,
                                   bool per_channel, bool accumulate, uintptr_t stream) {
        cu::scale_add_channels(address(src), src_channels, address(dst), dst_channels, batch, channels, spatial,
                               address(weights), per_channel, accumulate, cu::as_stream(stream));
    });
    m.def("dot_segments", [](uintptr_t a, int64_t a_stride, uintptr_t b, int64_t b_stride, uintptr_t out,
                             int64_t count, int64_t runs, int64_t length, uintptr_t stream) {
        cu::dot_segments(address(a), a_stride, address(b), b_stride, address(out), count, runs, length,
                         cu::as_stream(stream));
    });
    m.def("dot_channels", [](uintptr_t a, uintptr_t b, uintptr_t out, int64_t batch, int64_t channels,
                             int64_t spatial, uintptr_t stream) {
        cu::dot_channels(address(a), address(b), address(out), batch, channels, spatial, cu::as_stream(stream));
    });
    m.def("multiply", [](uintptr_t a, uintptr_t b, uintptr_t out, int64_t batch, int64_t channels, int64_t spatial,
                         const std::string& broadcast, bool accumulate, uintptr_t stream) {
        cu::Broadcast mode;
        if (broadcast == "elementwise") mode = cu::Broadcast::elementwise;
        else if (broadcast == "per_channel") mode = cu::Broadcast::per_channel;
        else if (broadcast == "per_position") mode = cu::Broadcast::per_position;
        else throw py::value_error("multiply: unknown broadcast '" + broadcast + "'");
        cu::multiply(address(a), address(b), address(out), batch, channels, spatial, mode, accumulate,
                     cu::as_stream(stream));
    });

    // -- heads, losses, dropout, softmax, optimizer --
    m.def("softmax_rows", [](uintptr_t x, uintptr_t y, int64_t images, int64_t rows, int64_t length,
                             int64_t image_stride, int64_t row_stride, float temperature, uintptr_t stream) {
        cu::softmax_rows(address(x), address(y), {images, rows, length, image_stride, row_stride}, temperature,
                         cu::as_stream(stream));
    });
    m.def("softmax_rows_backward", [](uintptr_t y, uintptr_t dy, uintptr_t dx, int64_t images, int64_t rows,
                                      int64_t length, int64_t image_stride, int64_t row_stride, float temperature,
                                      uintptr_t stream) {
        cu::softmax_rows_backward(address(y), address(dy), address(dx),
                                  {images, rows, length, image_stride, row_stride}, temperature,
                                  cu::as_stream(stream));
    });
    m.def("softmax_cross_entropy", [](uintptr_t y, uintptr_t truth, uintptr_t grad, uintptr_t loss, int64_t n,
                                      uintptr_t stream) {
        cu::softmax_cross_entropy(address(y), address(truth), address(grad), address(loss), n, cu::as_stream(stream));
    });
    m.def("cost_loss", [](uintptr_t x, uintptr_t truth, uintptr_t grad, uintptr_t error, int64_t n,
                          const std::string& type, float scale, uintptr_t stream) {
        cu::cost_loss(address(x), address(truth), address(grad), address(error), n, cost_named(type), scale,
                      cu::as_stream(stream));
    });
    m.def("dropout", [](uintptr_t x, uintptr_t y, int64_t n, float probability, float scale, uint64_t seed,
                        uintptr_t stream) {
        cu::dropout(address(x), address(y), n, probability, scale, seed, cu::as_stream(stream));
    });
    m.def("head_activate", [](uintptr_t x, uintptr_t y, int64_t n, int64_t values, int64_t inner,
                              uint32_t logistic_bits, int64_t logistic_from, uint32_t scaled_bits,
                              int64_t scaled_from, float alpha, float beta, uintptr_t stream) {
        cu::head_activate(address(x), address(y), {n, values, inner}, {logistic_bits, logistic_from},
                          {scaled_bits, scaled_from}, alpha, beta, cu::as_stream(stream));
    });
    m.def("head_activate_backward", [](uintptr_t x, uintptr_t dy, uintptr_t dx, int64_t n, int64_t values,
                                       int64_t inner, uint32_t logistic_bits, int64_t logistic_from,
                                       uint32_t scaled_bits, int64_t scaled_from, float alpha, uintptr_t stream) {
        cu::head_activate_backward(address(x), address(dy), address(dx), {n, values, inner},
                                   {logistic_bits, logistic_from}, {scaled_bits, scaled_from}, alpha,
                                   cu::as_stream(stream));
    });
    m.def("sgd_update", [](uintptr_t w, uintptr_t grad, uintptr_t velocity, int64_t n, float step, float momentum,
                           float decay, float clip, uintptr_t stream) {
        cu::sgd_update(address(w), address(grad), address(velocity), n, step, momentum, decay, clip,
                       cu::as_stream(stream));
    });
    m.def("adam_update", [](uintptr_t w, uintptr_t grad, uintptr_t m_, uintptr_t v, int64_t n, float beta1,
                            float beta2, float one_minus_beta1, float one_minus_beta2, float correction1,
                            float correction2, float rate, float eps, float decay, float clip, uintptr_t stream) {
        cu::adam_update(address(w), address(grad), address(m_), address(v), n,
                        {beta1, beta2, one_minus_beta1, one_minus_beta2, correction1, correction2, rate, eps, decay,
                         clip},
                        cu::as_stream(stream));
    });
}
