import sys, pathlib, tempfile, collections, re
sys.path.insert(0, "/work/main"); sys.path.insert(0, "/work/main/bench")
import tensorflow as tf
import profile_step as ps
from alexnet_tf import bench, distribute
from tensorflow.tsl.profiler.protobuf import xplane_pb2
variant = sys.argv[1]; pat = sys.argv[2]
size = 32 if variant.startswith("cifar") else 96
cfg, ds = bench.training_pipeline(variant, None, size, 128)
model, warm = bench.training_speed(variant, size, 128, "mixed_bfloat16", False, 5, ds, cfg.label_smoothing)
print("warm img/s", warm)
with tempfile.TemporaryDirectory() as d:
    tf.profiler.experimental.start(d)
    model.fit(ds, steps_per_epoch=11, epochs=1, verbose=0)
    tf.profiler.experimental.stop()
    space = xplane_pb2.XSpace.FromString(next(pathlib.Path(d).rglob("*.xplane.pb")).read_bytes())
c = collections.Counter()
for plane in space.planes:
    for line in plane.lines:
        for e in line.events:
            m = ps.OP.match(plane.event_metadata[e.metadata_id].name)
            if m and re.search(pat, m["name"]):
                c[m["name"].replace("StatefulPartitionedCall/","") + " : " + m["type"]] += e.duration_ps / 1e9 / 11
for k, v in sorted(c.items(), key=lambda kv: -kv[1])[:40]:
    print(f"{v:7.2f} {k}")
