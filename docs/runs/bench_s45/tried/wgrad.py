import time, numpy as np, tensorflow as tf
def timeit(f, *a, n=20):
    r = f(*a); r.numpy()
    t = time.perf_counter()
    for _ in range(n): r = f(*a)
    r.numpy(); return (time.perf_counter() - t) / n * 1000
for (N,H,ci,co,k) in [(128,8,256,256,3),(128,8,128,256,3),(128,8,256,128,3),(128,16,64,128,5),(128,32,3,64,5)]:
    x = tf.cast(tf.random.normal([N,H,H,ci]), tf.bfloat16); g = tf.cast(tf.random.normal([N,H,H,co]), tf.bfloat16)
    @tf.function
    def onednn(x, g):
        return tf.raw_ops.Conv2DBackpropFilter(input=x, filter_sizes=[k,k,ci,co], out_backprop=g, strides=[1,1,1,1], padding="SAME")
    @tf.function
    def shifted(x, g):
        p = k // 2
        xp = tf.pad(x, [[0,0],[p,p],[p,p],[0,0]])
        gf = tf.reshape(g, [-1, co])
        rows = []
        for i in range(k):
            for j in range(k):
                xs = tf.reshape(xp[:, i:i+H, j:j+H, :], [-1, ci])
                rows.append(tf.matmul(xs, gf, transpose_a=True))
        return tf.reshape(tf.stack(rows), [k, k, ci, co])
    @tf.function
    def im2col(x, g):
        p = k // 2
        xp = tf.pad(x, [[0,0],[p,p],[p,p],[0,0]])
        cols = tf.concat([xp[:, i:i+H, j:j+H, :] for i in range(k) for j in range(k)], axis=-1)
        return tf.reshape(tf.matmul(tf.reshape(cols, [-1, k*k*ci]), tf.reshape(g, [-1, co]), transpose_a=True), [k,k,ci,co])
    ref = onednn(x, g)
    for f in (shifted, im2col):
        d = float(tf.reduce_max(tf.abs(tf.cast(f(x,g), tf.float32) - tf.cast(ref, tf.float32))) / tf.reduce_max(tf.abs(tf.cast(ref, tf.float32))))
    print((N,H,ci,co,k), " ".join(f"{f.__name__} {timeit(f,x,g):.1f}" for f in (onednn, shifted, im2col, onednn, shifted, im2col)), f"reldiff {d:.3g}", flush=True)
