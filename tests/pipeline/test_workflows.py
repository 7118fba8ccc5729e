"""Workflow YAML: the shipped definitions load, and every mistake names its line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.cli import main
from appliance.workflows import STAGES, SettingsError, load_workflow, parse_workflow, shipped_workflows

ORGANSEG = Path(__file__).parents[2] / "appliance" / "workflows" / "definitions" / "organseg.yaml"


def test_shipped_workflows_load() -> None:
    workflows = shipped_workflows()
    assert set(workflows) == {"OrganSeg", "LiverSeg"}
    organ = workflows["OrganSeg"]
    assert (organ.reader.stage, organ.inference.stage, organ.writer.stage) == STAGES
    assert [label.type.meaning for label in organ.labels] == ["Liver", "Spleen", "Kidney"]
    assert organ.labels[0].type.value == "10200004" and organ.labels[0].type.scheme == "SCT"
    assert organ.model.classes == 4 and organ.inference.spacing_mm == (3.0, 3.0, 3.0)
    liver = workflows["LiverSeg"].inference
    assert (liver.orientation, liver.spacing_mm, liver.block, liver.margin) == ("RAS", (3, 3, 3), (189, 162, 162),
                                                                              (13, 13, 13))
    assert (liver.clip_hu, liver.scale, liver.pad_value) == ((-200, 200), (-0.5, 0.5), 0.0)
    assert liver.triton.protocol == "grpc"
    assert "synthetic phantom only" in organ.description
    assert organ.writer.algorithm_name == "OrganSeg demo model, synthetic phantom only"


def test_contract_keys_are_checked() -> None:
    text = ORGANSEG.read_text().replace("    clip_hu: [-1024, 3071]", "    clip_hu: [-1024, 3071]\n"
                                        "    orientation: RAR\n    margin: [2, 2, 2]\n    preprocessing: magic")
    problems = "\n".join(_problems(text))
    assert "orientation" in problems and "margin" in problems and "preprocessing" in problems, problems


def _problems(text: str) -> list[str]:
    with pytest.raises(SettingsError) as info:
        parse_workflow(text, "wf.yaml")
    return info.value.problems


def test_errors_name_line_and_key() -> None:
    text = ORGANSEG.read_text()
    lines = text.splitlines()
    bad = text.replace("protocol: http", "protocol: udp").replace("min_slices: 20", "min_slices: many")
    bad = bad.replace("    geometry: warn", "    geometry: warn\n    colour: red")
    problems = _problems(bad)
    protocol_line = next(i for i, s in enumerate(lines, 1) if "protocol: http" in s) + 1  # one line inserted above
    slices_line = next(i for i, s in enumerate(lines, 1) if "min_slices" in s)
    assert f"wf.yaml:{slices_line}: stages[0].series.min_slices: must be a valid integer, not 'many'" in problems
    assert any(p.startswith(f"wf.yaml:{slices_line + 3}: stages[0].colour: unknown key") for p in problems)
    assert any(p.startswith(f"wf.yaml:{protocol_line}: stages[1].triton.protocol: must be 'http' or 'grpc', not 'udp'")
               for p in problems)
    assert len(problems) == 3


def test_missing_and_inconsistent_keys() -> None:
    text = ORGANSEG.read_text().replace("name: OrganSeg\n", "")
    text = text.replace("    spacing_mm: [3.0, 3.0, 3.0]\n", "    size: [1, 2]\n    spacing_mm: [3, 3, 3]\n")
    text = text.replace("  - class: 3", "  - class: 7")
    problems = _problems(text)
    assert any(": name: is required" in p for p in problems)
    assert any("stages[1].size: must be three values (x, y, z)" in p for p in problems)
    assert any("labels[2].class: must be between 1 and model.classes - 1 (3)" in p for p in problems)


def test_yaml_syntax_error_has_line() -> None:
    problems = _problems("name: X\nmodel: [unclosed\n")
    assert problems[0].startswith("wf.yaml:3: (syntax)")


def test_stage_order_enforced() -> None:
    text = ORGANSEG.read_text()
    head, rest = text.split("  - stage: reader", 1)
    reader, rest = rest.split("  - stage: inference", 1)
    inference, tail = rest.split("  - stage: writer", 1)
    writer, destinations = tail.split("destinations:", 1)
    swapped = (head + "  - stage: inference" + inference + "  - stage: reader" + reader + "  - stage: writer" + writer
               + "destinations:" + destinations)
    assert any("stages must run in the order reader -> inference -> writer" in p for p in _problems(swapped))


def test_empty_lists_say_what_they_need() -> None:
    text = ORGANSEG.read_text()
    text = text[:text.index("labels:")] + "labels: []\n" + text[text.index("stages:"):]
    problems = _problems(text.replace("formats: [mhd]", "formats: []"))
    assert [p.split(": ", 1)[1] for p in problems] == ["labels: must list at least 1",
                                                       "stages[0].formats: must list at least 1"]


def test_stages_are_all_three(tmp_path: Path) -> None:
    text = ORGANSEG.read_text()
    inference = text[text.index("  - stage: inference"):text.index("  - stage: writer")]
    problems = _problems(text.replace(inference, ""))
    assert problems == [f"wf.yaml:{text.splitlines().index('stages:') + 1}: stages: the stages must run in the order "
                        "reader -> inference -> writer, each once (got: reader, writer)"]


def test_cli_list_and_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["workflows", "list"]) == 0
    out = capsys.readouterr().out
    assert "OrganSeg" in out and "LiverSeg" in out
    assert main(["workflows", "validate", str(ORGANSEG)]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(ORGANSEG.read_text().replace("classes: 4", "classes: four"))
    assert main(["workflows", "validate", str(bad)]) == 1
    err = capsys.readouterr().err
    line = next(n for n, text in enumerate(bad.read_text().splitlines(), 1) if "classes: four" in text)
    assert f"{bad}:{line}: model.classes: must be a valid integer, not 'four'" in err


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="cannot read"):
        load_workflow(tmp_path / "nope.yaml")


def test_series_preference_for_equal_series() -> None:
    choose = "      choose: largest\n"
    text = ORGANSEG.read_text().replace(choose, choose + "      prefer: [portal, venous]\n")
    assert parse_workflow(text, "wf.yaml").reader.series.prefer == ("portal", "venous")
    bad = text.replace("prefer: [portal, venous]", "prefer: ['(unclosed']")
    line = next(i for i, s in enumerate(text.splitlines(), 1) if "prefer:" in s)
    assert any(p.startswith(f"wf.yaml:{line}: stages[0].series.prefer") for p in _problems(bad)), _problems(bad)
