"""Builds the native extensions with CMake (CMakeLists.txt):

- `darknet_py._C`: C++ CPU kernels, always built; a failure here fails the install.
- `darknet_py._cuda_emu`: the CUDA kernels compiled by the host compiler (csrc/cuda/emulation.h), always built:
  the CUDA engine on the CPU (device="cuda-emulated", tests).
- `darknet_py._cuda`: CUDA kernels, built only when CMake finds nvcc, as a separate `cmake --build` so that a CUDA
  failure still leaves a working CPU package.

Environment variables:
  DARKNET_PY_NO_CUDA=1       skip the CUDA extension even where nvcc exists (CPU-only build)
  DARKNET_PY_CUDA_ARCH=...   CUDA architectures for nvcc, CMake syntax (default "80;90")
  CUDACXX=/path/to/nvcc      the nvcc to use; otherwise nvcc on PATH, then $CUDA_HOME/bin, /usr/local/cuda/bin
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


class CMakeExtension(Extension):
    """One CMake target; `optional` targets may fail (or be absent) without failing the install."""

    def __init__(self, name, target, optional=False):
        super().__init__(name, sources=[])
        self.target, self.optional = target, optional


def find_nvcc():
    """nvcc as CMake would look for it, plus the usual toolkit locations that are often not on PATH."""
    if os.environ.get("CUDACXX"):
        return os.environ["CUDACXX"]
    candidates = [shutil.which("nvcc")]
    candidates += [os.path.join(os.environ[v], "bin", "nvcc") for v in ("CUDA_HOME", "CUDA_PATH") if os.environ.get(v)]
    candidates.append("/usr/local/cuda/bin/nvcc")
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


class CMakeBuild(build_ext):
    def run(self):
        if shutil.which("cmake") is None:
            sys.exit("darknet_py: cmake (>= 3.18) is needed to build the extensions; install it (apt install cmake, "
                     "or pip install cmake) and retry")
        import pybind11

        no_cuda = bool(os.environ.get("DARKNET_PY_NO_CUDA"))
        nvcc = None if no_cuda else find_nvcc()
        # why _cuda is skipped, if CMake does not enable it
        self.no_cuda_reason = ("DARKNET_PY_NO_CUDA is set" if no_cuda else "nvcc not found" if nvcc is None
                               else f"CMake could not use {nvcc} (see above)")
        self.build_dir = Path(self.build_temp).resolve() / "cmake"
        self.build_dir.mkdir(parents=True, exist_ok=True)
        # In editable mode get_ext_fullpath is the source tree (darknet_py/), otherwise build_lib/darknet_py/.
        out_dir = Path(self.get_ext_fullpath(self.extensions[0].name)).resolve().parent
        out_dir.mkdir(parents=True, exist_ok=True)
        configure = [
            "cmake", "-S", str(ROOT), "-B", str(self.build_dir), "-DCMAKE_BUILD_TYPE=Release",
            f"-Dpybind11_DIR={pybind11.get_cmake_dir()}", f"-DPython_EXECUTABLE={sys.executable}",
            f"-DDARKNET_PY_OUTPUT_DIR={out_dir}",
            f"-DDARKNET_PY_CUDA_ARCH={os.environ.get('DARKNET_PY_CUDA_ARCH', '80;90')}",
        ]
        env = dict(os.environ)
        if nvcc:
            env["CUDACXX"] = nvcc
        try:
            subprocess.check_call(configure + [f"-DDARKNET_PY_NO_CUDA={'ON' if nvcc is None else 'OFF'}"], env=env)
        except subprocess.CalledProcessError:
            if nvcc is None:
                raise
            # A broken CUDA toolkit can fail the configure step itself: retry without CUDA so _C still builds.
            self.no_cuda_reason = "CMake configuration with CUDA failed (see above)"
            subprocess.check_call(configure + ["-DDARKNET_PY_NO_CUDA=ON"], env=env)
        for ext in self.extensions:
            self.build_target(ext)

    def build_target(self, ext):
        output = Path(self.get_ext_fullpath(ext.name))
        if ext.optional and not (self.build_dir / "cuda_enabled").exists():
            output.unlink(missing_ok=True)   # a stale module from an earlier CUDA build must not be imported
            print(f"darknet_py: {self.no_cuda_reason} — building the CPU extension only", flush=True)
            return
        jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL") or str(os.cpu_count() or 2)
        try:
            subprocess.check_call(["cmake", "--build", str(self.build_dir), "--target", ext.target, "-j", jobs])
        except subprocess.CalledProcessError:
            if not ext.optional:
                raise
            output.unlink(missing_ok=True)
            print("darknet_py: CUDA extension failed to build (see above) — installing the CPU package only",
                  flush=True)

    def get_outputs(self):
        # Only the modules that were built: the optional CUDA module may be absent.
        return [path for path in super().get_outputs() if os.path.exists(path)]


setup(
    ext_modules=[CMakeExtension("darknet_py._C", "_C"), CMakeExtension("darknet_py._cuda_emu", "_cuda_emu"),
                 CMakeExtension("darknet_py._cuda", "_cuda", optional=True)],
    cmdclass={"build_ext": CMakeBuild},
)
