"""Image preprocessing and the paper's augmentation, as TensorFlow functions.

`train_preset` composes a run's training augmentation from its config (one branch per
augmentation); `data.train_pipeline` applies it. Every function works eagerly and inside
`tf.data`, on uint8 or float images with pixel values 0-255, and returns float32. Randomness
is stateless (an explicit `seed` of shape [2]) so that the same seed gives the same batches.
"""

import dataclasses
import functools

import numpy as np
import tensorflow as tf

# The ImageNet RGB eigen-decomposition used by fb.resnet.torch (pixels scaled to [0, 1]); the paper
# (section 4.1) prints none. Columns of IMAGENET_EIGVEC are the eigenvectors.
IMAGENET_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGVEC = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)
LIGHTING_STD = 0.1  # alpha_i ~ N(0, 0.1), section 4.1
CIFAR_PAD = 4  # pad-4-and-crop, the standard CIFAR translation augmentation
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")  # the files decode_image reads


def resize_and_center_crop(images, size, crop_fraction=1.0):
    """Scales the short side to `size / crop_fraction`, then takes the centre `size x size`.

    The one preprocessing shared by evaluation, `predict`, the app and the exported serving
    signatures. Works on one image [H, W, 3] or a batch [N, H, W, 3]; returns float32 0-255.
    """
    images = tf.convert_to_tensor(images)
    shape = tf.shape(images)
    height, width = tf.cast(shape[-3], tf.float32), tf.cast(shape[-2], tf.float32)
    target = tf.math.ceil(size / crop_fraction)
    scale = target / tf.minimum(height, width)
    new_h = tf.maximum(tf.cast(tf.round(height * scale), tf.int32), size)
    new_w = tf.maximum(tf.cast(tf.round(width * scale), tf.int32), size)
    # Antialiasing matters when shrinking photos; it is a no-op at the same size.
    resized = tf.image.resize(tf.cast(images, tf.float32), [new_h, new_w], antialias=True)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    cropped = resized[..., top : top + size, left : left + size, :]
    return tf.ensure_shape(cropped, [*images.shape[:-3], size, size, 3])


def decode_image(contents):
    """JPEG, PNG, GIF (first frame) or BMP bytes -> uint8 RGB; grayscale and RGBA become RGB.

    JPEGs go through libjpeg's accurate integer IDCT, Pillow's and libjpeg's own default: the
    pixels PyTorch loaders and the app (Gradio decodes with Pillow) see. TensorFlow's default
    (`dct_method=""`, the fast IDCT) gives other pixels (up to 5 levels on CIFAR-10's JPEGs).
    """
    return tf.cond(
        tf.io.is_jpeg(contents),
        lambda: tf.io.decode_jpeg(contents, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(contents, channels=3, expand_animations=False))


def lighting(image, seed, std=LIGHTING_STD, eigval=IMAGENET_EIGVAL, eigvec=IMAGENET_EIGVEC):
    """The paper's PCA colour augmentation (section 4.1) on a 0-255 image.

    Adds [p1 p2 p3][a1*l1, a2*l2, a3*l3]^T to every pixel, a_i ~ N(0, std) drawn per image.
    """
    alpha = tf.random.stateless_normal([3], seed, stddev=std)
    eigvec = tf.constant(eigvec, tf.float32)
    rgb = tf.linalg.matvec(eigvec, alpha * tf.constant(eigval, tf.float32)) * 255.0
    return tf.clip_by_value(tf.cast(image, tf.float32) + rgb, 0.0, 255.0)


def pca_from_images(images, max_pixels=1_000_000, seed=0):
    """Eigen-decomposition of the RGB covariance of uint8 images, in [0, 1] units.

    Returns (eigval, eigvec) in the layout of IMAGENET_EIGVAL/IMAGENET_EIGVEC, largest first.
    """
    pixels = np.asarray(images).reshape(-1, 3)
    if len(pixels) > max_pixels:
        pixels = pixels[np.random.default_rng(seed).choice(len(pixels), max_pixels, replace=False)]
    eigval, eigvec = np.linalg.eigh(np.cov(pixels.astype(np.float64).T / 255.0))
    order = np.argsort(eigval)[::-1]
    return tuple(eigval[order].tolist()), tuple(map(tuple, eigvec[:, order].tolist()))


def cutout(image, seed, size, fill):
    """Cutout (DeVries & Taylor 2017, arXiv 1708.04552): a `size` x `size` square of a square
    image set to `fill` (an RGB colour), its centre uniform over the image, so the border may
    cut it."""
    side = image.shape[0]
    top, left = tf.unstack(tf.random.stateless_uniform([2], seed, 0, side, tf.int32) - size // 2)
    rows, cols = tf.range(side)[:, None], tf.range(side)[None, :]
    inside = (rows >= top) & (rows < top + size) & (cols >= left) & (cols < left + size)
    return tf.where(inside[..., None], tf.constant(fill, tf.float32), image)


def mixup(images, labels, seed, alpha):
    """mixup (Zhang et al. 2018, arXiv 1710.09412) of a batch: each image and its label become
    w * its own + (1 - w) * a partner's from the same batch, w ~ Beta(alpha, alpha) per image.

    The blend of Keras' MixUp layer, not the layer: it draws from a seed-generator variable,
    which the batches `fit` prefetches while it builds the model advance by a timing-dependent
    count. A stateless `seed` keeps the same seed giving the same batches.
    """
    partner_seed, seed_a, seed_b = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    count = tf.shape(images)[0]
    partner = tf.argsort(tf.random.stateless_uniform([count], partner_seed))
    # Beta(a, a) = G1 / (G1 + G2) with G1, G2 ~ Gamma(a). TF clamps Gamma draws to the
    # smallest normal float, so even at a tiny alpha the sum is never 0.
    gamma_1 = tf.random.stateless_gamma([count], seed_a, alpha)
    gamma_2 = tf.random.stateless_gamma([count], seed_b, alpha)
    weight = gamma_1 / (gamma_1 + gamma_2)

    def blend(values, weights):
        values = tf.cast(values, tf.float32)
        return weights * values + (1.0 - weights) * tf.gather(values, partner)

    return blend(images, weight[:, None, None, None]), blend(labels, weight[:, None])


def random_crop(image, seed, image_size, crop):
    """The training crop of one float32 stored image.

    "random" takes an `image_size` crop of the stored (larger) image, as the paper's 224 crops
    of 256x256 images (section 4.1); "pad" zero-pads by 4 first (32 px variants); "none" uses
    the whole image, resized to `image_size` unless it is stored at that size.
    """
    if crop == "pad":
        image = tf.pad(image, [[CIFAR_PAD, CIFAR_PAD], [CIFAR_PAD, CIFAR_PAD], [0, 0]])
    if crop in ("pad", "random"):
        return tf.image.stateless_random_crop(image, [image_size, image_size, 3], seed)
    if crop == "none":
        if tuple(image.shape[:2]) != (image_size, image_size):
            image = resize_and_center_crop(image, image_size)
        return image
    raise ValueError(f"Unknown crop '{crop}'; expected random, pad or none.")


def random_flip(image, seed):
    return tf.image.stateless_random_flip_left_right(image, seed)


@dataclasses.dataclass(frozen=True)
class TrainPreset:
    """The training augmentation of a run: the crop, then `per_image` steps on each image and
    `per_batch` steps on each batch of images and one-hot labels.

    Each step is (stream, function(x, seed)) and draws from its own stream of the seed:
    streams 0-2 split the seed three ways (crop, flip, lighting), later ones fold their number
    in. A step added with a new number leaves every other step's draws as they were.
    """

    image_size: int
    crop: str = "random"
    per_image: tuple = ()
    per_batch: tuple = ()

    def image(self, image, seed):
        """One stored image (uint8 or float, 0-255) -> float32 [image_size, image_size, 3]."""
        split = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
        image = random_crop(tf.cast(image, tf.float32), split[0], self.image_size, self.crop)
        for stream, step in self.per_image:
            image = step(image, _stream(seed, split, stream))
        return image

    def batch(self, images, labels, seed):
        for stream, step in self.per_batch:
            images, labels = step(images, labels, _stream(seed, (), stream))
        return images, labels


def _stream(seed, split, stream):
    return split[stream] if stream < len(split) else tf.random.experimental.stateless_fold_in(
        seed, stream)


def train_preset(options, *, image_size, fill=(0.0, 0.0, 0.0), eigen=None):
    """The TrainPreset that `options` (a Config, or anything with its fields crop, flip,
    lighting, cutout and mixup) asks for. `fill`: the colour Cutout paints, the one the model's
    input normalisation maps to 0; `eigen`: (eigval, eigvec) for lighting (ImageNet's if None).

    A new augmentation is a config field and one branch here.
    """
    eigval, eigvec = eigen or (IMAGENET_EIGVAL, IMAGENET_EIGVEC)
    per_image, per_batch = [], []
    if options.flip:
        per_image.append((1, random_flip))
    if options.lighting:
        per_image.append((2, functools.partial(lighting, std=options.lighting, eigval=eigval,
                                               eigvec=eigvec)))
    if options.cutout:
        per_image.append((3, functools.partial(cutout, size=options.cutout, fill=fill)))
    if options.mixup:  # on a batch, so that partners come from the same batch
        per_batch.append((4, functools.partial(mixup, alpha=options.mixup)))
    return TrainPreset(image_size, options.crop, tuple(per_image), tuple(per_batch))


def ten_crop(image, image_size, crop="random"):
    """The paper's test-time views (section 4.1): 4 corners and the centre, and their mirrors.

    `crop` is the training crop: for "pad" the corners are taken from the zero-padded image,
    the extreme positions seen in training. Returns [10, image_size, image_size, 3] float32.
    """
    image = tf.cast(image, tf.float32)
    if crop == "pad":
        image = tf.pad(image, [[CIFAR_PAD, CIFAR_PAD], [CIFAR_PAD, CIFAR_PAD], [0, 0]])
    elif crop == "none":
        image = resize_and_center_crop(image, image_size)
    shape = tf.shape(image)
    bottom, right = shape[0] - image_size, shape[1] - image_size
    offsets = [(0, 0), (0, right), (bottom, 0), (bottom, right), (bottom // 2, right // 2)]
    crops = tf.stack([image[y : y + image_size, x : x + image_size] for y, x in offsets])
    crops = tf.ensure_shape(crops, [5, image_size, image_size, 3])
    return tf.concat([crops, tf.reverse(crops, axis=[2])], axis=0)
