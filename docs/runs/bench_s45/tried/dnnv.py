import sys, re, collections, subprocess, os
# Run the cifar bench step under ONEDNN_VERBOSE and sum exec ms per convolution shape and pass.
code = r'''
import sys; sys.path.insert(0, "/work/main")
from alexnet_tf import bench
cfg, ds = bench.training_pipeline("cifar", None, 32, 128)
bench.training_speed("cifar", 32, 128, "mixed_bfloat16", False, 20, ds, cfg.label_smoothing)
'''
env = dict(os.environ, ONEDNN_VERBOSE="1", TF_CPP_MIN_LOG_LEVEL="3")
out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout
rows = collections.defaultdict(list)
for line in out.splitlines():
    if line.startswith("onednn_verbose") and ",exec,cpu," in line:
        f = line.split(",")
        kind, impl, prop = f[5], f[6], f[7]
        shape = f[-2] if kind in ("convolution", "matmul", "inner_product", "pooling") else ""
        rows[(kind, prop, impl, shape)].append(float(f[-1]))
for k, v in sorted(rows.items(), key=lambda kv: -sum(kv[1][-20:])):
    last = v[-20:]
    print(f"{sum(last)/len(last):7.2f} ms x{len(v):4d}  {k[0]} {k[1]} {k[2]} {k[3]}")
