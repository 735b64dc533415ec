"""What every `clinicbox` command shares: the settings, loaded once, and the record store.

Click hands the one `CommandContext` of an invocation to each command that asks for it with
`@pass_command_context` (as Flask's `ScriptInfo` / `pass_script_info` do), so no command
module imports the top-level group back to find its settings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from appliance.config import Settings, load_settings
from appliance.store.store import Store, open_store, passphrase_from_env


class CommandContext:
    """The config file chosen with `--config`, and the settings it gives, loaded on first use."""

    def __init__(self, config_path: Path | None = None) -> None:
        self.config_path = config_path
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        """Defaults < TOML < CLINICBOX_* variables, loaded once per invocation."""
        if self._settings is None:
            self._settings = load_settings(config_path=self.config_path)
        return self._settings

    def open_store(self, passphrase: str | None = None) -> Store:
        """The record store, unlocked with `passphrase` or else the environment's (if any)."""
        if passphrase is None:
            passphrase = passphrase_from_env()
        return open_store(self.settings, passphrase)

    @contextmanager
    def store(self, passphrase: str | None = None) -> Iterator[Store]:
        """The record store for the length of a `with` block, closed afterwards."""
        store = self.open_store(passphrase)
        try:
            yield store
        finally:
            store.close()


pass_command_context: Callable[..., Any] = click.make_pass_decorator(CommandContext, ensure=True)
