"""Named training recipes: the config fields each sets, as what differs from `BASE`.

A flag overrides any of them (config.py). One line per recipe: its command, its measured
CIFAR-10 validation result, and where it comes from; docs/accuracy.md holds the measurements and
the experiments behind the choices. crop=None leaves the crop to the input size
(data.default_crop).
"""

# The paper's section 5: SGD with momentum 0.9, weight decay 5e-4 inside the momentum update
# (Keras' L2 adds l2 * sum(w^2), so l2=2.5e-4), lr 0.01 divided by 10 on plateaus, dropout 0.5,
# about 90 epochs, N(0, 0.01) init, PCA lighting (section 4.1). Every augmentation the paper
# lacks is off here, so a new one is off in every recipe that does not name it.
BASE = dict(epochs=90, batch_size=128, optimizer="sgd", lr=0.01, momentum=0.9, nesterov=False,
            l2=2.5e-4, coupled_weight_decay=0.0, weight_decay=0.0, schedule="plateau",
            warmup_epochs=0, label_smoothing=0.0, dropout=0.5, init="paper", lighting=0.1,
            cutout=0, mixup=0.0, conv_dropout=0.0, crop=None, flip=True)

# `--variant paper`: the paper's section 5 as it is; not trained to the end on a CPU here.
PAPER = BASE

# `--variant seed`: the classic PyTorch CIFAR-10 tutorial, torch.optim.Adam(lr=1e-3,
# weight_decay=1e-4) with coupled decay on every parameter (optim.PyTorchAdam), no augmentation,
# the 32 px images resized whole to 96 px; bench/compare_seed.py trains both side by side.
SEED = dict(BASE, epochs=20, batch_size=500, optimizer="adam", lr=1e-3, momentum=0.0, l2=0.0,
            coupled_weight_decay=1e-4, schedule="constant", init="torch", lighting=0.0,
            crop="none", flip=False)

# `--variant seed --recipe seed_plus --time-budget 60`: 73.6% (10-crop 77.6%) in 57.8 min; the
# tutorial's optimiser with decoupled decay (AdamW's), Glorot init, random crops and flips.
SEED_PLUS = dict(SEED, epochs=30, coupled_weight_decay=0.0, weight_decay=1e-4, init="keras",
                 crop=None, flip=True)

# `--variant cifar`: 85.3% (10-crop 85.7%) in 27 epochs, 55.7 min; Nesterov SGD with warm-up
# and cosine decay (Goyal et al. 2017; Loshchilov & Hutter 2017), label smoothing 0.1 (Szegedy
# et al. 2016), Cutout 8 (DeVries & Taylor 2017).
FAST = dict(BASE, epochs=27, batch_size=256, lr=0.05, nesterov=True, schedule="cosine",
            warmup_epochs=1, label_smoothing=0.1, init="keras", lighting=0.0, cutout=8)

# `--variant cifar --recipe long`: 87.0% (10-crop 88.1%) in 90 epochs, 203 min; `fast` over the
# paper's "roughly 90 cycles through the training set".
LONG = dict(FAST, epochs=90)

RECIPES = {"paper": PAPER, "seed": SEED, "seed_plus": SEED_PLUS, "fast": FAST, "long": LONG}
DEFAULT_RECIPE = {"paper": "paper", "torchvision": "paper", "seed": "seed", "cifar": "fast",
                  "cifar_wide": "fast"}
