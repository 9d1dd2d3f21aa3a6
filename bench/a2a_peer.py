"""The ecosystem's peer: the `a2a-sdk` reference server answering `SendMessage` with an echo.

`python -m bench.a2a_peer --port P` serves the A2A JSON-RPC binding at `/` and the agent card
at `/.well-known/agent-card.json` under uvicorn. a2a-sdk 1.x dropped
`A2AStarletteApplication`: an application is a Starlette app built from
`create_agent_card_routes` and `create_jsonrpc_routes` around a `DefaultRequestHandler`
(`DefaultRequestHandlerV2`) with an `InMemoryTaskStore`. The executor echoes the user's text
back as one agent `Message`, the cheapest answer the protocol allows, so what is measured is
the SDK's request path and nothing of an agent's own work. Requests must carry
`A2A-Version: 1.0`; without it the server takes them for 0.3 and refuses the 1.0 method names.
"""

from __future__ import annotations

import argparse

import uvicorn
from a2a.helpers.proto_helpers import new_text_message
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks.inmemory_task_store import InMemoryTaskStore
from a2a.types.a2a_pb2 import AgentCapabilities, AgentCard, AgentInterface, AgentSkill
from starlette.applications import Starlette


class EchoExecutor(AgentExecutor):
    """Answers every message with its own text, at once, as a single agent message."""

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        await event_queue.enqueue_event(
            new_text_message(context.get_user_input(), context_id=context.context_id)
        )

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        return None


def card(url: str) -> AgentCard:
    return AgentCard(
        name="echo",
        description="Echoes the text it receives (benchmark peer).",
        version="1.0.0",
        supported_interfaces=[
            AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version="1.0")
        ],
        capabilities=AgentCapabilities(streaming=False),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[AgentSkill(id="echo", name="echo", description="echo the text", tags=["echo"])],
    )


def build(url: str) -> Starlette:
    agent_card = card(url)
    handler = DefaultRequestHandler(
        agent_executor=EchoExecutor(),
        task_store=InMemoryTaskStore(),
        agent_card=agent_card,
    )
    return Starlette(
        routes=[*create_agent_card_routes(agent_card), *create_jsonrpc_routes(handler, "/")]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        build(f"http://127.0.0.1:{args.port}/"),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
