import json

from alexnet_tf import plots


def write_run(run, variant, recipe, rows):
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"variant": variant, "recipe": recipe}))
    lines = ["epoch,accuracy,minutes,val_accuracy"]
    lines += [f"{i},0.5,{minutes},{accuracy}" for i, (minutes, accuracy) in enumerate(rows)]
    (run / "history.csv").write_text("\n".join(lines) + "\n")


def test_accuracy_vs_time_cli_draws_each_run(tmp_path, capsys, monkeypatch):
    # Two runs of the same variant and recipe (an ablation) must still be two lines.
    write_run(tmp_path / "lr02", "cifar", "fast", [(2.0, 0.3), (4.1, 0.5)])
    write_run(tmp_path / "lr05", "cifar", "fast", [(2.1, 0.35), (4.0, 0.55)])
    write_run(tmp_path / "b", "seed", "seed", [(3.0, 0.2), (6.2, 0.35)])
    figures = []
    monkeypatch.setattr(plots.plt, "close", figures.append)
    out = tmp_path / "curve.png"
    assert plots.main([str(tmp_path / run) for run in ("lr02", "lr05", "b")]
                      + ["--out", str(out), "--budget", "5"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    labels = [text.get_text() for text in figures[0].axes[0].get_legend().get_texts()]
    assert labels == ["lr02 (cifar / fast): 50.0%", "lr05 (cifar / fast): 55.0%",
                      "b (seed / seed): 35.0%", "5 min"]


def test_accuracy_vs_time_errors_are_one_line(tmp_path, capsys):
    assert plots.main([str(tmp_path / "missing"), "--out", str(tmp_path / "x.png")]) == 2
    assert "is not a run directory" in capsys.readouterr().err
    run = tmp_path / "old"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"variant": "cifar", "recipe": "fast"}))
    (run / "history.csv").write_text("epoch,val_accuracy\n0,0.3\n")  # written before `minutes`
    assert plots.main([str(run), "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "no 'minutes' column" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.png").exists()
