"""Reading a brand catalog file (the agents' public cards) into routing candidates."""

from __future__ import annotations

import json
from pathlib import Path

from routing.language import Candidate


class CatalogError(ValueError):
    """The catalog file cannot be used; the message says what to fix."""


def parse_catalog(document: object) -> tuple[Candidate, ...]:
    """Candidates from `{"agents": [{"address", "description", "skills"}, …]}`."""
    if not isinstance(document, dict) or not isinstance(document.get("agents"), list):
        raise CatalogError('a catalog is a JSON object with an "agents" list')
    candidates: list[Candidate] = []
    for i, agent in enumerate(document["agents"]):
        if not isinstance(agent, dict) or not isinstance(agent.get("address"), str):
            raise CatalogError(f'agent #{i + 1} needs an "address" string')
        skills = agent.get("skills", [])
        if not isinstance(skills, list) or not all(isinstance(s, str) for s in skills):
            raise CatalogError(f'agent {agent["address"]}: "skills" must be a list of strings')
        description = agent.get("description", "")
        name = agent.get("display_name", agent.get("name", ""))
        if not isinstance(description, str) or not isinstance(name, str):
            raise CatalogError(f'agent {agent["address"]}: "description" must be a string')
        candidates.append(Candidate(agent["address"], description, tuple(skills), name))
    if not candidates:
        raise CatalogError("the catalog lists no agents")
    return tuple(candidates)


def load_catalog(path: str | Path) -> tuple[Candidate, ...]:
    """Candidates from a catalog file; `CatalogError` if it is missing or malformed."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise CatalogError(f"cannot read catalog {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise CatalogError(f"catalog {path} is not valid JSON: {exc}") from exc
    return parse_catalog(document)
