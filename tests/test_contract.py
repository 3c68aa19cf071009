"""One definition per parameter: the CLI, the KFP components, the compiled pipeline and the
validation all agree with the step configs (protloc/config.py).

``mismatches`` lists every disagreement between one step's config and what was derived from it;
the last tests show it finds a drifted side (a flag's default, a missing component input, a
description), so the contract cannot pass by comparing nothing.
"""

from __future__ import annotations

import argparse
import math
import re
from dataclasses import replace

import pytest
import yaml

import pipeline
from components import component as kfp_component
from protloc.cli import step_parser
from protloc.config import CONFIGS, PredictConfig, PrepareConfig, TrainConfig
from protloc.errors import ConfigError
from protloc.params import Param
from protloc.steps import DATA_ROOT, STEPS, Step
from protloc.train.schedule import Cycle
from tests.conftest import run_python
from tests.pod import Artifact

KFP_TYPES = {bool: "Boolean", int: "Integer", float: "Float", str: "String"}
IR_TYPES = {bool: "BOOLEAN", int: "NUMBER_INTEGER", float: "NUMBER_DOUBLE", str: "STRING"}


def _flags(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {a.dest: a for a in parser._actions if a.dest != "help"}


def mismatches(step: Step, parser: argparse.ArgumentParser, component) -> list[str]:
    """Every place where ``parser`` or ``component`` disagrees with ``step``'s definition."""
    out: list[str] = []
    flags = _flags(parser)
    inputs = component.component_spec.inputs
    params = step.config.params()
    folders = [i.name for i in step.inputs] + ["out"]
    if step.reads_data_root:
        folders.append("data_root")
    want_flags = {p.name for p in params} | set(folders)
    if set(flags) != want_flags:
        out.append(f"CLI flags {sorted(set(flags) ^ want_flags)} differ from the step")
    want_inputs = {p.name for p in params} | {i.name for i in step.inputs} | {"code_version"}
    if step.reads_data_root:
        want_inputs |= {"data_root", "data_fingerprint"}
    if set(inputs) != want_inputs:
        out.append(f"KFP inputs {sorted(set(inputs) ^ want_inputs)} differ from the step")
    for p in params:
        flag, spec = flags.get(p.name), inputs.get(p.name)
        if flag is not None:
            if flag.help.replace("%%", "%") != p.description():
                out.append(f"CLI {p.flag}: help {flag.help!r} != {p.description()!r}")
            if flag.default is not None:  # None = not given: the config's default applies
                out.append(f"CLI {p.flag}: has its own default {flag.default!r}")
            if flag.required != p.required:
                out.append(f"CLI {p.flag}: required={flag.required}, config {p.required}")
            if p.spec.choices and tuple(flag.choices or ()) != tuple(p.spec.choices):
                out.append(f"CLI {p.flag}: choices {flag.choices} != {p.spec.choices}")
            if p.type is not bool and flag.type(str(p.default if not p.required else 1)) is None:
                out.append(f"CLI {p.flag}: does not parse a {p.type.__name__}")
        if spec is not None:
            if spec.type != KFP_TYPES[p.type]:
                out.append(f"KFP {p.name}: type {spec.type} != {KFP_TYPES[p.type]}")
            want_default = None if p.required else p.default
            if spec.default != want_default:
                out.append(f"KFP {p.name}: default {spec.default!r} != {want_default!r}")
            if spec.description != p.description():
                out.append(f"KFP {p.name}: description {spec.description!r}")
    for i in step.inputs:
        spec = inputs.get(i.name)
        if spec is not None and (spec.description != i.help or spec.optional != i.optional):
            out.append(f"KFP input {i.name}: {spec.description!r}, optional={spec.optional}")
    return out


@pytest.mark.parametrize("name", list(STEPS))
def test_cli_and_component_derive_from_the_config(name):
    step = STEPS[name]
    assert step.config is CONFIGS[name]
    assert mismatches(step, step_parser(step), kfp_component(name, "img:1")) == []


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    path = tmp_path_factory.mktemp("contract") / "pipeline.yaml"
    pipeline.compile_pipeline([Cycle(96, 8, 1), Cycle(128, 8, 1)], str(path))
    return yaml.safe_load_all(path.read_text()).__next__()


def test_compiled_pipeline_parameters_are_the_steps_parameters(compiled):
    root = compiled["root"]["inputDefinitions"]["parameters"]
    params = pipeline.run_params(None)  # without recipes: no compare step, no best
    assert list(root) == [p.name for p in params] or set(root) == {p.name for p in params}
    for p in params:
        got = root[p.name]
        assert got["parameterType"] == IR_TYPES[p.type], p.name
        assert got.get("description") == p.description(), p.name
        if p.required:
            assert "defaultValue" not in got and not got.get("isOptional"), p.name
        else:
            assert got["defaultValue"] == p.default, p.name
    # Every pipeline parameter feeds the step(s) whose config holds it, under the same name.
    dag = compiled["root"]["dag"]["tasks"]
    for task in dag.values():
        for name, value in task["inputs"].get("parameters", {}).items():
            if "componentInputParameter" in value:
                assert value["componentInputParameter"] == name


def test_every_component_input_has_a_description(compiled):
    for name, comp in compiled["components"].items():
        if not name.startswith("comp-"):
            continue
        defs = comp.get("inputDefinitions", {})
        for kind in ("parameters", "artifacts"):
            for inp, spec in defs.get(kind, {}).items():
                assert spec.get("description"), f"{name}.{inp} has no description"
        for out, spec in comp.get("outputDefinitions", {}).get("artifacts", {}).items():
            assert spec.get("description"), f"{name} output {out} has no description"


def test_shared_names_are_one_definition():
    """seed, workers and cache_dir appear in two configs: the same parameter in both."""
    seen: dict[str, Param] = {}
    for cls in CONFIGS.values():
        for p in cls.params():
            if p.name in seen:
                assert seen[p.name] == p, p.name
            seen[p.name] = p
    assert DATA_ROOT.name not in seen  # the data root is a folder, not a setting


# ----------------------------------------------------------------------------- validation


def _bad_values(p: Param) -> list:
    bad: list = []
    if p.type is float:
        bad += [math.nan, math.inf]
    if p.type in (int, float) and p.spec.low is not None:
        bad.append(p.spec.low - 1 if p.type is int else p.spec.low - 1e-9 * max(1, abs(p.spec.low)))
        if p.spec.low_open:
            bad.append(p.type(p.spec.low))
    if p.type in (int, float) and p.spec.high is not None:
        bad.append(p.spec.high + 1)
        if p.spec.high_open:
            bad.append(p.type(p.spec.high))
    if p.spec.choices:
        bad.append("nonsense")
    if p.type is int:
        bad.append(True)  # a bool is not a number of anything
    return bad


def _valid(cls) -> dict:
    required = {
        TrainConfig: {"size": 96, "batch_size": 8, "epochs": 1},
        PrepareConfig: {"store_size": 96},
        PredictConfig: {"images": "imgs"},
    }
    return required.get(cls, {})


@pytest.mark.parametrize("name", list(CONFIGS))
def test_every_bad_value_is_refused_naming_the_parameter(name):
    cls = CONFIGS[name]
    checked = 0
    for p in cls.params():
        for value in _bad_values(p):
            with pytest.raises(ConfigError, match=rf"\b{p.name}\b"):
                cls(**{**_valid(cls), p.name: value})
            checked += 1
    assert checked >= len([p for p in cls.params() if p.type is not str])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--alpha", "nan"], r"alpha must be a number in \[0, 1\] or auto, got 'nan'"),
        (["--alpha", "2"], r"alpha must be a number in \[0, 1\] or auto, got '2'"),
        (["--alpha", "x"], r"alpha must be a number in \[0, 1\] or auto, got 'x'"),
    ],
)
def test_cli_refuses_what_the_config_refuses(argv, message, tmp_path):
    cmd = ["-m", "components.thresholds", "--split", str(tmp_path)]
    cmd += ["--predictions", str(tmp_path), "--out", str(tmp_path / "o"), *argv]
    proc = run_python(cmd)
    assert proc.returncode == 2, proc.stderr
    assert re.search(message, proc.stderr), proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "o").exists()


def test_pipeline_refuses_what_the_configs_refuse():
    schedule = [Cycle(96, 8, 1)]
    ok = pipeline.arguments({"data_root": "x"}, schedule)
    assert ok["alpha"] == "0.1" and ok["lr_max"] == TrainConfig.lr_max
    for values, message in [
        ({"data_root": "x", "clip_norm": math.nan}, "clip_norm must be a finite number"),
        ({"data_root": "x", "lr_min": 0.5}, "lr_min must be <= lr_max"),
        ({"data_root": "x", "nope": 1}, "unknown pipeline parameter"),
        ({"data_root": ""}, "data_root is empty"),
    ]:
        with pytest.raises(ConfigError, match=message):
            pipeline.arguments(values, schedule)


# ----------------------------------------------------------------------------- the test can fail


def test_contract_catches_a_drifted_side():
    step = STEPS["train"]
    good_parser, good_comp = step_parser(step), kfp_component("train", "img:1")
    assert mismatches(step, good_parser, good_comp) == []

    drifted = step_parser(step)
    _flags(drifted)["lr_max"].default = 0.05  # a CLI default copied by hand, then changed
    drifted.add_argument("--alpha", type=float)  # a flag of another step, added by hand
    found = mismatches(step, drifted, good_comp)
    assert any("--lr-max: has its own default 0.05" in m for m in found), found
    assert any("CLI flags ['alpha']" in m for m in found), found

    comp = kfp_component("train", "img:1")
    del comp.component_spec.inputs["skip_bad"]  # an input the KFP side forgot
    spec = comp.component_spec.inputs["dropout"]
    comp.component_spec.inputs["dropout"] = replace(spec, description="dropout", default=0.2)
    found = mismatches(step, good_parser, comp)
    assert any("KFP inputs ['skip_bad']" in m for m in found), found
    assert any("KFP dropout: default 0.2 != 0.5" in m for m in found), found
    assert any("KFP dropout: description 'dropout'" in m for m in found), found


def test_compile_needs_no_torch(tmp_path):
    """compile (and submit) on a laptop with only the core dependencies: torch made
    unimportable, the pipeline still compiles."""
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['torchvision'] = None; "
        "import pipeline; sys.exit(pipeline.main(['compile', '-o', sys.argv[1]]))"
    )
    proc = run_python(["-c", code, str(tmp_path / "p.yaml")])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "train-7" in (tmp_path / "p.yaml").read_text()


def test_a_task_refuses_to_run_other_code_than_it_was_compiled_for(tmp_path):
    """The KFP body checks the code_version argument (fixed at compile time) against the code
    installed where it runs: an image built from other code fails at once, naming both."""
    from components.task import run_task
    from protloc.version import code_version

    folder = Artifact(str(tmp_path), str(tmp_path))
    args = {"split": folder, "predictions": folder, "out": folder}
    with pytest.raises(SystemExit) as exc:  # one line, exit 2: no traceback in the pod's log
        run_task("thresholds", {**args, "alpha": "0.1", "code_version": "0.1.0+compiledfor"})
    assert exc.value.code == 2
    error = (tmp_path / "error.txt").read_text()
    assert "compiled for protloc 0.1.0+compiledfor" in error
    assert f"this container runs {code_version()}" in error
    assert not (tmp_path / "thresholds.json").exists()


# ----------------------------------------------------------------------------- generated files


def test_generated_components_and_parameters_page_are_fresh():
    """components/<step>.py and docs/parameters.md are what the configs give now
    (`make components docs` writes them)."""
    from tools.generate import stale, targets

    assert stale() == [], "stale generated files: run `make components docs`"
    assert len(targets()) == len(STEPS) + 1


def test_a_drifted_component_file_is_caught(tmp_path, monkeypatch):
    from tools import generate

    fake = tmp_path / "components"
    fake.mkdir()
    for path, text in generate.targets().items():
        if path.suffix == ".py":
            (fake / path.name).write_text(text)
    monkeypatch.setattr(generate, "ROOT", tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "parameters.md").write_text(generate.parameters_page())
    assert generate.stale() == []
    edited = fake / "train.py"
    edited.write_text(edited.read_text().replace("lr_max: float = 0.2", "lr_max: float = 0.05"))
    assert generate.stale() == [edited]


def test_the_component_that_runs_is_the_file_in_the_repository():
    """KFP ships the function's source: the compiled component holds the file's text."""
    import inspect

    import components.train

    comp = kfp_component("train", "img:1")
    source = inspect.getsource(components.train.train)
    command = " ".join(comp.component_spec.implementation.container.command)
    assert "def train(" in command and source.splitlines()[1].strip() in command
