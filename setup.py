# Why this file exists: cffi_modules (compile native/ at install) is a setuptools keyword that
# pyproject.toml cannot express, and the detached containers' monitor (native/monitor.c) is an
# executable, not an extension module: build_ext below compiles it with the same compiler, next
# to the cffi module (in build/lib for a wheel, in the source tree for editable installs and
# `setup.py build_ext --inplace`), as minidock/libexec/minidock-monitor; and the init that
# `run --init` puts in a container (native/init.c), statically linked, as minidock-init.
from __future__ import annotations

import os

from setuptools import setup
from setuptools.command.build_ext import build_ext

MONITOR_SOURCE = os.path.join("native", "monitor.c")
MONITOR_NAME = "minidock-monitor"
# `run --init`'s PID 1, bound into containers: static, as an image may have no libc
INIT_SOURCE = os.path.join("native", "init.c")
INIT_NAME = "minidock-init"


class BuildExtAndMonitor(build_ext):
    def _monitor_path(self, name: str = MONITOR_NAME) -> str:
        package_dir = os.path.dirname(self.get_ext_fullpath("minidock._native"))
        return os.path.join(package_dir, "libexec", name)

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
        for source, name, extra in ((MONITOR_SOURCE, MONITOR_NAME, ["-s"]),
                                    (INIT_SOURCE, INIT_NAME, ["-s", "-static"])):
            objects = compiler.compile([source], output_dir=self.build_temp,
                                       extra_preargs=["-O2", "-Wall"])
            compiler.link_executable(objects, name, output_dir=os.path.dirname(target),
                                     extra_postargs=extra)
            os.chmod(self._monitor_path(name), 0o755)

    def get_outputs(self) -> list[str]:
        return [*super().get_outputs(), self._monitor_path(), self._monitor_path(INIT_NAME)]


setup(
    cffi_modules=["native/build_native.py:ffibuilder"],
    cmdclass={"build_ext": BuildExtAndMonitor},
)
