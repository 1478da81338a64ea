"""Teach a model new actions from a few example clips: ``har.teach(base, examples, out)`` (:mod:`har.teach.api`)."""

import sys
import types


class _Callable(types.ModuleType):
    # importing a sub-module binds har.teach to this package: calling it still teaches
    def __call__(self, *args, **kwargs):
        from har.teach.api import teach

        return teach(*args, **kwargs)


sys.modules[__name__].__class__ = _Callable
