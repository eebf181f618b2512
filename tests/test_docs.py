"""The README's configuration table and the example env file are generated from the settings model."""

import re
from pathlib import Path

from edged.settings import known_variables, render_env_file, render_markdown_table

ROOT = Path(__file__).resolve().parent.parent


def test_readme_config_table_is_current():
    readme = (ROOT / "README.md").read_text()
    table = re.search(r"<!-- config-table:[^>]*-->\n(.*?)<!-- /config-table -->", readme, re.S)
    assert table, "README.md lost its config-table markers"
    assert table.group(1) == render_markdown_table(), "regenerate with: python -m edged.settings --markdown"


def test_env_example_lists_every_variable_with_its_default():
    example = (ROOT / "systemd" / "edged.env.example").read_text()
    assert example == render_env_file(), "regenerate with: python -m edged.settings > systemd/edged.env.example"
    for name in known_variables():
        assert re.search(rf"^#{name}=", example, re.M), name
