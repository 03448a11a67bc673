"""The docs stay in step with the code: every setting documented, README commands real."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import AliasChoices

from jollyjet.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_is_documented() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    names = []
    for field in Settings.model_fields.values():
        assert isinstance(field.validation_alias, AliasChoices)
        names.append(str(field.validation_alias.choices[0]))
    missing = [name for name in names if f"`{name}`" not in text]
    assert not missing, f"undocumented settings: {missing}"


def test_readme_test_command_is_what_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```sh\n(.*?)\n```", readme, flags=re.S)
    assert "bash scripts/serve" in commands
    assert "bash scripts/test" in commands
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] == "bash scripts/test"


def test_doc_links_point_at_files() -> None:
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"
