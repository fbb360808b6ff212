import types

import pytest

from alexnet_tf import config, preflight
from alexnet_tf.rundir import RunError


def split(size, images=True):
    return types.SimpleNamespace(size=size, images=object() if images else None)


def loaded(train=64, val=16, images=True):
    return types.SimpleNamespace(train=split(train, images), val=split(val))


def test_the_global_batch_must_split_evenly_over_the_replicas():
    preflight.check_replicas(config.parse(["--batch-size", "64"]), 2)
    with pytest.raises(RunError, match="--batch-size 1 is smaller than the 2 replicas"):
        preflight.check_replicas(config.parse(["--batch-size", "1"]), 2)
    with pytest.raises(RunError, match="--batch-size 65 \\(global\\) is not a multiple"):
        preflight.check_replicas(config.parse(["--batch-size", "65"]), 2)
    with pytest.raises(RunError, match="--jit-compile does not work across the 2 replicas"):
        preflight.check_replicas(config.parse(["--jit-compile"]), 2)
    preflight.check_replicas(config.parse(["--jit-compile"]), 1)


def test_an_input_too_small_for_the_variant_is_refused_with_its_minimum():
    preflight.check_geometry("paper", 67)
    with pytest.raises(RunError, match="needs image_size >= 67. Received: image_size=50"):
        preflight.check_geometry("paper", 50)


def test_a_time_budget_under_tf_config_and_an_export_dir_that_is_a_file(tmp_path):
    task = types.SimpleNamespace(is_chief=True)
    preflight.check_command(config.parse([]), task, tmp_path / "export")
    with pytest.raises(RunError, match="--time-budget is not supported with several workers"):
        preflight.check_command(config.parse(["--time-budget", "5"]), task, tmp_path / "e")
    preflight.check_command(config.parse(["--time-budget", "5"]), None, tmp_path / "e")
    (tmp_path / "file").write_text("")
    with pytest.raises(RunError, match="is a file, not a folder"):
        preflight.check_command(config.parse([]), None, tmp_path / "file")


def test_the_data_must_make_a_batch_and_hold_what_the_flags_need():
    cfg = config.parse(["--batch-size", "32"])
    preflight.check_data(cfg, loaded(), replicas=1, multi_worker=False)
    with pytest.raises(RunError, match="16 training images make no batch of 32"):
        preflight.check_data(cfg, loaded(train=16), replicas=1, multi_worker=False)
    # Under several replicas validation runs on whole batches only.
    with pytest.raises(RunError, match="16 validation images make no whole batch of 32"):
        preflight.check_data(cfg, loaded(), replicas=2, multi_worker=False)
    preflight.check_data(cfg, loaded(), replicas=2, multi_worker=True)
    streamed = loaded(images=False)
    pca = config.parse(["--batch-size", "32", "--lighting", "0.1", "--pca", "data"])
    preflight.check_data(pca, loaded(), replicas=1, multi_worker=False)
    with pytest.raises(RunError, match="\\(drop --no-cache\\)"):
        preflight.check_data(config.parse(["--batch-size", "32", "--lighting", "0.1", "--pca",
                                           "data", "--no-cache"]), streamed, 1, False)
    with pytest.raises(RunError, match="over the in-memory cache limit"):
        preflight.check_data(pca, streamed, replicas=1, multi_worker=False)
    preflight.check_data(config.parse(["--batch-size", "32", "--pca", "data"]), streamed, 1,
                         False)  # no lighting: the decomposition is never needed
