"""Every example in the package's docstrings runs and prints what it shows (documentation
that is true). Examples that need what a test machine lacks (a training cache, a GPU, opusenc
at a given path) are marked ``# doctest: +SKIP`` where they stand."""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import pkgutil
from pathlib import Path

import pytest

import flowdec


def _modules() -> list[str]:
    names = ["flowdec"]
    for m in pkgutil.walk_packages(flowdec.__path__, "flowdec."):
        names.append(m.name)
    return sorted(n for n in names if ">>>" in _source(n))


def _source(name: str) -> str:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return ""
    return Path(spec.origin).read_text()


MODULES = _modules()


def test_examples_are_found() -> None:
    assert {"flowdec.files", "flowdec.stream", "flowdec.dsp.level", "flowdec.format.bitstream"} <= \
        set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
                             report=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed"


def test_readme_test_command_is_what_ci_runs() -> None:
    """The README's test command is scripts/test.sh, and CI's .ci/run runs exactly it."""
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    assert "```bash\nbash scripts/test.sh\n```" in readme
    ci = [ln for ln in (root / ".ci" / "run").read_text().splitlines()
          if ln.strip() and not ln.startswith("#")]
    assert ci == ['exec bash "$(dirname "$0")/../scripts/test.sh"']
    script = (root / "scripts" / "test.sh").read_text()
    for step in ("plugin/build.sh", "ruff check", "mypy", "pytest -q tests"):
        assert step in script, step


ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_readme_is_short() -> None:
    """The README is a user's document; measurements and limits live in docs/quality.md."""
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines; move detail to docs/"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_docs_links_resolve_and_name_no_machine(doc: Path) -> None:
    """Relative links point at files that exist; no text speaks of "our" machines or "here"."""
    import re

    text = doc.read_text()
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" not in target:
            assert (doc.parent / target).exists(), f"{doc.name}: broken link {target}"
    for word in ("our", "ours", "here", "this machine"):
        found = re.search(rf"\b{word}\b", text, re.IGNORECASE)
        assert not found, f"{doc.name}: {text[max(0, found.start() - 40):found.end() + 20]!r}"


def _tables(text: str) -> list[tuple[str, list[list[str]]]]:
    """Markdown tables with the last text line above each (a header or bold title); rows as
    lists of cells, the separator row left out."""
    out: list[tuple[str, list[list[str]]]] = []
    title, previous = "", ""
    for line in text.splitlines():
        if line.startswith("|"):
            if not previous.startswith("|"):
                out.append((title, []))
            if not line.startswith("|---"):
                out[-1][1].append([c.strip() for c in line.strip("|").split("|")])
        elif line.strip():
            title = line.strip()
        previous = line
    return out


def test_readme_quality_tables_agree_with_docs() -> None:
    """Each flowdec / Opus cell of the README's per-bitrate tables (ViSQOL / Zimtohrli) is
    the number docs/quality.md's per-domain table gives for that setting and domain."""
    readme = [t for _, t in _tables((ROOT / "README.md").read_text()) if "ViSQOL" in t[0][0]]
    docs = _tables((ROOT / "docs" / "quality.md").read_text())
    checked = 0
    for table in readme:
        domains = table[0][1:]
        for row in table[1:]:
            for domain, cell in zip(domains, row[1:], strict=True):
                per_domain = next(t for title, t in docs if title.startswith(f"**{domain}**"))
                head = per_domain[0]
                want = next(r for r in per_domain if r[0] == row[0])
                visqol, zim = (want[head.index(h)] for h in ("ViSQOL ↑", "Zimtohrli ↓"))
                assert cell == f"{visqol} / {zim}", (row[0], domain)
                checked += 1
    assert checked >= 12


def test_quality_tables_script_prints_the_docs_format(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """benchmarks/quality_tables.py turns a flowdec eval summary into the docs' tables."""
    import json
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import quality_tables
    finally:
        sys.path.pop(0)

    def dom(v: float, z: float, speech: bool) -> dict[str, float | int | None]:
        return {"clips": 2, "visqol": v, "zimtohrli": z, "mel_distance": 0.25, "si_sdr": 3.14,
                "pesq_wb": 1.5 if speech else None, "stoi": 0.8 if speech else None,
                "fad": 250.4, "actual_kbps": 4.8}

    def setting(system: str, b: float, v: float) -> dict[str, object]:
        return {"system": system, "name": system, "bitrate": b,
                "domains": {d: dom(v, 0.01, d == "speech") for d in ("music", "speech", "all")}}

    summary = {"settings": [setting("ndac", 3.0, 3.2), setting("opus", 3.0, 2.0),
                            setting("ndac", 6.0, 3.3), setting("opus", 6.0, 2.1),
                            setting("opus", 12.0, 3.0), setting("flowdec-nfe6", 6.0, 1.0)]}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    quality_tables.main([str(tmp_path)])
    text = capsys.readouterr().out
    tables = dict(_tables(text))
    assert text.count("| flowdec 3 kbit/s |") == 2  # music and speech; nfe6 not asked for
    assert tables["**music** (2 clips)"][0] == ["setting", "ViSQOL ↑", "Zimtohrli ↓",
                                                "mel distance ↓", "SI-SDR ↑ (dB)", "FAD ↓"]
    assert tables["**speech** (2 clips)"][1] == ["flowdec 3 kbit/s", "3.20", "0.0100", "0.250",
                                                 "3.1", "1.50", "0.800", "250"]
    quality_tables.main([str(tmp_path), "--readme"])
    readme = capsys.readouterr().out
    rows = [r[0] for _, t in _tables(readme) for r in t[1:]]
    assert rows == ["flowdec 3 kbit/s", 'Opus "3" (4.8 kbit/s)', "flowdec 6 kbit/s",
                    'Opus "6" (4.8 kbit/s)', 'Opus "12" (4.8 kbit/s)']
