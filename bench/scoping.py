"""What per-client access (CLIENTVAULT_CLIENT_SCOPING=on) costs a reveal and a client search, off vs on in one run.

Seeds a data dir once (bench/clients.py's COPY seeding), then measures the same loads on `up` with scoping off and
again, on the same data dir, with scoping on: reveals by managers who are members of the revealed clients (wrk, as
bench/reveal.py), and one manager's searches one at a time (as bench/clients.py). The steps and figures are in
bench/README.md ("scoping.py").
"""

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx
import psycopg
from clients import (
    PAGE_SIZE,
    WARMUP_REQUESTS,
    Vocabulary,
    _render,
    explain,
    gateway_sequential,
    prepare_data,
    scalar,
    search_terms,
)
from harness import BenchError, Latency, machine, run_main, sign_in, start_up, wrk
from reveal import CLIENTS, PER_CLIENT, lua, managers
from rich.console import Console

from services.clients import store

SCOPING = {"off": {"CLIENTVAULT_CLIENT_SCOPING": "off"}, "on": {"CLIENTVAULT_CLIENT_SCOPING": "on"}}
ENV = {
    "CLIENTVAULT_REVEAL_USER_MAX": "1000000000",
    "CLIENTVAULT_REVEAL_IP_MAX": "1000000000",
    "CLIENTVAULT_TRUSTED_PROXIES": "127.0.0.1/32",
}


def make_credentials(url: str, token: str) -> tuple[list[str], list[str]]:
    """CLIENTS clients with PER_CLIENT credentials each, made by the admin: (client ids, reveal paths)."""
    paths, client_ids = [], []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10) as http:
        for c in range(CLIENTS):
            made = http.post("/clients", json={"name": f"Bench reveal {c}"})
            made.raise_for_status()
            client_ids.append(made.json()["id"])
            for n in range(PER_CLIENT):
                body = {"label": f"Credential {n}", "secret": f"secret-{c}-{n}"}
                created = http.post(f"/clients/{client_ids[-1]}/credentials", json=body)
                created.raise_for_status()
                paths.append(f"/clients/{client_ids[-1]}/credentials/{created.json()['id']}")
    return client_ids, paths


def add_members(conn: psycopg.Connection[Any], user_ids: list[str], client_ids: list[str], member_of: int) -> None:
    """Each user a member of `client_ids` and of `member_of` random live seeded clients (as PutMember writes)."""
    for user_id in user_ids:
        conn.execute(
            "INSERT INTO clients.client_members (client_id, user_id, added_at, added_by_user_id) "
            "SELECT id, %(u)s, now(), %(u)s FROM clients.clients WHERE id = ANY(%(ids)s) "
            "UNION ALL (SELECT id, %(u)s, now(), %(u)s FROM clients.clients WHERE archived_at IS NULL "
            "ORDER BY random() LIMIT %(n)s) ON CONFLICT DO NOTHING",
            {"u": uuid.UUID(user_id), "ids": [uuid.UUID(c) for c in client_ids], "n": member_of},
        )
    conn.execute("ANALYZE clients.client_members")


def measure(url: str, work: Path, reveal_paths: list[str], callers: list[tuple[str, str]], terms: list[str],
            searcher: str, args: argparse.Namespace, name: str) -> dict[str, Any]:  # fmt: skip
    script = work / f"reveal-{name}.lua"
    script.write_text(lua(reveal_paths, {}, callers))
    load = wrk(f"reveal, scoping {name}", url, None, args.duration, args.connections, script=script)
    seconds, totals = gateway_sequential(url, searcher, terms)
    first, _ = gateway_sequential(url, searcher, [None] * len(terms))
    return {
        "reveal": asdict(load),
        "search": asdict(Latency.of(seconds)) | {"mean_total": round(statistics.fmean(totals), 1)},
        "first_page": asdict(Latency.of(first)),
    }


def run(data_dir: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine()}
    results["machine"]["loadavg_at_start"] = os.getloadavg()
    terms = search_terms(Vocabulary.load().words(), WARMUP_REQUESTS + args.requests, random.Random(args.seed))
    up = start_up(data_dir, ENV | SCOPING["off"])
    try:
        if up.admin is None:
            raise BenchError("`up` did not print the first admin")
        email, password = up.admin
        admin = sign_in(up.url, email, password)
        database_url = str(up.info()["database_url"])
        with psycopg.connect(database_url, autocommit=True, connect_timeout=10) as conn:
            owner = uuid.UUID(str(scalar(conn, "SELECT id FROM auth.users WHERE email = %s", (email,))))
            results["clients"] = prepare_data(conn, args.clients, owner, Console())
            client_ids, reveal_paths = make_credentials(up.url, admin)
            callers = managers(up, up.url)
            manager_ids = [
                str(row[0]) for row in conn.execute("SELECT id FROM auth.users WHERE role = 'manager'").fetchall()
            ]
            add_members(conn, manager_ids, client_ids, args.member_of)
            results["memberships_per_manager"] = int(
                scalar(conn, "SELECT count(*) FROM clients.client_members WHERE user_id = %s", (manager_ids[0],))
            )
        searcher = callers[0][0]
        results["off"] = measure(up.url, work, reveal_paths, callers, terms, searcher, args, "off")
    finally:
        up.stop()
    up = start_up(data_dir, ENV | SCOPING["on"])
    try:
        results["on"] = measure(up.url, work, reveal_paths, callers, terms, searcher, args, "on")
        # the embedded PostgreSQL of this `up` (a new port)
        with psycopg.connect(str(up.info()["database_url"]), autocommit=True, connect_timeout=10) as conn:
            results["explain"] = explain_scoped(conn, uuid.UUID(manager_ids[0]), args.explain_term)
    finally:
        up.stop()
    return results


def explain_scoped(conn: psycopg.Connection[Any], member: uuid.UUID, term: str) -> dict[str, list[str]]:
    """EXPLAIN (ANALYZE, BUFFERS) of a member's first page, search page and their counts: the SQL of
    services/clients/store.py, rendered from its builders."""
    plans = {}

    def page(term: str | None) -> Any:
        return store.list_clients_query(term=term, status=None, limit=PAGE_SIZE, offset=0, member=member)

    for title, query in (
        ("scoped first page", page(None)),
        ("scoped count", store.count_clients_query(term=None, status=None, member=member)),
        (f"scoped search {term!r}", page(term)),
        (f"scoped search count {term!r}", store.count_clients_query(term=term, status=None, member=member)),
    ):
        plans[title] = explain(conn, title, *_render(query))
    return plans


def summary(results: dict[str, Any]) -> str:
    rows = [
        f"clients: {results['clients']['rows']:,}; each manager a member of {results['memberships_per_manager']:,}",
        f"{'':28} {'off':>22} {'on':>22}",
    ]
    off, on = results["off"], results["on"]
    rows.append(
        f"{'reveal req/s (p50, p99)':28} {off['reveal']['requests_per_s']:8.1f} ({off['reveal']['p50_ms']:.1f}, "
        f"{off['reveal']['p99_ms']:.1f} ms) {on['reveal']['requests_per_s']:8.1f} ({on['reveal']['p50_ms']:.1f}, "
        f"{on['reveal']['p99_ms']:.1f} ms)"
    )
    for key, name in (("search", "manager search p50 / p99"), ("first_page", "manager first page p50 / p99")):
        rows.append(
            f"{name:28} {off[key]['p50_ms']:9.2f} / {off[key]['p99_ms']:7.2f} ms"
            f" {on[key]['p50_ms']:9.2f} / {on[key]['p99_ms']:7.2f} ms"
        )
    rows.append(f"{'manager search mean total':28} {off['search']['mean_total']:22} {on['search']['mean_total']:22}")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=1_000_000, help="clients in the table (default 1000000)")
    parser.add_argument("--member-of", type=int, default=1000, help="random clients each manager is a member of")
    parser.add_argument("--requests", type=int, default=300, help="sequential searches per measurement (default 300)")
    parser.add_argument("--duration", type=int, default=15, help="seconds of wrk reveal load (default 15)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the search terms (default 1)")
    parser.add_argument("--explain-term", default="son", help="the search term to EXPLAIN scoped (default son)")
    parser.add_argument("--keep-data", action="store_true", help="keep the temporary data dir and logs")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("bench: wrk is not installed; install it with `apt-get install -y wrk` (Debian/Ubuntu)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="clientvault-bench-scoping-"))
    return run_main(
        "scoping",
        lambda: run(work / "data", work, args),
        summary,
        remove=None if args.keep_data else work,
        kept=f"kept the data dir and logs in {work}",
    )


if __name__ == "__main__":
    sys.exit(main())
