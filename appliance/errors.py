"""One error family. Each message says what went wrong and what to do about it.

The family (a few features add their own member next to their code, marked *):

* ApplianceError - anything the appliance reports to a user
  + ConfigError - a setting is missing or has a bad value
  + ModelError - the model (or the LLM server, the embedder) is missing or failed
  + StoreError - the vector store cannot be opened or used
    - StoreLockedError - another process owns the embedded store
    - IndexDamagedError - unreadable index files, or fewer chunks than the manifest
    - StoreSpaceError - too little free space for the embedded store
    - DimensionMismatchError - the embedding model does not fit the collection
  + LoadError - a file cannot be turned into text
    - ParseTimeoutError - parsing took longer than the limit
  + AuditError - the audit log cannot be written or read: no answer is returned
  + BusyError - the model's waiting queue is full
  + QuestionError - the question cannot be answered as asked
  + AuthError - a user, password, API key or session cannot be used as asked
  + EvalSetError* (appliance.evaluation) - a question file cannot be read
  + FinetuneError* (appliance.finetune) - training data, a run or an adapter cannot be made
  + FeedbackError* (appliance.audit.feedback) - feedback refused, with its HTTP status
  + IngestCancelled* (ingest.service) - an ingestion run stopped at a progress step

They are turned into what a user sees at the edges only: the CLI prints the message and
exits non-zero, the web UI shows it, and /v1 answers BusyError with 429, QuestionError with
400 and the others with 503. A backend that turns a library's exception into one of these
chains it (`raise ... from exc`) when the cause helps an operator reading the log.
"""


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
