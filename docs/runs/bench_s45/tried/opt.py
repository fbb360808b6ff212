import time, os, sys
import numpy as np, tensorflow as tf, keras
from keras import ops

class FusedSGD(keras.optimizers.SGD):
    def update_step(self, gradient, variable, learning_rate):
        if self.momentum == 0:
            return super().update_step(gradient, variable, learning_rate)
        m = self.momentums[self._get_variable_index(variable)]
        tf.raw_ops.ResourceApplyKerasMomentum(
            var=variable.handle, accum=m.value.handle, lr=tf.cast(learning_rate, variable.dtype),
            grad=tf.cast(gradient, variable.dtype), momentum=tf.cast(self.momentum, variable.dtype),
            use_nesterov=self.nesterov)

shapes = {"seed": [(9216,4096),(4096,1024),(1024,10),(3,3,384,256),(3,3,256,256),(5,5,64,192),(3,3,192,384),(11,11,3,64)],
          "cifar": [(2048,1024),(1024,1024),(5,5,64,128),(3,3,128,256),(3,3,256,256),(3,3,256,128),(5,5,3,64)]}[sys.argv[1]]
def run(cls):
    vs = [keras.Variable(np.random.randn(*s).astype("float32")*0.01) for s in shapes]
    gs = [tf.constant(np.random.randn(*s).astype("float32")) for s in shapes]
    opt = cls(0.01, momentum=0.9, nesterov=True)
    opt.build(vs)
    @tf.function
    def step(): opt.apply_gradients(zip(gs, vs))
    for _ in range(3): step()
    t=time.perf_counter()
    for _ in range(20): step()
    return (time.perf_counter()-t)/20*1000, [v.numpy() for v in vs]
for r in range(2):
    a, va = run(keras.optimizers.SGD); b, vb = run(FusedSGD)
    print(f"keras {a:.1f} ms  fused {b:.1f} ms  ({a/b:.2f}x)")
