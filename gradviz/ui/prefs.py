"""What the app remembers between launches: the last run configuration and the window
geometry, kept with QSettings (organisation and application "gradviz").

``GRADVIZ_SETTINGS`` (a path to an .ini file) or the ``path`` argument puts the settings
somewhere else; tests use it so they never touch the user's own settings.
"""
from __future__ import annotations

import json
import os

from PyQt6 import QtCore

from gradviz.config import ConfigError, RunConfig

ENV_VAR = "GRADVIZ_SETTINGS"


class Prefs:
    def __init__(self, path: str | os.PathLike | None = None):
        path = path if path is not None else os.environ.get(ENV_VAR)
        if path:
            self.settings = QtCore.QSettings(str(path), QtCore.QSettings.Format.IniFormat)
        else:
            self.settings = QtCore.QSettings("gradviz", "gradviz")

    def load_config(self) -> RunConfig | None:
        """The last configuration, or None if there is none or it is no longer valid
        (an older version's settings must not stop the app from opening)."""
        text = self.settings.value("run/config")
        if not isinstance(text, str):
            return None
        try:
            return RunConfig.from_dict(json.loads(text))
        except (ValueError, TypeError, ConfigError):
            return None

    def save_config(self, config: RunConfig) -> None:
        self.settings.setValue("run/config", json.dumps(config.to_dict(), sort_keys=True))

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
