"""The errors every store operation raises: each message names the URI (and S3 endpoint)."""


class StoreError(RuntimeError):
    """A store operation failed for a reason the user can act on; the message names the URI (and S3 endpoint)."""


class ObjectNotFound(StoreError):
    """No object or file exists at the URI."""


class ArtifactNotFound(ObjectNotFound):
    """No complete artifact (no manifest.json) exists at the URI."""


class CorruptArtifact(StoreError):
    """An artifact's manifest is malformed or a downloaded file does not match its size or sha256."""


class SettingsChanged(StoreError):
    """A resumable run's output already holds a run with other settings; the message names each difference."""
