"""Benchmark the exposure report. Seed: `--reveals` rows of `vault.reveals` by COPY (a user with
`--user-reveals` of them, a third of whose credentials were rotated after the reveal), over credentials of
`--clients` real clients. Measure: the first page of `GET /reports/exposure?userId=` through the gateway (the
vault's query plus the client names the gateway asks the clients service for) and the vault's SQL alone.
Print: the figures against the goal (first page within 50 ms), and bench/results/exposure.json.

Run from the project root: `uv run python bench/exposure.py [--reveals 1000000] [--user-reveals 10000]`.
"""

import argparse
import os
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from audit import timed  # run as a script, bench/ is on the path
from harness import BenchError, machine, run_main, sign_in, start_up

GOAL_P50_MS = 50.0
CREDENTIALS = 100_000
LABEL = "Seed {n}"
# The vault's statements for a first page (services/vault/store.py::exposure): the page, then the total.
PAGE_SQL = """
SELECT r.credential_id, r.client_id, c.label, r.last_revealed_at, r.reveal_count, c.secret_changed_at
FROM vault.reveals r JOIN vault.credentials c ON c.id = r.credential_id
WHERE r.user_id = %(u)s AND c.secret_changed_at <= r.last_revealed_at
ORDER BY r.last_revealed_at DESC, r.credential_id LIMIT 50
"""
TOTAL_SQL = """
SELECT count(*) FROM vault.reveals r JOIN vault.credentials c ON c.id = r.credential_id
WHERE r.user_id = %(u)s AND c.secret_changed_at <= r.last_revealed_at
"""


def user(n: int) -> uuid.UUID:
    return uuid.UUID(int=(1 << 96) | n)


def credential(n: int) -> uuid.UUID:
    return uuid.UUID(int=(3 << 96) | n)


def seed(database_url: str, client_ids: list[uuid.UUID], reveals: int, user_reveals: int) -> float:
    """Credentials (ciphertext is random bytes: the report never decrypts), one fake data key per client, and the
    reveals: user 0 has `user_reveals`, the others `user_reveals` each until `reveals` rows exist."""
    base = datetime.now(UTC) - timedelta(days=30)
    owner = user(999_999)
    started = time.monotonic()
    with psycopg.connect(database_url) as conn, conn.cursor() as cur:
        with cur.copy(
            "COPY vault.client_keys (client_id, generation, wrapped_key, kek_version, created_at) FROM STDIN"
        ) as copy:
            for client_id in client_ids:
                copy.write_row((client_id, 1, os.urandom(60), "bench", base))
        columns = (
            "id, client_id, label, ciphertext, nonce, key_generation, created_by_user_id, updated_by_user_id, "
            "created_at, updated_at, secret_changed_at, secret_version, secret_changed_by_user_id"
        )
        with cur.copy(f"COPY vault.credentials ({columns}) FROM STDIN") as copy:
            for n in range(CREDENTIALS):
                # A third of user 0's credentials (n % 3 == 2) were rotated after every reveal.
                changed = base + timedelta(days=29) if n % 3 == 2 else base
                copy.write_row((credential(n), client_ids[n % len(client_ids)], LABEL.format(n=n), os.urandom(48),
                                os.urandom(12), 1, owner, owner, base, changed, changed, 1, owner))  # fmt: skip
        with cur.copy(
            "COPY vault.reveals (user_id, credential_id, client_id, last_revealed_at, reveal_count) FROM STDIN"
        ) as copy:
            written, u = 0, 0
            while written < reveals:
                for j in range(min(user_reveals, reveals - written)):
                    n = (u * 7919 + j) % CREDENTIALS  # distinct per user while user_reveals <= CREDENTIALS
                    at = base + timedelta(days=1, seconds=(u * user_reveals + j) % (27 * 86_400))
                    copy.write_row((user(u), credential(n), client_ids[n % len(client_ids)], at, 1 + j % 5))
                    written += 1
                u += 1
        conn.commit()
        conn.execute("ANALYZE vault.reveals")
        conn.execute("ANALYZE vault.credentials")
    return time.monotonic() - started


def run(work: Path, clients: int, reveals: int, user_reveals: int, requests: int) -> dict[str, Any]:
    up = start_up(work / "data")
    try:
        if up.admin is None:
            raise BenchError("no first admin printed")
        token = sign_in(up.url, *up.admin)
        headers = {"Authorization": f"Bearer {token}"}
        database_url = up.info()["database_url"]
        with httpx.Client(base_url=up.url, headers=headers, timeout=30) as http:
            client_ids = []
            for n in range(clients):
                made = http.post("/clients", json={"name": f"Bench client {n}"})
                made.raise_for_status()
                client_ids.append(uuid.UUID(made.json()["id"]))
            seed_s = seed(database_url, client_ids, reveals, user_reveals)
            print(f"bench: seeded {reveals:,} reveals in {seed_s:.0f}s", flush=True)
            params = {"userId": str(user(0))}
            first = http.get("/reports/exposure", params=params)
            if first.status_code != 200:
                raise BenchError(f"{first.status_code} {first.text}")
            body = first.json()

            def gateway() -> None:
                http.get("/reports/exposure", params=params).raise_for_status()

            with psycopg.connect(database_url, autocommit=True) as conn:

                def raw() -> None:
                    conn.execute(PAGE_SQL, {"u": user(0)}).fetchall()
                    conn.execute(TOTAL_SQL, {"u": user(0)}).fetchall()

                measured = {"gateway": timed(requests, gateway), "sql": timed(requests, raw)}
                plan = conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + PAGE_SQL, {"u": user(0)}).fetchall()
    finally:
        up.stop()
    print(f"bench: first page: total {body['total']:,}, gateway {measured['gateway']}, sql {measured['sql']}")
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "reveals": reveals,
        "user_reveals": user_reveals,
        "clients": clients,
        "credentials": CREDENTIALS,
        "seed_s": round(seed_s, 1),
        "total": body["total"],
        "items": len(body["items"]),
        "first_page": measured,
        "plan": [row[0] for row in plan],
        "goal": {"first_page_p50_ms_max": GOAL_P50_MS, "met": measured["gateway"]["p50_ms"] <= GOAL_P50_MS},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reveals", type=int, default=1_000_000)
    parser.add_argument("--user-reveals", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--keep-data", action="store_true")
    args = parser.parse_args()
    if not 1 <= args.user_reveals <= CREDENTIALS:
        parser.error(f"--user-reveals must be 1..{CREDENTIALS}")
    work = Path(tempfile.mkdtemp(prefix="clientvault-bench-exposure-"))
    return run_main(
        "exposure",
        lambda: run(work, args.clients, args.reveals, args.user_reveals, args.requests),
        lambda r: (
            f"exposure report, first page of {r['total']:,}: gateway {r['first_page']['gateway']}, "
            f"sql {r['first_page']['sql']} (goal p50 <= {GOAL_P50_MS} ms: {'met' if r['goal']['met'] else 'not met'})"
        ),
        remove=None if args.keep_data else work,
        kept=f"data kept in {work}",
    )


if __name__ == "__main__":
    raise SystemExit(main())
