from __future__ import annotations

import json
from decimal import Decimal

import pytest

from rtmbench.cli import main
from rtmbench.complexity import judge, measure_complexity, published_form
from rtmbench.zoo import Claim, load_zoo

SIZES = ["tiny", "s", "m", "l", "x"]


@pytest.mark.parametrize("size", SIZES)
def test_params_and_flops_reproduce_the_published_table(size):
    report = measure_complexity(load_zoo().get(size))
    assert report.verdicts and report.ok, [v.explanation for v in report.verdicts]


def test_published_form_rounds_or_truncates_at_the_published_decimals():
    claim = Claim(metric="params", value=Decimal("4.8"), source="s", rounding="truncate")
    assert published_form(4_896_168, claim) == Decimal("4.8")
    rounded = claim.model_copy(update={"rounding": "round"})
    assert published_form(4_896_168, rounded) == Decimal("4.9")
    two = Claim(metric="flops", value=Decimal("3.10"), source="s", convention="mmengine")
    assert published_form(3_104_999_999, two) == Decimal("3.10")


def test_a_miss_is_explained_with_both_conventions():
    claim = Claim(metric="flops", value=Decimal("39.27"), source="s", convention="mmengine")
    verdict = judge(claim, {"mmengine": 39_205_493_760, "mmengine+act": 39_271_772_160})
    assert not verdict.ok
    assert "39.21" in verdict.explanation and "mmengine+act: 39.272" in verdict.explanation


def test_activation_convention_explains_the_m_l_x_gap():
    report = measure_complexity(load_zoo().get("m"))
    flops = {v.metric: v for v in report.verdicts}["flops"]
    assert flops.convention == "mmengine+act"
    gap = report.flops["mmengine+act"] - report.flops["mmengine"]
    assert 0.001 < gap / report.flops["mmengine"] < 0.002  # the ~0.15% the issue reports
    assert "mmengine gives 39.205" in flops.explanation


def test_cli_json_is_one_record_per_size(capsys):
    assert main(["complexity", "tiny", "s", "--json"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["size"] for r in records] == ["tiny", "s"]
    assert records[0]["params"] == 4_896_168
    assert set(records[0]["flops"]) == {"mmengine", "mmengine+act"}
    assert records[0]["verdicts"]["params"]["ok"] is True


def test_cli_exits_nonzero_when_a_claim_is_missed(tmp_path, capsys):
    text = (load_zoo().path).read_text().replace("value: 8.89, unit: M", "value: 8.88, unit: M")
    zoo = tmp_path / "zoo.yaml"
    zoo.write_text(text)
    assert main(["--zoo", str(zoo), "complexity", "s"]) == 1
    assert "MISS" in capsys.readouterr().out


def test_cli_unknown_size_is_a_clear_error(capsys):
    assert main(["complexity", "huge"]) == 2
    err = capsys.readouterr().err
    assert "no model 'huge'" in err and "tiny, s, m, l, x" in err
