import json

import pytest

from alexnet_tf import figure1

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_trains_both_networks_and_writes_the_record_and_figure(tmp_path, capsys):
    out, record_path = tmp_path / "fig.png", tmp_path / "fig.json"
    assert figure1.main(["--data", "synthetic", "--epochs", "2", "--lrs", "0.003,0.03",
                         "--sweep-images", "256", "--lr-tanh", "0.03", "--out", str(out),
                         "--json", str(record_path)]) == 0
    assert out.read_bytes()[:8] == PNG
    record = json.loads(record_path.read_text())
    relu, tanh = record["runs"]["relu"], record["runs"]["tanh"]
    assert set(relu["sweep_error"]) == {"0.003", "0.03"} and tanh["sweep_error"] is None
    assert str(relu["lr"]) == min(relu["sweep_error"], key=relu["sweep_error"].get) and tanh["lr"] == 0.03
    for run in (relu, tanh):
        assert len(run["train_error"]) == 2 and run["train_error"][1] < run["train_error"][0]
    assert record["settings"]["train_images"] == 1024
    assert "Epochs to 25% training error" in capsys.readouterr().out
    assert not list(tmp_path.glob(".*.tmp"))  # written through a rename, nothing left over


def test_speedup_and_replot(tmp_path):
    record = {"settings": {"train_images": 10}, "runs": {
        "relu": {"lr": 0.03, "train_error": [0.6, 0.4, 0.2, 0.1]},
        "tanh": {"lr": 0.01, "train_error": [0.7, 0.6, 0.5, 0.45, 0.35, 0.3, 0.24]}}}
    for run in record["runs"].values():
        run["epochs_to_25"] = figure1.epochs_to(run["train_error"])
    path = tmp_path / "r.json"
    path.write_text(json.dumps(record))
    assert figure1.main(["--replot", "--json", str(path), "--out", str(tmp_path / "r.png")]) == 0
    again = json.loads(path.read_text())
    assert again["speedup_tanh_over_relu"] == 2.33 and not again["speedup_is_lower_bound"]
    assert again["epochs_to_error"]["0.5"] == [2, 3, 1.5]
    assert (tmp_path / "r.png").read_bytes()[:8] == PNG
    record["runs"]["tanh"]["train_error"] = [0.7, 0.6]  # tanh never got to 25% in 2 epochs
    record["runs"]["tanh"]["epochs_to_25"] = None
    assert figure1.speedup(record) == (2 / 3, True)


def test_bad_input_is_one_line(tmp_path, capsys):
    for argv, message in [(["--data", str(tmp_path / "none")], "not found"),
                          (["--data", "synthetic", "--epochs", "0"], "at least 1"),
                          (["--replot", "--json", str(tmp_path / "no.json")], "No such file")]:
        assert figure1.main(argv + ["--out", str(tmp_path / "x.png")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.png").exists()
