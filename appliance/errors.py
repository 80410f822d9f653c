"""One error family. Each message says what went wrong and what to do about it."""


class ApplianceError(Exception):
    """Base of every error the appliance reports to a user (CLI message, later gr.Error)."""


class ConfigError(ApplianceError):
    """A setting is missing or has a bad value."""


class ModelError(ApplianceError):
    """A model file is missing, corrupt or unusable."""


class StoreError(ApplianceError):
    """The vector store cannot be opened or used."""


class StoreLockedError(StoreError):
    """Another process owns the embedded store."""


class IndexDamagedError(StoreError):
    """The index's files are unreadable, or it holds fewer chunks than the manifest records."""


class StoreSpaceError(StoreError):
    """The volume has less free space than the embedded store maps."""


class DimensionMismatchError(StoreError):
    """The embedding model does not match the collection's vectors."""


class LoadError(ApplianceError):
    """A file cannot be turned into text (empty, corrupt, encrypted, unsupported...)."""


class ParseTimeoutError(LoadError):
    """Parsing a file took longer than the configured limit."""


class AuditError(ApplianceError):
    """The audit log cannot be written or read; no answer may be returned without it."""


class BusyError(ApplianceError):
    """The model is serving other requests and the waiting queue is full."""


class QuestionError(ApplianceError):
    """The question cannot be answered as asked (empty, or too long for the model's context)."""


class AuthError(ApplianceError):
    """A user, password, API key or session cannot be created, changed or used as asked."""
