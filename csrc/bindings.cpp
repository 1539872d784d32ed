// pybind11 module darknet_py._C: CPU kernels.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "activations.h"
#include "buffers.h"
#include "depthwise.h"
#include "gemm.h"
#include "im2col.h"
#include "parallel.h"
#include "pooling.h"
#include "simd.h"
#include "winograd.h"

namespace py = pybind11;
using darknet_py::Activation;
using darknet_py::ConvGeometry;
using darknet_py::WindowGeometry;
using FloatArray = py::array_t<float, py::array::c_style>;

static ConvGeometry geometry(int64_t c, int64_t h, int64_t w, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                             int64_t ph, int64_t pw, int64_t dh, int64_t dw) {
    if (c < 1 || h < 1 || w < 1 || kh < 1 || kw < 1 || sh < 1 || sw < 1 || ph < 0 || pw < 0 || dh < 1 || dw < 1)
        throw py::value_error("im2col_gemm: sizes, kernel, stride and dilation must be >= 1 and padding >= 0");
    ConvGeometry g{c, h, w, kh, kw, sh, sw, ph, pw, dh, dw};
    if (g.out_h() < 1 || g.out_w() < 1)
        throw py::value_error("im2col_gemm: the kernel does not fit the padded image");
    return g;
}

static void require_float32_contiguous(const py::array& a, const char* what) {
    if (!py::isinstance<FloatArray>(a) || !(a.flags() & py::array::c_style))
        throw py::value_error(std::string(what) + " must be a C-contiguous float32 array");
}

static Activation activation(const std::string& name) {
    Activation act;
    if (!darknet_py::activation_from_name(name, &act))
        throw py::value_error("activation '" + name + "' has no C++ kernel (see fused_activations())");
    return act;
}

// A per-channel vector (channels,) as a float32 pointer, or null for None.
static const float* channel_vector(const py::object& v, int64_t channels, const char* what) {
    if (v.is_none()) return nullptr;
    py::array a = py::reinterpret_borrow<py::array>(v);
    require_float32_contiguous(a, what);
    if (a.size() != channels)
        throw py::value_error(std::string(what) + " must have one value per channel (" + std::to_string(channels) +
                              ")");
    return static_cast<const float*>(a.data());
}

// The fused epilogue activation(y * scale + shift): without a shift the kernels apply none, so a scale or an
// activation given without one is refused rather than ignored.
struct Epilogue {
    const float* scale;
    const float* shift;
    Activation act;
};

static Epilogue epilogue(const py::object& scale, const py::object& shift, const std::string& name, int64_t channels) {
    Epilogue e{channel_vector(scale, channels, "scale"), channel_vector(shift, channels, "shift"), activation(name)};
    if (!e.shift && (e.scale || name != "linear"))
        throw py::value_error("a scale or an activation needs a shift (use zeros for none)");
    return e;
}

static void require_nchw(const py::array& x, const char* what) {
    require_float32_contiguous(x, what);
    if (x.ndim() != 4) throw py::value_error(std::string(what) + " must have shape (batch, channels, height, width)");
}

static WindowGeometry window(const py::array& x, int64_t kernel, int64_t stride_h, int64_t stride_w, int64_t offset,
                             int64_t dilation, int64_t out_h, int64_t out_w) {
    if (kernel < 1 || stride_h < 1 || stride_w < 1 || dilation < 1 || offset < 0 || out_h < 1 || out_w < 1)
        throw py::value_error("kernel, strides, dilation and output size must be >= 1 and offset >= 0");
    return WindowGeometry{x.shape(2), x.shape(3), out_h, out_w, kernel, stride_h, stride_w, offset, dilation};
}

PYBIND11_MODULE(_C, m) {
    m.doc() = "darknet_py CPU kernels";
    m.def("im2col_gemm", [](py::array x, py::array weights, int64_t stride_h, int64_t stride_w, int64_t pad,
                            int64_t dilation, py::object scale, py::object shift, const std::string& name,
                            int64_t groups) {
        require_nchw(x, "x");
        require_float32_contiguous(weights, "weights");
        if (groups < 1 || weights.ndim() != 4 || weights.shape(0) % groups || weights.shape(1) * groups != x.shape(1) ||
            weights.shape(3) != weights.shape(2))
            throw py::value_error("im2col_gemm: weights must have shape (filters, channels / groups, size, size), "
                                  "filters a multiple of groups");
        const int64_t filters = weights.shape(0), size = weights.shape(2);
        ConvGeometry g = geometry(weights.shape(1), x.shape(2), x.shape(3), size, size, stride_h, stride_w, pad, pad,
                                  dilation, dilation);
        const Epilogue e = epilogue(scale, shift, name, filters);
        const int64_t batch = x.shape(0);
        FloatArray y({batch, filters, g.out_h(), g.out_w()});
        const float* src = static_cast<const float*>(x.data());
        const float* w = static_cast<const float*>(weights.data());
        float* dst = y.mutable_data();
        {
            py::gil_scoped_release release;
            darknet_py::im2col_gemm(src, batch, groups, g, w, filters, e.scale, e.shift, e.act, dst);
        }
        return y;
    }, py::arg("x"), py::arg("weights"), py::arg("stride_h"), py::arg("stride_w"), py::arg("pad"),
       py::arg("dilation") = 1, py::arg("scale") = py::none(), py::arg("shift") = py::none(),
       py::arg("activation") = "linear", py::arg("groups") = 1, "convolution (square kernel, symmetric padding, "
       "groups) as im2col + GEMM with the fused epilogue activation(y * scale + shift); the columns are built a slice "
       "at a time, every group in one GEMM");

    m.def("fused_activations", &darknet_py::activation_names,
          "the activations affine_activate and depthwise_conv2d compute (the elementwise ones)");

    m.def("affine_activate", [](py::array x, py::object scale, py::object shift, const std::string& name) {
        require_float32_contiguous(x, "x");
        if (x.ndim() < 2) throw py::value_error("x must have shape (batch, channels, ...)");
        const int64_t planes = x.shape(0) * x.shape(1), channels = x.shape(1);
        const int64_t spatial = planes ? x.size() / planes : 0;
        const float* a = channel_vector(scale, channels, "scale");
        const float* b = channel_vector(shift, channels, "shift");
        if (!b) throw py::value_error("shift is required");
        Activation act = activation(name);
        float* data = static_cast<float*>(x.mutable_data());
        py::gil_scoped_release release;
        darknet_py::affine_activate(data, data, planes, channels, spatial, a, b, act);
    }, py::arg("x"), py::arg("scale"), py::arg("shift"), py::arg("activation"),
       "in place: x[:, c] = activation(x[:, c] * scale[c] + shift[c]); scale may be None");

    m.def("fold_batchnorm", [](py::array scales, py::array biases, py::array mean, py::array variance) {
        for (const py::array* a : {&scales, &biases, &mean, &variance}) require_float32_contiguous(*a, "batchnorm arrays");
        const int64_t n = scales.size();
        if (biases.size() != n || mean.size() != n || variance.size() != n)
            throw py::value_error("fold_batchnorm: scales, biases, mean and variance must have one length");
        FloatArray scale({n}), shift({n});
        darknet_py::fold_batchnorm(static_cast<const float*>(scales.data()), static_cast<const float*>(biases.data()),
                                   static_cast<const float*>(mean.data()), static_cast<const float*>(variance.data()),
                                   n, scale.mutable_data(), shift.mutable_data());
        return py::make_tuple(scale, shift);
    }, py::arg("scales"), py::arg("biases"), py::arg("rolling_mean"), py::arg("rolling_variance"),
       "inference batch normalization as (scale, shift): scales / sqrt(variance + .00001), biases - mean * scale");

    m.def("scale_planes", [](py::array x, py::array factors, const std::string& name) {
        require_float32_contiguous(x, "x");
        require_float32_contiguous(factors, "factors");
        if (x.ndim() < 2 || factors.size() != x.shape(0) * x.shape(1))
            throw py::value_error("scale_planes: x must be (batch, channels, ...) and factors hold batch * channels values");
        const int64_t planes = x.shape(0) * x.shape(1), spatial = planes ? x.size() / planes : 0;
        const Activation act = activation(name);
        FloatArray y(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
        const std::vector<float> zeros(planes, 0.0f);
        const float* src = static_cast<const float*>(x.data());
        const float* f = static_cast<const float*>(factors.data());
        float* dst = y.mutable_data();
        {
            py::gil_scoped_release release;
            darknet_py::affine_activate(src, dst, planes, planes, spatial, f, zeros.data(), act);
        }
        return y;
    }, py::arg("x"), py::arg("factors"), py::arg("activation") = "linear",
       "activation(x[b, c] * factors[b, c]) per plane: a new array (squeeze-and-excitation's channel scaling)");

    m.def("depthwise_conv2d", [](py::array x, py::array weights, int64_t stride_h, int64_t stride_w, int64_t offset,
                                 int64_t dilation, int64_t out_h, int64_t out_w, py::object scale, py::object shift,
                                 const std::string& name) {
        require_nchw(x, "x");
        require_float32_contiguous(weights, "weights");
        const int64_t batch = x.shape(0), channels = x.shape(1);
        if (weights.ndim() != 4 || weights.shape(0) != channels || weights.shape(1) != 1 ||
            weights.shape(2) != weights.shape(3))
            throw py::value_error("weights must have shape (channels, 1, k, k)");
        WindowGeometry g = window(x, weights.shape(2), stride_h, stride_w, offset, dilation, out_h, out_w);
        const Epilogue e = epilogue(scale, shift, name, channels);
        FloatArray y({batch, channels, out_h, out_w});
        const float* src = static_cast<const float*>(x.data());
        const float* w = static_cast<const float*>(weights.data());
        float* dst = y.mutable_data();
        {
            py::gil_scoped_release release;
            darknet_py::depthwise_conv2d(src, w, dst, batch, channels, g, e.scale, e.shift, e.act);
        }
        return y;
    }, py::arg("x"), py::arg("weights"), py::arg("stride_h"), py::arg("stride_w"), py::arg("offset"),
       py::arg("dilation"), py::arg("out_h"), py::arg("out_w"), py::arg("scale") = py::none(),
       py::arg("shift") = py::none(), py::arg("activation") = "linear",
       "depthwise convolution; with shift, the fused epilogue activation(y * scale + shift) per channel");

    m.def("depthwise_thread_bytes", [](int64_t height, int64_t width, int64_t kernel, int64_t stride_h,
                                       int64_t stride_w, int64_t offset, int64_t dilation, int64_t out_h,
                                       int64_t out_w) {
        if (kernel < 1 || stride_h < 1 || stride_w < 1 || dilation < 1 || offset < 0 || out_h < 1 || out_w < 1)
            throw py::value_error("kernel, strides, dilation and output size must be >= 1 and offset >= 0");
        const WindowGeometry g{height, width, out_h, out_w, kernel, stride_h, stride_w, offset, dilation};
        return darknet_py::depthwise_thread_floats(g) * int64_t(sizeof(float));
    }, py::arg("height"), py::arg("width"), py::arg("kernel"), py::arg("stride_h"), py::arg("stride_w"),
       py::arg("offset"), py::arg("dilation"), py::arg("out_h"), py::arg("out_w"),
       "bytes depthwise_conv2d allocates per thread for this geometry");

    m.def("gemm_thread_bytes", [](int64_t k, int64_t n) {
        return darknet_py::gemm_thread_floats(k, n) * int64_t(sizeof(float));
    }, py::arg("k"), py::arg("n"), "bytes gemm and im2col_gemm allocate per thread for k rows (per group) of n columns");

    m.def("global_avgpool", [](py::array x) {
        require_nchw(x, "x");
        FloatArray y({x.shape(0), x.shape(1), py::ssize_t(1), py::ssize_t(1)});
        const float* src = static_cast<const float*>(x.data());
        float* dst = y.mutable_data();
        {
            py::gil_scoped_release release;
            darknet_py::global_avgpool(src, dst, x.shape(0) * x.shape(1), x.shape(2) * x.shape(3));
        }
        return y;
    }, py::arg("x"), "the mean of each plane: (batch, channels, h, w) -> (batch, channels, 1, 1)");

    m.def("maxpool2d", [](py::array x, int64_t size, int64_t stride_h, int64_t stride_w, int64_t offset,
                          int64_t out_h, int64_t out_w) {
        require_nchw(x, "x");
        WindowGeometry g = window(x, size, stride_h, stride_w, offset, 1, out_h, out_w);
        FloatArray y({x.shape(0), x.shape(1), out_h, out_w});
        const float* src = static_cast<const float*>(x.data());
        float* dst = y.mutable_data();
        {
            py::gil_scoped_release release;
            darknet_py::maxpool2d(src, dst, x.shape(0) * x.shape(1), g);
        }
        return y;
    }, py::arg("x"), py::arg("size"), py::arg("stride_h"), py::arg("stride_w"), py::arg("offset"), py::arg("out_h"),
       py::arg("out_w"), "max pooling, darknet's forward_maxpool_layer values (no argmax)");

    m.attr("PACK_ROWS") = darknet_py::PACK_ROWS;
    m.attr("WINOGRAD_COLUMN_ALIGN") = darknet_py::WINOGRAD_COLUMN_ALIGN;
    m.def("simd_isa", &darknet_py::simd_isa, "the instruction set the explicitly vectorized kernels (GEMM, depthwise) run "
          "with: avx512f, avx2 or baseline (capped by DARKNET_PY_SIMD_ISA)");

    m.def("winograd_weights", [](py::array w, int64_t tile) {
        require_float32_contiguous(w, "w");
        if (tile != 2 && tile != 4) throw py::value_error("tile must be 2 or 4");
        if (w.ndim() != 4 || w.shape(0) < 1 || w.shape(1) < 1 || w.shape(2) != 3 || w.shape(3) != 3)
            throw py::value_error("w must have shape (filters, channels, 3, 3), filters and channels >= 1");
        const int64_t filters = w.shape(0), channels = w.shape(1);
        FloatArray packed({(tile + 2) * (tile + 2), darknet_py::packed_panels(filters), channels,
                           darknet_py::PACK_ROWS});
        const float* src = static_cast<const float*>(w.data());
        float* dst = packed.mutable_data();
        {
            py::gil_scoped_release release;
            darknet_py::winograd_weights(src, filters, channels, tile, dst);
        }
        return packed;
    }, py::arg("w"), py::arg("tile"), "G w G^T of 3x3 weights (filters, channels, 3, 3) packed for winograd_conv: "
       "((tile+2)^2, ceil(filters / PACK_ROWS), channels, PACK_ROWS), rows past the filters zero");

    m.def("gemm", [](py::array a, py::array b, py::object scale, py::object shift, const std::string& name,
                     int64_t groups) {
        require_float32_contiguous(a, "a");
        require_float32_contiguous(b, "b");
        const bool batched = b.ndim() == 3;
        if (groups < 1 || a.ndim() != 2 || (b.ndim() != 2 && !batched) || a.shape(0) < 1 || a.shape(0) % groups ||
            a.shape(1) * groups != b.shape(b.ndim() - 2))
            throw py::value_error("gemm: a must be (m, k / groups) and b (k, n) or (batch, k, n), m a multiple of "
                                  "groups");
        const int64_t rows = a.shape(0), k = b.shape(b.ndim() - 2), batch = batched ? b.shape(0) : 1;
        const int64_t n = b.shape(b.ndim() - 1);
        const Epilogue e = epilogue(scale, shift, name, rows);
        FloatArray y(batched ? std::vector<py::ssize_t>{batch, rows, n} : std::vector<py::ssize_t>{rows, n});
        const darknet_py::LeftMatrix left{static_cast<const float*>(a.data()), rows / groups, a.shape(1), a.shape(1),
                                          false};
        const float* src = static_cast<const float*>(b.data());
        float* dst = y.mutable_data();
        {
            py::gil_scoped_release release;
            for (int64_t i = 0; i < batch; ++i)
                darknet_py::gemm(left, groups, src + i * k * n, n, n, dst + i * rows * n, n, e.scale, e.shift, e.act);
        }
        return y;
    }, py::arg("a"), py::arg("b"), py::arg("scale") = py::none(), py::arg("shift") = py::none(),
       py::arg("activation") = "linear", py::arg("groups") = 1, "activation(a @ b * scale[row] + shift[row]) for a "
       "(m, k) and b (k, n) or (batch, k, n), on the kernels' threads; with groups, row block g of a (m / groups rows "
       "of k / groups) times row block g of b, all in one GEMM");

    m.def("winograd_conv", [](py::array x, py::array packed, int64_t filters, int64_t pad, int64_t tile,
                              py::object scale, py::object shift, const std::string& name) {
        require_nchw(x, "x");
        require_float32_contiguous(packed, "packed");
        if (tile != 2 && tile != 4) throw py::value_error("tile must be 2 or 4");
        const int64_t batch = x.shape(0), channels = x.shape(1), points = (tile + 2) * (tile + 2);
        if (channels < 1) throw py::value_error("x must have at least one channel");
        const int64_t out_h = x.shape(2) + 2 * pad - 2, out_w = x.shape(3) + 2 * pad - 2;
        if (pad < 0 || out_h < 1 || out_w < 1) throw py::value_error("pad must be >= 0 and the output not empty");
        const int64_t panels = darknet_py::packed_panels(filters);
        if (filters < 1 || packed.ndim() != 4 || packed.shape(0) != points || packed.shape(1) != panels ||
            packed.shape(2) != channels || packed.shape(3) != darknet_py::PACK_ROWS)
            throw py::value_error("packed must be winograd_weights(w, tile) of these filters and channels");
        const Epilogue e = epilogue(scale, shift, name, filters);
        FloatArray y({batch, filters, out_h, out_w});
        const float* src = static_cast<const float*>(x.data());
        const float* weights = static_cast<const float*>(packed.data());
        float* dst = y.mutable_data();
        {
            py::gil_scoped_release release;
            darknet_py::winograd_convolution(src, batch, channels, x.shape(2), x.shape(3), pad, tile, weights, filters,
                                             out_h, out_w, e.scale, e.shift, e.act, dst);
        }
        return y;
    }, py::arg("x"), py::arg("packed"), py::arg("filters"), py::arg("pad"), py::arg("tile"),
       py::arg("scale") = py::none(), py::arg("shift") = py::none(), py::arg("activation") = "linear",
       "3x3 stride-1 convolution by Winograd F(tile x tile, 3x3) with the fused epilogue activation(y * scale + "
       "shift); packed = winograd_weights(w, tile)");

    m.def("release_workspace", [] { darknet_py::release_workspace(); },
          "free the calling thread's Winograd workspace (kept between calls; regrown when needed)");

    m.def("concat", [](const std::vector<py::array>& pieces) {
        if (pieces.empty()) throw py::value_error("concat: no pieces");
        const int64_t batch = pieces[0].ndim() == 2 ? pieces[0].shape(0) : -1;
        int64_t width = 0;
        for (const py::array& p : pieces) {
            if (!py::isinstance<py::array_t<float>>(p) || p.ndim() != 2 || p.shape(0) != batch ||
                (p.size() > 0 && p.shape(1) > 1 && p.strides(1) != sizeof(float)))
                throw py::value_error("concat: pieces must be float32 (batch, n) arrays with contiguous rows");
            width += p.shape(1);
        }
        FloatArray out({batch, width});
        std::vector<darknet_py::ByteCopy> copies;
        float* rows = out.mutable_data();
        for (int64_t b = 0; b < batch; ++b) {
            int64_t offset = 0;
            for (const py::array& p : pieces) {
                if (p.shape(1) == 0) continue;   // no bytes (and, in NumPy, possibly no strides)
                const auto* row = static_cast<const unsigned char*>(p.data()) + b * p.strides(0);
                copies.push_back({row, rows + b * width + offset, int64_t(p.shape(1) * sizeof(float))});
                offset += p.shape(1);
            }
        }
        {
            py::gil_scoped_release release;
            darknet_py::copy_bytes(copies);
        }
        return out;
    }, py::arg("pieces"), "np.concatenate(pieces, axis=1) of float32 (batch, n_i) arrays with contiguous rows, "
       "copied on the kernels' threads");

    m.def("add", [](const std::vector<py::array>& terms) {
        if (terms.empty()) throw py::value_error("add: no arrays");
        std::vector<const float*> pointers;
        for (const py::array& t : terms) {
            require_float32_contiguous(t, "add: each array");
            if (t.ndim() != terms[0].ndim() || !std::equal(t.shape(), t.shape() + t.ndim(), terms[0].shape()))
                throw py::value_error("add: the arrays must have one shape");
            pointers.push_back(static_cast<const float*>(t.data()));
        }
        FloatArray out(std::vector<py::ssize_t>(terms[0].shape(), terms[0].shape() + terms[0].ndim()));
        float* dst = out.mutable_data();
        {
            py::gil_scoped_release release;
            darknet_py::add_floats(pointers, dst, out.size());
        }
        return out;
    }, py::arg("terms"), "the sum of float32 arrays of one shape, added in order, as a new array");

    m.def("same_bytes", [](py::array a, py::array b) {
        if (!(a.flags() & py::array::c_style) || !(b.flags() & py::array::c_style))
            throw py::value_error("same_bytes: both arrays must be C-contiguous");
        if (!a.dtype().equal(b.dtype()) || a.ndim() != b.ndim() ||
            !std::equal(a.shape(), a.shape() + a.ndim(), b.shape()))
            return false;
        const int64_t bytes = int64_t(a.nbytes());
        py::gil_scoped_release release;
        return darknet_py::same_bytes(a.data(), b.data(), bytes);
    }, py::arg("a"), py::arg("b"), "whether two C-contiguous arrays have the same dtype, shape and bytes "
       "(unlike ==, a NaN equals itself and -0.0 differs from 0.0)");

    m.def("num_threads", &darknet_py::num_threads, "threads the kernels use, the caller included");
    m.def("contended", &darknet_py::contended,
          "whether the kernels currently run serially because other processes keep the cores busy");
    m.def("set_num_threads", [](int threads) {
        if (threads < 1) throw py::value_error("threads must be >= 1");
        darknet_py::set_num_threads(threads);
    }, py::arg("threads"), "set the threads the kernels use (default: the CPUs this process may run on)");
}
