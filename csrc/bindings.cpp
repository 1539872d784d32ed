// pybind11 module darknet_py._C: CPU kernels.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <stdexcept>
#include <string>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "im2col.h"

namespace py = pybind11;
using darknet_py::ConvGeometry;
using FloatArray = py::array_t<float, py::array::c_style>;

static ConvGeometry geometry(int64_t c, int64_t h, int64_t w, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                             int64_t ph, int64_t pw, int64_t dh, int64_t dw) {
    if (c < 1 || h < 1 || w < 1 || kh < 1 || kw < 1 || sh < 1 || sw < 1 || ph < 0 || pw < 0 || dh < 1 || dw < 1)
        throw py::value_error("im2col: sizes, kernel, stride and dilation must be >= 1 and padding >= 0");
    ConvGeometry g{c, h, w, kh, kw, sh, sw, ph, pw, dh, dw};
    if (g.out_h() < 1 || g.out_w() < 1)
        throw py::value_error("im2col: the kernel does not fit the padded image");
    return g;
}

static void require_float32_contiguous(const py::array& a, const char* what) {
    if (!py::isinstance<FloatArray>(a) || !(a.flags() & py::array::c_style))
        throw py::value_error(std::string(what) + " must be a C-contiguous float32 array");
}

PYBIND11_MODULE(_C, m) {
    m.doc() = "darknet_py CPU kernels";
    m.def("im2col", [](py::array image, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                       int64_t dh, int64_t dw) {
        require_float32_contiguous(image, "image");
        if (image.ndim() != 3) throw py::value_error("image must have shape (channels, height, width)");
        ConvGeometry g = geometry(image.shape(0), image.shape(1), image.shape(2), kh, kw, sh, sw, ph, pw, dh, dw);
        FloatArray columns({g.rows(), g.cols()});
        const float* src = static_cast<const float*>(image.data());
        float* dst = columns.mutable_data();
        {
            py::gil_scoped_release release;
            darknet_py::im2col(src, g, dst);
        }
        return columns;
    }, py::arg("image"), py::arg("kh"), py::arg("kw"), py::arg("sh"), py::arg("sw"), py::arg("ph"), py::arg("pw"),
       py::arg("dh") = 1, py::arg("dw") = 1);

    m.def("col2im", [](py::array columns, int64_t c, int64_t h, int64_t w, int64_t kh, int64_t kw, int64_t sh,
                       int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw) {
        require_float32_contiguous(columns, "columns");
        ConvGeometry g = geometry(c, h, w, kh, kw, sh, sw, ph, pw, dh, dw);
        if (columns.ndim() != 2 || columns.shape(0) != g.rows() || columns.shape(1) != g.cols())
            throw py::value_error("columns must have shape (c*kh*kw, out_h*out_w) = (" + std::to_string(g.rows()) +
                                  ", " + std::to_string(g.cols()) + ")");
        FloatArray image({c, h, w});
        float* dst = image.mutable_data();
        std::fill(dst, dst + c * h * w, 0.f);
        const float* src = static_cast<const float*>(columns.data());
        {
            py::gil_scoped_release release;
            darknet_py::col2im(src, g, dst);
        }
        return image;
    }, py::arg("columns"), py::arg("c"), py::arg("h"), py::arg("w"), py::arg("kh"), py::arg("kw"), py::arg("sh"),
       py::arg("sw"), py::arg("ph"), py::arg("pw"), py::arg("dh") = 1, py::arg("dw") = 1);

    m.def("openmp_threads", []() {
#ifdef _OPENMP
        return omp_get_max_threads();
#else
        return 1;
#endif
    });
}
