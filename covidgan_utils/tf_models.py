"""The report's TensorFlow cGAN models (its Figure 2), parametric in image size and width; counts and summaries.

At the defaults (128 px, width 1) the generator has 24,045,504 parameters and the discriminator 866,465,
counted as Figure 2 counts them. ``covidgan_utils.tf_gan`` trains them; ``torch_models`` holds the PyTorch
pair. Importing this module imports TensorFlow quietly; ``import covidgan_utils`` does not. The grappler
workaround that the discriminator's first block needs on oneDNN CPUs is here too (remapper_off_if_it_fails).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before tensorflow loads: hide its INFO/WARNING lines


def _import_quietly():
    """Import tensorflow with the C++ start-up chatter (CUDA probes on CPU machines) sent to /dev/null."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    # With a CUDA build of PyTorch in the same environment, triton's LLVM library must load before
    # TensorFlow's: otherwise a later torch optimizer (torch._dynamo -> triton) crashes the process.
    try:
        import triton._C.libtriton  # noqa: F401
    except Exception:  # no triton (CPU builds of torch): nothing to order
        pass
    try:
        saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    except OSError:  # no usable file descriptor 2: import normally
        import tensorflow

        return tensorflow
    sys.stderr.flush()
    os.dup2(null, 2)
    try:
        import tensorflow

        tensorflow.config.list_physical_devices()  # the device probe prints too
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)
    return tensorflow


tf = _import_quietly()

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from keras import layers  # noqa: E402

G_BN_MOMENTUM = 0.5  # Keras convention: moving = momentum * moving + (1 - momentum) * batch (PyTorch 0.5 too)
D_BN_MOMENTUM = 0.99  # Keras 0.99 = PyTorch momentum 0.01: slow running statistics
L1 = 1e-4  # the report's L1 kernel regularization of the discriminator
LEAKY_SLOPE = 0.2
VARIANTS = ("cgan", "acgan")
REPORT_PARAMETERS = {"generator": 24_045_504, "discriminator": 866_465}  # Figure 2's, at 128 px and width 1


def _init() -> keras.initializers.Initializer:
    """DCGAN weight initialisation, N(0, 0.02), as in the tutorial the report followed."""
    return keras.initializers.RandomNormal(mean=0.0, stddev=0.02)


def _label_init() -> keras.initializers.Initializer:
    """Label lookup tables start as N(0, 1) (PyTorch's nn.Embedding default), not Keras' U(-0.05, 0.05).

    With the LeCun-normal Dense after it, the label plane starts with unit-scale values, comparable to the
    other inputs; with Keras' defaults it starts about a hundred times smaller and the networks take many
    epochs to notice the label at all. Figure 2 fixes the layers, not their initialisation.
    """
    return keras.initializers.RandomNormal(mean=0.0, stddev=1.0)


def _stages(image_size: int) -> int:
    """Stride-2 up-sampling stages from the 8x8 start: log2(image_size / 8) (4 at 128 px)."""
    stages = math.log2(image_size / 8) if image_size > 0 else -1
    if stages < 1 or stages != int(stages):
        raise ValueError(f"image_size must be 8 * 2**k with k >= 1 (16, 32, 64, 128, ...), got {image_size}.")
    return int(stages)


def _width(channels: int, width: float) -> int:
    """Channels scaled by the width factor (at least 1)."""
    scaled = int(round(channels * width))
    if scaled < 1:
        raise ValueError(f"width {width} leaves no channels in a {channels}-channel layer.")
    return scaled


def _tag(model: keras.Model, kind: str, kwargs: dict) -> keras.Model:
    """Remember how a model was built (as a JSON string, which Keras does not track) for load_generator."""
    model._covidgan_build = json.dumps({"kind": kind, **kwargs})
    return model


def build_kwargs(model: keras.Model) -> dict:
    """The keyword arguments that rebuild ``model`` with build_generator / build_discriminator."""
    spec = getattr(model, "_covidgan_build", None)
    if spec is None:
        raise ValueError(f"Model {model.name!r} was not made by tf_gan.build_generator/build_discriminator.")
    spec = json.loads(spec)
    spec.pop("kind")
    return spec


def build_generator(image_size=128, latent_dim=100, n_classes=2, width=1.0, channels=1) -> keras.Model:
    """The report's generator (24,045,504 parameters at the defaults), scaled by image_size and width.

    Noise -> Dense -> 8x8 feature maps; label -> lookup -> Dense(64) -> one 8x8 plane; concatenated,
    then 5x5 stride-2 transposed convolutions (BatchNormalization momentum 0.5 + ReLU) halve the channels
    at each doubling (512, 256, 128, 64 at 128 px) and a 5x5 stride-1 layer with tanh gives the image.
    """
    stages = _stages(image_size)
    hidden = [_width(64 * 2 ** (stages - 1 - i), width) for i in range(stages)]
    start = 2 * hidden[0]  # 1024 at 128 px, width 1
    noise = keras.Input(shape=(latent_dim,), name="noise")
    label = keras.Input(shape=(1,), dtype="int32", name="label")
    # The report's table counts no parameters for the lookup (a raw tf.nn.embedding_lookup table); see count_parameters.
    plane = layers.Embedding(n_classes, 1, embeddings_initializer=_label_init(), name="label_lookup")(label)
    plane = layers.Dense(64, kernel_initializer="lecun_normal", name="label_dense")(plane)
    plane = layers.Reshape((8, 8, 1), name="label_plane")(plane)
    x = layers.Dense(64 * start, name="noise_dense")(noise)
    x = layers.ReLU(name="noise_relu")(x)
    x = layers.Reshape((8, 8, start), name="noise_reshape")(x)
    x = layers.Concatenate(name="concat")([plane, x])
    for i, c in enumerate(hidden, 1):
        x = layers.Conv2DTranspose(
            c, 5, strides=2, padding="same", use_bias=False, kernel_initializer=_init(), name=f"conv_transpose_{i}"
        )(x)
        x = layers.BatchNormalization(momentum=G_BN_MOMENTUM, name=f"bn_{i}")(x)
        x = layers.ReLU(name=f"relu_{i}")(x)
    image = layers.Conv2DTranspose(
        channels, 5, strides=1, padding="same", use_bias=False, kernel_initializer=_init(), name="conv_transpose_out"
    )(x)
    image = layers.Activation("tanh", name="tanh", dtype="float32")(image)
    model = keras.Model([noise, label], image, name="Generator")
    kwargs = dict(image_size=image_size, latent_dim=latent_dim, n_classes=n_classes, width=width, channels=channels)
    return _tag(model, "generator", kwargs)


def build_discriminator(image_size=128, n_classes=2, width=1.0, channels=1, variant="cgan") -> keras.Model:
    """The report's discriminator (866,465 parameters at the defaults), scaled by image_size and width.

    Label -> lookup -> Dense(image_size**2) -> one full-size plane beside the image; 3x3 convolutions
    32 (stride 1), 64, 128, 512 (stride 2) with BatchNormalization (momentum 0.99) and LeakyReLU;
    Flatten; Dense(1) giving a logit. Every kernel carries the report's L1 1e-4 penalty.
    ``variant="acgan"`` (Waheed et al.'s design) takes the image alone and returns [logit, class logits].
    """
    _stages(image_size)
    if variant not in VARIANTS:
        raise ValueError(f"Unknown variant {variant!r}: choose one of {', '.join(VARIANTS)}.")
    reg = keras.regularizers.L1(L1)
    image = keras.Input(shape=(image_size, image_size, channels), name="image")
    x = image
    if variant == "cgan":
        label = keras.Input(shape=(1,), dtype="int32", name="label")
        plane = layers.Embedding(n_classes, 2, embeddings_initializer=_label_init(), name="label_lookup")(label)
        plane = layers.Dense(
            image_size * image_size, kernel_initializer="lecun_normal", kernel_regularizer=reg, name="label_dense"
        )(plane)
        plane = layers.Reshape((image_size, image_size, 1), name="label_plane")(plane)
        x = layers.Concatenate(name="concat")([image, plane])
    for i, (c, stride) in enumerate(((32, 1), (64, 2), (128, 2), (512, 2)), 1):
        conv = layers.Conv2D(
            _width(c, width),
            3,
            strides=stride,
            padding="same",
            kernel_initializer=_init(),
            kernel_regularizer=reg,
            name=f"conv_{i}",
        )
        bn = layers.BatchNormalization(momentum=D_BN_MOMENTUM, name=f"bn_{i}")
        act = layers.LeakyReLU(LEAKY_SLOPE, name=f"leaky_relu_{i}")
        # Figure 2 puts the first activation before its BatchNormalization and the others after.
        x = bn(act(conv(x))) if i == 1 else act(bn(conv(x)))
    x = layers.Flatten(name="flatten")(x)
    logit = layers.Dense(1, kernel_regularizer=reg, name="logit", dtype="float32")(x)
    kwargs = dict(image_size=image_size, n_classes=n_classes, width=width, channels=channels)
    if variant == "cgan":
        model = keras.Model([image, label], logit, name="Discriminator")
    else:
        class_logits = layers.Dense(n_classes, kernel_regularizer=reg, name="class_logits", dtype="float32")(x)
        model = keras.Model(image, [logit, class_logits], name="ACGAN_Discriminator")
        kwargs["variant"] = variant  # absent for the cGAN, so older checkpoints still match
    return _tag(model, "discriminator", kwargs)


def variant_of(discriminator: keras.Model) -> str:
    """ "cgan" or "acgan", from how the discriminator was built."""
    return build_kwargs(discriminator).get("variant", "cgan")


def count_parameters(model: keras.Model, exclude_embeddings: bool = True) -> int:
    """Parameters as Keras' "Total params" (BatchNorm statistics included); label lookup tables left out like Figure 2."""
    total = 0
    for layer in _leaf_layers(model):
        if exclude_embeddings and isinstance(layer, layers.Embedding):
            continue
        total += sum(int(np.prod(w.shape)) for w in layer.weights)
    return total


def _leaf_layers(model: keras.Model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _leaf_layers(layer)
        else:
            yield layer


def model_summary(model: keras.Model) -> pd.DataFrame:
    """Layer table (name, type, output shape, parameters) in the order of the report's Figure 2."""
    rows = []
    for layer in _leaf_layers(model):
        shape = layer.output.shape if hasattr(layer, "output") else ()
        rows.append(
            {
                "layer": layer.name,
                "type": type(layer).__name__,
                "output shape": "x".join(str(s) for s in tuple(shape)[1:]),
                "parameters": sum(int(np.prod(w.shape)) for w in layer.weights),
            }
        )
    return pd.DataFrame(rows)


def forward_macs(model: keras.Model) -> int:
    """Multiply-accumulates of one forward pass per image (Dense, Conv2D, Conv2DTranspose layers)."""
    macs = 0
    for layer in _leaf_layers(model):
        if isinstance(layer, layers.Dense):
            macs += layer.kernel.shape[0] * layer.kernel.shape[1]
        elif isinstance(layer, layers.Conv2DTranspose):  # every input pixel scatters k*k*C_out
            _, h, w, c_in = layer.input.shape
            kh, kw, c_out, _ = layer.kernel.shape
            macs += h * w * kh * kw * c_in * c_out
        elif isinstance(layer, layers.Conv2D):
            _, h, w, c_out = layer.output.shape
            kh, kw, c_in, _ = layer.kernel.shape
            macs += h * w * kh * kw * c_in * c_out
    return int(macs)


def train_flops_per_image(generator: keras.Model, discriminator: keras.Model) -> int:
    """FLOPs of one train step per image: G forward + backward (3x), D 3 forwards + 2 full and 1 input backward (8x)."""
    return 2 * (3 * forward_macs(generator) + 8 * forward_macs(discriminator))


def _onednn_cpu_training() -> bool:
    """Whether training runs on the CPU with TensorFlow's oneDNN kernels (default on recent x86 CPUs)."""
    try:
        from tensorflow.python.util import _pywrap_util_port

        onednn = bool(_pywrap_util_port.IsMklEnabled())
    except Exception:  # noqa: BLE001 - no probe in this TensorFlow: leave its defaults alone
        return False
    return onednn and not tf.config.list_physical_devices("GPU")


@contextlib.contextmanager
def remapper_off_if_it_fails():
    """Switch grappler's remapper pass off while training, only where it fails on this model.

    On the CPU with oneDNN the pass tries to fuse the discriminator's first Conv2D + BiasAdd + LeakyRelu, finds
    LeakyReluGrad still reading the BiasAdd, abandons the whole pass and prints "E ... meta_optimizer.cc ...
    remapper failed"; the graph then runs as written. With the pass off, the history and weights of a training
    are bitwise the same (64 px, width 0.25, 2 epochs, oneDNN on); only the line is gone.
    """
    if not _onednn_cpu_training():
        yield
        return
    before = tf.config.optimizer.get_experimental_options().get("remapping")
    tf.config.optimizer.set_experimental_options({"remapping": False})  # harmless: the pass fails here anyway
    try:
        yield
    finally:
        tf.config.optimizer.set_experimental_options({"remapping": before})  # None: back to the default
