"""summary.png read from job directories written by hand (the e2e tests in tests/e2e/test_sweep.py read real
sweeps): each panel's lines carry the figures of the jobs, the card's and node's capacity, the planner's
predictions (a hand-written plan.json) dashed, failed jobs marked at their length, and a one-job sweep draws."""

import json

import pytest

from framework.sweep.plot import figure, fmt_tokens
from framework.sweep.summary import read_job, summarize

CARD, NODE = 139.8, 2015.0


def job(root, name, overrides, result=None, metrics=(), plan=None):
    d = root / name
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if result is not None:
        (d / "result.json").write_text(json.dumps(result))
    (d / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    if plan is not None:
        (d / "plan.json").write_text(json.dumps(plan))
    return d


def step(seq, mem, **over):
    m = dict(
        step=1,
        loss=2.0,
        seq_length=seq,
        tokens_per_s=seq / 10,
        tokens_per_s_per_gpu=seq / 10,
        mfu=0.25,
        tflops_per_gpu=100.0,
        peak_mem_gib=mem,
        peak_reserved_gib=mem + 2,
        peak_mem_pct=100 * (mem + 2) / CARD,
        host_rss_gib=9.0,
        host_used_gib=40.0,
        step_time_s=seq / 1e4,
        gpu_mem_total_gib=CARD,
        host_ram_total_gib=NODE,
        device_name="NVIDIA H200",
    )
    m.update(over)
    return m


def ok_job(root, i, seq, mem, plan=None, extra=()):
    return job(
        root,
        f"{i}_data.seq_length={seq}",
        ["+experiment=llama1b_1gpu", *extra, f"data.seq_length={seq}"],
        dict(status="ok", steps=1, seq_length=seq),
        [step(seq, mem)],
        plan,
    )


def lines(fig, key):
    """{series label: (xs, ys, linestyle)} of the lines drawn for row key `key` (their gid is 'key|series')."""
    out = {}
    for ax in fig.axes:
        for ln in ax.get_lines():
            gid = ln.get_gid() or ""
            if gid.split("|")[0] == key and not gid.endswith("|part"):
                out[gid.split("|")[1]] = (list(ln.get_xdata()), list(ln.get_ydata()), ln.get_linestyle())
    return out


def test_lengths_read_in_k_and_m_tokens():
    assert [fmt_tokens(n) for n in (65536, 81920, 1048576, 1536, 3 * 2**20 // 2, 100)] == [
        "64K",
        "80K",
        "1M",
        "1.5K",
        "1.5M",
        "100",
    ]


def test_plan_json_predictions_are_drawn_dashed_beside_the_measurements(tmp_path):
    plans = {
        16384: dict(gpu_peak_gib=21.0, host_ram_gib=50.0, step_time_s=1.9, fits=True),
        32768: dict(gpu_peak_gib=37.0, host_ram_gib=55.0, step_time_s=3.5, fits=True),
    }
    ok_job(tmp_path, 0, 16384, 20.0, plans[16384])
    ok_job(tmp_path, 1, 32768, 36.0, plans[32768])
    rows = [read_job(str(d)) for d in sorted(tmp_path.iterdir())]
    assert [r["plan_gpu_peak_gib"] for r in rows] == [21.0, 37.0]
    fig = figure(rows)
    for key, plan_key in (
        ("peak_mem_gib", "gpu_peak_gib"),
        ("host_used_gib", "host_ram_gib"),
        ("step_time_s", "step_time_s"),
    ):
        (measured,) = lines(fig, key).values()
        (planned,) = lines(fig, f"plan_{plan_key}").values()
        assert measured[0] == planned[0] == [16384, 32768]
        assert measured[1] == [step(s, m)[key] for s, m in ((16384, 20.0), (32768, 36.0))]
        assert planned[1] == [plans[s][plan_key] for s in (16384, 32768)]
        assert measured[2] == "-" and planned[2] == "--"
    # without plan.json: the measurements alone
    (tmp_path / "0_data.seq_length=16384" / "plan.json").unlink()
    (tmp_path / "1_data.seq_length=32768" / "plan.json").unlink()
    fig = figure([read_job(str(d)) for d in sorted(tmp_path.iterdir())])
    assert lines(fig, "plan_gpu_peak_gib") == {} and len(lines(fig, "peak_mem_gib")) == 1


def test_one_job_sweep_draws_every_panel_around_its_length_against_the_card_and_node(tmp_path):
    ok_job(tmp_path, 0, 65536, 115.0)
    (tmp_path / "multirun.yaml").write_text(
        "hydra:\n  overrides:\n    hydra: [hydra.mode=MULTIRUN]\n    task: [+experiment=llama1b_1gpu, "
        "data.seq_length=65536]\n"
    )
    (row,) = summarize(str(tmp_path))
    import matplotlib.image

    h, w, _ = matplotlib.image.imread(str(tmp_path / "summary.png")).shape
    assert h >= 1000 and w >= 1000
    fig = figure([row], command="python -m framework -m +experiment=llama1b_1gpu data.seq_length=65536")
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == [
        "GPU memory per GPU (GiB)",
        "host RAM (GiB)",
        "tokens/s per GPU",
        "MFU (%)",
        "step time (s)",
    ]
    for ax in panels:
        lo, hi = ax.get_xlim()
        assert lo < 65536 < hi
        assert [t.get_text() for t in ax.get_xticklabels()] == ["64K"]
        assert ax.get_ylim()[0] == 0
    capacity = {
        ln.get_gid(): ln.get_ydata()[0]
        for ax in panels
        for ln in ax.get_lines()
        if ln.get_gid() in ("gpu_mem_total_gib", "host_ram_total_gib")
    }
    assert capacity == {"gpu_mem_total_gib": CARD, "host_ram_total_gib": NODE}
    assert lines(fig, "mfu")[""][1] == [25.0]  # in percent
    title = fig._suptitle.get_text()
    assert "NVIDIA H200 (139.8 GiB) × 1 GPU" in title and "node RAM 2015 GiB" in title
    assert "+experiment=llama1b_1gpu data.seq_length=65536" in title and "1 job: 1 ok" in title


def test_failed_jobs_are_marked_at_their_length_by_kind_and_series_get_their_own_colour(tmp_path):
    ok_job(tmp_path, 0, 16384, 20.0)
    ok_job(tmp_path, 1, 16384, 12.0, extra=["model.tiled_mlp=true"])
    # OOM in step 2: the step it trained is drawn hollow
    job(
        tmp_path,
        "2_data.seq_length=65536",
        ["+experiment=llama1b_1gpu", "data.seq_length=65536"],
        dict(status="oom", steps=1, seq_length=65536, error="OutOfMemoryError: CUDA out of memory."),
        [step(65536, 130.0)],
    )
    job(
        tmp_path,
        "3_data.seq_length=32768",
        ["+experiment=llama1b_1gpu", "data.seq_length=32768"],
        dict(status="failed", steps=3, seq_length=32768, error="interrupted: stopped by SIGTERM"),
        [step(32768, 30)],
    )
    job(
        tmp_path,
        "4_data.seq_length=8192",
        ["+experiment=llama1b_1gpu", "data.seq_length=8192"],
        dict(status="failed", steps=0, seq_length=8192, error="ValueError: x"),
    )
    rows = summarize(str(tmp_path))
    assert [r["status"] for r in rows] == ["ok", "ok", "oom", "failed", "failed"]
    fig = figure(rows)
    marks = {
        (ln.get_gid(), ln.get_xdata()[0]) for ln in fig.axes[0].get_lines() if (ln.get_gid() or "").startswith("mark|")
    }
    assert marks == {("mark|oom", 65536), ("mark|interrupted", 32768), ("mark|failed", 8192)}
    series = lines(fig, "peak_mem_gib")
    assert series[""][0] == [16384] and series["model.tiled_mlp=true"][0] == [16384]  # a failed job draws no line
    colours = {
        ln.get_gid(): ln.get_color()
        for ln in fig.axes[0].get_lines()
        if ln.get_gid() in ("peak_mem_gib|", "peak_mem_gib|model.tiled_mlp=true")
    }
    assert len(set(colours.values())) == 2
    (part,) = [ln for ln in fig.axes[0].get_lines() if ln.get_gid() == "peak_mem_gib||part"]
    assert list(part.get_xdata()) == [32768, 65536] and list(part.get_ydata()) == [30.0, 130.0]


def test_capacity_of_jobs_older_than_the_field_comes_from_peak_mem_pct(tmp_path):
    m = step(65536, 115.13)
    del m["gpu_mem_total_gib"]
    d = job(tmp_path, "0", ["data.seq_length=65536"], dict(status="ok", steps=1, seq_length=65536), [m])
    assert read_job(str(d))["gpu_mem_total_gib"] == pytest.approx(CARD)


def test_summarize_command_refuses_a_directory_without_jobs(tmp_path, capsys):
    from framework.sweep.__main__ import main

    assert main(["summarize", str(tmp_path)]) == 2
    assert "holds no job directory" in capsys.readouterr().err
    assert not (tmp_path / "summary.csv").exists()


def test_evaluated_jobs_get_panels_of_their_final_loss_by_position_and_passkey_accuracy(tmp_path):
    for i, seq in enumerate((1024, 4096)):
        buckets = [[0, 16, 5.0, 30], [16, seq, 3.0 + i, 900], [seq, 2 * seq, None, 0]]
        d = job(
            tmp_path,
            f"{i}_data.seq_length={seq}",
            [f"data.seq_length={seq}"],
            dict(status="ok", steps=2, seq_length=seq),
            [
                step(seq, 1.0, step=1, eval_loss=9.0),
                step(seq, 1.0, step=2, eval_loss=4.0, eval_passkey_accuracy=0.5, eval_loss_by_position=buckets),
                step(seq, 1.0, step=3),
            ],
        )
        (d / "eval").mkdir()
        (d / "eval" / "passkey_step_2.jsonl").write_text(
            "".join(
                json.dumps({"length": n, "depth": dp, "correct": n == seq // 8 or dp == 0.1}) + "\n"
                for n in (seq // 8, seq)
                for dp in (0.1, 0.9)
            )
        )
    rows = summarize(str(tmp_path))
    assert [(r["eval_loss"], r["eval_passkey_accuracy"]) for r in rows] == [(4.0, 0.5), (4.0, 0.5)]
    assert rows[1]["passkey_by_length"] == {512: 1.0, 4096: 0.5}
    assert "eval_passkey_accuracy" in (tmp_path / "summary.csv").read_text().splitlines()[0]
    fig = figure(rows)
    assert lines(fig, "eval_passkey")["4K"][:2] == ([512, 4096], [1.0, 0.5])
    xs, ys, _ = lines(fig, "eval_pos")["1K"]
    assert ys == [5.0, 3.0] and xs == pytest.approx([4.0, 128.0])  # the empty bucket is not drawn
    assert "final passkey accuracy against context length" in [ax.get_title() for ax in fig.axes]
    assert len(figure([read_job(tmp_path / "0_data.seq_length=1024")]).axes) == 8
