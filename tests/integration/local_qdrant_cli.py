"""`appliance` on its Qdrant server backend, the "server" being qdrant-client's on-disk mode.

`QdrantClient(":memory:")` dies with the process, so a test that kills the appliance and runs
it again keeps the server's data in the folder QDRANT_LOCAL_PATH instead. The appliance runs
unchanged (APPLIANCE_QDRANT_URL selects the backend) except where its client points:

    QDRANT_LOCAL_PATH=/tmp/q APPLIANCE_QDRANT_URL=http://qdrant.test:6333 \\
        python -m tests.integration.local_qdrant_cli ingest DOCS
"""

from __future__ import annotations

import os
import warnings

from qdrant_client import QdrantClient

from appliance.cli import main
from appliance.settings import Settings
from appliance.store import factory


def local_client(settings: Settings) -> QdrantClient:
    return QdrantClient(path=os.environ["QDRANT_LOCAL_PATH"])


if __name__ == "__main__":
    factory.server_client = local_client
    # Local mode always searches exactly, as the appliance asks the server to anyway.
    warnings.filterwarnings("ignore", message="Local mode performs exact")
    main()
