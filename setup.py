"""Builds the native extensions with CMake: `_C` (C++ CPU kernels, required) and `_cuda` (CUDA kernels, built
only when CMake finds nvcc; a failure there leaves a working CPU package). Set DARKNET_PY_NO_CUDA=1 to skip the
CUDA build, DARKNET_PY_CUDA_ARCH (default "80;90") to choose GPU architectures."""
import os
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


class CMakeExtension(Extension):
    def __init__(self, name, target, optional=False):
        super().__init__(name, sources=[])
        self.target, self.optional = target, optional


class CMakeBuild(build_ext):
    def run(self):
        import pybind11
        self.build_dir = Path(self.build_temp).resolve() / "cmake"
        self.build_dir.mkdir(parents=True, exist_ok=True)
        out_dir = Path(self.get_ext_fullpath("darknet_py._C")).resolve().parent
        out_dir.mkdir(parents=True, exist_ok=True)
        args = [
            "cmake", "-S", str(ROOT), "-B", str(self.build_dir), "-DCMAKE_BUILD_TYPE=Release",
            f"-Dpybind11_DIR={pybind11.get_cmake_dir()}", f"-DPython_EXECUTABLE={sys.executable}",
            f"-DDARKNET_PY_OUTPUT_DIR={out_dir}",
            f"-DDARKNET_PY_CUDA_ARCH={os.environ.get('DARKNET_PY_CUDA_ARCH', '80;90')}",
            f"-DDARKNET_PY_NO_CUDA={'ON' if os.environ.get('DARKNET_PY_NO_CUDA') else 'OFF'}",
        ]
        subprocess.check_call(args)
        for ext in self.extensions:
            self.build_target(ext)

    def build_target(self, ext):
        jobs = str(os.cpu_count() or 2)
        if ext.optional and not (self.build_dir / "cuda_enabled").exists():
            print("darknet_py: nvcc not found (or DARKNET_PY_NO_CUDA is set) — building the CPU extension only", flush=True)
            return
        try:
            subprocess.check_call(["cmake", "--build", str(self.build_dir), "--target", ext.target, "-j", jobs])
        except subprocess.CalledProcessError:
            if not ext.optional:
                raise
            print("darknet_py: CUDA extension failed to build (see above) — installing the CPU package only",
                  flush=True)


setup(
    ext_modules=[CMakeExtension("darknet_py._C", "_C"), CMakeExtension("darknet_py._cuda", "_cuda", optional=True)],
    cmdclass={"build_ext": CMakeBuild},
)
