"""The one error family of `routing`: every refusal a routing decision can make.

Each member carries the protocol's error `code` (PROTOCOL.md section 5) as a class attribute,
a `detail` written for the person who has to fix the problem, and structured `fields` the
gateway may log or echo. No HTTP status lives here: `gateway/http/problems.py` maps codes to
statuses in one table, so the decision stays separate from its transport.

    RoutingError
    ├── InvalidTransition      invalid_transition   the act is not allowed for this side or state
    ├── TaskClosed             task_closed          the task has ended (and cannot be reopened)
    ├── UnderHumanControl      under_human_control  the brand's humans hold the task
    ├── Forbidden              forbidden            authenticated, but not allowed
    ├── Unauthorized           unauthorized         an identity is needed and none was given
    ├── RateLimited            rate_limited         too many envelopes; carries `retry_after`
    ├── UnknownRecipient       unknown_recipient    nobody answers at that address or domain
    ├── TaskNotFound           task_not_found       no such task, or the sender is not a party
    ├── PolicyInvalid          policy_invalid       a brand policy document does not validate
    ├── EscalationConflict     escalation_conflict  e.g. already claimed; names the holder
    └── NotFound               not_found            some other named thing does not exist
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import ClassVar


class RoutingError(Exception):
    """Base of every routing refusal.

    Args:
        detail: A sentence telling a person what went wrong and what to do about it.
        **fields: Structured facts about the refusal (addresses, states, limits), kept
            read-only so a caught error cannot be altered on its way to the response.
    """

    code: ClassVar[str] = "routing_error"

    def __init__(self, detail: str, **fields: object) -> None:
        super().__init__(detail)
        self.detail = detail
        self.fields: Mapping[str, object] = MappingProxyType(dict(fields))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, detail={self.detail!r})"


class InvalidTransition(RoutingError):
    """The act may not be sent by this side, or not in the task's current state."""

    code: ClassVar[str] = "invalid_transition"


class TaskClosed(RoutingError):
    """The task reached a final state and this act cannot bring it back."""

    code: ClassVar[str] = "task_closed"


class UnderHumanControl(RoutingError):
    """The brand agent wrote on a task that the brand's operators currently hold."""

    code: ClassVar[str] = "under_human_control"


class Forbidden(RoutingError):
    """The caller is known but its role or the brand's contact policy does not allow this."""

    code: ClassVar[str] = "forbidden"


class Unauthorized(RoutingError):
    """The action needs an identity (a token or an agent JWT) and the caller gave none."""

    code: ClassVar[str] = "unauthorized"


class RateLimited(RoutingError):
    """The sender is over its rate limit.

    Args:
        detail: What happened, for a person.
        retry_after: Seconds until one more envelope would be accepted (always > 0).
        **fields: More structured facts.
    """

    code: ClassVar[str] = "rate_limited"

    def __init__(self, detail: str, *, retry_after: float, **fields: object) -> None:
        super().__init__(detail, retry_after=retry_after, **fields)
        self.retry_after = retry_after


class UnknownRecipient(RoutingError):
    """No registered agent answers at the `to` address or brand domain."""

    code: ClassVar[str] = "unknown_recipient"


class TaskNotFound(RoutingError):
    """The task does not exist, or the sender is not one of its parties."""

    code: ClassVar[str] = "task_not_found"


class PolicyInvalid(RoutingError):
    """A brand policy document failed validation; `fields["member"]` names the bad member."""

    code: ClassVar[str] = "policy_invalid"


class EscalationConflict(RoutingError):
    """An escalation cannot be worked that way now, e.g. another operator holds the claim."""

    code: ClassVar[str] = "escalation_conflict"


class NotFound(RoutingError):
    """A named thing (escalation, channel, operator) does not exist."""

    code: ClassVar[str] = "not_found"
