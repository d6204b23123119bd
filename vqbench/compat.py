"""Compatibility layer: makes the registry's torchvision import on CPU-only torch.

The torchvision 0.28.0 wheel on PyPI is a CUDA build. On the CPU torch its compiled
``_C`` extension does not load, yet ``torchvision/_meta_registrations.py`` still registers
fake kernels for ``torchvision::nms``/``qnms`` and crashes with
``RuntimeError: operator torchvision::nms does not exist``. diffusers, transformers model
classes and clip all import torchvision, so they fail too.

The fix defines the two op schemas (plus a pure-torch CPU ``nms``) *before* torchvision is
imported, and only when torchvision's own extension fails to load, so it is a no-op where
the compiled ops work (CUDA machines). It is applied lazily by a ``sys.meta_path`` hook
that fires on the first ``import torchvision``; importing torch eagerly would slow down
every interpreter start.

The hook is installed by ``import vqbench`` and, for every process of the virtualenv
(pytest, subprocesses, multiprocessing workers, ``python -m`` of third-party modules), by a
``.pth`` file that ``python -m vqbench.compat install`` writes into site-packages.
"""

from __future__ import annotations

import glob
import importlib.abc
import importlib.util
import os
import sys
import sysconfig
from pathlib import Path

PTH_NAME = "vqbench_torchvision_fix.pth"
PTH_LINE = "import vqbench.compat as _vqc; _vqc.install_torchvision_hook()\n"

_LIBRARY = None  # keeps the torch.library registration alive
_applied = False


def _nms_cpu(dets, scores, iou_threshold: float):
    """Greedy non-maximum suppression in pure torch (boxes as x1, y1, x2, y2)."""
    import torch

    if dets.numel() == 0:
        return torch.empty(0, dtype=torch.long, device=dets.device)
    x1, y1, x2, y2 = dets.unbind(1)
    areas = (x2 - x1).clamp(min=0) * (y2 - y1).clamp(min=0)
    order = scores.argsort(descending=True)
    keep = []
    suppressed = torch.zeros(dets.shape[0], dtype=torch.bool, device=dets.device)
    for idx in order.tolist():
        if suppressed[idx]:
            continue
        keep.append(idx)
        xx1 = torch.maximum(x1[idx], x1)
        yy1 = torch.maximum(y1[idx], y1)
        xx2 = torch.minimum(x2[idx], x2)
        yy2 = torch.minimum(y2[idx], y2)
        inter = (xx2 - xx1).clamp(min=0) * (yy2 - yy1).clamp(min=0)
        iou = inter / (areas[idx] + areas - inter).clamp(min=1e-12)
        suppressed |= iou > iou_threshold
    return torch.tensor(keep, dtype=torch.long, device=dets.device)


def torchvision_ops_load() -> bool:
    """Return True if torchvision's compiled ``_C`` extension loads with this torch."""
    import torch

    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return True  # torchvision absent: nothing to fix
    pkg_dir = list(spec.submodule_search_locations)[0]
    libs = glob.glob(os.path.join(pkg_dir, "_C*.so")) + glob.glob(os.path.join(pkg_dir, "_C*.pyd"))
    if not libs:
        return False
    try:
        torch.ops.load_library(libs[0])
    except (OSError, RuntimeError):
        return False
    return True


def apply_torchvision_fix() -> bool:
    """Define ``torchvision::nms``/``qnms`` when torchvision's ops do not load.

    Returns True if the fallback was registered, False if nothing was needed.
    """
    global _LIBRARY, _applied
    if _applied:
        return _LIBRARY is not None
    _applied = True
    if torchvision_ops_load():
        return False
    import torch

    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.impl("nms", _nms_cpu, "CPU")
    _LIBRARY = lib
    return True


class _TorchvisionFinder(importlib.abc.MetaPathFinder):
    """Applies the fix just before the first ``import torchvision``, then steps aside."""

    def find_spec(self, fullname, path=None, target=None):  # noqa: D102
        if fullname != "torchvision":
            return None
        _remove_hook()
        apply_torchvision_fix()
        return None  # let the regular finders import torchvision


def _remove_hook() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _TorchvisionFinder)]


def install_torchvision_hook() -> None:
    """Install the lazy import hook (idempotent; no-op once torchvision is imported)."""
    if "torchvision" in sys.modules or _applied:
        return
    if any(isinstance(f, _TorchvisionFinder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _TorchvisionFinder())


def install_pth(site_packages: str | None = None) -> Path:
    """Write the ``.pth`` file that installs the hook in every interpreter of this env."""
    target = Path(site_packages or sysconfig.get_paths()["purelib"]) / PTH_NAME
    target.write_text(PTH_LINE)
    return target


def main(argv: list[str] | None = None) -> int:
    """``python -m vqbench.compat install``: install the .pth hook into this environment."""
    args = sys.argv[1:] if argv is None else argv
    if args != ["install"]:
        print("usage: python -m vqbench.compat install", file=sys.stderr)
        return 2
    print(f"installed {install_pth()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
