import time, tensorflow as tf, keras
keras.mixed_precision.set_global_policy("mixed_bfloat16")
def layer_ms(use_bias, shape, filters, k):
    layer = keras.layers.Conv2D(filters, k, padding="same", activation="relu", use_bias=use_bias)
    x = tf.cast(tf.random.uniform(shape), tf.bfloat16); layer(x)
    @tf.function
    def step(x):
        with tf.GradientTape() as t:
            t.watch(x); y = layer(x); loss = tf.reduce_sum(tf.cast(y, tf.float32))
        return t.gradient(loss, [w.value for w in layer.trainable_weights] + [x])
    r = step(x); [g.numpy() for g in r]
    t0 = time.perf_counter()
    for _ in range(20): r = step(x)
    [g.numpy() for g in r]
    return (time.perf_counter() - t0) / 20 * 1000
for r in range(2):
    for shape, f, k in [((128,8,8,256),256,3), ((128,8,8,256),128,3), ((128,16,16,64),128,5)]:
        print(shape, f, k, "bias %.1f" % layer_ms(True, shape, f, k), "nobias %.1f" % layer_ms(False, shape, f, k), flush=True)
