"""Write cnnwidgets/assets/data/imagenet_classes.txt: the 1,000 ImageNet-1k class
names in class-index order, one per line.

    pip download --no-deps timm -d /tmp/timm
    python scripts/make_imagenet_classes.py /tmp/timm/timm-*.whl

The facts come from the WordNet data timm bundles (``timm/data/_info/``):
``imagenet_synsets.txt`` lists the 1,000 synsets in index order (sorted WordNet
ids, the order every ImageNet classifier uses) and
``imagenet_synset_to_lemma.txt`` their lemmas; a class is named by its first
lemma ("tabby, tabby cat" -> "tabby"). Two first lemmas name two classes each,
so those four get a word saying which ("crane (bird)", "crane (machine)").
Only the text file is kept; timm is not a dependency.
"""

from __future__ import annotations

import pathlib
import sys
import zipfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "cnnwidgets" / "assets" / "data" / "imagenet_classes.txt"
INFO = "timm/data/_info/"

# WordNet id -> name, where the first lemma alone is ambiguous.
DISAMBIGUATED = {
    "n02012849": "crane (bird)",
    "n03126707": "crane (machine)",
    "n03710637": "maillot (tights)",
    "n03710721": "maillot (tank suit)",
}


def class_names(wheel: pathlib.Path) -> list[str]:
    with zipfile.ZipFile(wheel) as z:
        synsets = z.read(INFO + "imagenet_synsets.txt").decode().split()
        lemmas = dict(
            line.split("\t", 1)
            for line in z.read(INFO + "imagenet_synset_to_lemma.txt").decode().splitlines()
            if "\t" in line
        )
    names = [DISAMBIGUATED.get(s) or lemmas[s].split(",")[0].strip() for s in synsets]
    if len(names) != 1000 or len(set(names)) != 1000:
        raise SystemExit(f"expected 1000 distinct names, got {len(set(names))} of {len(names)}")
    return names


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    OUT.write_text("\n".join(class_names(pathlib.Path(sys.argv[1]))) + "\n")
    print(f"wrote {OUT}")
