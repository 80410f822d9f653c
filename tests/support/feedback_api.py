"""`/v1` with feedback behind the real guard and user store, over the assistant's harness:
three people (a user, a user of hr, an auditor), each with an API key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.testclient import TestClient

from appliance.audit.denials import Denials
from appliance.audit.feedback import Feedback
from appliance.auth import ProxyAuth, Role, UserStore
from appliance.auth.identity import Identifier
from appliance.chat import ChatEngine
from appliance.metrics import Metrics
from appliance.web import feedback_api, openai_api
from appliance.web.guard import AuthGuard
from tests.support.fakes import ScriptedGenerator
from tests.support.rag import DOCS, Harness

USERS = {
    "ann": (["everyone"], Role.USER),
    "hugo": (["everyone", "hr"], Role.USER),
    "carol": (["everyone"], Role.AUDITOR),
}


ACL = {(f"{n:064x}", source): acl for n, (source, acl, _) in enumerate(DOCS, start=1)}


class Api:
    def __init__(self, root: Path) -> None:
        self.harness = Harness(root, ScriptedGenerator("The password is BLUEFALCON [1]."))
        self.users = UserStore(
            root / "users.sqlite3", hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
        )
        self.keys = {}
        for name, (groups, role) in USERS.items():
            self.users.add_user(name, "correct horse battery", groups, role)
            self.keys[name] = self.users.create_key(name)[1]
        engine = ChatEngine(self.harness.assistant, Metrics(dict), 3)
        identifier = Identifier(
            self.users, ProxyAuth(None, None, None, []), Denials(self.harness.audit)
        )
        self.identifier = identifier
        self.feedback = Feedback(
            self.harness.audit, lambda d, s: ACL.get((d, s)), identifier.denied
        )
        app = FastAPI()
        app.include_router(openai_api.build_router(engine))
        app.include_router(feedback_api.build_router(self.feedback))
        app.add_middleware(AuthGuard, identifier=identifier)
        self.client = TestClient(app)

    def post(self, who: str, path: str, body: dict[str, Any]) -> Any:
        return self.client.post(
            path, json=body, headers={"Authorization": f"Bearer {self.keys[who]}"}
        )

    def get(self, who: str, path: str) -> Any:
        return self.client.get(path, headers={"Authorization": f"Bearer {self.keys[who]}"})

    def ask(self, who: str, question: str) -> str:
        body = {"messages": [{"role": "user", "content": question}]}
        response = self.post(who, "/v1/chat/completions", body)
        assert response.status_code == 200, response.text
        return str(response.json()["audit_id"])

    def close(self) -> None:
        self.client.close()
        self.users.close()
        self.harness.close()
