"""Wire models: camelCase JSON on the outside, snake_case in Python; unknown fields are a 422."""

from datetime import UTC, datetime
from typing import Literal

from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_serializer
from pydantic.alias_generators import to_camel

from clientvault.v1 import auth_pb2


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
