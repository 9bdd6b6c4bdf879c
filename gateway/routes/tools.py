"""Tools that hold no data: the password generator. Its answers are never cached and never logged."""

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from clientvault.v1 import vault_pb2 as pb
from gateway.calls import Call, operation
from gateway.routes.credentials import NO_STORE
from gateway.schemas import GeneratedPasswordOut, GeneratePasswordIn
from gateway.strict_json import StrictJsonRoute

router = APIRouter(prefix="/tools", tags=["tools"], route_class=StrictJsonRoute)
NOT_CACHED = {"required": True, "schema": {"type": "string", "const": "no-store"}}


@operation(
    router.post,
    "/generate-password",
    "Vault/GeneratePassword",
    response_model=GeneratedPasswordOut,
    errors=(422,),
    openapi_extra={"responses": {"200": {"headers": {"Cache-Control": NOT_CACHED}}}},
)
async def generate_password(body: GeneratePasswordIn, call: Call) -> JSONResponse:
    """Generate a password or a passphrase.

    Characters drawn with `secrets`: `length` 8 to 128 (default 20), letters and digits and, unless `symbols` is
    false, punctuation, at least one of each kind. Or `words` (3 to 12): a passphrase of words from the EFF long
    word list, separated by spaces. Not both (422). Stored nowhere, logged nowhere; `Cache-Control: no-store`."""
    request = pb.GeneratePasswordRequest(**body.model_dump(exclude_none=True))
    made = GeneratedPasswordOut.from_proto(await call.vault.GeneratePassword(request))
    return JSONResponse(made.model_dump(by_alias=True), headers=NO_STORE)
