"""The composition root: the only place that builds parts from the settings; everything else
receives them as arguments.

Each `build_*` / `open_*` function opens its parts under one `contextlib.ExitStack`: when a
part fails (any exception, Ctrl+C included), those opened before it close in reverse order,
and the returned services' `close()` closes them all the same way. The `enter_*` functions
open the same parts into a caller's stack, so a larger set of services owns them.

- `appliance.services.index`: the store and manifest (`open_index`), the embedders;
- `appliance.services.answers`: the model, audit log and assistant (`build_answer_services`);
- `appliance.services.ingest`: one `appliance ingest` run (`build_ingest_services`);
- `appliance.services.web`: the server (`build_web_services`).

The first two are re-exported here; the others are imported from their modules, so that a
command needing only the index does not import the web server's or the pipeline's parts.
"""

from appliance.services.answers import (
    AnswerServices,
    build_answer_services,
    build_generator,
    build_thread_plan,
    check_llm_files,
    enter_answer_services,
    open_audit_log,
    remote_config,
    resolve_llm_model,
)
from appliance.services.index import (
    IndexServices,
    build_embedder,
    build_ingest_embedder,
    enter_index,
    open_index,
)

__all__ = [
    "AnswerServices",
    "IndexServices",
    "build_answer_services",
    "build_embedder",
    "build_generator",
    "build_ingest_embedder",
    "build_thread_plan",
    "check_llm_files",
    "enter_answer_services",
    "enter_index",
    "open_audit_log",
    "open_index",
    "remote_config",
    "resolve_llm_model",
]
