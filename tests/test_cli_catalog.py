"""The catalog commands (blocks, families, models, describe, match) run in-process, and the
shared CLI formatting helpers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from archbench.cli import main
from archbench.cli.catalog import parse_param, reference
from archbench.cli.format import Column, human_count, render_kv, render_table, to_json
from archbench.models.complexity import analytic
from archbench.models.presets import get_preset
from archbench.registry import BLOCKS, FAMILIES, PRESETS


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def test_blocks(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "blocks")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["block", "family", "source"]
    for name in BLOCKS.names():
        assert any(line.split()[0] == name for line in lines[2:]), name
    data = run_json(capsys, "blocks")
    assert data["schema"] == "archbench.blocks/1"
    assert [b["name"] for b in data["blocks"]] == BLOCKS.names()
    basic = next(b for b in data["blocks"] if b["name"] == "basic")
    assert basic == {
        "name": "basic",
        "family": "resnet",
        "description": BLOCKS.entry("basic").description,
        "source": "archbench",
    }


def test_families(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "families")
    assert code == 0 and "6n+2" in out
    data = run_json(capsys, "families")
    assert data["schema"] == "archbench.families/1"
    assert [f["name"] for f in data["families"]] == FAMILIES.names()
    resnet = next(f for f in data["families"] if f["name"] == "resnet")
    assert (resnet["depth_rule"], resnet["default_depth"], resnet["default_width"]) == (
        "6n+2",
        20,
        16,
    )
    assert (resnet["input_size"], resnet["num_classes"], resnet["width_step"]) == (32, 10, 1)
    imagenet = next(f for f in data["families"] if f["name"] == "resnet_imagenet")
    assert (imagenet["input_size"], imagenet["num_classes"]) == (224, 1000)


def test_models(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "models")
    assert code == 0
    assert "11,689,512 (torchvision)" in out and "1.7M (paper)" in out
    data = run_json(capsys, "models")
    assert data["schema"] == "archbench.models/1"
    assert [m["name"] for m in data["models"]] == PRESETS.names()
    rows = {m["name"]: m for m in data["models"]}
    for name in ("resnet20", "resnet50"):
        counts = analytic(get_preset(name))
        assert (rows[name]["params"], rows[name]["macs"]) == (counts.params, counts.macs)
        assert rows[name]["flops"] == 2 * rows[name]["macs"]
    assert rows["resnet50"]["reference"] == {
        "params": 25_557_032,
        "source": "torchvision",
        "detail": "resnet50",
    }
    assert rows["resnet110"]["reference"]["params"] == 1_700_000
    assert rows["resnet110"]["reference"]["source"] == "paper"
    assert any("resnet<6n+2>" in g for g in data["generic_names"])


def test_describe_text(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "describe", "resnet20")
    assert code == 0
    assert "269,722" in out and "40,931,968" in out and "81,863,936" in out
    assert "FLOPs (2 x MACs)" in out
    assert "aten::add x9" in out and "aten::pad x2" in out
    assert "agree with the meta-device count" in out
    table = out[out.index("part") :].splitlines()
    assert [line.split()[0] for line in table[2:]] == [
        "stem",
        "stages.0",
        "stages.1",
        "stages.2",
        "head",
    ]
    assert table[2].endswith("1x16x32x32")


def test_describe_json_overrides_and_generic_names(capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(
        capsys, "describe", "resnet32", "--input-size", "28", "--in-channels", "1",
        "--num-classes", "7",
    )  # fmt: skip
    assert data["schema"] == "archbench.describe/1"
    c = data["complexity"]
    assert c["schema"] == "archbench.complexity/1"
    assert (c["input_size"], c["in_channels"], c["num_classes"], c["batch_size"]) == (28, 1, 7, 1)
    assert c["flops"] == 2 * c["macs"]
    assert data["analytic_agrees"] is True
    assert data["analytic"]["macs"] == c["macs"]
    assert data["spec"]["input_size"] == 28
    generic = run_json(capsys, "describe", "resnet8")  # resnet<6n+2> pattern
    # ResNet-8 (n=1): stem 464 + stages 4,672 + 13,952 + 55,552 + fc 650 (by hand).
    assert generic["complexity"]["params"] == 75_290
    family = run_json(capsys, "describe", "wrn")  # a family: default depth and width
    assert family["spec"]["stages"][0]["width"] == 64


def test_match(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "match", "resnet", "--params", "1.7M", "--depth", "110",
                       "--tolerance", "0.02")  # fmt: skip
    assert code == 0
    assert "1,727,962 params" in out and "+1.64%" in out and "16" in out
    data = run_json(capsys, "match", "resnet", "--macs", "250M", "--vary", "depth",
                    "--tolerance", "0.03")  # fmt: skip
    assert data["schema"] == "archbench.match/1"
    m = data["match"]
    assert m["schema"] == "archbench.budget_match/1"
    assert (m["vary"], m["depth"], m["width"], m["metric"]) == ("depth", 110, 16, "macs")
    assert m["target"] == 250_000_000
    data = run_json(capsys, "match", "resnet", "--params", "1M", "--param", "shortcut=B",
                    "--tolerance", "0.05")  # fmt: skip
    assert data["match"]["params"] == {"shortcut": "B"}


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["describe", "resnett"], "unknown preset 'resnett'"),
        (["describe", "resnet21"], "depth must be 6n+2"),
        (["describe", "resnet50", "--input-size", "8"], "shrinks the 1x1 feature map"),
        (["match", "nosuch", "--params", "1M"], "unknown family 'nosuch'"),
        (["match", "resnet", "--params", "1.7X"], "invalid count '1.7X'"),
        (["match", "resnet", "--params", "1K"], "nearest below: none"),
        (["match", "resnet", "--params", "1.7M"], "nearest above: 1,761,247 at width 41"),
        (["match", "resnet", "--params", "1M", "--param", "oops"], "key=value"),
        (["match", "resnet", "--params", "1M", "--param", "foo=1"], "unknown param 'foo'"),
        (["match", "resnet", "--params", "1M", "--width", "16"], "--vary depth"),
        (["match", "resnet", "--params", "1M", "--vary", "depth", "--depth", "20"], "--vary width"),
    ],
)
def test_user_errors_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("archbench: error: ") and needle in err
    assert "Traceback" not in err


def test_match_requires_a_target(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["match", "resnet"])
    assert info.value.code == 2
    assert "--params" in capsys.readouterr().err


def test_parse_param_and_reference() -> None:
    assert parse_param("shortcut=B") == ("shortcut", "B")
    assert parse_param("groups=8") == ("groups", 8)
    assert parse_param("dropout=0.3") == ("dropout", 0.3)
    assert parse_param("bn=false") == ("bn", False)
    assert reference({}) is None
    assert reference({"paper_params": 0.27e6, "paper": "He"}) == {
        "params": 270_000,
        "source": "paper",
        "detail": "He",
    }


def test_format_helpers() -> None:
    assert human_count(1_727_962) == "1.73M"
    assert human_count(269_722) == "270K"
    assert human_count(40_931_968) == "40.9M"
    assert human_count(4_111_512_576) == "4.11G"
    assert human_count(999_999) == "1.00M"
    assert human_count(640) == "640"
    assert human_count(None) == "-"
    # One formatter: the analysis and the plots' axes use it with trailing zeros trimmed.
    assert human_count(75_000, trim=True) == "75K"
    assert human_count(1_700_000, trim=True) == "1.7M"
    assert human_count(1_234_567, trim=True) == "1.23M"
    assert human_count(999_999, trim=True) == "1M"
    table = render_table(
        [{"a": "x", "n": 5}, {"a": "long name", "n": 12345}],
        [Column("a", "name"), Column("n", "count", ">")],
    ).splitlines()
    assert table == ["name       count", "---------  -----", "x              5", "long name  12345"]
    assert render_kv([("a", "1"), ("bbb", "2")]) == "a    1\nbbb  2"
    assert json.loads(to_json("x/1", {"k": (1, 2)})) == {"schema": "x/1", "k": [1, 2]}
