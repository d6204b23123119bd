"""``python -m vqbench.mini.assets``: rewrite ``manifest.json`` from the files present."""

from vqbench.mini.assets import MANIFEST, write_manifest

if __name__ == "__main__":
    m = write_manifest()
    print(f"{len(m['files'])} files, {m['total_bytes'] / 1e6:.1f} MB -> {MANIFEST}")
