"""The plan of evaluation: its time (held-out rows and passkey cases, at the lengths the evaluator uses) as a line of
the step time spread over eval.every, its memory beside training's peak, and eval.only planned forward-only."""

import dataclasses

import pytest

from helpers import compose

H200 = ["hardware.gpu_mem_gib=139.8", "hardware.peak_tflops=989", "hardware.host_ram_gib=128"]


def planned(overrides, experiment="llama1b_1gpu", world=1):
    from framework.model import hf_config
    from framework.plan.planner import hardware, make_plan, setup_of

    cfg = compose(H200 + overrides, experiment=experiment)
    text = hf_config(name_or_path=None, arch=cfg.model.arch).get_text_config()
    return make_plan(cfg, text, world), setup_of(cfg, text, world, hardware(cfg, world))


def test_eval_line_is_one_evaluation_spread_over_its_steps():
    """eval.steps forwards of a training micro-batch, no backward, every eval.every steps; in step_time_s."""
    from framework.plan.gpu import forward_pass

    base, _ = planned(["data.seq_length=16384", "model.recompute_attention=true"])
    plan, u = planned(["data.seq_length=16384", "model.recompute_attention=true", "eval.every=10", "eval.steps=3"])
    t, f = plan.figures["time_parts"], plan.figures
    assert "eval" not in base.figures["time_parts"] and base.figures["eval_s"] == 0
    assert f["eval_s"] == pytest.approx(3 * forward_pass(u, 16384, 1))
    assert t["eval"] == pytest.approx(f["eval_s"] / 10)
    assert f["step_time_s"] == pytest.approx(base.figures["step_time_s"] + t["eval"])
    # a held-out forward is the training forward (no checkpoint recompute in it)
    assert forward_pass(u, 16384, 1) == pytest.approx(t["forward_compute"])


def test_passkey_cases_are_timed_at_the_evaluators_lengths_and_split_over_dp():
    from framework.eval.evaluator import Evaluator
    from framework.plan.gpu import eval_time, forward_pass, passkey_lengths

    plan, u = planned(
        ["data.seq_length=16384", "eval.every=5", "eval.passkey=true", "eval.passkey_samples=2"],
        experiment="llama8b_2gpu_64k",
        world=2,
    )
    ev = Evaluator(passkey=True, passkey_samples=2, seq_length=16384, pieces=u.pieces, vocab_size=128256)
    ev.build_cases()
    lengths = passkey_lengths(u)
    assert sorted(lengths) == sorted(len(c.input_ids) for c in ev.cases) and len(lengths) == 4 * 3 * 2
    assert eval_time(u)["eval_passkey"] == pytest.approx(sum(forward_pass(u, n, 1) for n in lengths))
    two_replicas = dataclasses.replace(u, world=4)  # sp 2: 2 DP replicas take every other case
    assert eval_time(two_replicas)["eval_passkey"] == pytest.approx(
        sum(forward_pass(two_replicas, n, 1) for n in lengths) / 2
    )
    assert plan.figures["eval_s"] == pytest.approx(sum(eval_time(u).values()))


def test_eval_only_plans_a_forward_without_optimizer_state():
    """eval.only builds the engine without an optimizer (framework.graph): the weights and one evaluation's forward on
    the GPU, no optimizer states on the host, and the evaluation is the time."""
    train, _ = planned([], experiment="llama8b_1gpu_long")
    only, u = planned(["eval.only=true", "eval.passkey=true"], experiment="llama8b_1gpu_long")
    g, t = only.figures["gpu_parts"], only.figures["time_parts"]
    assert set(g) == {"weights", "eval_forward", "total"}
    assert set(t) == {"eval_held_out", "eval_passkey", "total"}
    assert only.figures["step_time_s"] == pytest.approx(only.figures["eval_s"])
    assert (
        train.figures["host_parts"].get("optimizer_states", 0) > 0
        and "optimizer_states" not in only.figures["host_parts"]
    )
    assert only.figures["gpu_peak_gib"] < train.figures["gpu_peak_gib"]
    assert only.figures["host_ram_gib"] < train.figures["host_ram_gib"]


def test_evaluation_fits_in_trainings_peak_or_is_counted():
    """At 64K the 1B's evaluation (one layer's forward, the loss tiles) stays under training's backward: the peak does
    not move. With Liger's small loss chunks at 4K, evaluation's 1 GiB tiles of fp32 logits are the larger moment: the
    peak is the states plus the evaluation."""
    quiet, _ = planned(["data.seq_length=65536"])
    loud, _ = planned(["data.seq_length=65536", "eval.every=10"])
    assert loud.figures["gpu_peak_gib"] == pytest.approx(quiet.figures["gpu_peak_gib"])
    assert loud.figures["gpu_parts"]["eval_forward"] < loud.figures["gpu_parts"]["layer_backward"]
    liger = ["data.seq_length=4096", "model.liger=true", "model.recompute_attention=true"]
    quiet, _ = planned(liger)
    loud, _ = planned(liger + ["eval.every=10"])
    g = loud.figures["gpu_parts"]
    states = g["weights"] + g["gradients"] + g["optimizer_states"] + g["buckets"]
    assert loud.figures["gpu_peak_gib"] == pytest.approx(states + g["eval_forward"])
    assert loud.figures["gpu_peak_gib"] > quiet.figures["gpu_peak_gib"]


def test_plan_report_and_json_show_the_eval_line():
    from framework.plan import explain

    plan, _ = planned(["data.seq_length=16384", "eval.every=10", "eval.passkey=true"])
    text = explain.report(plan, world=1, seq_length=16384)
    assert "time of one evaluation (s)" in text and "time: eval (s)" in text
    record = plan.record()
    assert record["eval_s"] > 0 and record["time_parts"]["eval"] == pytest.approx(record["eval_s"] / 10, abs=1e-3)
    assert "an evaluation about" in plan.line()
    only, _ = planned(["eval.only=true"])
    assert "the evaluation in about" in explain.opening(only, world=1, seq_length=65536)
