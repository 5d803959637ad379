"""Target conditions of the synthetic benchmark: what each changes and keeps, determinism and
order, their own random streams, validation, benchmark.json and the CLI option."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from diga.data.synth import (
    CONDITIONS,
    TARGET_STYLE,
    ConditionSpec,
    generate_benchmark,
    parse_conditions,
    render_conditioned,
    render_scene,
)
from diga.data.synth.conditions import condition_rng
from diga.data.synth.effects import colour_retouch
from diga.data.synth.layout import layout
from diga.data.synth.render import render_layers
from diga.data.synth.scene import Scene
from diga.errors import ConfigError

SMALL = (64, 128)
KEYS = [(0, 1, 0, 0), (0, 1, 1, 3), (5, 1, 0, 2)]
NAMES = list(CONDITIONS)


def _base(key):
    return render_scene(np.random.default_rng(list(key)), SMALL, TARGET_STYLE)


def test_the_six_conditions_in_their_documented_order():
    assert NAMES == ["camera", "texture", "fog", "rain", "night", "color"]
    assert [c.name for c in CONDITIONS.values() if c.changes_labels] == ["camera"]
    assert [c.name for c in CONDITIONS.values() if c.held_out] == ["texture", "rain", "night"]
    streams = [c.stream for c in CONDITIONS.values()]
    assert len(set(streams)) == len(streams)


@pytest.mark.parametrize("name", NAMES)
def test_each_condition_changes_the_image_and_keeps_the_labels_unless_it_moves_the_camera(name):
    for key in KEYS:
        base_img, base_lab = _base(key)
        img, lab = render_conditioned(key, SMALL, TARGET_STYLE, [name])
        assert img.shape == base_img.shape and img.dtype == np.uint8 and lab.dtype == np.uint8
        assert np.abs(img.astype(int) - base_img.astype(int)).mean() > 3.0, key
        if name == "camera":
            assert (lab != base_lab).mean() > 0.05, key
        else:
            assert np.array_equal(lab, base_lab), key


@pytest.mark.parametrize("name", NAMES)
def test_a_condition_never_changes_the_draws_of_the_scene_layout(name):
    """The scene's generator makes exactly the same draws under the condition's style (its
    state after the layout is the same), so the instance table is the same: the same street,
    drawn differently."""
    key = KEYS[1]
    restyle = CONDITIONS[name].restyle
    style = TARGET_STYLE if restyle is None else restyle(TARGET_STYLE, 1.0, condition_rng(key, name))
    scenes = []
    for st in (TARGET_STYLE, style):
        sc = Scene(np.random.default_rng(list(key)), SMALL, st)
        layout(sc)
        scenes.append(sc)
    base, cond = scenes
    assert cond.rng.bit_generator.state == base.rng.bit_generator.state
    assert cond.cls == base.cls and cond.dmode == base.dmode


def test_a_retouch_reads_the_plain_image_and_draws_only_from_its_own_generator():
    key = KEYS[0]
    layers = render_layers(np.random.default_rng(list(key)), SMALL, TARGET_STYLE)
    expected = colour_retouch(layers.image, layers, 0.5, condition_rng(key, "color"))
    img, lab = render_conditioned(key, SMALL, TARGET_STYLE, ["color:0.5"])
    assert np.array_equal(img, expected) and np.array_equal(lab, layers.labels)


def test_weaker_strength_means_a_smaller_change():
    base, _ = _base(KEYS[0])
    diffs = [np.abs(render_conditioned(KEYS[0], SMALL, TARGET_STYLE, [f"fog:{s}"])[0].astype(int)
                    - base.astype(int)).mean() for s in (0.25, 1.0)]
    assert 0 < diffs[0] < diffs[1]


def test_two_conditions_are_deterministic_and_composed_in_the_fixed_order():
    key = KEYS[2]
    a = render_conditioned(key, SMALL, TARGET_STYLE, ["night:0.6", "fog"])
    b = render_conditioned(key, SMALL, TARGET_STYLE, ["fog", "night:0.6"])
    c = render_conditioned(key, SMALL, TARGET_STYLE, [("fog", 1.0), ConditionSpec("night", 0.6)])
    for other in (b, c):
        assert np.array_equal(a[0], other[0]) and np.array_equal(a[1], other[1])
    fog_only = render_conditioned(key, SMALL, TARGET_STYLE, ["fog"])
    assert not np.array_equal(a[0], fog_only[0])
    assert np.array_equal(a[1], fog_only[1])


def test_night_darkens_the_rain_too():
    """Rain is part of the lit scene: under night its streaks are as dark as everything else."""
    key = KEYS[0]
    night = render_conditioned(key, SMALL, TARGET_STYLE, ["night"])[0].astype(int)
    both = render_conditioned(key, SMALL, TARGET_STYLE, ["rain", "night"])[0].astype(int)
    rain = render_conditioned(key, SMALL, TARGET_STYLE, ["rain"])[0].astype(int)
    assert both.mean() < night.mean() + 3 and night.mean() + 30 < rain.mean()


def test_no_conditions_is_the_plain_render():
    img, lab = render_conditioned(KEYS[0], SMALL, TARGET_STYLE, [])
    base_img, base_lab = _base(KEYS[0])
    assert np.array_equal(img, base_img) and np.array_equal(lab, base_lab)


def test_parse_conditions_orders_and_reads_strengths():
    specs = parse_conditions(["color:0.3", "Fog", ("camera", "0.5")])
    assert specs == (ConditionSpec("camera", 0.5), ConditionSpec("fog", 1.0), ConditionSpec("color", 0.3))
    assert parse_conditions("rain:1") == (ConditionSpec("rain", 1.0),)
    assert parse_conditions([]) == ()


@pytest.mark.parametrize("bad", ["fgo", "fog:0", "fog:-0.5", "fog:1.5", "fog:abc", "fog:", "fog:nan",
                                 "fog:inf", ("fog", True), 3, ["fog", "fog:0.5"]])
def test_bad_names_and_strengths_are_errors_listing_the_valid_names(bad):
    with pytest.raises(ConfigError) as err:
        parse_conditions(bad if isinstance(bad, list) else [bad])
    message = str(err.value)
    if not isinstance(bad, list):
        assert all(name in message for name in NAMES)
    else:
        assert "twice" in message


def _files(root: Path, sub: str) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted((root / sub).rglob("*.png"))}


def test_benchmark_with_conditions(tmp_path):
    kw = dict(n_train=2, n_val=1, size=(32, 64), seed=3, progress=False)
    plain = generate_benchmark(tmp_path / "plain", **kw)
    assert "conditions" not in json.loads((plain / "benchmark.json").read_text())
    shifted = generate_benchmark(tmp_path / "shift", conditions=["rain:0.5", "texture"], **kw)
    meta = json.loads((shifted / "benchmark.json").read_text())
    assert meta["conditions"] == [{"name": "texture", "strength": 1.0}, {"name": "rain", "strength": 0.5}]
    assert meta["target_style"] == json.loads((plain / "benchmark.json").read_text())["target_style"]
    assert _files(shifted, "source") == _files(plain, "source")          # the source is untouched
    assert _files(shifted, "source_val") == _files(plain, "source_val")
    images = [k for k in _files(plain, "target") if "leftImg8bit" in k]
    labels = [k for k in _files(plain, "target") if "gtFine" in k]
    assert len(images) == 3 and len(labels) == 3  # train and val both shifted
    for k in images:
        assert _files(shifted, "target")[k] != _files(plain, "target")[k]
    for k in labels:
        assert _files(shifted, "target")[k] == _files(plain, "target")[k]
    # the same folder asked for without the conditions is regenerated, not taken from the cache
    again = generate_benchmark(tmp_path / "shift", **kw)
    assert _files(again, "target") == _files(plain, "target")
    assert (again / "benchmark.json").read_bytes() == (plain / "benchmark.json").read_bytes()


def test_a_bad_condition_fails_before_anything_is_written(tmp_path):
    with pytest.raises(ConfigError, match="valid conditions: camera, texture, fog, rain, night, color"):
        generate_benchmark(tmp_path / "x", n_train=1, n_val=0, size=(32, 64), progress=False,
                           conditions=["snow"])
    assert not (tmp_path / "x").exists()


def test_cli_condition_option(cli, tmp_path):
    help_text = cli("data", "synth", "--help").text
    assert all(name in help_text for name in NAMES)
    bad = cli("data", "synth", "--out", tmp_path / "b", "--condition", "haze")
    assert bad.exit_code == 2 and "--condition" in bad.text and "night" in bad.text
    assert not (tmp_path / "b").exists()
    ok = cli("data", "synth", "--out", tmp_path / "c", "--n-train", "1", "--n-val", "1",
             "--size", "32", "64", "--condition", "night:0.5", "--condition", "camera")
    assert ok.exit_code == 0, ok.text
    meta = json.loads((tmp_path / "c" / "benchmark.json").read_text())
    assert [c["name"] for c in meta["conditions"]] == ["camera", "night"]


def test_cli_defaults_write_the_builtin_benchmark(cli, tmp_path):
    """`diga data synth` with the built-in benchmark's parameters writes its very files (gap 0.5);
    --gap 1 draws the full camera style instead."""
    from diga.data.synth import generate_benchmark
    from diga.engine.benchmark import BENCHMARK_DEFAULTS

    small = ["--n-train", "1", "--n-val", "1", "--size", "32", "64"]
    assert cli("data", "synth", "--out", tmp_path / "cli", *small).exit_code == 0
    assert cli("data", "synth", "--out", tmp_path / "full", *small, "--gap", "1").exit_code == 0
    builtin = generate_benchmark(tmp_path / "builtin", n_train=1, n_val=1, size=(32, 64), seed=0,
                                 gap=BENCHMARK_DEFAULTS["gap"], progress=False)
    image = next((builtin / "target" / "leftImg8bit" / "train").rglob("*.png")).relative_to(builtin)
    assert (tmp_path / "cli" / image).read_bytes() == (builtin / image).read_bytes()
    assert (tmp_path / "full" / image).read_bytes() != (builtin / image).read_bytes()


ROOT = Path(__file__).resolve().parents[1]


def _shift_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("shift_conditions", ROOT / "benchmarks/shift_conditions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_frechet_distance_of_the_shift_script():
    script = _shift_script()
    rng = np.random.default_rng(0)
    a = rng.standard_normal((400, 3))
    a -= a.mean(0)
    assert abs(script.frechet_distance(a, a)) < 1e-9
    assert script.frechet_distance(a, a + [2.0, 0.0, 0.0]) == pytest.approx(4.0)
    assert script.frechet_distance(a, 3.0 * a) == pytest.approx(4.0 * np.trace(np.cov(a, rowvar=False)))
    stats = script.image_statistics(np.zeros((32, 64, 3), np.uint8))
    assert stats.shape == (24,) and np.isfinite(stats).all()


def test_shift_script_reports_every_condition(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks/shift_conditions.py"), "--out", str(tmp_path),
                           "--n-train", "3", "--n-val", "2", "--size", "32", "64"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line.split("|")[1:4] for line in proc.stdout.splitlines() if line.startswith("| ")][1:]
    assert [r[0].strip() for r in rows] == ["(plain target)", *NAMES]
    uses = {r[0].strip(): r[1].strip() for r in rows}
    assert {n for n, u in uses.items() if u == "held out"} == {"texture", "rain", "night"}
    assert all(float(r[2]) >= 0 for r in rows)
