# The only reason this file exists: cffi_modules (compile native/ at install) is a
# setuptools keyword that pyproject.toml cannot express.
from setuptools import setup

setup(cffi_modules=["native/build_native.py:ffibuilder"])
