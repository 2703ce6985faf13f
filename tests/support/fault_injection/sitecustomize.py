"""Fault injection for tests: a broken environment, in the job's driver, its Ray workers or both.

Tests put this folder on PYTHONPATH and describe the faults in PIPELINE_TEST_FAULTS (JSON), so
they reach every process the job starts, Ray's workers included:

    {"where": "workers" | "driver" | "everywhere",
     "imports": {"soundfile": "OSError: cannot load library ..."},        # importing fails
     "calls": {"pipeline.audio.load:_chunks": "TypeError: ..."}}          # calling fails (os:fsync too)
    ("signal SIGSEGV" as the text: calling kills the process)

A call to patch that names nothing is an error, so a renamed function cannot make a test pass
without its fault.

A Ray worker is a process whose script is Ray's default_worker.py.
"""

import importlib.abc
import importlib.util
import json
import os
import sys

SPEC = json.loads(os.environ.get("PIPELINE_TEST_FAULTS") or "{}")


def _error(text: str) -> BaseException:
    name, _, message = text.partition(": ")
    return getattr(__import__("builtins"), name)(message)


def _here() -> bool:
    worker = bool(sys.argv) and sys.argv[0].endswith("default_worker.py")
    where = SPEC.get("where", "workers")
    return where == "everywhere" or (where == "workers") == worker


class _Faults(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        calls = [key for key in SPEC.get("calls", {}) if key.partition(":")[0] == name]
        if name not in SPEC.get("imports", {}) and not calls:
            return None
        sys.meta_path.remove(self)
        try:
            real = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if real is None:
            return None
        self.real_loader = real.loader
        real.loader = self
        return real

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        name = module.__name__
        if name in SPEC.get("imports", {}):
            raise _error(SPEC["imports"][name])
        self.real_loader.exec_module(module)
        for key, text in SPEC.get("calls", {}).items():
            target, _, attribute = key.partition(":")
            if target == name:
                _patch(module, attribute, text)


def _failing(text: str):
    def fail(*args, **kwargs):
        if text.startswith("signal "):  # "signal SIGSEGV": the process dies as a native crash kills it
            import signal

            os.kill(os.getpid(), getattr(signal, text.split()[1]))
        raise _error(text)
    return fail


def _patch(module, attribute: str, text: str) -> None:
    owner, _, leaf = attribute.rpartition(".")
    holder = getattr(module, owner) if owner else module
    if not hasattr(holder, leaf):
        raise AttributeError(f"fault injection: {module.__name__}:{attribute} does not exist")
    setattr(holder, leaf, _failing(text))


if SPEC and _here():
    for key, text in SPEC.get("calls", {}).items():  # modules imported before this one (os, ...)
        name, _, attribute = key.partition(":")
        if name in sys.modules:
            _patch(sys.modules[name], attribute, text)
    sys.meta_path.insert(0, _Faults())
