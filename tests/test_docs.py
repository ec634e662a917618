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
    assert {"flowdec.files", "flowdec.stream", "flowdec.level", "flowdec.bitstream"} <= \
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
