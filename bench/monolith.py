"""A bare FastAPI "monolith" to compare the gateway with: `GET /users/me` reads one user row, nothing else.

No token check, no gRPC hop, no middleware: the floor under what `/users/me` costs on the project's stack
(FastAPI, uvicorn with uvloop and httptools and one worker, SQLAlchemy async over psycopg 3 through
`clientvault.db.Database` with the auth service's default pool of 10). bench/users_me.py runs it as

    DATABASE_URL=postgresql://... python bench/monolith.py --port PORT --user-id UUID
"""

import argparse
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from uuid import UUID

import uvicorn
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict, field_serializer
from pydantic.alias_generators import to_camel
from sqlalchemy import text

from clientvault.db import Database

QUERY = text("SELECT id, email, full_name, role, created_at FROM auth.users WHERE id = :id")


class UserOut(BaseModel):
    """The same JSON as the gateway's `UserOut`: camelCase, RFC 3339 time in milliseconds."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)
    id: str
    email: str
    full_name: str
    role: str
    created_at: datetime

    @field_serializer("created_at", when_used="json")
    def _rfc3339(self, value: datetime) -> str:
        return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def create_app(database_url: str, user_id: UUID) -> FastAPI:
    db: Database | None = None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        nonlocal db
        db = Database(database_url, pool_size=10, name="clientvault-bench-monolith")
        yield
        await db.dispose()

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/users/me", response_model=UserOut)
    async def me() -> UserOut:
        assert db is not None
        async with db.begin() as conn:
            row = (await conn.execute(QUERY, {"id": user_id})).one_or_none()
        if row is None:
            raise HTTPException(404, "user not found")
        return UserOut(
            id=str(row.id), email=row.email, full_name=row.full_name, role=row.role, created_at=row.created_at
        )

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--user-id", type=UUID, required=True, help="the user every request reads")
    args = parser.parse_args()
    app = create_app(os.environ["DATABASE_URL"], args.user_id)
    # The gateway's uvicorn settings (gateway/app.py `main`).
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_config=None,
        server_header=False,
        timeout_graceful_shutdown=5,
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
