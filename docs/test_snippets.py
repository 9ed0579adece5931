"""The guide's code is the project's code: every snippet matches its marked
source region, and the extraction rules themselves behave as documented."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import snippets  # noqa: E402  (docs/ is a folder of pages, not a package)


def test_every_snippet_in_the_docs_matches_its_source():
    stale = snippets.stale_pages()
    assert stale == [], "stale snippets (run python docs/snippets.py --update): " + \
        ", ".join(f"{page.name}: {name}" for page, name in stale)


def test_the_guide_embeds_snippets_from_both_frameworks():
    """Keras beside Lightning: the minimal examples' regions and the project's own, named by framework."""
    guide = (snippets.DOCS_DIR / "keras_vs_lightning.md").read_text()
    regions = [m.group("region") for m in snippets.SNIPPET_BLOCK.finditer(guide)]
    assert sum(region.startswith(("keras-", "minimal-keras-")) for region in regions) >= 8
    assert sum(region.startswith(("lightning-", "minimal-lightning-")) for region in regions) >= 8
    paths = {m.group("path") for m in snippets.SNIPPET_BLOCK.finditer(guide)}
    assert {"examples/minimal_keras.py", "examples/minimal_port.py"} <= paths


def test_region_extraction_dedents_and_drops_nested_markers(tmp_path):
    source = tmp_path / "example.py"
    source.write_text("def f():\n    # [docs:outer]\n    a = 1\n    # [docs:inner]\n    b = 2\n"
                      "    # [/docs:inner]\n    # [/docs:outer]\n")
    assert snippets.extract_region(source, "outer") == "a = 1\nb = 2\n"
    assert snippets.extract_region(source, "inner") == "b = 2\n"


def test_a_missing_region_is_an_error_not_an_empty_block(tmp_path):
    source = tmp_path / "example.py"
    source.write_text("x = 1\n# [docs:open]\ny = 2\n")
    with pytest.raises(ValueError, match="no region 'absent'"):
        snippets.extract_region(source, "absent")
    with pytest.raises(ValueError, match="region 'open' is never closed"):
        snippets.extract_region(source, "open")


def test_a_changed_source_makes_the_page_stale(tmp_path, monkeypatch):
    monkeypatch.setattr(snippets, "PROJECT_ROOT", tmp_path)
    (tmp_path / "code.py").write_text("# [docs:r]\nvalue = 1\n# [/docs:r]\n")
    page = tmp_path / "page.md"
    page.write_text("<!-- snippet: code.py#r -->\n```python\nvalue = 1\n```\n<!-- /snippet -->\n")
    assert snippets.stale_pages(tmp_path) == []
    (tmp_path / "code.py").write_text("# [docs:r]\nvalue = 2\n# [/docs:r]\n")
    assert snippets.stale_pages(tmp_path) == [(page, "code.py#r")]
