"""Tasks of a client: validate, call the clients service, shape the reply. No rules here."""

from typing import Annotated

from fastapi import APIRouter, Query, Response
from google.protobuf.field_mask_pb2 import FieldMask

from clientvault.convert import enum_number
from clientvault.v1 import clients_pb2 as pb
from gateway.calls import Call, operation
from gateway.routes.clients import PageNumber, PageSize
from gateway.schemas import ClientId, TaskId, TaskIn, TaskOut, TaskPage, TaskPatch, TaskStatus, to_fields

router = APIRouter(prefix="/clients/{clientId}/tasks", tags=["tasks"])
ARCHIVED = " A client that is archived takes no new or changed tasks (409)."


@operation(router.get, "", "Clients/ListTasks", errors=(404, 422), summary="List a client's tasks, newest first")
async def list_tasks(
    client_id: ClientId,
    call: Call,
    status: Annotated[TaskStatus | None, Query()] = None,
    page: PageNumber = 1,
    page_size: PageSize = 20,
) -> TaskPage:
    request = pb.ListTasksRequest(client_id=client_id, page=page, page_size=page_size)
    if status is not None:
        request.status = enum_number(pb.TaskStatus.DESCRIPTOR, status)
    return TaskPage.of(await call.clients.ListTasks(request), TaskOut.from_proto)


@operation(
    router.post,
    "",
    "Clients/CreateTask",
    status_code=201,
    errors=(404, 409, 422),
    summary="Create a task for a client",
    description="The caller is recorded as its creator." + ARCHIVED,
)
async def create_task(client_id: ClientId, body: TaskIn, call: Call) -> TaskOut:
    task, _ = to_fields(body, pb.TaskFields())
    return TaskOut.from_proto(await call.clients.CreateTask(pb.CreateTaskRequest(client_id=client_id, task=task)))


@operation(
    router.patch,
    "/{taskId}",
    "Clients/UpdateTask",
    errors=(404, 409, 422),
    summary="Change some fields of a task",
    description="completedAt is set when the task becomes done." + ARCHIVED,
)
async def update_task(client_id: ClientId, task_id: TaskId, body: TaskPatch, call: Call) -> TaskOut:
    task, sent = to_fields(body, pb.TaskFields())
    request = pb.UpdateTaskRequest(client_id=client_id, task_id=task_id, task=task, update_mask=FieldMask(paths=sent))
    return TaskOut.from_proto(await call.clients.UpdateTask(request))


@operation(
    router.delete,
    "/{taskId}",
    "Clients/DeleteTask",
    status_code=204,
    errors=(404, 409),
    summary="Delete a task",
    description=ARCHIVED,
)
async def delete_task(client_id: ClientId, task_id: TaskId, call: Call) -> Response:
    await call.clients.DeleteTask(pb.DeleteTaskRequest(client_id=client_id, task_id=task_id))
    return Response(status_code=204)
