import time, numpy as np, tensorflow as tf
def timeit(f, *a, n=20):
    r = f(*a); r.numpy()
    t = time.perf_counter()
    for _ in range(n): r = f(*a)
    r.numpy(); return (time.perf_counter() - t) / n * 1000
for (N,H,ci,co,k) in [(128,8,256,256,3),(128,8,128,256,3),(128,8,256,128,3),(128,16,64,128,5),(128,32,3,64,5),(256,8,256,256,3)]:
    x = tf.cast(tf.random.normal([N,H,H,ci]), tf.bfloat16); g = tf.cast(tf.random.normal([N,H,H,co]), tf.bfloat16)
    @tf.function
    def onednn(x, g):
        return tf.raw_ops.Conv2DBackpropFilter(input=x, filter_sizes=[k,k,ci,co], out_backprop=g, strides=[1,1,1,1], padding="SAME")
    @tf.function
    def batchconv(x, g):
        p = k // 2
        xp = tf.transpose(tf.pad(x, [[0,0],[p,p],[p,p],[0,0]]), [3,1,2,0])   # [ci, Hp, Wp, N]
        gk = tf.transpose(g, [1,2,0,3])                                       # [H, W, N, co]
        return tf.transpose(tf.nn.conv2d(xp, gk, 1, "VALID"), [1,2,0,3])      # [k, k, ci, co]
    ref = tf.cast(onednn(x, g), tf.float32)
    d = float(tf.reduce_max(tf.abs(tf.cast(batchconv(x,g), tf.float32) - ref)) / tf.reduce_max(tf.abs(ref)))
    print((N,H,ci,co,k), " ".join(f"{f.__name__} {timeit(f,x,g):.1f}" for f in (onednn, batchconv, onednn, batchconv)), f"reldiff {d:.3g}", flush=True)
