"""The switches between the authors' code and this package's earlier choices (docs/METHOD.md):
the paper preset takes the authors' value, the cpu and gpu presets the earlier one (so the built-in
benchmark's numbers stay comparable), each is a documented option of the stage commands and a bad
value is an error that names the setting."""

from __future__ import annotations

import pytest
import typer

from diga.engine.config import preset
from diga.errors import ConfigError

# (setting, authors' value, earlier value, option, commands that take it)
SWITCHES = [
    ("loss_norm", "all", "valid", "--loss-norm", ("warmup", "selftrain", "adapt")),
]


@pytest.mark.parametrize("name,authors,earlier,option,commands", SWITCHES)
def test_paper_preset_follows_the_authors_and_the_others_keep_the_earlier_choice(
        name, authors, earlier, option, commands):
    assert getattr(preset("paper"), name) == authors
    assert getattr(preset("cpu"), name) == earlier
    assert getattr(preset("gpu"), name) == earlier


@pytest.mark.parametrize("name,authors,earlier,option,commands", SWITCHES)
def test_each_switch_is_an_option_of_its_stage_commands(name, authors, earlier, option, commands):
    from diga.cli.main import app

    root = typer.main.get_command(app)
    for command in commands:
        params = [p for p in root.commands[command].params if option in (*p.opts, *p.secondary_opts)]
        assert params, f"diga {command} has no {option}"
        assert "authors" in params[0].help


@pytest.mark.parametrize("name,authors,earlier,option,commands", SWITCHES)
def test_a_bad_switch_value_names_the_setting(name, authors, earlier, option, commands):
    if isinstance(authors, str):
        with pytest.raises(ConfigError, match=f"{name} must be one of"):
            preset("cpu").replace(**{name: "bogus"}).validate()
