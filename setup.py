# Why this file exists: cffi_modules (compile native/ at install) is a setuptools keyword that
# pyproject.toml cannot express, and the detached containers' monitor (native/monitor.c) is an
# executable, not an extension module: build_ext below compiles it with the same compiler, next
# to the cffi module (in build/lib for a wheel, in the source tree for editable installs and
# `setup.py build_ext --inplace`), as minidock/libexec/minidock-monitor.
from __future__ import annotations

import os

from setuptools import setup
from setuptools.command.build_ext import build_ext

MONITOR_SOURCE = os.path.join("native", "monitor.c")
MONITOR_NAME = "minidock-monitor"


class BuildExtAndMonitor(build_ext):
    def _monitor_path(self) -> str:
        package_dir = os.path.dirname(self.get_ext_fullpath("minidock._native"))
        return os.path.join(package_dir, "libexec", MONITOR_NAME)

    def run(self) -> None:
        super().run()
        target = self._monitor_path()
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if self.compiler is None or isinstance(self.compiler, str):
            from distutils.ccompiler import new_compiler
            from distutils.sysconfig import customize_compiler

            compiler = new_compiler(compiler=self.compiler, force=self.force)
            customize_compiler(compiler)
        else:
            compiler = self.compiler
        objects = compiler.compile([MONITOR_SOURCE], output_dir=self.build_temp,
                                   extra_preargs=["-O2", "-Wall"])
        compiler.link_executable(objects, MONITOR_NAME, output_dir=os.path.dirname(target),
                                 extra_postargs=["-s"])
        os.chmod(target, 0o755)

    def get_outputs(self) -> list[str]:
        return [*super().get_outputs(), self._monitor_path()]


setup(
    cffi_modules=["native/build_native.py:ffibuilder"],
    cmdclass={"build_ext": BuildExtAndMonitor},
)
