"""The docs stay in step with the code: every setting documented, README commands real."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import AliasChoices

from jollyjet.jobs.warm import WarmReport
from jollyjet.settings import Settings
from tests.support.procfile import read_procfile

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


def test_procfile_table_shows_the_procfile_commands() -> None:
    text = (ROOT / "docs" / "operations.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)` \| `([^`]+)` \|", text, flags=re.M))
    assert rows == read_procfile()


def test_warm_report_fields_are_documented() -> None:
    text = (ROOT / "docs" / "jobs.md").read_text()
    section = text[text.index("### Warming") : text.index("### Cleanup")]
    documented = set(re.findall(r"`(\w+)`", section[section.index("Report:") :]))
    assert documented == set(WarmReport().as_dict())


def test_example_urls_with_a_query_string_are_quoted() -> None:
    # zsh (macOS's default shell) treats an unquoted `?` as a glob and refuses the command.
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for line in page.read_text().splitlines():
            if line.lstrip().startswith("curl "):
                unquoted = [w for w in line.split() if "?" in w and not w.startswith(("'", '"'))]
                assert not unquoted, f"{page.name}: quote {unquoted} (zsh globs `?`)"
