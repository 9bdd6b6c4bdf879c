"""What went wrong, in domain words. `str(error)` is safe to show to a caller: never put a secret in it.

Transport modules map these to statuses: `clientvault/rpc.py` (gRPC) and `gateway/errors.py` (HTTP).
"""


class DomainError(Exception):
    """Base of every error a caller may see. Anything else is a bug and answers 500 without details."""


class NotFound(DomainError): ...


class Gone(NotFound):
    """It existed and was destroyed for good (a crypto-shredded client's credentials): 410, not 404. On gRPC a
    NOT_FOUND with the trailer `gone: true` (clientvault/rpc.py), which the gateway answers as 410."""


class AlreadyExists(DomainError): ...


class Conflict(DomainError): ...


class PreconditionFailed(Conflict):
    """An edit made on a condition (`If-Match`: the revision the caller last read) that no longer holds: 412,
    not 409. On gRPC a FAILED_PRECONDITION with the trailer `precondition-failed: true` (clientvault/rpc.py)."""


class PreconditionRequired(Conflict):
    """The request lacks what this resource requires of every such request (a reveal of a client whose reveals must
    name a reason): 428, not 409. On gRPC a FAILED_PRECONDITION with the trailer `precondition-required: true`
    (clientvault/rpc.py)."""


class Forbidden(DomainError): ...


class Unauthenticated(DomainError): ...


class Invalid(DomainError):
    """Bad input; `field` (snake_case) names the culprit when there is one."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class Unavailable(DomainError):
    """A dependency (database, broker, KMS) cannot be reached; the caller may retry later."""


class DataLoss(DomainError):
    """Stored data that can no longer be read (e.g. a secret that does not decrypt): an operator's problem,
    never fixed by retrying. It answers 500 with this message, and is logged where it was found."""


class Throttled(DomainError):
    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = max(1, retry_after_s)


class Misconfigured(Exception):
    """What keeps a process from starting as deployed: a setting (a required key missing or malformed; the message
    names the setting, never its value), or a schema newer than the code. `serve` prints it and exits 2, like any
    other configuration error."""
