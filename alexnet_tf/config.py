"""One frozen run configuration: defaults, recipe resolution, command-line flags and JSON."""

import argparse
import dataclasses
import json
import math
import pathlib
import types
import typing

from alexnet_tf.data import CROPS, default_crop
from alexnet_tf.model import INITS, VARIANTS, default_image_size
from alexnet_tf.recipes import DEFAULT_RECIPE, RECIPES
from alexnet_tf.sources import SPLIT_SEED, VAL_FRACTION, folder_name, is_folder

PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
SCHEDULES = ("plateau", "cosine", "constant")
OPTIMIZERS = ("sgd", "adam")


class ConfigError(Exception):
    """A bad flag or config file, reported as one line."""


@dataclasses.dataclass(frozen=True)
class Config:
    data: str = "cifar10"  # tfds name, tfds:NAME, a folder, or synthetic
    variant: str = "cifar"
    recipe: str | None = None  # default: paper/seed/fast by variant
    epochs: int | None = None
    batch_size: int | None = None  # global, across all replicas
    image_size: int | None = None  # default: the variant's native size
    precision: str = "auto"
    val_fraction: float = VAL_FRACTION
    limit: int | None = None  # use only the first N training examples
    seed: int = 0  # initialisation, shuffling, augmentation
    split_seed: int = SPLIT_SEED  # the held-out validation split: the same images whatever --seed
    workdir: str | None = None  # default: runs/alexnet_<dataset>_<variant>[_<recipe>]
    export_dir: str | None = None  # default: saved_models/alexnet_<dataset>
    export_precision: str = "float32"  # export.EXPORT_PRECISIONS: float32 or as-trained
    # Recipe parts (None = the recipe's value).
    optimizer: str | None = None
    lr: float | None = None
    momentum: float | None = None
    nesterov: bool | None = None
    l2: float | None = None
    coupled_weight_decay: float | None = None  # PyTorch's Adam weight_decay: in the gradient
    weight_decay: float | None = None  # decoupled (Keras optimizer weight_decay)
    schedule: str | None = None
    warmup_epochs: float | None = None
    label_smoothing: float | None = None
    dropout: float | None = None
    conv_dropout: float | None = None  # after each pooling stage; 0 (every recipe) = none
    init: str | None = None
    lighting: float | None = None  # PCA colour noise std (0.1 in the paper); 0 turns it off
    cutout: int | None = None  # side of the Cutout square in pixels; 0 turns it off
    mixup: float | None = None  # alpha of mixup's Beta(alpha, alpha); 0 turns it off
    pca: str = "imagenet"  # eigen-decomposition for lighting: imagenet or data
    crop: str | None = None  # training crop and image storage (data.CROPS)
    flip: bool | None = None
    cache: bool = True  # decoded images in memory when they fit
    time_budget: float | None = None  # minutes of training; fits a cosine schedule to them
    ema: float = 0.0  # momentum of a moving average of the weights (Keras use_ema); 0 = off
    tta: bool = False  # also report 10-crop accuracy at the end
    jit_compile: bool = False
    cpu_replicas: int = 0  # >1: MirroredStrategy over N logical CPUs; 1: OneDeviceStrategy
    verbose: str = "auto"  # Keras progress: auto, 1 (bar) or 2 (a line per epoch)
    overwrite: bool = False

    def record(self):
        """The fields saved with a run (config.json, export metadata). Not --overwrite: it is
        what one command does, and config.json given back with --config must not delete runs."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "overwrite"}

    def to_json(self):
        return json.dumps(self.record(), indent=2, sort_keys=True)

    @property
    def dataset_name(self):
        """A short name for paths: the tfds name, or the folder's (its parent's for train/)."""
        if is_folder(self.data):
            return folder_name(self.data)
        return self.data.removeprefix("tfds:").replace("/", "_")


# "paper for paper/torchvision, seed for seed, ...": from DEFAULT_RECIPE, so it cannot go stale.
_DEFAULT_RECIPES_TEXT = ", ".join(
    f"{recipe} for {'/'.join(v for v, r in DEFAULT_RECIPE.items() if r == recipe)}"
    for recipe in dict.fromkeys(DEFAULT_RECIPE.values()))
HELP = {
    "export_precision": "float32 (default: runs on any CPU and converts to TFLite) or "
                        "as-trained (bfloat16 compute after mixed_bfloat16 training)",
    "data": "cifar10 (tensorflow-datasets, default), tfds:NAME, a folder of class subfolders "
            "(or with train/ [val/] [test/]), or synthetic",
    "variant": f"one of {', '.join(VARIANTS)} (default: cifar)",
    "recipe": f"one of {', '.join(RECIPES)} (default: {_DEFAULT_RECIPES_TEXT})",
    "epochs": "passes over the training data (default: the recipe's)",
    "batch_size": "global batch size, split across replicas (default: the recipe's)",
    "image_size": "square input size (default: the variant's native size)",
    "precision": f"one of {', '.join(PRECISIONS)}; auto = mixed_float16 on GPUs, "
                 "mixed_bfloat16 on CPUs with AVX-512 BF16, float32 otherwise",
    "val_fraction": "validation share carved from train when there is no validation split "
                    "(seeded by --split-seed; default 0.1)",
    "limit": "use only the first N training examples (quick runs)",
    "seed": "seeds initialisation, shuffling and augmentation, not the validation split "
            "(default: 0)",
    "split_seed": "seeds the validation split carved from train, the order --limit keeps "
                  "images in, and synthetic data; runs with other --seed values validate on "
                  "the same images (default: 0)",
    "workdir": "checkpoints, logs, plots, metrics (default: runs/alexnet_<dataset>_<variant>, "
               "plus _<recipe> for a recipe other than the variant's own)",
    "export_dir": "SavedModel base directory (default: saved_models/alexnet_<dataset>)",
    "schedule": f"one of {', '.join(SCHEDULES)}",
    "optimizer": f"one of {', '.join(OPTIMIZERS)}; adam follows torch.optim.Adam's update "
                 "(epsilon 1e-8 on the bias-corrected sqrt(v))",
    "l2": "L2 kernel penalty (coupled weight decay; the paper's 5e-4 is 2.5e-4 here)",
    "coupled_weight_decay": "PyTorch's Adam weight_decay: adds this times each weight to its "
                            "gradient, biases included, before Adam's moments (--optimizer adam; "
                            "1e-4 in seed, 0 = off; default: the recipe's)",
    "weight_decay": "decoupled weight decay of the optimizer (AdamW's; default: the recipe's)",
    "init": "keras (Glorot), paper (N(0, 0.01), unit biases) or torch (PyTorch's default: "
            "U(+-1/sqrt(fan_in)) weights and biases)",
    "crop": "; ".join(f"{name}: {what}" for name, what in CROPS.items())
            + " (default: the recipe's; none in seed, else pad up to 64 px and random above)",
    "lighting": "PCA colour augmentation std (paper: 0.1; 0 = off)",
    "pca": "eigen-decomposition for --lighting: imagenet or data (computed from train)",
    "cache": "keep decoded images in memory when they fit (--no-cache for large datasets)",
    "time_budget": "minutes of training (validation included): stop before an epoch that "
                   "would end past it; a cosine schedule is fitted to the epochs that fit "
                   "(replanned after every epoch from the mean minutes per epoch)",
    "ema": "momentum of an exponential moving average of the weights (Keras use_ema, e.g. "
           "0.99): validation, best.keras and the export use the average; 0 = off (default)",
    "tta": "also report 10-crop test-time-augmentation accuracy at the end",
    "cpu_replicas": "N>1: MirroredStrategy over N logical CPU devices (runs the multi-GPU path "
                    "on a CPU); 1: OneDeviceStrategy on the CPU",
    "overwrite": "delete the workdir's previous run and start fresh",
    "flip": "random horizontal flips in training (default: the recipe's; off in seed)",
    "cutout": "Cutout: a square of this many pixels per training image set to the mean colour "
    "(DeVries & Taylor 2017; 0 = off; default: the recipe's, 8 in fast and long)",
    "mixup": "mixup's alpha: each training image and its one-hot label blended with another's "
             "of the batch, weight ~ Beta(alpha, alpha) (Zhang et al. 2018; Keras MixUp's blend, "
             "seeded statelessly; 0 = off, the default in every recipe)",
    "conv_dropout": "dropout rate after each pooling stage (pool1, pool2, pool5), as in "
                    "Network in Network and All-CNN; 0 = off, the default in every recipe",
    "jit_compile": "XLA-compile the training step (slower on the CPUs measured; docs/speed.md)",
    "verbose": "Keras progress: auto, 0, 1 (a bar) or 2 (a line per epoch)",
}

# Fields that say where outputs go, how chatty a run is or how it keeps its data and compiles
# its step; changing them is the same run (a run killed for memory may resume with --no-cache).
NOT_PART_OF_THE_RUN = ("workdir", "export_dir", "overwrite", "verbose", "tta", "cache",
                       "jit_compile")


def resolve(config):
    """Fills every None from the recipe and the variant; checks choices. Returns a new Config."""
    if config.variant not in VARIANTS:
        raise ConfigError(f"Unknown variant '{config.variant}'; known: {', '.join(VARIANTS)}")
    recipe = config.recipe or DEFAULT_RECIPE[config.variant]
    if recipe not in RECIPES:
        raise ConfigError(f"Unknown recipe '{recipe}'; known: {', '.join(RECIPES)}")
    asked_warmup = config.warmup_epochs
    filled = {k: v for k, v in RECIPES[recipe].items() if getattr(config, k) is None}
    config = dataclasses.replace(config, recipe=recipe, **filled)
    if config.crop is None:  # the recipe leaves it to the input size
        size = config.image_size or default_image_size(config.variant)
        config = dataclasses.replace(config, crop=default_crop(size))
    for name, choices in [("precision", PRECISIONS), ("schedule", SCHEDULES),
                          ("optimizer", OPTIMIZERS), ("pca", ("imagenet", "data")),
                          ("init", INITS), ("verbose", ("auto", "0", "1", "2")),
                          ("crop", tuple(CROPS)),
                          ("export_precision", ("float32", "as-trained"))]:
        if getattr(config, name) not in choices:
            raise ConfigError(f"--{name} must be one of {', '.join(choices)}; "
                              f"got '{getattr(config, name)}'")
    for name, (check, what) in _RANGES.items():
        value = getattr(config, name)
        if value is not None and not (math.isfinite(value) and check(value)):
            raise ConfigError(f"--{name.replace('_', '-')} must be {what}; got {value}")
    if config.coupled_weight_decay and config.optimizer != "adam":
        raise ConfigError("--coupled-weight-decay needs --optimizer adam (SGD's coupled decay "
                          "is --l2)")
    if config.schedule != "cosine":  # only the cosine schedule warms up
        if asked_warmup:
            raise ConfigError(f"--warmup-epochs needs --schedule cosine; got '{config.schedule}'")
        config = dataclasses.replace(config, warmup_epochs=0)  # the recipe's, for its cosine
    return config


_FRACTION = (lambda v: 0 <= v < 1, "at least 0 and below 1")
_POSITIVE = (lambda v: v > 0, "above 0")
_NON_NEGATIVE = (lambda v: v >= 0, "at least 0")
_COUNT = (lambda v: v >= 1, "at least 1")
_SEED = (lambda v: 0 <= v < 2**32, "between 0 and 2**32 - 1")  # NumPy's seed range
# Ranges checked before any work starts, so a typo is one line, not a traceback mid-run.
_RANGES = {
    "epochs": _COUNT, "batch_size": _COUNT, "limit": _COUNT, "image_size": _COUNT,
    "lr": _POSITIVE, "time_budget": _POSITIVE, "val_fraction": _FRACTION,
    "momentum": _FRACTION, "dropout": _FRACTION, "conv_dropout": _FRACTION,
    "label_smoothing": _FRACTION, "ema": _FRACTION,
    "l2": _NON_NEGATIVE, "weight_decay": _NON_NEGATIVE, "warmup_epochs": _NON_NEGATIVE,
    "coupled_weight_decay": _NON_NEGATIVE,
    "lighting": _NON_NEGATIVE, "cpu_replicas": _NON_NEGATIVE, "cutout": _NON_NEGATIVE,
    "mixup": _NON_NEGATIVE,
    "seed": _SEED, "split_seed": _SEED,
}


def parse(argv=None):
    """Config from `--config FILE` (JSON) and flags, flags winning; resolved."""
    return parse_command(argv)[0]


def parse_command(argv=None):
    """(the resolved Config, whether --print-config asks only to print it)."""
    parser = argparse.ArgumentParser(
        prog="python -m alexnet_tf.train",
        description="Train AlexNet, evaluate it and export a SavedModel.",
        epilog="Variants: " + "; ".join(f"{k}: {v}" for k, v in VARIANTS.items()),
    )
    parser.add_argument("--config", metavar="FILE", help="JSON config; flags override it")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config as JSON (what config.json will record) "
                             "and exit, reading no data")
    for field in dataclasses.fields(Config):
        flag = "--" + field.name.replace("_", "-")
        kind = _base_type(field.type)
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                                help=HELP.get(field.name, _recipe_default(field.name)))
        else:
            parser.add_argument(flag, type=kind, default=None, metavar=field.name.upper(),
                                help=HELP.get(field.name, _recipe_default(field.name)
                                              or f"default: {field.default}"))
    args = vars(parser.parse_args(argv))
    config_file = args.pop("config")
    print_config = args.pop("print_config")
    base = load_json(config_file) if config_file else {}
    overrides = {k: v for k, v in args.items() if v is not None}
    return resolve(Config(**{**base, **overrides})), print_config


def load_json(path):
    try:
        values = json.loads(pathlib.Path(path).read_text())
    except (OSError, ValueError) as error:  # ValueError: not JSON, or not text at all
        raise ConfigError(f"Cannot read config file {path}: {error}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a JSON object of config keys")
    values.pop("overwrite", None)  # what one command does (see record), not a run's setting
    fields = {f.name: f for f in dataclasses.fields(Config)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{path}: unknown config keys {unknown}")
    for name, value in values.items():
        if name == "verbose" and type(value) is int:  # Keras spells it as a number
            value = values[name] = str(value)
        kind = _base_type(fields[name].type)
        optional = isinstance(fields[name].type, types.UnionType)
        # JSON has one number type: an integral float is fine where an int is expected.
        ok = ((value is None and optional)
              or (isinstance(value, kind) and not (kind is not bool and isinstance(value, bool)))
              or (kind is float and type(value) is int)
              or (kind is int and type(value) is float and value.is_integer()))
        if not ok:
            raise ConfigError(f"{path}: '{name}' must be {kind.__name__}; got {value!r}")
        if kind is int and value is not None:
            values[name] = int(value)
    return values


def default_workdir(config):
    """runs/alexnet_<dataset>_<variant>, plus _<recipe> when it is not the variant's default:
    `--recipe long` then doesn't collide with the `fast` run of the same variant."""
    suffix = "" if config.recipe == DEFAULT_RECIPE[config.variant] else f"_{config.recipe}"
    return f"runs/alexnet_{config.dataset_name}_{config.variant}{suffix}"


def differences(old, new):
    """Names of the fields (that define a run) whose values differ between the saved config
    `old` (a dict) and `new`; a field `old` lacks differs."""
    return [f.name for f in dataclasses.fields(Config) if f.name not in NOT_PART_OF_THE_RUN
            and old.get(f.name, _MISSING) != getattr(new, f.name)]


_MISSING = object()


def _recipe_default(name):
    return "default: the recipe's" if name in RECIPES["fast"] else None


def _base_type(annotation):
    if isinstance(annotation, types.UnionType):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    return annotation
