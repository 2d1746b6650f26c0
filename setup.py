"""The one thing pyproject.toml cannot declare without an experimental key: the compiled parts.

indexer/_scan.c is the compiled fast path of indexer/parse.py, and writes calls into columns
(indexer/columns.py's CallColumns). It is optional: where no C compiler (or no Python headers) is
found, the install goes on and the Python code does all the work, the same way, about 2-3x
slower. Everything else about the package is in pyproject.toml.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("indexer._scan", ["indexer/_scan.c"], extra_compile_args=["-O2"], optional=True)])
