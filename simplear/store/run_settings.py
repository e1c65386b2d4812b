"""The settings a resumable run's outputs depend on, stored beside them: a resume with other settings is refused."""

from __future__ import annotations

import json

from simplear.store.errors import ObjectNotFound, SettingsChanged
from simplear.store.store import Store
from simplear.store.uri import join


def settings_bytes(settings: dict) -> bytes:
    """The stored form of a run's settings (deterministic JSON)."""
    return (json.dumps(settings, indent=2, sort_keys=True) + "\n").encode()


def claim_settings(store: Store, root: str, file_name: str, settings: dict, command: str, flag: str) -> bytes:
    """The settings file of the run at root, written now if absent; SettingsChanged naming each differing setting.

    `settings` must be JSON-like (what json.loads gives back), so the comparison sees what the file holds.
    """
    uri = join(root, file_name)
    try:
        stored = store.read(uri)
    except ObjectNotFound:
        data = settings_bytes(settings)
        store.write(uri, data)
        return data
    previous = json.loads(stored)
    changed = sorted(key for key in settings.keys() | previous.keys() if settings.get(key) != previous.get(key))
    if changed:
        details = ", ".join(f"{key}: {previous.get(key)!r} there, {settings.get(key)!r} now" for key in changed)
        raise SettingsChanged(
            f"{root} holds a simplear {command} run with other settings ({details}); "
            f"resume it with the same settings or choose a new {flag}"
        )
    return stored
