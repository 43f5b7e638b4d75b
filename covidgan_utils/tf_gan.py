"""The report's TensorFlow conditional GAN (its Figure 2), parametric in size and width, with a compiled resumable loop.

Same public names as ``covidgan_utils.torch_gan``: build_generator, build_discriminator, train, sample,
load_generator. Importing this module imports tensorflow; ``import covidgan_utils`` does not.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import sys
import time
from pathlib import Path

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

from . import CLASSES, files  # noqa: E402
from .augment import diffaugment_tf, parse_policy  # noqa: E402
from .config import rel  # noqa: E402
from .files import write_csv, write_json, write_npz, write_text  # noqa: E402

G_BN_MOMENTUM = 0.5  # Keras convention: moving = momentum * moving + (1 - momentum) * batch (PyTorch 0.5 too)
D_BN_MOMENTUM = 0.99  # Keras 0.99 = PyTorch momentum 0.01: slow running statistics
L1 = 1e-4  # the report's L1 kernel regularization of the discriminator
LEAKY_SLOPE = 0.2
HISTORY_COLUMNS = ["epoch", "d_loss", "g_loss", "d_real", "d_fake", "g_test_loss", "seconds"]
ACGAN_COLUMNS = ["class_acc"]  # ACGAN only: the auxiliary head's accuracy on the real batch
VARIANTS = ("cgan", "acgan")
JIT_DEFAULT = False  # XLA off: on a 2-core CPU it ran 0.56x the graph at the demo size, 1.04x at 128 px (benchmarks/tf_cgan_train.py)
_CKPT_RE = re.compile(r"^epoch_(\d{4,})$")
POINTER = "latest"
NOTEBOOK_03 = "notebooks/03_tensorflow_cgan.ipynb"


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


def history_columns(discriminator: keras.Model) -> list[str]:
    """History columns: the cGAN's, plus the class head's accuracy for an ACGAN."""
    extra = ACGAN_COLUMNS if variant_of(discriminator) == "acgan" else []
    return HISTORY_COLUMNS[:5] + extra + HISTORY_COLUMNS[5:]


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


# ----------------------------------------------------------------------------------- data helpers


def to_model_range(images: np.ndarray, channels: int) -> np.ndarray:
    """uint8 (N,H,W,C) -> float32 in [-1, 1] with ``channels`` channels (the tanh output range)."""
    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4 or arr.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (N,H,W,C); got {arr.dtype} {arr.shape}.")
    x = arr.astype(np.float32) / 127.5 - 1.0
    if x.shape[-1] != channels:
        x = np.repeat(x.mean(axis=-1, keepdims=True), channels, axis=-1)
    return x


def to_uint8(x) -> np.ndarray:
    """Generator output in [-1, 1] -> uint8 (N,H,W,C)."""
    x = np.asarray(x, dtype=np.float32)
    return np.clip(np.round((x + 1.0) * 127.5), 0, 255).astype(np.uint8)


def fixed_noise(n: int, latent_dim: int, seed: int) -> np.ndarray:
    """Noise that depends only on (n, latent_dim, seed): the same every epoch, run and machine."""
    return np.random.default_rng(seed).standard_normal((n, latent_dim)).astype(np.float32)


def _sample_labels(per_class: int, n_classes: int) -> np.ndarray:
    return np.repeat(np.arange(n_classes, dtype=np.int32), per_class)


def _epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffle of one epoch: a function of (seed, epoch) only, so a resumed run sees the same batches."""
    return np.random.default_rng([seed, epoch]).permutation(n)


# ----------------------------------------------------------------------------------- checkpoints


def checkpoint_dirs(out_dir) -> list[Path]:
    """Checkpoint folders in out_dir/checkpoints, the pointer's target first, then by epoch, newest first.

    A name is not proof: a folder may be damaged or foreign; loading skips those and rotation never deletes them.
    """
    folder = Path(out_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := _CKPT_RE.match(p.name))]
    ordered = [p for _, p in sorted(found, reverse=True)]
    pointer = folder / POINTER
    if pointer.is_file():
        target = folder / pointer.read_text().strip()
        if target in ordered:
            ordered.remove(target)
            ordered.insert(0, target)
    return ordered


def _epoch_of(path: Path) -> int:
    return int(_CKPT_RE.match(path.name).group(1))


def _read_state(path: Path) -> dict:
    state = json.loads((path / "state.json").read_text())
    if not (path / "ckpt.index").is_file():
        raise FileNotFoundError("ckpt.index is missing")
    return state


_OWN_FILES = re.compile(r"^(ckpt\.index|ckpt\.data-\d{5}-of-\d{5}|state\.json|generator\.json)$")
# Checkpoint folders known to load, by resolved path -> their files' (name, size, mtime_ns): written or read here.
_VERIFIED: dict[str, tuple] = {}
_REPORTED: set[str] = set()  # unloadable folders already explained once by rotation


def _stamp(path: Path) -> tuple:
    return tuple(sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in path.iterdir()))


def _mark_verified(path: Path) -> None:
    try:
        _VERIFIED[str(path.resolve())] = _stamp(path)
    except OSError:
        pass


def _load_error(path: Path) -> Exception | None:
    """None if ``path`` is a complete checkpoint folder of this project (checked once per process), else why not.

    Complete: only the files a checkpoint write makes, a state.json of the epoch in the folder's name,
    and every tensor readable with its checksum.
    """
    try:
        if _VERIFIED.get(str(path.resolve())) == _stamp(path):
            return None
        foreign = sorted(p.name for p in path.iterdir() if not (p.is_file() and _OWN_FILES.match(p.name)))
        if foreign:
            raise ValueError(f"it holds {', '.join(foreign[:3])}, which a checkpoint does not")
        state = _read_state(path)
        if int(state["epoch"]) != _epoch_of(path):
            raise ValueError(f"it holds epoch {state['epoch']}, not the epoch in its name")
        reader = tf.train.load_checkpoint(str(path / "ckpt"))
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except Exception as err:  # noqa: BLE001 - anything that does not load is not ours to delete
        return err
    _mark_verified(path)
    return None


def _unloadable_message(path: Path, err: Exception, rotating: bool = False) -> str:
    what = "Not deleting old checkpoint" if rotating else "Skipping unreadable checkpoint"
    return (
        f"{what} {path.name}: not a checkpoint this project wrote, or it is damaged "
        f"({type(err).__name__}: {_short(err)}). It was left in place; move it away or delete it yourself."
    )


def _report(path: Path, err: Exception, reported: set | None) -> None:
    if reported is None or path not in reported:
        print(_unloadable_message(path, err), file=sys.stderr)
    if reported is not None:
        reported.add(path)


def _set_aside(path: Path, err: Exception) -> None:
    """Rename an unloadable folder that stands where a new checkpoint goes; it is kept, never deleted."""
    n, aside = 1, path.with_name(path.name + ".unreadable")
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.unreadable-{n}")
    path.rename(aside)
    print(
        f"{path.name} could not be loaded: not a checkpoint this project wrote, or it is damaged "
        f"({type(err).__name__}: {_short(err)}). A new checkpoint takes its name, so it was renamed {aside.name} "
        "and left in place; move it away or delete it yourself.",
        file=sys.stderr,
    )


def _remove_checkpoint(path: Path) -> None:
    """Delete a verified checkpoint folder: the files a checkpoint write makes, then the folder if it is empty."""
    for p in path.iterdir():
        if p.is_file() and _OWN_FILES.match(p.name):
            p.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # something else appeared meanwhile: the folder stays
        path.rmdir()
    _VERIFIED.pop(str(path.resolve()), None)


def _rotate(out_dir: Path, epoch: int, keep_last: int) -> None:
    """Keep the newest ``keep_last`` complete checkpoints up to ``epoch``; delete only older complete ones.

    Folders that do not load are never deleted (they are explained once), and folders numbered after ``epoch``
    are not part of this run's line of training, so they are not touched at all.
    """
    kept = 0
    for path in sorted(checkpoint_dirs(out_dir), key=_epoch_of, reverse=True):
        if _epoch_of(path) > epoch:
            continue
        err = _load_error(path)
        if err is not None:
            if str(path) not in _REPORTED:
                _REPORTED.add(str(path))
                print(_unloadable_message(path, err, rotating=True), file=sys.stderr)
            continue
        kept += 1
        if kept > keep_last:
            _remove_checkpoint(path)


def _save_checkpoint(out_dir: Path, ckpt: tf.train.Checkpoint, state: dict, keep_last: int) -> Path:
    """Write models, optimizers, RNG and epoch to a temporary folder, rename it into place, move the pointer."""
    folder = out_dir / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    name = f"epoch_{state['epoch']:04d}"
    tmp = folder / f".tmp-{name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    ckpt.write(str(tmp / "ckpt"))
    write_json(tmp / "state.json", state)
    write_json(tmp / "generator.json", state["generator_kwargs"])
    final = folder / name
    if final.exists():  # a rerun of the same epoch: replace the old folder if it is a checkpoint, else keep it aside
        err = _load_error(final) if final.is_dir() else ValueError("it is a file, not a checkpoint folder")
        if err is not None:
            _set_aside(final, err)
        else:
            old = folder / f".old-{name}-{os.getpid()}"
            os.replace(final, old)
            _remove_checkpoint(old)
    os.replace(tmp, final)
    _mark_verified(final)
    write_text(folder / POINTER, name + "\n")
    if keep_last:
        _rotate(out_dir, state["epoch"], keep_last)
    return final


def _snapshot(variables) -> list:
    return [v.numpy() for v in variables]


def _restore_newest(out_dir: Path, ckpt: tf.train.Checkpoint, variables, verbose: bool = True, reported=None):
    """Restore the newest readable checkpoint into ``ckpt``; skip corrupt ones with a message; None if none."""
    backup = _snapshot(variables)
    for path in checkpoint_dirs(out_dir):
        try:
            state = _read_state(path)
            ckpt.read(str(path / "ckpt")).assert_existing_objects_matched()
        except Exception as err:  # noqa: BLE001 - an unreadable checkpoint is skipped, never trusted
            if verbose:
                _report(path, err, reported)
            for v, value in zip(variables, backup):  # undo a half-finished restore
                v.assign(value)
            continue
        state["path"] = path
        return state
    return None


def _short(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else ""


def load_checkpoint_state(out_dir, verbose: bool = True, reported=None) -> dict | None:
    """state.json of the newest checkpoint whose files are all present (epoch, history, build kwargs)."""
    for path in checkpoint_dirs(out_dir):
        try:
            state = _read_state(path)
        except Exception as err:  # noqa: BLE001
            if verbose:
                _report(path, err, reported)
            continue
        state["path"] = path
        return state
    return None


# ------------------------------------------------------------------------------------- training


def _bce_logits(target: float, logits):
    return tf.reduce_mean(
        tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.fill(tf.shape(logits), target), logits=logits)
    )


def _class_ce(y, class_logits):
    return tf.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.reshape(y, [-1]), logits=class_logits)
    )


def make_train_step(
    generator, discriminator, g_opt, d_opt, rng: tf.random.Generator, jit_compile=None, compiled=True, policy=()
):
    """One cGAN step: update D on a real and a fake batch, then G against the updated D (fake batch reused).

    Returns a function (uint8 images, int labels) -> [d_loss, g_loss, D(x), D(G(z))(, class_acc)], as a
    tf.function (with XLA when ``jit_compile``) or, with ``compiled=False``, the same Python code run eagerly.
    A DiffAugment ``policy`` augments every image D sees; an ACGAN discriminator adds the class losses
    (real and fake for D, fake for G).
    """
    latent_dim = generator.inputs[0].shape[-1]
    policy = parse_policy(policy)
    acgan = variant_of(discriminator) == "acgan"

    def judge(images, y):
        images = diffaugment_tf(images, policy, rng)
        if acgan:
            logits, class_logits = discriminator(images, training=True)
            return logits, class_logits
        return discriminator([images, y], training=True), None

    def step(real_u8, y):
        real = tf.cast(real_u8, tf.float32) / 127.5 - 1.0
        z = rng.normal([tf.shape(real)[0], latent_dim])
        with tf.GradientTape() as g_tape:
            fake = generator([z, y], training=True)
            with tf.GradientTape() as d_tape:
                real_logits, real_class = judge(real, y)
                fake_logits, fake_class = judge(tf.stop_gradient(fake), y)
                d_loss = (_bce_logits(1.0, real_logits) + _bce_logits(0.0, fake_logits)) / 2
                if acgan:
                    d_loss += (_class_ce(y, real_class) + _class_ce(y, fake_class)) / 2
                d_total = d_loss + tf.add_n(discriminator.losses)  # + the L1 penalty
            d_grads = d_tape.gradient(d_total, discriminator.trainable_variables)
            d_opt.apply_gradients(zip(d_grads, discriminator.trainable_variables))
            gen_logits, gen_class = judge(fake, y)
            g_loss = _bce_logits(1.0, gen_logits)
            if acgan:
                g_loss += _class_ce(y, gen_class)
        g_grads = g_tape.gradient(g_loss, generator.trainable_variables)
        g_opt.apply_gradients(zip(g_grads, generator.trainable_variables))
        stats = [d_loss, g_loss, tf.reduce_mean(tf.sigmoid(real_logits)), tf.reduce_mean(tf.sigmoid(fake_logits))]
        if acgan:
            hits = tf.equal(tf.argmax(real_class, axis=1, output_type=tf.int32), tf.reshape(y, [-1]))
            stats.append(tf.reduce_mean(tf.cast(hits, tf.float32)))
        return tf.stack(stats)

    if not compiled:
        return step
    jit = JIT_DEFAULT if jit_compile is None else bool(jit_compile)
    return tf.function(step, jit_compile=jit, reduce_retracing=True, autograph=False)


def _make_eval_step(generator, discriminator):
    acgan = variant_of(discriminator) == "acgan"

    @tf.function(autograph=False)
    def eval_step(z, y):
        fake = generator([z, y], training=False)
        if acgan:
            return fake, _bce_logits(1.0, discriminator(fake, training=False)[0])
        return fake, _bce_logits(1.0, discriminator([fake, y], training=False))

    return eval_step


def _onednn_cpu_training() -> bool:
    """Whether training runs on the CPU with TensorFlow's oneDNN kernels (default on recent x86 CPUs)."""
    try:
        from tensorflow.python.util import _pywrap_util_port

        onednn = bool(_pywrap_util_port.IsMklEnabled())
    except Exception:  # noqa: BLE001 - no probe in this TensorFlow: leave its defaults alone
        return False
    return onednn and not tf.config.list_physical_devices("GPU")


@contextlib.contextmanager
def _remapper_off_if_it_fails():
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


def make_optimizers(generator, discriminator, lr: float = 2e-4, beta_1: float = 0.5):
    """Adam for each model (the report's lr 2e-4, beta_1 0.5), built so a checkpoint can restore their slots."""
    g_opt = keras.optimizers.Adam(learning_rate=lr, beta_1=beta_1, name="g_adam")
    d_opt = keras.optimizers.Adam(learning_rate=lr, beta_1=beta_1, name="d_adam")
    g_opt.build(generator.trainable_variables)
    d_opt.build(discriminator.trainable_variables)
    return g_opt, d_opt


def train(
    generator: keras.Model,
    discriminator: keras.Model,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    epochs: int,
    batch_size: int = 32,
    out_dir,
    checkpoint_every: int = 10,
    sample_every: int | None = None,
    resume: bool = True,
    progress: bool = True,
    seed: int = 0,
    lr: float = 2e-4,
    beta_1: float = 0.5,
    jit_compile: bool | None = None,
    samples_per_class: int = 32,
    keep_last: int = 2,
    deterministic: bool = True,
    diffaugment=None,
) -> pd.DataFrame:
    """Train the cGAN with BCE (on logits) and Adam; resumable from out_dir/checkpoints; returns the per-epoch history.

    The uint8 dataset stays in memory as one tensor; each batch is a gather of a (seed, epoch) permutation,
    the last incomplete batch of an epoch is dropped (one batch shape: one compiled graph), and the losses
    are read back once per epoch. ``g_test_loss`` is the generator loss on a fixed batch of noise and labels
    with both models in inference mode (the report's "generator test loss"). ``diffaugment`` (None: off;
    e.g. "color,translation,cutout") augments every image D sees; an ACGAN discriminator
    (``build_discriminator(variant="acgan")``) adds the class losses.
    """
    from .progress import tqdm

    out_dir = Path(out_dir)
    sample_every = sample_every or checkpoint_every
    g_kwargs, d_kwargs = build_kwargs(generator), build_kwargs(discriminator)
    if (g_kwargs["image_size"], g_kwargs["channels"]) != (d_kwargs["image_size"], d_kwargs["channels"]):
        raise ValueError("generator and discriminator disagree on image_size or channels.")
    size, channels = g_kwargs["image_size"], g_kwargs["channels"]
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"images must be uint8 (N,H,W,C); got {images.dtype} {images.shape}.")
    if images.shape[1:3] != (size, size):
        raise ValueError(f"images are {images.shape[1:3]} but the models are built for {size}x{size}.")
    if images.shape[-1] != channels:
        images = np.repeat(images.mean(axis=-1, keepdims=True).round().astype(np.uint8), channels, axis=-1)
    labels_np = np.asarray(labels).astype(np.int32).reshape(-1)
    if len(labels_np) != len(images):
        raise ValueError(f"{len(images)} images but {len(labels_np)} labels.")
    n = len(images)
    batch_size = min(int(batch_size), n)
    if batch_size < 2:
        raise ValueError("BatchNormalization needs batches of at least 2 images.")
    steps = n // batch_size
    policy = parse_policy(diffaugment)
    options = {"diffaugment": ",".join(policy) or "off", "variant": variant_of(discriminator)}
    columns = history_columns(discriminator)

    if deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(seed)
    rng = tf.random.Generator.from_seed(seed)
    g_opt, d_opt = make_optimizers(generator, discriminator, lr, beta_1)
    epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    ckpt = tf.train.Checkpoint(
        generator=generator, discriminator=discriminator, g_optimizer=g_opt, d_optimizer=d_opt, rng=rng, epoch=epoch_var
    )
    variables = [
        *generator.variables,
        *discriminator.variables,
        *g_opt.variables,
        *d_opt.variables,
        rng.state,
        epoch_var,
    ]

    history: list[dict] = []
    start = 0
    for name in files.remove_leftovers(out_dir / "checkpoints"):  # half-written files of a killed run
        print(f"Removed the unfinished checkpoint file {name} of an interrupted run.", file=sys.stderr)
    if not resume and checkpoint_dirs(out_dir):
        raise FileExistsError(
            f"{rel(out_dir)} already holds checkpoints; pass resume=True to continue, or choose a new out_dir."
        )
    reported: set = set()  # each skipped checkpoint is explained once
    saved = load_checkpoint_state(out_dir, reported=reported) if resume else None
    if saved is not None:
        for name, kwargs in (("generator", g_kwargs), ("discriminator", d_kwargs)):
            if saved[f"{name}_kwargs"] != kwargs:
                raise ValueError(
                    f"The checkpoint {saved['path'].name} holds a {name} built with {saved[f'{name}_kwargs']}, "
                    f"not {kwargs}: use a new out_dir for a different model."
                )
        saved_options = saved.get("options", {"diffaugment": "off", "variant": "cgan"})
        if saved_options != options:
            raise ValueError(
                f"The checkpoint {saved['path'].name} was trained with {saved_options}, not {options}: "
                "use a new out_dir (or run_dir) for different training options."
            )
        state = _restore_newest(out_dir, ckpt, variables, reported=reported)
        if state is not None:
            start = int(epoch_var.numpy())
            history = [dict(row) for row in state["history"]]
            if progress:
                print(f"Resuming from {state['path'].name} (epoch {start}).")
            if start >= epochs:
                print(f"Already trained for {start} epochs (asked for {epochs}); nothing to do.")
                return pd.DataFrame(history, columns=columns)

    latent_dim = g_kwargs["latent_dim"]
    grid_labels = _sample_labels(samples_per_class, g_kwargs["n_classes"])
    grid_noise = fixed_noise(len(grid_labels), latent_dim, seed)
    z_test, y_test = tf.constant(grid_noise), tf.constant(grid_labels[:, None])
    eval_step = _make_eval_step(generator, discriminator)

    def save_samples(epoch: int) -> None:
        fake, _ = eval_step(z_test, y_test)
        write_npz(
            out_dir / "samples" / f"epoch_{epoch:04d}.npz", images=to_uint8(fake), labels=grid_labels, epoch=epoch
        )

    if start == 0:
        save_samples(0)

    x_all = tf.constant(images)
    y_all = tf.constant(labels_np[:, None])
    train_step = make_train_step(generator, discriminator, g_opt, d_opt, rng, jit_compile=jit_compile, policy=policy)

    with _remapper_off_if_it_fails():
        bar = tqdm(total=epochs, initial=start, desc="epochs", disable=not progress, file=sys.stdout, mininterval=1.0)
        for epoch in range(start + 1, epochs + 1):
            t0 = time.perf_counter()
            order = tf.constant(_epoch_order(n, seed, epoch)[: steps * batch_size].reshape(steps, batch_size))
            sums = tf.zeros(len(columns) - 3)  # d_loss, g_loss, D(x), D(G(z))[, class_acc]
            for i in range(steps):
                idx = order[i]
                sums += train_step(tf.gather(x_all, idx), tf.gather(y_all, idx))
            means = (sums / steps).numpy().tolist()  # the one host sync of the epoch
            d_l, g_l, d_x, d_gz = means[:4]
            _, g_test = eval_step(z_test, y_test)
            row = {"epoch": epoch, "d_loss": d_l, "g_loss": g_l, "d_real": d_x, "d_fake": d_gz}
            row.update(zip(ACGAN_COLUMNS, means[4:]))
            row["g_test_loss"] = float(g_test)
            row["seconds"] = time.perf_counter() - t0
            history.append(row)
            epoch_var.assign(epoch)
            write_csv(out_dir / "history.csv", pd.DataFrame(history, columns=columns))
            if epoch % sample_every == 0 or epoch == epochs:
                save_samples(epoch)
            if epoch % checkpoint_every == 0 or epoch == epochs:
                state = {
                    "epoch": epoch,
                    "history": history,
                    "generator_kwargs": g_kwargs,
                    "discriminator_kwargs": d_kwargs,
                    "seed": seed,
                    "batch_size": batch_size,
                    "lr": lr,
                    "beta_1": beta_1,
                    "tensorflow_version": tf.__version__,
                    "options": options,
                }
                _save_checkpoint(out_dir, ckpt, state, keep_last)
            bar.set_postfix(d_loss=f"{d_l:.3f}", g_loss=f"{g_l:.3f}", d_real=f"{d_x:.2f}", d_fake=f"{d_gz:.2f}")
            bar.update(1)
        bar.close()
    return pd.DataFrame(history, columns=columns)


# ----------------------------------------------------------------------------------- generation


def sample(generator: keras.Model, labels, seed: int = 0, batch_size: int = 256) -> np.ndarray:
    """Generate one image per label with noise drawn from ``seed``: uint8 (N,H,W,C)."""
    labels_np = np.asarray(labels, dtype=np.int32).reshape(-1, 1)
    kwargs = build_kwargs(generator)
    noise = fixed_noise(len(labels_np), kwargs["latent_dim"], seed)
    out = [
        to_uint8(generator([noise[lo : lo + batch_size], labels_np[lo : lo + batch_size]], training=False))
        for lo in range(0, len(labels_np), batch_size)
    ]
    if not out:
        return np.zeros((0, kwargs["image_size"], kwargs["image_size"], kwargs["channels"]), dtype=np.uint8)
    return np.concatenate(out)


def load_generator(out_dir) -> keras.Model:
    """Rebuild the generator of the newest readable checkpoint in out_dir (build kwargs from its generator.json)."""
    for path in checkpoint_dirs(out_dir):
        try:
            kwargs = json.loads((path / "generator.json").read_text())
            epoch = int(_read_state(path)["epoch"])
            generator = build_generator(**kwargs)
            tf.train.Checkpoint(generator=generator).read(
                str(path / "ckpt")
            ).expect_partial().assert_existing_objects_matched()
        except Exception as err:  # noqa: BLE001
            print(_unloadable_message(path, err), file=sys.stderr)
            continue
        generator.epoch = epoch
        return generator
    raise FileNotFoundError(f"No complete checkpoint in {rel(Path(out_dir) / 'checkpoints')}: run {NOTEBOOK_03} first.")


load_samples = files.load_samples  # framework-free; shared with torch_gan/tf_gan

__all__ = [
    "CLASSES",
    "HISTORY_COLUMNS",
    "build_discriminator",
    "build_generator",
    "build_kwargs",
    "count_parameters",
    "forward_macs",
    "load_generator",
    "load_samples",
    "make_train_step",
    "model_summary",
    "sample",
    "train",
    "train_flops_per_image",
    "variant_of",
]
