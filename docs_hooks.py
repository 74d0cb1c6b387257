"""mkdocs hooks: the README is the site's home page, the API reference is generated from the public names, and
links that leave docs/ (to examples/ and BENCHMARKS.md) point at copies of those files in the site.

The guides stay plain Markdown that reads well on its own (and whose Python blocks the test suite runs); every
public name the package exports gets a reference entry without a page to keep in sync by hand.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent
SRC = ROOT / "src" / "phidice"

# reference pages: title -> modules whose __all__ (or, for phidice itself, _EXPORTS) they list
REFERENCE = {
    "phidice": ["phidice"],
    "phidice.metrics": ["phidice.metrics"],
    "phidice.missing": ["phidice.missing"],
    "phidice.losses": ["phidice.losses"],
    "phidice.keras": ["phidice.keras"],
    "phidice.integrations.monai": ["phidice.integrations.monai"],
    "phidice.integrations.nnunet": [
        "phidice.integrations.nnunet",
        "phidice.integrations.nnunet.merge",
        "phidice.integrations.nnunet.training",
    ],
    "phidice.kernels": ["phidice.kernels", "phidice.kernels.buffers"],
    "phidice.experiments": ["phidice.experiments"],
}
OUTSIDE = ("examples/", "BENCHMARKS.md", "CHANGELOG.md")


def public_names(module: str) -> list[str]:
    """The names a package exports, each as the path of the module that defines it, read from the source
    without importing it (optional extras stay optional)."""
    parts = module.split(".")[1:]
    path = SRC.joinpath(*parts, "__init__.py")
    if not path.is_file():
        path = SRC.joinpath(*parts[:-1], parts[-1] + ".py")
    tree = ast.parse(path.read_text())
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None
        if isinstance(node, ast.AnnAssign):
            target = node.target
        if module == "phidice" and isinstance(target, ast.Name) and target.id == "_EXPORTS":
            return [f"{where}.{name}" for name, where in sorted(ast.literal_eval(node.value).items())]
        if module != "phidice" and isinstance(target, ast.Name) and target.id == "__all__":
            # the literal names; a starred entry (names defined lazily elsewhere) has its own module on the page
            return sorted(f"{module}.{e.value}" for e in node.value.elts if isinstance(e, ast.Constant))
    raise ValueError(f"{path}: no __all__")


def reference_page(title: str, modules: list[str]) -> str:
    lines = [f"# `{title}`", ""]
    for module in modules:
        if module != "phidice":
            lines += [f"::: {module}", "    options:", "      members: false", ""]
        for path in public_names(module):
            lines += [f"::: {path}", ""]
    return "\n".join(lines)


def on_files(files: Files, config) -> Files:
    readme = (ROOT / "README.md").read_text()
    readme = re.sub(r"\]\(docs/", "](", readme)  # the guides are pages of this site
    readme = readme.replace("](examples/)", "](examples/index.md)")
    files.append(File.generated(config, "index.md", content=readme))
    for title, modules in REFERENCE.items():
        files.append(File.generated(config, f"reference/{title}.md", content=reference_page(title, modules)))
    examples = [p for p in sorted((ROOT / "examples").rglob("*")) if p.is_file() and "__pycache__" not in p.parts]
    for path in [ROOT / "BENCHMARKS.md", ROOT / "CHANGELOG.md", *examples]:
        files.append(File.generated(config, path.relative_to(ROOT).as_posix(), abs_src_path=str(path)))
    listing = ["# Examples", "", "Runnable scripts; the test suite runs each of them.", ""]
    listing += [
        f"- [{p.relative_to(ROOT / 'examples').as_posix()}]({p.relative_to(ROOT / 'examples').as_posix()})"
        for p in examples
    ]
    files.append(File.generated(config, "examples/index.md", content="\n".join(listing) + "\n"))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    """``../examples/x.py`` and ``../BENCHMARKS.md`` (links that work in the repository) → the site's copies."""
    markdown = markdown.replace("](../examples/)", "](examples/index.md)")
    for target in OUTSIDE:
        markdown = markdown.replace(f"](../{target}", f"]({target}")
    return markdown
