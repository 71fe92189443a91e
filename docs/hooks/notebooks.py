"""MkDocs hook: the tutorial notebooks (notebooks/*.ipynb, outside docs/) become
pages at notebooks/<name>/, before mkdocs-jupyter converts them with their
committed outputs. Also serves CHANGELOG.md as changelog.md, so neither file
is copied into docs/."""

from __future__ import annotations

import pathlib

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

ROOT = pathlib.Path(__file__).resolve().parents[2]


@event_priority(100)  # before mkdocs-jupyter's on_files picks the notebooks up
def on_files(files: Files, config) -> Files:
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        files.append(
            File(
                f"notebooks/{path.name}",
                src_dir=str(ROOT),
                dest_dir=config["site_dir"],
                use_directory_urls=config["use_directory_urls"],
            )
        )
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    files.append(File.generated(config, "changelog.md", content=changelog))
    return files
