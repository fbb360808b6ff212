import sys; sys.path.insert(0, "/work/main")
import tensorflow as tf
inter, intra = int(sys.argv[1]), int(sys.argv[2]); variant = sys.argv[3]
tf.config.threading.set_inter_op_parallelism_threads(inter)
tf.config.threading.set_intra_op_parallelism_threads(intra)
from alexnet_tf import bench
size = 32 if variant == "cifar" else 96
cfg, ds = bench.training_pipeline(variant, None, size, 128)
for r in range(2):
    _, ips = bench.training_speed(variant, size, 128, "mixed_bfloat16", False, 30, ds, cfg.label_smoothing)
    print(variant, "inter", inter, "intra", intra, round(ips, 1), flush=True)
