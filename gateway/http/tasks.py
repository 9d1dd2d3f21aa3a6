"""Tasks: one task with its history, and lists for parties and brand staff."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web

from gateway.clock import iso
from gateway.errors import RequestInvalid
from gateway.http.context import json_response, principal, query_integer, services
from gateway.http.routes import Param, Route, Success
from gateway.http.shapes import CONTROL, STATE, TASK_DETAIL, TASKS
from gateway.store.records import TaskRecord
from identity.b64 import b64url_decode, b64url_encode
from routing.errors import Forbidden, TaskNotFound, Unauthorized
from routing.policy import Action, Principal, Role, Target, authorize
from routing.tasks import Control, State


def task_view(task: TaskRecord) -> dict[str, Any]:
    return {
        "id": task.id,
        "state": task.state,
        "control": task.control,
        "initiator": task.initiator,
        "responder": task.responder,
        "brand": task.brand,
        "created_at": iso(task.created_at),
        "updated_at": iso(task.updated_at),
        "completed_at": iso(task.completed_at) if task.completed_at else None,
        "escalated": task.escalated,
        "confirmed": task.confirmed,
        "resolved_by": task.resolved_by,
        "route_why": task.route_why,
    }


def _target(task: TaskRecord) -> Target:
    return Target(brand=task.brand, task_parties=frozenset({task.initiator, task.responder}))


async def get_task(request: web.Request) -> web.Response:
    svc = services(request)
    who = await principal(request)
    if who.role == Role.ANONYMOUS:
        # Before the lookup: a stranger learns nothing about which task ids exist.
        raise Unauthorized("tasks are read by their parties and brand staff: authenticate")
    task = await svc.conversations.task(request.match_info["id"])
    if task is None:
        raise TaskNotFound(f"no task {request.match_info['id']}")
    try:
        authorize(who, Action.READ_TASK, _target(task))
    except Forbidden as exc:
        # Tasks you may not see are reported as missing: their ids are not to be probed.
        raise TaskNotFound(f"no task {task.id} that you may read") from exc
    view = task_view(task)
    view["history"] = await svc.conversations.history(task.id)
    view["events"] = await svc.conversations.events(task.id)
    deliveries = await svc.outbox.for_task(task.id, "delivery") if svc.outbox else []
    view["deliveries"] = [_delivery_view(who, delivery) for delivery in deliveries]
    view["escalations"] = [e.view() for e in await svc.desk.escalations.for_task(task.id)]
    ledger = await svc.desk.outcomes.for_task(task.id)
    view["outcome"] = ledger[-1] if ledger else None
    return json_response(view)


def _delivery_view(who: Principal, delivery: dict[str, Any]) -> dict[str, Any]:
    """Errors and notes describe the recipient's endpoint (its host, its answers): only the
    recipient's side and admins see them; the other party sees times, statuses and outcomes."""
    recipient = str(delivery["recipient"])
    if (
        who.role == Role.ADMIN
        or who.address == recipient
        or (who.brand is not None and recipient.endswith("@" + who.brand))
    ):
        return delivery
    hidden = {"error": None, "note": None}
    return {
        **delivery,
        "last_error": None,
        "attempts": [{**attempt, **hidden} for attempt in delivery["attempts"]],
    }


async def list_tasks(request: web.Request) -> web.Response:
    svc = services(request)
    who = await principal(request)
    authorize(
        who, Action.LIST_TASKS, Target(agent=who.address, brand=who.brand, agent_brand=who.brand)
    )
    state = request.query.get("state") or None
    control = request.query.get("control") or None
    if state is not None and state not in {s.value for s in State}:
        raise RequestInvalid(
            f"state must be one of {', '.join(s.value for s in State)}", member="state"
        )
    if control is not None and control not in {c.value for c in Control}:
        raise RequestInvalid("control must be agent or human", member="control")
    limit = query_integer(request, "limit", _LIST_DEFAULT, 1, _LIST_MAX)
    before = _cursor(request.query.get("before") or None)
    # One more than the page, to tell whether another follows (no `next` to an empty page).
    tasks = await svc.conversations.list_tasks(
        **_scope(who), state=state, control=control, limit=limit + 1, before=before
    )
    page = tasks[:limit]
    return json_response(
        {
            "items": [task_view(task) for task in page],
            "next": _next_cursor(page[-1]) if len(tasks) > limit else None,
        }
    )


_LIST_DEFAULT = 100
_LIST_MAX = 200


def _next_cursor(last: TaskRecord) -> str:
    """The `before` value of the page after `last`: its update time and id, opaque."""
    return b64url_encode(f"{last.updated_at.isoformat()}|{last.id}".encode())


def _cursor(raw: str | None) -> tuple[datetime, str] | None:
    """The (update time, id) a `before` value holds.

    Raises:
        RequestInvalid: It is not a `next` value this gateway gave.
    """
    if raw is None:
        return None
    try:
        at, task_id = b64url_decode(raw).decode().split("|")
        moment = datetime.fromisoformat(at)
    except ValueError:
        moment, task_id = None, ""
    if moment is None or moment.tzinfo is None or not task_id:
        raise RequestInvalid(
            "before must be the `next` value of an earlier answer of GET /v1/tasks, as it was",
            member="before",
        )
    return moment, task_id


def _scope(who: Principal) -> dict[str, str | None]:
    if who.role == Role.ADMIN:
        return {}
    if who.role in (Role.BRAND_ADMIN, Role.OPERATOR):
        return {"brand": who.brand}
    return {"party": who.address}


ROUTES = (
    Route(
        "GET",
        "/v1/tasks/{id}",
        get_task,
        "A task: state, control, parties, history, escalations, outcome",
        "agent-or-token",
        answers=(Success(200, TASK_DETAIL),),
        tag="tasks",
        refusals=("task_not_found",),
    ),
    Route(
        "GET",
        "/v1/tasks",
        list_tasks,
        "Tasks you are a party of, or your brand's",
        "agent-or-token",
        answers=(Success(200, TASKS),),
        tag="tasks",
        params=(
            Param("state", STATE, "Only tasks in this state"),
            Param("control", CONTROL, "Only tasks under this control"),
            Param(
                "limit",
                {"type": "integer", "minimum": 1, "maximum": _LIST_MAX, "default": _LIST_DEFAULT},
                "At most this many tasks",
            ),
            Param(
                "before",
                {"type": "string"},
                "The `next` of the previous answer: the tasks after its last one",
            ),
        ),
        refusals=("forbidden", "schema_invalid"),
    ),
)
