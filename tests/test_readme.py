"""What the README shows works: its configuration block is valid TOML, complete, and at the defaults."""
from __future__ import annotations

import dataclasses
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from jwins import config

README = (Path(__file__).parent.parent / "README.md").read_text()


def _toml_block() -> str:
    blocks = re.findall(r"```toml\n(.*?)```", README, flags=re.S)
    assert len(blocks) == 1, "the README shows one TOML block: the configuration"
    return blocks[0]


def test_the_configuration_block_parses_to_the_defaults(tmp_path):
    path = tmp_path / "readme.toml"
    path.write_text(_toml_block())
    assert config.load(path) == config.Config()


def test_the_configuration_block_names_every_key():
    raw = config.tomllib.loads(_toml_block())
    for f in dataclasses.fields(config.Config):
        assert f.name in raw, f"the README's configuration omits {f.name}"
        if dataclasses.is_dataclass(f.type) or isinstance(raw[f.name], dict):
            section = getattr(config.Config(), f.name)
            missing = [g.name for g in dataclasses.fields(section) if g.name not in raw[f.name]]
            assert not missing, f"the README's [{f.name}] omits {missing}"


def test_the_readme_links_only_to_files_in_the_repository():
    root = Path(__file__).parent.parent
    for target in re.findall(r"\]\(([^)#]+)", README):
        if "://" not in target:
            assert (root / target).exists(), f"README links to {target}, which is not in the repository"
    assert "../shared" not in README
    for doc in (root / "docs").glob("*.md"):
        assert "../shared" not in doc.read_text(), f"{doc.name} sends readers outside the repository"
        for target in re.findall(r"\]\(([^)#]+)", doc.read_text()):
            if "://" not in target:
                assert (doc.parent / target).exists(), f"{doc.name} links to {target}, which does not exist"


# ------------------------------------------------------------------------- every command as written

ROOT = Path(__file__).parent.parent
PLACEHOLDERS = {"CONFIG": "examples/digits.toml"}
SMALL = {"run": ["--rounds", "2", "--quiet", "--no-plots"], "compare": ["--rounds", "2", "--quiet"]}


def _commands() -> list[tuple[str, str]]:
    """(file, command) for every `jwins ...` and `torchrun ...` line of the bash blocks of README.md and
    docs/extending.md (the two set-up commands are what CI itself runs)."""
    out = []
    for name in ("README.md", "docs/extending.md"):
        for block in re.findall(r"```bash\n(.*?)```", (ROOT / name).read_text(), flags=re.S):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.split("#", 1)[0].strip()
                if line.startswith(("jwins ", "torchrun ")):
                    out.append((name, line))
    return out


@pytest.mark.parametrize("where,command", _commands(), ids=lambda v: v if "/" not in v else None)
def test_every_command_of_the_readme_and_the_docs_runs_as_written(tmp_path, where, command):
    """Each command, with its placeholders filled and only a short run's flags added (2 rounds, an output
    directory), runs where a reader at the repository's root would run it. What cannot run here says why: a download (no internet),
    Fashion-MNIST's files when absent, the several-machines template."""
    if " download " in command:
        pytest.skip("needs internet (tests/test_download.py serves the files locally)")
    if "--nnodes" in command:
        pytest.skip("several machines: tests/test_network.py runs it on namespace hosts")
    if "fashion-mnist" in command and not Path("/usr/share/datasets/fashion-mnist").exists():
        pytest.skip("Fashion-MNIST files absent (apt-get install dataset-fashion-mnist)")
    words = shlex.split(command)
    words = [PLACEHOLDERS.get(w, w) for w in words]
    kind = next((w for w in words if w in SMALL), None)
    if kind:
        words += [*SMALL[kind], "--out", str(tmp_path / "out")]
        if "--nodes" in words and "fashion-mnist" in words:
            words += ["--set", "eval.nodes=2", "--set", "eval.max_samples=100"]
    if words[0] == "jwins":
        words = [sys.executable, "-m", "jwins", *words[1:]]
    else:
        words = [sys.executable, "-m", "torch.distributed.run", *words[1:]]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    done = subprocess.run(words, cwd=_beside_examples(tmp_path), capture_output=True, text=True, timeout=600,
                          env={**env, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, f"{where}: {command}\n{done.stderr[-2000:]}"
    assert "is ignored" not in done.stderr, f"{where}: {command} sets what its parts ignore: {done.stderr}"


def _beside_examples(tmp_path: Path) -> Path:
    """A working directory that sees the repository's examples/ as a reader at its root does (what the runs
    write stays in the test's folder)."""
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    return tmp_path


def test_every_python_block_of_the_readme_runs_as_written(tmp_path):
    cwd = _beside_examples(tmp_path)
    for block in re.findall(r"```python\n(.*?)```", README, flags=re.S):
        done = subprocess.run([sys.executable, "-c", block], cwd=cwd, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{block}\n{done.stderr[-2000:]}"


def test_set_up_installs_through_the_lock_and_the_library_asks_for_a_range():
    """The README's two commands and CI install the exact versions of constraints.txt; pyproject gives torch a
    tested range that admits the pinned version."""
    from packaging.requirements import Requirement
    from packaging.version import Version

    setup = [line for line in README.splitlines() if line.startswith("python3 -m venv .venv")]
    assert len(setup) == 2 and all("pip install -c constraints.txt -e " in line for line in setup)
    assert "pip install --quiet -c constraints.txt -e '.[test]'" in (ROOT / ".ci" / "run").read_text()
    pins = dict(line.split("==") for line in (ROOT / "constraints.txt").read_text().splitlines()
                if line and not line.startswith("#"))
    torch = next(Requirement(r) for r in config.tomllib.loads((ROOT / "pyproject.toml").read_text())
                 ["project"]["dependencies"] if r.startswith("torch"))
    assert pins["torch"] == "2.13.0" and Version(pins["torch"]) in torch.specifier
    assert not torch.specifier.contains("2.13.0") or len(list(torch.specifier)) == 2  # a range, not a pin
