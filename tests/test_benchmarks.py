"""The benchmark scripts' own logic (they are run by hand, never timed in tests)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from benchmarks.ablation import VARIANTS
from benchmarks.averaging import Lookahead
from benchmarks.plot_curves import mean_curve, plot
from benchmarks.profile_step import VARIANTS as PROFILE_VARIANTS
from benchmarks.profile_step import isolated_convs, model_and_batch, op_kind, traced_op_times
from benchmarks.selective import SelectiveBackprop, SelectiveModel, selective_recipe
from benchmarks.tta_views import VIEW_SETS, scores
from cifar_cnn.recipes import get_recipe
from cifar_cnn.training.trainer import build_model


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_each_ablation_variant_changes_one_thing_and_builds(variant: str) -> None:
    base = get_recipe("quick")
    r = VARIANTS[variant][1](base)
    changed = {k for k, v in r.to_dict().items() if v != base.to_dict()[k]}
    # progressive_resize is progressive_crop with the other way of making small images;
    # progressive_resize_9 and progressive_10 also train more epochs, and the last one
    # below also changes where the JPEG share goes; narrow_longer trades width for epochs
    # lookahead changes the training loop, not the recipe; the selective ones name the
    # selective network (model, model_options) beside their scaled rates
    fields = {"recipe": 0, "lookahead": 0, "progressive_resize": 2, "progressive_resize_9": 3,
              "narrow_longer": 2, "selective_half": 3,
              "selective_half_10": 4, "progressive_10": 3, "progressive_10_jpeg_full_size_only": 4}
    assert len(changed) == fields.get(variant, 1), changed
    net = build_model(r, 10, (32, 32, 3), steps_per_epoch=5)
    opt = r.build_optimizer(steps_per_epoch=5)
    assert net.output.shape == (None, 10) and opt is not None


@pytest.mark.slow
def test_selective_backprop_trains_the_network_on_half_of_each_batch(tiny_data,
                                                                   tmp_path: Path) -> None:
    from cifar_cnn import Classifier, train

    base = get_recipe("fast94").replace(batch_size=40, precision="float32")
    r = selective_recipe(base, 0.5, epochs=2)
    assert r.resolved_optimizer_options()["sgd_learning_rate"] == pytest.approx(
        0.5 * base.resolved_optimizer_options()["sgd_learning_rate"])
    assert r.model == "selective" and r.model_options == {"base": "airbench", "keep": 0.5}
    cb = SelectiveBackprop(r, tiny_data.x_train[:100], steps_per_epoch=4)
    run = train(r, data=tiny_data, runs_dir=tmp_path, monitor_test=False, verbose=0,
                callbacks=[cb])
    steps = run.read_metadata()["dataset"]["num_train"] // r.batch_size  # less calibration
    assert int(cb.images_trained.numpy()) == 2 * steps * 20  # 20 of each batch of 40
    assert int(cb.proxy.optimizer.iterations.numpy()) == steps  # on every second batch
    whole = run.read_metadata()["work"]["train_pflops"]
    assert 0.5 * whole < cb.train_pflops(whole, 2 * steps * 40) < 0.55 * whole
    assert isinstance(cb.model, SelectiveModel) and cb.model.ranker is None  # whole batches again
    assert "train_step" not in vars(cb.model)  # Keras' own hook, nothing patched
    network = build_model(base, 10, (32, 32, 3), steps_per_epoch=4)
    assert len(cb.model.weights) == len(network.weights)  # the proxy is none of the model's
    assert cb.proxy.count_params() < network.count_params() / 10
    loaded = Classifier.load(run.path)  # a SelectiveModel where this module is imported
    assert isinstance(loaded.model, SelectiveModel)
    assert loaded.predict(tiny_data.x_test[:3]).shape == (3, 10)
    with pytest.raises(ValueError, match="selective_recipe"):
        SelectiveBackprop(base, tiny_data.x_train[:100], steps_per_epoch=4)


@pytest.mark.slow
def test_lookahead_ends_training_on_the_average_batch_norm_statistics_included(
        tiny_data, tmp_path: Path) -> None:
    import numpy as np

    from cifar_cnn import Classifier, train

    r = get_recipe("fast94").replace(batch_size=20, epochs=2, precision="float32")
    cb = Lookahead(every=2)
    run = train(r, data=tiny_data, runs_dir=tmp_path, monitor_test=False, verbose=0,
                callbacks=[cb])
    steps = run.read_metadata()["dataset"]["num_train"] // r.batch_size
    assert cb.updates == 2 * steps // 2 + 1  # every second step, and once at the end
    assert cb.decay_at(0) == 0 and cb.decay_at(2 * steps) == pytest.approx(0.95 ** 2)
    saved = Classifier.load(run.path).model
    names = [v.path for v in cb.model.weights if "float" in str(v.dtype)]
    assert any("moving_mean" in n for n in names)  # the statistics are averaged too
    loaded = {v.path: v.numpy() for v in saved.weights}
    for average, name in zip(cb._average, names, strict=True):
        np.testing.assert_allclose(loaded[name], average.numpy(), rtol=1e-6, atol=1e-7)
    assert Classifier.load(run.path).predict(tiny_data.x_test[:3]).shape == (3, 10)


def test_tta_benchmarks_score_the_librarys_view_sets_each_view_computed_once() -> None:
    import numpy as np

    from benchmarks.ablation import TTA_SETS, tta_accuracies
    from cifar_cnn.tta import EXTRA_VIEW_SETS, predict_probs

    net = build_model(get_recipe("quick"), 10, (32, 32, 3), steps_per_epoch=5)
    x = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    y = np.arange(6) % 10
    calls = []

    class Counted:  # the network, counting its forward passes
        def predict_on_batch(self, batch: np.ndarray) -> np.ndarray:
            calls.append(1)
            return net.predict_on_batch(batch)

    rows = scores(Counted(), x, y)
    assert len(calls) == 50  # the mirror pairs of every shift of up to 2 pixels, once each
    assert list(rows) == ["none", *VIEW_SETS]
    assert [rows[n]["forward_passes"] for n in ("none", "mirror", "airbench", "ring8",
                                                 "grid24")] == [1, 2, 6, 18, 50]
    for name, (view_set, _) in VIEW_SETS.items():
        expected = (predict_probs(net, x, tta=view_set).argmax(1) == y).mean()
        assert rows[name]["val_accuracy"] == pytest.approx(expected), name
    calls.clear()
    acc = tta_accuracies(Counted(), x, y)
    assert len(calls) == 18 and TTA_SETS["_flip_shift8"] is EXTRA_VIEW_SETS["flip_shift8"]
    for suffix, tta in (("", None), ("_flip", "flip"), ("_flip_translate", "flip_translate"),
                        ("_flip_shift8", "flip_shift8")):
        expected = (predict_probs(net, x, tta=tta).argmax(1) == y).mean()
        assert acc[f"val_accuracy{suffix}"] == pytest.approx(expected), suffix


@pytest.mark.parametrize("recipe", ["quick", "fast94"])
def test_activation_variant_swaps_the_networks_activation(recipe: str) -> None:
    def activations(r) -> set[str]:
        net = build_model(r, 10, (32, 32, 3), steps_per_epoch=5)
        return {layer.name.split("_")[-1].rstrip("12") for layer in net.layers
                if type(layer).__name__ in ("Activation", "FusedGELU") and layer.name != "probs"}

    base = get_recipe(recipe)
    before, after = activations(base), activations(VARIANTS["other_activation"][1](base))
    assert len(before) == len(after) == 1 and before != after


@pytest.mark.parametrize("variant", sorted(PROFILE_VARIANTS))
def test_each_profile_variant_swaps_what_it_names(variant: str) -> None:
    import keras

    from cifar_cnn.layers import FusedBatchNormalization, FusedGELU, SmallMapConv2D

    model, x, _ = model_and_batch(variant, batch=2, steps=1, precision="float32")
    kinds = {type(layer) for layer in model.layers}
    assert (SmallMapConv2D in kinds) == (variant != "keras_conv")
    assert (FusedBatchNormalization in kinds) == (variant not in ("no_bn", "no_bn_relu",
                                                                  "convs_only"))
    assert (FusedGELU in kinds) == (variant in ("full", "keras_conv", "no_bn"))
    gelus = [layer for layer in model.layers if isinstance(layer, keras.layers.Activation)
             and layer.name != "probs"]
    assert bool(gelus) == (variant in ("keras_gelu", "relu", "no_bn_relu", "convs_only"))
    assert model.predict(x, verbose=0).shape == (2, 10)


def _result(recipe: str, curves: list[list[tuple[float, float]]]) -> dict:
    seeds = [{"curve": [{"epoch": e + 1, "seconds": s, "test_accuracy": a}
                        for e, (s, a) in enumerate(c)]} for c in curves]
    return {"recipe": recipe, "seeds": seeds, "mean_test_accuracy_tta": 0.93,
            "mean_train_seconds": curves[0][-1][0] + 1}


def test_accuracy_curve_is_averaged_over_seeds_and_drawn(tmp_path: Path) -> None:
    fast = _result("fast94", [[(100, 0.8), (200, 0.9)], [(110, 0.7), (210, 0.92)]])
    curve = mean_curve(fast)
    assert [s for s, _ in curve] == pytest.approx([105, 205])
    assert [a for _, a in curve] == pytest.approx([0.75, 0.91])
    reference = {"benchmark": "reference_airbench94_muon", "train_seconds": 250,
                 "test_accuracy": 0.91, "test_accuracy_tta": 0.92}
    out = plot([fast, _result("quick", [[(50, 0.85)]]), reference], tmp_path / "curve.png")
    with Image.open(out) as img:
        assert img.format == "PNG" and img.width > 600
    assert [p.name for p in tmp_path.iterdir()] == ["curve.png"]  # no temporary left behind
    with pytest.raises(SystemExit, match="no per-epoch curve"):
        plot([json.loads(json.dumps({**fast, "seeds": [{}]}))], tmp_path / "x.png")


def test_profile_trace_apportions_a_training_step_to_kinds_of_op() -> None:
    assert op_kind("_MklNativeConv2DBackpropFilter") == "convolution"
    assert op_kind("multiply_convert_fusion") == "activation"  # XLA's FusedGELU kernel
    assert op_kind("_MklNativeFusedBatchNormGradV3") == "batch norm"
    assert op_kind("_MklNativeMaxPoolGrad") == "pooling"
    assert op_kind("Sub") == "other"
    trace = traced_op_times(batch=16, steps=1, precision="float32")
    kinds = trace["kinds"]
    assert {"convolution", "activation", "batch norm", "pooling"} <= set(kinds)
    assert sum(k["share"] for k in kinds.values()) == pytest.approx(1, abs=0.01)
    assert trace["thread_ms_per_step"] > 0
    assert trace["kernel_grad_as_matmuls_ms"] > 0  # SmallMapConv2D's, counted as convolution


def test_isolated_convs_time_both_kernel_gradients() -> None:
    rows = isolated_convs(batch=2, widths=(8, 16, 256), repeats=1)
    assert [r["shape"] for r in rows] == ["31x31x24->8", "15x15x8->8", "15x15x8->16",
                                          "7x7x16->16", "7x7x16->256", "3x3x256->256"]
    assert [r["network_uses_matmul_kernel_grad"] for r in rows] == [False] * 5 + [True]
    for r in rows:
        assert r["ms"] in (r["tensorflow_ms"], r["matmul_kernel_grad_ms"]) and r["ms"] > 0


@pytest.mark.parametrize("recipe", ["fast94", "quick"])
def test_profiled_step_is_the_named_recipes_network(recipe: str) -> None:
    model, _, _ = model_and_batch("full", batch=2, steps=1, precision="float32", recipe=recipe)
    reference = build_model(get_recipe(recipe), 10, (32, 32, 3), steps_per_epoch=1)
    assert model.count_params() == reference.count_params()


def test_ablation_result_is_rewritten_after_each_run(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    from benchmarks import ablation, common

    monkeypatch.setattr(common, "RESULTS", tmp_path)
    monkeypatch.setattr(common, "_matmul_gflops_once", lambda: {"float32": 1.0})
    args = argparse.Namespace(recipe="fast94", val_size=5000, seeds=1)
    names, planned = ["recipe", "selective_half"], [("recipe", 0), ("selective_half", 0)]
    runs = [{"variant": "recipe", "seed": 0, **{k: 0.9 for k in ablation.KEYS}}]
    path = common.write_result("ablation-fast94", ablation.summary(args, names, runs, planned))
    first = json.loads(path.read_text())
    assert first["runs_missing"] == ["selective_half:0"] and list(first["variants"]) == ["recipe"]
    runs.append({"variant": "selective_half", "seed": 0, **{k: 0.8 for k in ablation.KEYS}})
    assert common.write_result("ablation-fast94", ablation.summary(args, names, runs, planned),
                               path) == path
    final = json.loads(path.read_text())
    assert "runs_missing" not in final and list(tmp_path.iterdir()) == [path]
    assert final["variants"]["selective_half"]["val_accuracy_flip_translate"] == 0.8


def test_robustness_result_is_rewritten_after_each_seed(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """An interrupted multi-seed run keeps the seeds it finished, marked as incomplete."""
    import argparse

    from benchmarks import common, robustness

    monkeypatch.setattr(common, "RESULTS", tmp_path)
    monkeypatch.setattr(common, "_matmul_gflops_once", lambda: {"float32": 1.0})
    args = argparse.Namespace(recipe="fast94", split="test", val_size=5000)

    def seed(acc: float) -> dict:
        return {"accuracy": {"png": acc}, "accuracy_tta": {"png": acc + 0.01},
                "ece_raw": 0.2, "ece_calibrated": 0.01, "ece_raw_tta": 0.2,
                "ece_calibrated_tta": 0.01, "train_seconds": 10.0, "train_pflops": 0.25,
                "peak_rss_mb": 100.0}

    done = [seed(0.92)]
    path = common.write_result("robustness-fast94",
                               robustness.summary(args, {}, {}, done, [0, 1]))
    first = json.loads(path.read_text())
    assert first["seeds_missing"] == [1] and len(first["seeds"]) == 1
    done.append(seed(0.94))
    again = common.write_result("robustness-fast94",
                                robustness.summary(args, {}, {}, done, [0, 1]), path)
    assert again == path and list(tmp_path.iterdir()) == [path]
    final = json.loads(path.read_text())
    assert "seeds_missing" not in final
    assert final["mean_accuracy_tta"]["png"] == pytest.approx(0.94)


def _robustness_result(tmp_path: Path, name: str, seeds: list[int], images: int = 10000,
                       missing: list[int] | None = None) -> Path:
    """A finished robustness result file of the ``robust`` recipe for the given seeds."""
    def seed(n: int) -> dict:
        acc = 0.93 + n / 100
        return {"seed": n, "augmentation_options": {"flip": True}, "model_options": {},
                "epochs": 16, "tta": "flip", "accuracy": {"png": acc},
                "accuracy_tta": {"png": acc + 0.01}, "ece_raw": 0.2, "ece_calibrated": 0.01,
                "ece_raw_tta": 0.2, "ece_calibrated_tta": 0.01, "train_seconds": 10.0,
                "train_pflops": 0.25, "peak_rss_mb": 100.0,
                "corruptions": {"images": images, "tta": None, "mean_accuracy": acc - 0.05,
                                "mean_ece": 0.02, "held_out_accuracy": acc - 0.04,
                                "per_family": {"noise": acc - 0.1},
                                "per_corruption": {"gaussian_noise": acc - 0.1}}}

    record = {"recipe": "robust", "split": "test", "images": 10000,
              "augmentation_options": "the recipe's", "recipe_changes": {},
              "commit": "abc1234", "cpu": "AMD EPYC", "command": "python -m ...",
              "seeds": [seed(n) for n in seeds], **({"seeds_missing": missing} if missing else {})}
    path = tmp_path / name
    path.write_text(json.dumps(record))
    return path


def test_robustness_combine_makes_one_table_of_seeds_from_two_sessions(tmp_path: Path) -> None:
    from benchmarks.robustness import combine

    numbers = combine([_robustness_result(tmp_path, "b.json", [1, 2]),
                       _robustness_result(tmp_path, "a.json", [0])])
    assert [s["seed"] for s in numbers["seeds"]] == [0, 1, 2]
    assert numbers["seeds"][0]["source"]["file"] == "a.json"
    assert numbers["mean_accuracy_tta"]["png"] == pytest.approx(0.95)
    assert numbers["range_accuracy_tta"]["png"] == pytest.approx([0.94, 0.96])
    corr = numbers["mean_corruptions"]
    assert corr["mean_accuracy"] == pytest.approx(0.89)
    assert corr["per_corruption"]["gaussian_noise"] == pytest.approx(0.84)
    assert [c["file"] for c in numbers["combined_from"]] == ["b.json", "a.json"]
    assert "seeds_missing" not in numbers


def test_robustness_combine_joins_the_finished_seeds_of_a_cut_off_run(tmp_path: Path) -> None:
    from benchmarks.robustness import combine

    cut = _robustness_result(tmp_path, "cut.json", [0, 1], missing=[2, 3, 4])
    numbers = combine([cut, _robustness_result(tmp_path, "rest.json", [2, 3, 4])])
    assert [s["seed"] for s in numbers["seeds"]] == [0, 1, 2, 3, 4]
    assert "seeds_missing" not in numbers
    assert numbers["combined_from"][0]["seeds_not_run"] == [2, 3, 4]
    assert "seeds_not_run" not in numbers["combined_from"][1]
    assert numbers["mean_accuracy_tta"]["png"] == pytest.approx(0.96)


@pytest.mark.parametrize("parts, message", [
    ([("a.json", [0], 10000, None), ("b.json", [1], 1000, None)], "corruptions were scored"),
    ([("a.json", [0, 1], 10000, None), ("b.json", [1], 10000, None)], "appears twice"),
    ([("a.json", [], 10000, [0, 1]), ("b.json", [2], 10000, None)], "no seed finished"),
])
def test_robustness_combine_refuses_parts_that_do_not_belong_together(
        tmp_path: Path, parts: list, message: str) -> None:
    from benchmarks.robustness import combine

    files = [_robustness_result(tmp_path, name, seeds, images, missing)
             for name, seeds, images, missing in parts]
    with pytest.raises(SystemExit, match=message):
        combine(files)


def test_robustness_combine_refuses_another_recipe(tmp_path: Path) -> None:
    from benchmarks.robustness import combine

    a = _robustness_result(tmp_path, "a.json", [0])
    b = _robustness_result(tmp_path, "b.json", [1])
    b.write_text(b.read_text().replace('"robust"', '"fast94"'))
    with pytest.raises(SystemExit, match="recipe is 'fast94'"):
        combine([a, b])


def test_robustness_combine_names_a_file_it_cannot_read(tmp_path: Path) -> None:
    from benchmarks.robustness import combine

    good = _robustness_result(tmp_path, "a.json", [0])
    broken = tmp_path / "b.json"
    broken.write_text("{")
    for bad in (broken, tmp_path / "missing.json"):
        with pytest.raises(SystemExit, match=f"{bad.name}: not a readable result file"):
            combine([good, bad])
