"""No pickle: every ``torch.load`` passes ``weights_only=True``, no ``pickle``/``dill`` loads,
no ``np.load(allow_pickle=True)`` (design.md: pickles from users are never loaded)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
FILES = sorted(
    p for d in ("vqbench", "quantizers", "metrics", "benchmarks") for p in (ROOT / d).rglob("*.py")
)


def _kw(call: ast.Call, name: str) -> object:
    for k in call.keywords:
        if k.arg == name:
            return k.value.value if isinstance(k.value, ast.Constant) else "<expr>"
    return None


def unsafe_loads(source: str) -> list[str]:
    """``file:line what`` for every unsafe deserialisation call in ``source``."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        owner = getattr(func.value, "id", "") if isinstance(func, ast.Attribute) else ""
        if name == "load" and owner == "torch" and _kw(node, "weights_only") is not True:
            out.append(f"{node.lineno}: torch.load without weights_only=True")
        if owner in ("pickle", "dill", "cloudpickle") and name in ("load", "loads"):
            out.append(f"{node.lineno}: {owner}.{name}")
        if name == "load" and owner in ("np", "numpy") and _kw(node, "allow_pickle") is True:
            out.append(f"{node.lineno}: np.load(allow_pickle=True)")
    return out


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_unsafe_loads(path):
    assert unsafe_loads(path.read_text()) == []


def test_the_scan_finds_unsafe_loads():
    src = (
        "import torch, pickle\ntorch.load(f)\ntorch.load(f, weights_only=False)\npickle.loads(b)\n"
    )
    assert len(unsafe_loads(src)) == 3
    assert unsafe_loads("torch.load(f, weights_only=True)") == []


def test_a_crafted_checkpoint_does_not_run(tmp_path):
    """What the scan protects against: a pickle payload is refused by weights_only=True."""
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (marker.write_text, ("pwned",))

    torch.save({"step": Payload()}, tmp_path / "ckpt.pt")
    with pytest.raises(Exception, match="[Ww]eights only load failed|Unsupported"):
        torch.load(tmp_path / "ckpt.pt", weights_only=True)
    assert not marker.exists()
