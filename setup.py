"""Build the one compiled module, ``surveyqa.metrics.actions._segments`` (metadata: pyproject.toml).

Fused per-object statistics for matched catalogs (docs/metric-engine.md). The package works
without it (numpy fallback), so a failed compiler is a warning, not a failed install.
"""

import sys

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# the per-row formulas are numpy's: no FMA contraction, no -ffast-math; math functions need not set errno
_UNIX_FLAGS = ["-O3", "-ffp-contract=off", "-fno-math-errno"]


class _OptionalBuildExt(build_ext):
    def run(self):
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - no compiler: the numpy fallback is used
            print(f"warning: surveyqa's compiled kernel was not built ({exc}); using numpy", file=sys.stderr)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            print(f"warning: {ext.name} was not built ({exc}); using numpy", file=sys.stderr)


ext = Extension(
    "surveyqa.metrics.actions._segments",
    ["src/surveyqa/metrics/actions/_segments.pyx"],
    include_dirs=[numpy.get_include(), "src/surveyqa/metrics/actions"],
    depends=["src/surveyqa/metrics/actions/_sortnet.h"],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    extra_compile_args=[] if sys.platform == "win32" else _UNIX_FLAGS,
)

setup(ext_modules=cythonize([ext], compiler_directives={"language_level": "3"}),
      cmdclass={"build_ext": _OptionalBuildExt})
