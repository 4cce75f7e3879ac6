"""triggers.yaml: the example file is valid; bad definitions are refused with the trigger and
the field named, all problems at once."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from chainlake.events.spec import Resolver, SpecError, load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[2]
RESOLVER = Resolver(
    {"devnet": 31337}, lambda name, cid: ["0x70997970c51812dc3a010c7d01b50e0d17dc79c8"]
)


def good(**over: object) -> dict:
    t = {
        "id": "t1",
        "chain": "devnet",
        "registry": "reputation",
        "conditions": [{"type": "score_threshold", "operator": "<", "value": 30}],
        "actions": [
            {"name": "hook", "type": "rest", "url": "${HOOK}", "body_template": {"s": "{score}"}}
        ],
    }
    t.update(over)
    return {"user": "ops", "triggers": [t]}


def test_example_file_is_valid() -> None:
    spec = load_spec(ROOT / "config" / "triggers.yaml", resolver=RESOLVER)
    ids = [t.trigger.id for t in spec.triggers]
    assert "large-transfer-in" in ids and len(ids) == len(set(ids))
    transfer = next(t.trigger for t in spec.triggers if t.trigger.id == "large-transfer-in")
    assert transfer.chain_id == 31337
    assert '"0x70997970c51812dc3a010c7d01b50e0d17dc79c8"' in transfer.conditions[1].value
    # every channel is exercised by the example
    types = {a.action_type for t in spec.triggers for a in t.trigger.actions}
    assert types == {"rest", "telegram", "discord", "slack", "email", "mcp"}


def test_canonical_form() -> None:
    spec = parse_spec(good(cooldown="5m"), resolver=RESOLVER)
    t = spec.triggers[0].trigger
    assert (
        t.cooldown_seconds == 300
        and t.conditions[0].operator == "lt"
        and t.conditions[0].field == "score"
    )
    assert t.actions[0].config == {"url": "${HOOK}", "body_template": {"s": "{score}"}}


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            {"conditions": [{"type": "score_treshold", "value": 1}]},
            "field 'conditions[0].type': unknown condition type 'score_treshold'",
        ),
        (
            {"conditions": [{"type": "score_threshold", "operator": "<"}]},
            "field 'conditions[0].value': missing",
        ),
        (
            {"conditions": [{"type": "rate_limit", "value": 3}]},
            "field 'conditions[0].config.time_window': missing",
        ),
        ({"conditions": []}, "field 'conditions': missing"),
        (
            {"actions": [{"type": "rest", "url": "u", "body_template": {"x": "{nope}"}}]},
            "field 'actions[0].body_template.x': unknown field {nope} in template",
        ),
        (
            {"actions": [{"type": "pager", "url": "u"}]},
            "field 'actions[0].type': 'pager' is not one of",
        ),
        ({"actions": [{"type": "rest"}]}, "field 'actions[0].url': missing"),
        ({"actions": [{"type": "telegram"}]}, "field 'actions[0].chat_id': missing"),
        ({"actions": [{"type": "email", "to": "nobody"}]}, "field 'actions[0].to'"),
        ({"actions": [{"type": "mcp", "tool_name": "x"}]}, "field 'actions[0].endpoint': missing"),
        (
            {"actions": [{"type": "rest", "url": "u", "max_attempts": 0}]},
            "field 'actions[0].max_attempts'",
        ),
        ({"registry": "nft"}, "field 'registry': 'nft' is not one of"),
        ({"chain": "mainnet"}, "field 'chain': unknown chain 'mainnet'"),
        ({"cooldown": "soon"}, "field 'cooldown'"),
        ({"colour": "red"}, "field 'colour': unknown key"),
        ({"id": "Bad Id"}, "field 'id'"),
    ],
)
def test_bad_definitions_name_trigger_and_field(override: dict, expected: str) -> None:
    with pytest.raises(SpecError) as e:
        parse_spec(good(**override), resolver=RESOLVER)
    assert any(expected in line for line in e.value.errors), e.value.errors
    assert all(line.startswith("config/triggers.yaml: trigger ") for line in e.value.errors)


def test_every_problem_is_listed() -> None:
    raw = good()
    raw["triggers"].append({**raw["triggers"][0], "id": "t2", "registry": "x"})
    raw["triggers"].append({**raw["triggers"][0], "id": "t1"})
    with pytest.raises(SpecError) as e:
        parse_spec(raw, resolver=RESOLVER)
    assert len(e.value.errors) == 2
    assert "trigger 't2': field 'registry'" in e.value.errors[0]
    assert "trigger 't1': field 'id': duplicate" in e.value.errors[1]


def test_not_yaml_and_not_a_list(tmp_path: Path) -> None:
    p = tmp_path / "t.yaml"
    p.write_text("triggers: [\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(p, resolver=RESOLVER)
    p.write_text(yaml.safe_dump({"triggers": {"a": 1}}))
    with pytest.raises(SpecError, match="'triggers:' list"):
        load_spec(p, resolver=RESOLVER)
