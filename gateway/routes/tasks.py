"""Tasks of a client: validate, call the clients service, shape the reply. No rules here."""

from fastapi import APIRouter, Response
from google.protobuf.field_mask_pb2 import FieldMask

from clientvault.v1 import clients_pb2 as pb
from gateway.calls import Call, operation
from gateway.conditions import IdempotencyKey, IfMatch, if_match, tagged, with_etag
from gateway.routes.clients import PageNumber, PageSize
from gateway.schemas import ClientId, TaskId, TaskIn, TaskOut, TaskPage, TaskPatch, TaskStatus, number, to_fields
from gateway.strict_json import StrictJsonRoute

router = APIRouter(prefix="/clients/{clientId}/tasks", tags=["tasks"], route_class=StrictJsonRoute)


@operation(router.get, "", "Clients/ListTasks", errors=(404, 422))
async def list_tasks(
    client_id: ClientId, call: Call, status: TaskStatus | None = None, page: PageNumber = 1, page_size: PageSize = 20
) -> TaskPage:
    """List a client's tasks, newest first."""
    status_number = number(pb.TaskStatus.DESCRIPTOR, status)
    request = pb.ListTasksRequest(client_id=client_id, status=status_number, page=page, page_size=page_size)
    return TaskPage.of(await call.clients.ListTasks(request), TaskOut.from_proto)


@operation(router.post, "", "Clients/CreateTask", status_code=201, errors=(404, 409, 422), openapi_extra=with_etag(201))
async def create_task(
    client_id: ClientId, body: TaskIn, call: Call, response: Response, idempotency_key: IdempotencyKey = None
) -> TaskOut:
    """Create a task for a client.

    The caller is recorded as its creator. A client that is archived takes no new tasks (409). With an
    `Idempotency-Key`, a retry answers the first response again and creates nothing (another body under the same
    key: 422). The ETag is its revision."""
    task, _ = to_fields(body, pb.TaskFields())
    request = pb.CreateTaskRequest(client_id=client_id, task=task, idempotency_key=idempotency_key or "")
    return _tagged(response, await call.clients.CreateTask(request))


@operation(router.get, "/{taskId}", "Clients/GetTask", errors=(404,), openapi_extra=with_etag(200))
async def get_task(client_id: ClientId, task_id: TaskId, call: Call, response: Response) -> TaskOut:
    """A task of the client.

    A task of another client is 404 here. With an `ETag`: send it back as `If-Match` on PATCH."""
    return _tagged(response, await call.clients.GetTask(pb.GetTaskRequest(client_id=client_id, task_id=task_id)))


@operation(router.patch, "/{taskId}", "Clients/UpdateTask", errors=(404, 409, 412, 422), openapi_extra=with_etag(200))
async def update_task(
    client_id: ClientId,
    task_id: TaskId,
    body: TaskPatch,
    call: Call,
    response: Response,
    if_match_header: IfMatch = None,
) -> TaskOut:
    """Change some fields of a task.

    completedAt is set when the task becomes done. A client that is archived takes no changed tasks (409). With
    `If-Match`, only if the task still has that ETag (412 otherwise, and nothing changes); the answer carries the
    new ETag."""
    task, sent = to_fields(body, pb.TaskFields())
    request = pb.UpdateTaskRequest(
        client_id=client_id,
        task_id=task_id,
        task=task,
        update_mask=FieldMask(paths=sent),
        if_match_revisions=if_match(if_match_header),
    )
    return _tagged(response, await call.clients.UpdateTask(request))


def _tagged(response: Response, task: pb.Task) -> TaskOut:
    tagged(response, task.revision)
    return TaskOut.from_proto(task)


@operation(router.delete, "/{taskId}", "Clients/DeleteTask", status_code=204, errors=(404, 409))
async def delete_task(client_id: ClientId, task_id: TaskId, call: Call) -> Response:
    """Delete a task.

    A client that is archived keeps its tasks (409)."""
    await call.clients.DeleteTask(pb.DeleteTaskRequest(client_id=client_id, task_id=task_id))
    return Response(status_code=204)
