"""The outcome ledger: one entry per ending, reopens take resolutions back, the export
verifies, and `switchboard outcomes verify` names the first tampered entry."""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import outcomes as outcomes_cli
from gateway.client import GatewayProblem
from gateway.ledger import GENESIS, entry_hash, jwks_keys, verify_chain
from tests.conftest import ADMIN_TOKEN
from tests.escalation.conftest import BRAND, Scene


async def _ledger(scene: Scene, **params: Any) -> dict[str, Any]:
    return dict(await scene.admin.get(f"/v1/brands/{BRAND}/outcomes", **params))


async def _three_endings(scene: Scene) -> None:
    """An agent resolution, a cancel, and a human resolution."""
    first = await scene.open_task()
    await scene.agent_act(first, "resolve", "Hold the button for 10 s.")
    second = await scene.open_task("Where is my order?")
    await scene.alice.send(BRAND, "", act="cancel", task=second, now=scene.clock.now())
    third = await scene.open_task("Can I talk to a human please?")
    (escalation,) = await scene.escalations()
    assert escalation["task"] == third
    await scene.jane.post(f"/v1/escalations/{escalation['id']}/claim")
    await scene.jane.post(f"/v1/escalations/{escalation['id']}/resolve", {"text": "Done."})


def _cli(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    outcomes_cli.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["outcomes", "verify", *argv])


async def test_every_ending_writes_one_chained_signed_entry(scene: Scene):
    """Three endings, three entries in seq order, chained from the genesis hash, each
    verifying against the gateway's JWKS; totals count one billable resolution."""
    await _three_endings(scene)
    ledger = await _ledger(scene)
    entries = ledger["entries"]
    assert [(e["seq"], e["outcome"], e["resolved_by"], e["escalated"]) for e in entries] == [
        (1, "resolved", "agent", False),
        (2, "canceled", None, False),
        (3, "resolved", "human", True),
    ]
    assert entries[0]["prev_hash"] == GENESIS
    assert [e["prev_hash"] for e in entries[1:]] == [e["hash"] for e in entries[:-1]]
    assert all(entry_hash(e) == e["hash"] for e in entries)
    known = await scene.jane.get("/.well-known/switchboard")
    assert verify_chain(entries, jwks_keys(known["jwks"])) is None
    totals = ledger["totals"]
    assert totals["billable"] == 1
    assert totals["resolved_by_agent"] == 1 and totals["resolved_by_human"] == 1
    assert totals["by_kind"]["canceled"] == 1


async def test_since_and_until_select_by_time(scene: Scene):
    """`since`/`until` filter entries by their time; a mid-ledger export still verifies."""
    first = await scene.open_task()
    await scene.agent_act(first, "resolve", "Done.")
    scene.clock.advance(120)
    cut = scene.clock.now()
    scene.clock.advance(1)
    second = await scene.open_task("Another question")
    await scene.agent_act(second, "reject", "Not us.")
    stamp = cut.strftime("%Y-%m-%dT%H:%M:%SZ")
    later = await _ledger(scene, since=stamp)
    assert [e["task"] for e in later["entries"]] == [second]
    assert verify_chain(later["entries"], jwks_keys(later["jwks"])) is None
    earlier = await _ledger(scene, until=stamp)
    assert [e["task"] for e in earlier["entries"]] == [first]
    with pytest.raises(GatewayProblem) as refused:
        await _ledger(scene, since="yesterday")
    assert refused.value.status == 400


async def test_reopen_within_a_day_takes_the_resolution_back(scene: Scene):
    """The initiator writing again within 24 h reopens the task: a `reopened` entry, and the
    resolution is no longer billable; a second resolution then counts."""
    task = await scene.open_task()
    await scene.agent_act(task, "resolve", "Reset it.")
    assert (await _ledger(scene))["totals"]["billable"] == 1
    scene.clock.advance(3600)
    answer = await scene.say(task, "It is orange again.")
    assert answer["task_state"] == "working"
    ledger = await _ledger(scene)
    assert [e["outcome"] for e in ledger["entries"]] == ["resolved", "reopened"]
    assert ledger["totals"]["billable"] == 0 and ledger["totals"]["resolved_by_agent"] == 0
    await scene.agent_act(task, "resolve", "Replace the power supply.")
    ledger = await _ledger(scene)
    assert [e["outcome"] for e in ledger["entries"]] == ["resolved", "reopened", "resolved"]
    assert ledger["totals"]["billable"] == 1
    view = await scene.admin.get(f"/v1/tasks/{task}")
    assert view["outcome"]["outcome"] == "resolved" and view["outcome"]["seq"] == 3


async def test_reopening_a_human_resolution_gives_control_back_to_the_agent(scene: Scene):
    """A task resolved by an operator and reopened goes back to the agent; both are told."""
    task = await scene.open_task("Can I talk to a human please?")
    (escalation,) = await scene.escalations()
    await scene.jane.post(f"/v1/escalations/{escalation['id']}/claim")
    await scene.jane.post(f"/v1/escalations/{escalation['id']}/resolve", {"text": "Done."})
    answer = await scene.say(task, "Sorry, one more thing about the speaker.")
    assert answer["control"] == "agent"
    statuses = [
        i["envelope"]["body"]["parts"][0]["data"]
        for i in (await scene.agent.inbox())["items"]
        if i["envelope"]["act"] == "status"
    ]
    assert statuses[-1]["control"] == "agent" and statuses[-1]["state"] == "working"


async def test_cli_verifies_an_export_and_names_the_first_tampered_entry(
    scene: Scene, tmp_path: Path, capsys
):
    """`outcomes verify FILE` says ok for the export as served; after one changed field it
    fails naming that entry (exit 1); a dropped entry is caught at its successor."""
    await _three_endings(scene)
    export = await _ledger(scene)
    good = tmp_path / "ledger.json"
    good.write_text(json.dumps(export))
    args = _cli(str(good), "--gateway", scene.gw.url)
    assert await asyncio.to_thread(args.run, args) == 0
    assert "ok: 3 entries of acme.example (seq 1..3) verified" in capsys.readouterr().out

    tampered = copy.deepcopy(export)
    tampered["entries"][1]["outcome"] = "resolved"
    bad = tmp_path / "tampered.json"
    bad.write_text(json.dumps(tampered))
    args = _cli(str(bad), "--json")
    assert await asyncio.to_thread(args.run, args) == 1
    verdict = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert verdict["ok"] is False and verdict["seq"] == 2 and "hash" in verdict["reason"]

    dropped = copy.deepcopy(export)
    del dropped["entries"][1]
    gap = tmp_path / "dropped.json"
    gap.write_text(json.dumps(dropped))
    args = _cli(str(gap))
    assert await asyncio.to_thread(args.run, args) == 1
    assert "BAD: entry seq 3" in capsys.readouterr().out


async def test_cli_catches_a_rehashed_forgery_by_its_signature(
    scene: Scene, tmp_path: Path, capsys
):
    """Rewriting an entry and recomputing the whole chain still fails: the signature is the
    gateway's, checked against the gateway's JWKS."""
    await _three_endings(scene)
    export = await _ledger(scene)
    forged = copy.deepcopy(export)
    previous = None
    for entry in forged["entries"]:
        if entry["seq"] == 2:
            entry["outcome"] = "resolved"
            entry["resolved_by"] = "agent"
        if previous is not None:
            entry["prev_hash"] = previous["hash"]
        entry["hash"] = entry_hash(entry)
        previous = entry
    path = tmp_path / "forged.json"
    path.write_text(json.dumps(forged))
    args = _cli(str(path), "--gateway", scene.gw.url, "--json")
    assert await asyncio.to_thread(args.run, args) == 1
    verdict = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert verdict["seq"] == 2 and "signature" in verdict["reason"]


async def test_cli_fetches_the_export_from_its_url_with_a_token(scene: Scene, capsys):
    """`outcomes verify URL --token` fetches the live export and verifies it."""
    await _three_endings(scene)
    url = f"{scene.gw.url}/v1/brands/{BRAND}/outcomes"
    args = _cli(url, "--token", scene.admin.token)
    assert await asyncio.to_thread(args.run, args) == 0
    assert "verified" in capsys.readouterr().out
    args = _cli(url)
    with pytest.raises(outcomes_cli.CliError, match="401"):
        await asyncio.to_thread(args.run, args)


async def test_outcomes_are_for_brand_admins_only(scene: Scene):
    """Operators and other brands' admins may not read the ledger; the admin may."""
    with pytest.raises(GatewayProblem) as refused:
        await scene.jane.get(f"/v1/brands/{BRAND}/outcomes")
    assert refused.value.status == 403
    assert (await scene.gw.staff(ADMIN_TOKEN).get(f"/v1/brands/{BRAND}/outcomes"))["entries"] == []


async def test_a_reopening_message_that_asks_for_a_person_escalates_again(scene: Scene):
    """An operator resolved the task (control stays `human`); the person writes again within
    the reopen window asking for a person: the task goes back to the agent, and that message
    opens a new escalation, as the usual triggers do (routing/tasks.py, reopening)."""
    task = await scene.open_task("Can I talk to a human please?")
    (first,) = await scene.escalations()
    await scene.jane.post(f"/v1/escalations/{first['id']}/claim")
    await scene.jane.post(f"/v1/escalations/{first['id']}/resolve", {"text": "Done."})
    answer = await scene.say(task, "Can I talk to a human please? It is broken again.")
    assert answer["task_state"] == "working" and answer["control"] == "human"
    escalations = await scene.escalations()
    assert len(escalations) == 2
    assert {e["task"] for e in escalations} == {task}
