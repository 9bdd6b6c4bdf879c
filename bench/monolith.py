"""A bare FastAPI "monolith" to compare the gateway with: `GET /users/me` reads one user row, nothing else.

No token check, no gRPC hop, no middleware: the anchor issue 20 names, one FastAPI process pair (uvicorn with
uvloop and httptools, 2 workers: one per core) over a psycopg pool, one primary-key lookup (prepared) per request.
bench/users_me.py runs it as

    DATABASE_URL=postgresql://... python bench/monolith.py --port PORT --user-id UUID [--workers 2]
"""

import argparse
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import uvicorn
from fastapi import FastAPI, HTTPException
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, ConfigDict, field_serializer
from pydantic.alias_generators import to_camel

QUERY = "SELECT id, email, full_name, role, created_at FROM auth.users WHERE id = %s"
USER_ID = "CLIENTVAULT_BENCH_USER_ID"  # how the workers learn the row to read (each imports this module anew)


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


def create_app() -> FastAPI:
    """The app of one worker (a uvicorn factory): its own pool of 10, as the auth service has."""
    url, user_id = os.environ["DATABASE_URL"], os.environ[USER_ID]
    pool = AsyncConnectionPool(url, min_size=10, max_size=10, open=False)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await pool.open(wait=True)
        yield
        await pool.close()

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/users/me", response_model=UserOut)
    async def me() -> UserOut:
        async with pool.connection() as conn:
            row = await (await conn.execute(QUERY, (user_id,), prepare=True)).fetchone()
        if row is None:
            raise HTTPException(404, "user not found")
        found_id, email, full_name, role, created_at = row
        return UserOut(id=str(found_id), email=email, full_name=full_name, role=role, created_at=created_at)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--user-id", required=True, help="the user every request reads")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers (default 2: one per core)")
    args = parser.parse_args()
    os.environ[USER_ID] = args.user_id
    # The gateway's uvicorn settings (gateway/app.py `main`), with a worker per core.
    uvicorn.run(
        "monolith:create_app",
        factory=True,
        workers=args.workers,
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_config=None,
        server_header=False,
        timeout_graceful_shutdown=5,
        app_dir=os.path.dirname(os.path.abspath(__file__)),
    )


if __name__ == "__main__":
    main()
