import sys; sys.path.insert(0, "/work/main")
import keras
from alexnet_tf import bench
Orig = keras.layers.AdaptiveAveragePooling2D
OrigNorm = keras.layers.Normalization
def up(size, name=None, **kw): return keras.layers.UpSampling2D(3, name=name)
def resc(mean, variance, dtype=None, name=None):
    return keras.layers.Rescaling(1 / 127.5, -1.0, dtype=dtype, name=name)
cfg, ds = bench.training_pipeline("seed", None, 96, 128)
for r in range(2):
    for name, a, n in (("base", Orig, OrigNorm), ("rescale", Orig, resc), ("up+rescale", up, resc)):
        keras.layers.AdaptiveAveragePooling2D = a; keras.layers.Normalization = n
        _, ips = bench.training_speed("seed", 96, 128, "mixed_bfloat16", False, 20, ds, cfg.label_smoothing)
        print(r, name, round(ips, 1), flush=True)
