"""Python 2 names for the original wsgi_cache 0.2.3 (PyPI, unmodified) under
Python 3: it imports `cPickle` and opens its pages with the `file` builtin.
Found on `python_path` before wsgi_cache is imported; nothing else uses it."""

import builtins
from pickle import *  # noqa: F401,F403


def _file(path, mode="r"):
    # wsgi_cache writes and reads the app's bytes: binary mode, as on Python 2.
    return open(path, mode if "b" in mode else mode + "b")


builtins.file = _file
