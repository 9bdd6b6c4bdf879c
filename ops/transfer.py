"""`clientvault credentials import|export`: the operator's side of the gateway's import and export routes.

These commands act through the API, as an admin, rather than on `DATABASE_URL`: an import and an export are the
vault's own operations (sealing under the client's data key, one audit event per credential with the operator's
name on it, the policy and MFA checks), which only the running services perform. The command signs in with the
admin's email and password (and a TOTP code when their account has MFA), makes the one request, and signs out.

Where the API is: `--api-url`, else `CLIENTVAULT_API_URL`, else the gateway of the `up` running on the data dir.
The file goes up, and the export comes down, with a progress bar on stderr when it is a terminal.
"""

import os
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

CHUNK = 64 * 1024
TIMEOUT_S = 180.0  # the gateway allows an import or export two minutes


class ApiError(Exception):
    """The API refused (`status` < 500) or could not answer; the message is its problem's detail."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


Progress = Callable[[int, int], None]  # (bytes done, bytes in all)


@dataclass(frozen=True, slots=True)
class Login:
    email: str
    password: str
    code: str | None = None  # a TOTP (or recovery) code, for an account with MFA
    ask_code: Callable[[], str] | None = None  # asks for one when the account turns out to have MFA


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    found = [f"{e['field']}: {e['message']}" for e in body.get("errors") or []]
    return "; ".join(found) if found else str(body.get("detail") or f"HTTP {response.status_code}")


def _checked(response: httpx.Response) -> httpx.Response:
    if response.status_code >= 400:
        raise ApiError(_detail(response), response.status_code)
    return response


class Session:
    """An admin's session on the API: signed in when made, signed out when closed."""

    def __init__(self, api_url: str, login: Login) -> None:
        self.http = httpx.Client(base_url=api_url, timeout=TIMEOUT_S)
        try:
            self.token = self._sign_in(login)
        except BaseException:
            self.http.close()
            raise

    def _sign_in(self, login: Login) -> str:
        answer = _checked(self.http.post("/auth/sign-in", json={"email": login.email, "password": login.password}))
        body = answer.json()
        if body.get("mfaRequired"):
            code = login.code or (login.ask_code() if login.ask_code else None)
            if not code:
                raise ApiError("the account has MFA: give a code (the line after the password on stdin)", 401)
            body = _checked(self.http.post("/auth/mfa", json={"mfaToken": body["mfaToken"], "code": code})).json()
        return str(body["accessToken"])

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def close(self) -> None:
        try:
            self.http.post("/auth/sign-out", headers=self.headers)
        except httpx.HTTPError:
            pass  # the access token expires on its own
        finally:
            self.http.close()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _multipart(fields: dict[str, str], name: str, filename: str, content: bytes) -> tuple[bytes, str]:
    """A multipart/form-data body (RFC 7578) of text fields and one file; its Content-Type."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode()
        for key, value in fields.items()
    ]
    quoted = filename.replace('"', "%22").replace("\r", "").replace("\n", "")
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{quoted}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return b"".join(
        [*parts, head, content, f"\r\n--{boundary}--\r\n".encode()]
    ), f"multipart/form-data; boundary={boundary}"


def _chunks(body: bytes, progress: Progress) -> Iterator[bytes]:
    for start in range(0, len(body), CHUNK):
        piece = body[start : start + CHUNK]
        yield piece
        progress(start + len(piece), len(body))


def import_file(
    session: Session, client_id: str, format_: str, path: Path, *, dry_run: bool, progress: Progress
) -> dict[str, Any]:
    """Uploads the file to POST /clients/{clientId}/credentials:import; the API's report."""
    body, content_type = _multipart({"format": format_}, "file", path.name, path.read_bytes())
    response = session.http.post(
        f"/clients/{client_id}/credentials:import",
        params={"dryRun": "true"} if dry_run else {},
        headers={**session.headers, "Content-Type": content_type, "Content-Length": str(len(body))},
        content=_chunks(body, progress),
    )
    return dict(_checked(response).json())


def export_file(session: Session, client_id: str, recipient: str, out: Path, *, progress: Progress) -> int:
    """Writes the age-encrypted export to `out` (a new file, mode 0600); how many credentials it holds."""
    with session.http.stream(
        "POST", f"/clients/{client_id}/credentials:export", headers=session.headers, json={"recipient": recipient}
    ) as response:
        if response.status_code >= 400:
            response.read()
            raise ApiError(_detail(response), response.status_code)
        total = int(response.headers.get("content-length") or 0)
        descriptor = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        done = 0
        with os.fdopen(descriptor, "wb") as file:
            for piece in response.iter_bytes(CHUNK):
                file.write(piece)
                done += len(piece)
                progress(done, max(total, done))
        return int(response.headers.get("x-exported-count") or 0)


def read_login(email: str, password_stdin: bool, prompt: Callable[[str], str]) -> Login:
    """The admin's password (and MFA code) from stdin's first (and second) line, or asked for."""
    if password_stdin:
        lines = sys.stdin.read().splitlines()
        if not lines:
            raise ApiError("no password on stdin", 2)
        return Login(email, lines[0], lines[1].strip() if len(lines) > 1 and lines[1].strip() else None)
    return Login(email, prompt("Password"), ask_code=lambda: prompt("MFA code"))
