import time, numpy as np, tensorflow as tf, keras
x = tf.random.uniform([128,96,96,3], 0, 255)
mean = np.array([125.3, 123.0, 113.9], "float32"); std = np.array([63.0, 62.1, 66.7], "float32")
norm = keras.layers.Normalization(mean=mean, variance=std**2)
resc = keras.layers.Rescaling(scale=(1/std).tolist(), offset=(-mean/std).tolist())
fs = {
 "keras_norm": tf.function(lambda x: tf.cast(norm(x), tf.bfloat16)),
 "rescaling": tf.function(lambda x: tf.cast(resc(x), tf.bfloat16)),
 "bias_add_mul": tf.function(lambda x: tf.cast(tf.nn.bias_add(x, -mean) * (1/std), tf.bfloat16)),
 "flat2d": tf.function(lambda x: tf.cast(tf.reshape(tf.reshape(x, [-1, 3]) * (1/std) + (-mean/std), tf.shape(x)), tf.bfloat16)),
 "conv1x1": tf.function(lambda x: tf.cast(tf.nn.bias_add(tf.nn.conv2d(x, tf.constant(np.diag(1/std).reshape(1,1,3,3).astype("float32")), 1, "VALID"), -mean/std), tf.bfloat16)),
}
ref = fs["keras_norm"](x)
for r in range(2):
    for k, f in fs.items():
        y = f(x); y.numpy()
        t = time.perf_counter()
        for _ in range(20): y = f(x)
        y.numpy()
        d = float(tf.reduce_max(tf.abs(tf.cast(y, tf.float32) - tf.cast(ref, tf.float32))))
        print(r, k, f"{(time.perf_counter()-t)/20*1000:.2f} ms", f"maxdiff {d:.3g}")
