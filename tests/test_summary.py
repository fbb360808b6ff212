import json

import pytest

from alexnet_tf import summary
from alexnet_tf.model import VARIANTS, build_model, count_flops


def test_paper_table_prints_the_paper_count_and_its_two_tower_layers(capsys):
    assert summary.main(["paper"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1].split()[:2] == ["total", "60,965,224"]
    rows = {line.split()[0]: line for line in out.splitlines()[2:-2]}
    # A convolution row ends with: groups, output shape, parameters, MFLOPs.
    grouped = {name for name, line in rows.items()
               if "convolution" in line and line.split()[-4] == "2"}
    assert grouped == {"conv2", "conv4", "conv5"}
    assert "55x55x96" in rows["conv1"] and "6x6x256" in rows["pool5"]


def test_json_matches_the_table(capsys):
    assert summary.main(["paper", "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert table["total"]["parameters"] == 60_965_224
    by_name = {row["layer"]: row for row in table["layers"]}
    assert [n for n, r in by_name.items() if r["groups"] == 2] == ["conv2", "conv4", "conv5"]
    assert by_name["conv3"]["groups"] == 1 and by_name["fc6"]["output"] == [4096]
    assert by_name["conv1"]["kernel"] == "11x11/4 valid"


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_rows_add_up_to_the_model(variant):
    model = build_model(variant, num_classes=10)
    rows = summary.layer_table(model)
    assert [r["layer"] for r in rows] == [layer.name for layer in model.layers]
    assert sum(r["parameters"] for r in rows) == model.count_params()
    assert sum(r["mflops"] for r in rows) * 1e6 == pytest.approx(count_flops(model), rel=1e-12)


@pytest.mark.parametrize("argv, message", [
    (["alexnet9"], "Unknown variant 'alexnet9'"),
    (["paper", "--image-size", "40"], "needs image_size >= 67"),
    (["cifar", "--num-classes", "0"], "--num-classes must be at least 1"),
])
def test_bad_input_is_one_line(capsys, argv, message):
    assert summary.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1
