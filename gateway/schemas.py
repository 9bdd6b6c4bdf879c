"""Wire models: camelCase JSON on the outside, snake_case in Python; unknown fields are a 422."""

from datetime import UTC, datetime
from typing import Annotated, Literal

from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, field_serializer, model_validator
from pydantic.alias_generators import to_camel

from clientvault.v1 import auth_pb2, vault_pb2


class WireModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)

    @field_serializer("*", when_used="json")
    def _rfc3339(self, value: object) -> object:
        if isinstance(value, datetime):
            return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return value


def from_timestamp(stamp: Timestamp) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC)


class SignInIn(WireModel):
    email: str = Field(min_length=1, max_length=320)
    password: str = Field(min_length=1, max_length=1024)


class RefreshIn(WireModel):
    refresh_token: str = Field(min_length=1, max_length=512)


class TokenPairOut(WireModel):
    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - the scheme name, not a secret
    expires_in: int

    @classmethod
    def from_proto(cls, pair: auth_pb2.TokenPair) -> "TokenPairOut":
        return cls(access_token=pair.access_token, refresh_token=pair.refresh_token, expires_in=pair.expires_in)


ROLE_FROM_PROTO = {
    auth_pb2.ROLE_ADMIN: "admin",
    auth_pb2.ROLE_MANAGER: "manager",
    auth_pb2.ROLE_READ_ONLY: "read_only",
}


class UserOut(WireModel):
    id: str
    email: str
    full_name: str
    role: Literal["admin", "manager", "read_only"]
    created_at: AwareDatetime

    @classmethod
    def from_proto(cls, user: auth_pb2.User) -> "UserOut":
        return cls(
            id=user.id,
            email=user.email,
            full_name=user.full_name,
            role=ROLE_FROM_PROTO[user.role],
            created_at=from_timestamp(user.created_at),
        )


def _storable(value: str | None, *, allow_nul: bool = False) -> str | None:
    """Text that the services can carry and store: UTF-8 encodable, and no NUL outside the secret."""
    if value is None:
        return None
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (no lone surrogates)") from None
    if not allow_nul and "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


Label = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_storable)]
Username = Annotated[str | None, Field(max_length=500), AfterValidator(_storable)]
Url = Annotated[str | None, Field(max_length=2048), AfterValidator(_storable)]
Secret = Annotated[str, Field(min_length=1, max_length=10_000), AfterValidator(lambda v: _storable(v, allow_nul=True))]


class CredentialIn(WireModel):
    label: Label
    username: Username = None
    url: Url = None
    secret: Secret


class CredentialPatch(WireModel):
    """Any of the fields; `username` and `url` may be null (cleared), `label` and `secret` may not."""

    label: Label | None = None
    username: Username = None
    url: Url = None
    secret: Secret | None = None

    @model_validator(mode="after")
    def _something_to_change(self) -> "CredentialPatch":
        if not self.model_fields_set:
            raise ValueError("name at least one of label, username, url, secret")
        for name in ("label", "secret"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class CreatedOut(WireModel):
    id: str


class CredentialOut(WireModel):
    id: str
    label: str
    username: str | None
    url: str | None
    updated_at: AwareDatetime
    last_accessed_at: AwareDatetime | None

    @classmethod
    def from_proto(cls, credential: vault_pb2.Credential) -> "CredentialOut":
        return cls(
            id=credential.id,
            label=credential.label,
            username=credential.username if credential.HasField("username") else None,
            url=credential.url if credential.HasField("url") else None,
            updated_at=from_timestamp(credential.updated_at),
            last_accessed_at=(
                from_timestamp(credential.last_accessed_at) if credential.HasField("last_accessed_at") else None
            ),
        )


class RevealedOut(WireModel):
    id: str
    label: str
    username: str | None
    url: str | None
    secret: str = Field(repr=False)
