"""What the README shows works: its configuration block is valid TOML, complete, and at the defaults."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

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
