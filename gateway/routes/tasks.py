"""Tasks of a client: validate, call the clients service, shape the reply. No rules here."""

from typing import Annotated

from fastapi import APIRouter, Query, Response
from google.protobuf.field_mask_pb2 import FieldMask

from clientvault.convert import enum_number
from clientvault.v1 import clients_pb2 as pb
from gateway.calls import Call, StubsDep, requires, roles
from gateway.errors import documented
from gateway.routes.clients import PageNumber, PageSize
from gateway.schemas import Page, TaskIn, TaskOut, TaskPatch, TaskStatus, to_fields

router = APIRouter(prefix="/clients/{client_id}/tasks", tags=["tasks"])
ARCHIVED = " A client that is archived takes no new or changed tasks (409)."


@router.get(
    "",
    response_model=Page[TaskOut],
    summary="List a client's tasks, newest first",
    description=roles("Clients/ListTasks"),
    responses=documented(401, 404, 422),
)
async def list_tasks(
    client_id: str,
    stubs: StubsDep,
    call: Call = requires("Clients/ListTasks"),
    status: Annotated[TaskStatus | None, Query()] = None,
    page: PageNumber = 1,
    page_size: PageSize = 20,
) -> Page[TaskOut]:
    request = pb.ListTasksRequest(client_id=client_id, page=page, page_size=page_size)
    if status is not None:
        request.status = enum_number(pb.TaskStatus.DESCRIPTOR, status)
    reply = await stubs.clients.ListTasks(request, metadata=call.metadata, timeout=call.timeout)
    return Page[TaskOut].of(reply, TaskOut.from_proto)


@router.post(
    "",
    status_code=201,
    response_model=TaskOut,
    summary="Create a task for a client",
    description=roles("Clients/CreateTask") + " The caller is recorded as its creator." + ARCHIVED,
    responses=documented(401, 404, 409, 422),
)
async def create_task(
    client_id: str, body: TaskIn, stubs: StubsDep, call: Call = requires("Clients/CreateTask")
) -> TaskOut:
    task, _ = to_fields(body, pb.TaskFields())
    reply = await stubs.clients.CreateTask(
        pb.CreateTaskRequest(client_id=client_id, task=task), metadata=call.metadata, timeout=call.timeout
    )
    return TaskOut.from_proto(reply)


@router.patch(
    "/{task_id}",
    response_model=TaskOut,
    summary="Change some fields of a task",
    description=roles("Clients/UpdateTask") + " completedAt is set when the task becomes done." + ARCHIVED,
    responses=documented(401, 404, 409, 422),
)
async def update_task(
    client_id: str, task_id: str, body: TaskPatch, stubs: StubsDep, call: Call = requires("Clients/UpdateTask")
) -> TaskOut:
    task, sent = to_fields(body, pb.TaskFields())
    request = pb.UpdateTaskRequest(client_id=client_id, task_id=task_id, task=task, update_mask=FieldMask(paths=sent))
    return TaskOut.from_proto(await stubs.clients.UpdateTask(request, metadata=call.metadata, timeout=call.timeout))


@router.delete(
    "/{task_id}",
    status_code=204,
    summary="Delete a task",
    description=roles("Clients/DeleteTask") + ARCHIVED,
    responses=documented(401, 403, 404, 409),
)
async def delete_task(
    client_id: str, task_id: str, stubs: StubsDep, call: Call = requires("Clients/DeleteTask")
) -> Response:
    await stubs.clients.DeleteTask(
        pb.DeleteTaskRequest(client_id=client_id, task_id=task_id), metadata=call.metadata, timeout=call.timeout
    )
    return Response(status_code=204)
