// pybind11 module darknet_py._cuda: CUDA kernels taking raw device pointers (CuPy's arr.data.ptr) and a
// stream (cupy.cuda.get_current_stream().ptr).
#include <pybind11/pybind11.h>
#include <string>
#include <unordered_map>

#include "activations.h"
#include "common.cuh"

namespace py = pybind11;
using darknet_py::Activation;

static Activation activation_named(const std::string& name) {
    static const std::unordered_map<std::string, Activation> names = {
        {"linear", Activation::Linear}, {"logistic", Activation::Logistic}, {"relu", Activation::Relu},
        {"leaky", Activation::Leaky},   {"mish", Activation::Mish},         {"swish", Activation::Swish}};
    auto it = names.find(name);
    if (it == names.end()) throw py::value_error("unsupported activation for the CUDA kernel: " + name);
    return it->second;
}

PYBIND11_MODULE(_cuda, m) {
    m.doc() = "darknet_py CUDA kernels";
    m.def("activate", [](uintptr_t ptr, int64_t n, const std::string& activation, uintptr_t stream) {
        if (n < 0) throw py::value_error("n must be >= 0");
        if (n > 0 && ptr == 0) throw py::value_error("ptr is a null device pointer");
        darknet_py::activate_inplace(reinterpret_cast<float*>(ptr), n, activation_named(activation),
                                     reinterpret_cast<cudaStream_t>(stream));
    }, py::arg("ptr"), py::arg("n"), py::arg("activation"), py::arg("stream") = 0);
    m.def("device_count", []() {
        int count = 0;
        if (cudaGetDeviceCount(&count) != cudaSuccess) {
            cudaGetLastError();   // no driver or no device: report zero, not an error
            return 0;
        }
        return count;
    });
    m.def("device_name", [](int index) {
        cudaDeviceProp prop;
        DARKNET_CUDA_CHECK(cudaGetDeviceProperties(&prop, index));
        return std::string(prop.name);
    });
}
