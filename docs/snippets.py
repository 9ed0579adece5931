"""Keep the code in the guide identical to the code that runs.

Source files mark regions with comment lines:

    # [docs:early-stopping]
    ...real code...
    # [/docs:early-stopping]

and a Markdown page embeds a region between two HTML comments, which render
as nothing on GitHub:

    <!-- snippet: keras_impl/callbacks.py#early-stopping -->
    ```python
    ...copied here by this tool...
    ```
    <!-- /snippet -->

    python docs/snippets.py --check     # exit 1 and list every stale snippet (the test runs this)
    python docs/snippets.py --update    # rewrite the snippets from the sources

A region's common indentation is removed; nested markers are dropped from the
copied text.  An unknown file or region name is an error, not an empty block.
"""

from __future__ import annotations

import argparse
import re
import sys
import textwrap
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DOCS_DIR = PROJECT_ROOT / "docs"

REGION_MARKER = re.compile(r"^\s*#\s*\[(/?)docs:([\w.-]+)\]\s*$")
SNIPPET_BLOCK = re.compile(
    r"(?P<open><!-- snippet: (?P<path>[\w./-]+)#(?P<region>[\w.-]+) -->\n)"
    r"(?P<body>.*?)"
    r"(?P<close><!-- /snippet -->)",
    re.DOTALL,
)
LANGUAGES = {".py": "python", ".yaml": "yaml", ".yml": "yaml", ".sh": "bash", "": "bash"}


def extract_region(path: Path, region: str) -> str:
    """The text between `# [docs:region]` and `# [/docs:region]` in `path`, dedented."""
    if not path.is_file():
        raise ValueError(f"snippet source not found: {path}")
    inside = False
    found = False
    lines: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        marker = REGION_MARKER.match(line)
        if marker:
            closing, name = marker.group(1) == "/", marker.group(2)
            if name == region:
                if closing and not inside:
                    raise ValueError(f"{path}: region '{region}' closed before it was opened")
                inside, found = not closing, True
            continue  # other regions' markers never appear in a snippet
        if inside:
            lines.append(line)
    if not found:
        raise ValueError(f"{path}: no region '{region}' (mark it with '# [docs:{region}]' ... '# [/docs:{region}]')")
    if inside:
        raise ValueError(f"{path}: region '{region}' is never closed")
    return textwrap.dedent("\n".join(lines)).strip("\n") + "\n"


def render_block(relative_path: str, region: str) -> str:
    source = PROJECT_ROOT / relative_path
    language = LANGUAGES.get(source.suffix, "")
    return f"```{language}\n{extract_region(source, region)}```\n"


def refresh(markdown: str) -> str:
    """`markdown` with every snippet block re-rendered from its source."""

    def replace(match: re.Match) -> str:
        return match.group("open") + render_block(match.group("path"), match.group("region")) + match.group("close")

    return SNIPPET_BLOCK.sub(replace, markdown)


def stale_pages(docs_dir: Path = DOCS_DIR) -> list[tuple[Path, str]]:
    """(page, first differing snippet) for each Markdown page whose snippets no longer match."""
    stale = []
    for page in sorted(docs_dir.rglob("*.md")):
        text = page.read_text(encoding="utf-8")
        fresh = refresh(text)
        if fresh != text:
            old = {m.group("path") + "#" + m.group("region"): m.group("body") for m in SNIPPET_BLOCK.finditer(text)}
            new = {m.group("path") + "#" + m.group("region"): m.group("body") for m in SNIPPET_BLOCK.finditer(fresh)}
            differing = next(name for name in new if old.get(name) != new[name])
            stale.append((page, differing))
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--check", action="store_true", help="exit 1 if any snippet differs from its source")
    action.add_argument("--update", action="store_true", help="rewrite every snippet from its source")
    args = parser.parse_args(argv)
    try:
        if args.update:
            for page in sorted(DOCS_DIR.rglob("*.md")):
                text = page.read_text(encoding="utf-8")
                fresh = refresh(text)
                if fresh != text:
                    page.write_text(fresh, encoding="utf-8")
                    print(f"updated {page.relative_to(PROJECT_ROOT)}", file=sys.stderr)
            return 0
        stale = stale_pages()
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for page, snippet in stale:
        print(f"stale snippet {snippet} in {page.relative_to(PROJECT_ROOT)} "
              f"(run: python docs/snippets.py --update)", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
