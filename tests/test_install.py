"""The base install (``pip install -e .``, no extras) imports every module of come, and every public name
resolves."""

import subprocess
import sys

import come

# Run in a fresh interpreter: only the standard library and the distributions that come's base dependencies
# pull in (transitively) can be imported; a module an extra brings (scipy through evo, pygame, memory-maze)
# is refused as if it were not installed.
BASE_ONLY = r"""
import importlib, importlib.abc, importlib.metadata as md, pkgutil, re, sys

def requirement_names(dist):
    names = []
    for req in dist.requires or []:
        if "extra ==" in req:
            continue
        names.append(re.split(r"[ ;<>=!~\[(]", req, maxsplit=1)[0])
    return names

seen, todo = set(), ["come"]
while todo:
    name = todo.pop().lower().replace("_", "-")
    if name in seen:
        continue
    seen.add(name)
    try:
        todo += requirement_names(md.distribution(name))
    except md.PackageNotFoundError:
        pass
allowed = {top for top, dists in md.packages_distributions().items()
           if any(d.lower().replace("_", "-") in seen for d in dists)}
allowed |= set(sys.stdlib_module_names) | {"come", "_distutils_hack"}

def importer():
    # the module whose code asked for an import, past the frames of importlib itself
    frame = sys._getframe(2)
    while frame and frame.f_globals.get("__name__", "").startswith(("importlib", "_frozen_importlib")):
        frame = frame.f_back
    return frame.f_globals.get("__name__", "") if frame else ""

class BaseOnly(importlib.abc.MetaPathFinder):
    # only come's own imports are checked: a dependency probes its optional packages in its own way
    def find_spec(self, fullname, path, target=None):
        top = fullname.split(".")[0]
        if top not in allowed and importer().split(".")[0] == "come":
            raise ModuleNotFoundError(f"No module named '{top}' (not a base dependency)", name=top)
        return None

sys.meta_path.insert(0, BaseOnly())
import come
failed = []
for m in pkgutil.walk_packages(come.__path__, "come."):
    if m.name.endswith("__main__"):
        continue
    try:
        importlib.import_module(m.name)
    except ImportError as e:
        failed.append(f"{m.name}: {e}")
print("\n".join(failed) or "ok")
"""


def test_every_module_imports_with_the_base_dependencies_alone():
    out = subprocess.run([sys.executable, "-c", BASE_ONLY], capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok", out.stdout


def test_the_finder_refuses_an_extras_module():
    """The check above would catch a base module that imports an extra's package at import time."""
    probe = BASE_ONLY.replace("import come\n", "import come\nexec('import pygame', {'__name__': 'come.probe'})\n", 1)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=240)
    assert out.returncode != 0 and "not a base dependency" in out.stderr


def test_every_public_name_resolves():
    for name in come.__all__:
        assert getattr(come, name) is not None, name
