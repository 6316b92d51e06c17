"""What the app remembers between launches: the last run configuration and the window
geometry, kept with QSettings (organisation and application "gradviz").

A text file the text task cannot use (gone, empty, binary, not UTF-8: whatever
:func:`gradviz.engine.tasks.texts.load_text` refuses) is never remembered, and one that went bad
since is forgotten when the configuration is read back: the configuration keeps the rest
of its settings and the text task falls back to its built-in text, so one bad choice does
not reopen into an error at every launch.

``GRADVIZ_SETTINGS`` (a path to an .ini file) or the ``path`` argument puts the settings
somewhere else; tests use it so they never touch the user's own settings.
"""
from __future__ import annotations

import json
import os

from PyQt6 import QtCore

from gradviz.config import ConfigError, RunConfig
from gradviz.engine.tasks.texts import text_file_problem

ENV_VAR = "GRADVIZ_SETTINGS"


class Prefs:
    def __init__(self, path: str | os.PathLike | None = None):
        path = path if path is not None else os.environ.get(ENV_VAR)
        if path:
            self.settings = QtCore.QSettings(str(path), QtCore.QSettings.Format.IniFormat)
        else:
            self.settings = QtCore.QSettings("gradviz", "gradviz")
        self._checked: tuple[tuple | None, str | None] = (None, None)  # (file key, problem)

    def load_config(self) -> RunConfig | None:
        """The last configuration, or None if there is none or it is no longer valid
        (an older version's settings must not stop the app from opening)."""
        text = self.settings.value("run/config")
        if not isinstance(text, str):
            return None
        try:
            config = RunConfig.from_dict(json.loads(text))
        except (ValueError, TypeError, ConfigError):
            return None
        return self._usable(config)

    def save_config(self, config: RunConfig) -> None:
        config = self._usable(config)
        self.settings.setValue("run/config", json.dumps(config.to_dict(), sort_keys=True))

    def _usable(self, config: RunConfig) -> RunConfig:
        """``config`` without its text file if the text task could not use it."""
        path = config.text_file
        if not path:
            return config
        try:
            info = os.stat(path)
            key = (path, info.st_mtime_ns, info.st_size)
        except OSError:
            key = (path, None, None)
        # The configuration is saved on every change of a setting: read the file only
        # when it is another file, or changed, since the last look.
        if key != self._checked[0]:
            self._checked = (key, text_file_problem(path))
        return config if self._checked[1] is None else config.replace(text_file=None)

    def load_geometry(self) -> QtCore.QByteArray | None:
        value = self.settings.value("window/geometry")
        return value if isinstance(value, QtCore.QByteArray) and not value.isEmpty() else None

    def save_geometry(self, geometry: QtCore.QByteArray) -> None:
        self.settings.setValue("window/geometry", geometry)

    def last_folder(self) -> str:
        value = self.settings.value("files/last_folder")
        return value if isinstance(value, str) and os.path.isdir(value) else os.path.expanduser("~")

    def set_last_folder(self, folder: str | os.PathLike) -> None:
        self.settings.setValue("files/last_folder", str(folder))

    def sync(self) -> None:
        self.settings.sync()
