"""The report's TensorFlow cGAN: its compiled training step, checkpoints and generation; ``gan_loop`` runs it.

Same public names, in the same order, as ``covidgan_utils.torch_gan``: build_generator, build_discriminator,
build_kwargs, count_parameters, model_summary, train_flops_per_image (from ``tf_models``), set_seed,
train_step, Trainer, save_checkpoint, restore_checkpoint, generate, sample, load_generator, train, runtime.
Importing this module imports TensorFlow (quietly); ``import covidgan_utils`` does not.
"""

from __future__ import annotations

import contextlib
import re
import sys
from pathlib import Path

from .tf_models import tf  # first: imports TensorFlow with its start-up lines silenced

# isort: split
import keras
import numpy as np
from keras import layers  # noqa: F401 - for notebooks and tests: gan.layers

from . import NOTEBOOKS, gan_loop
from .augment import diffaugment_tf, parse_policy
from .tf_models import (
    REPORT_PARAMETERS,  # noqa: F401 - the report's counts, for the notebooks
    build_discriminator,
    build_generator,
    build_kwargs,
    count_parameters,
    model_summary,
    remapper_off_if_it_fails,
    train_flops_per_image,
    variant_of,
)

NAME = "tf"
NOTEBOOK = NOTEBOOKS["03"]
BATCH_SIZE = 32  # the report's
WEIGHT_FILES = re.compile(r"^weights\.(index|data-\d{5}-of-\d{5})$")
JIT_DEFAULT = False  # XLA off: on a 2-core CPU it ran 0.56x the graph at the demo size, 1.04x at 128 px (benchmarks/tf_cgan_train.py)
Options = gan_loop.Options


def _scores(discriminator, images, y):
    """D's logit that each image is a real one of class y, and its class logits (ACGAN) or None."""
    if variant_of(discriminator) == "acgan":
        logit, class_logits = discriminator(images, training=True)
        return logit, class_logits
    return discriminator([images, y], training=True), None


def _bce(target: float, logits):
    """Binary cross-entropy computed from logits (exact where sigmoid(logit) rounds to 0 or 1)."""
    return tf.reduce_mean(
        tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.fill(tf.shape(logits), target), logits=logits)
    )


def _class_ce(y, class_logits):
    return tf.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.reshape(y, [-1]), logits=class_logits)
    )


def set_seed(seed: int) -> None:
    """Seed Python's, NumPy's and TensorFlow's random generators (model initialisation)."""
    keras.utils.set_random_seed(seed)


def train_step(real, y, z, generator, discriminator, g_opt, d_opt, augment=None):
    """One cGAN step: D learns to tell real from generated images of class y, then G learns to fool the updated D.

    Returns [d_loss, g_loss, D(x), D(G(z))(, class accuracy)]. ``augment`` (DiffAugment) edits every image D
    sees; an ACGAN discriminator also names the class, and both losses add its cross-entropy.
    """
    augment = augment or (lambda images: images)
    with tf.GradientTape() as g_tape:  # records G's forward pass, for step 2
        fake = generator([z, y], training=True)

        # 1. Discriminator: real -> 1, generated -> 0, plus the report's L1 penalty on its kernels
        with tf.GradientTape() as d_tape:
            logit_real, class_real = _scores(discriminator, augment(real), y)
            logit_fake, class_fake = _scores(discriminator, augment(tf.stop_gradient(fake)), y)
            d_loss = (_bce(1.0, logit_real) + _bce(0.0, logit_fake)) / 2
            if class_real is not None:  # ACGAN: D also names the class of real and generated images
                d_loss += (_class_ce(y, class_real) + _class_ce(y, class_fake)) / 2
            d_total = d_loss + tf.add_n(discriminator.losses)
        d_grads = d_tape.gradient(d_total, discriminator.trainable_variables)
        d_opt.apply_gradients(zip(d_grads, discriminator.trainable_variables))

        # 2. Generator: the updated D should call the same generated batch real
        logit_gen, class_gen = _scores(discriminator, augment(fake), y)
        g_loss = _bce(1.0, logit_gen)
        if class_gen is not None:  # ACGAN: G is rewarded when D recognises the class it asked for
            g_loss += _class_ce(y, class_gen)
    g_grads = g_tape.gradient(g_loss, generator.trainable_variables)
    g_opt.apply_gradients(zip(g_grads, generator.trainable_variables))

    stats = [d_loss, g_loss, tf.reduce_mean(tf.sigmoid(logit_real)), tf.reduce_mean(tf.sigmoid(logit_fake))]
    if class_real is not None:
        hits = tf.equal(tf.argmax(class_real, axis=1, output_type=tf.int32), tf.reshape(y, [-1]))
        stats.append(tf.reduce_mean(tf.cast(hits, tf.float32)))
    return tf.stack(stats)


def _to_uint8(x) -> np.ndarray:
    """Generator output in [-1, 1] (tanh) -> uint8 (N,H,W,C)."""
    return np.clip(np.round((np.asarray(x, dtype=np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


class Trainer:
    """Models, Adam optimizers, the random generator and the training images: what ``train`` steps and saves.

    The uint8 dataset stays in memory as one tensor; each batch is gathered and rescaled to [-1, 1] (the
    tanh's range) inside the compiled step, and the losses are read back once per epoch.
    """

    def __init__(
        self, generator, discriminator, images: np.ndarray, labels: np.ndarray, *, seed: int, options: Options
    ):
        if options.deterministic:
            tf.config.experimental.enable_op_determinism()
        # Adam trains raw_generator. With ``ema`` on, the caller's generator holds the moving average of its
        # weights (what is sampled and saved as "generator") and raw_generator is a copy that training updates.
        raw = generator
        if options.ema is not None:
            raw = build_generator(**build_kwargs(generator))  # before set_seed: the run's random stream is unchanged
            raw.set_weights(generator.get_weights())
        set_seed(seed)
        self.rng = tf.random.Generator.from_seed(seed)  # noise and DiffAugment; checkpointed
        beta_1, beta_2 = options.betas
        self.g_opt = keras.optimizers.Adam(learning_rate=options.lr, beta_1=beta_1, beta_2=beta_2, name="g_adam")
        self.d_opt = keras.optimizers.Adam(learning_rate=options.lr, beta_1=beta_1, beta_2=beta_2, name="d_adam")
        self.g_opt.build(raw.trainable_variables)  # built now, so a checkpoint can restore their slots
        self.d_opt.build(discriminator.trainable_variables)
        self.generator, self.raw_generator, self.discriminator = generator, raw, discriminator
        self.objects = {
            "generator": generator,
            "discriminator": discriminator,
            "g_optimizer": self.g_opt,
            "d_optimizer": self.d_opt,
            "rng": self.rng,
        }
        averaged = []
        if options.ema is not None:
            self.objects["raw_generator"] = raw
            averaged = list(zip(generator.weights, raw.weights))  # BatchNorm's moving statistics included
        decay = float(options.ema or 0.0)
        self.x, self.y = tf.constant(images), tf.constant(labels.astype(np.int32)[:, None])
        latent_dim = build_kwargs(generator)["latent_dim"]
        policy = parse_policy(options.diffaugment)
        augment = (lambda batch: diffaugment_tf(batch, policy, self.rng)) if policy else None

        def step(idx):
            real = tf.cast(tf.gather(self.x, idx), tf.float32) / 127.5 - 1.0
            z = self.rng.normal([tf.shape(idx)[0], latent_dim])
            stats = train_step(real, tf.gather(self.y, idx), z, raw, discriminator, self.g_opt, self.d_opt, augment)
            for avg, new in averaged:  # the moving average, after the step's updates (ops on a variable keep order)
                avg.assign(decay * avg + (1.0 - decay) * new)
            return stats

        def evaluate(z, y):
            fake = generator([z, y], training=False)
            logit = (
                discriminator(fake, training=False)[0]
                if variant_of(discriminator) == "acgan"
                else discriminator([fake, y], training=False)
            )
            return fake, _bce(1.0, logit)

        jit = JIT_DEFAULT if options.jit_compile is None else bool(options.jit_compile)
        self._step = (
            tf.function(step, jit_compile=jit, reduce_retracing=True, autograph=False) if options.graph else step
        )
        self._evaluate = tf.function(evaluate, autograph=False)
        self._context = contextlib.ExitStack()

    def __enter__(self):
        self._context.enter_context(remapper_off_if_it_fails())
        return self

    def __exit__(self, *exc):
        self._context.close()

    def step(self, idx) -> tf.Tensor:
        """One train_step on the batch images[idx] with fresh noise (a compiled graph unless options.graph is off)."""
        return self._step(idx)

    def epoch(self, order: np.ndarray) -> list[float]:
        """Every batch of one epoch ((steps, batch) indices); the batch-mean statistics, read back once."""
        order = tf.constant(order)
        total = sum(self.step(order[i]) for i in range(len(order)))
        return (total / len(order)).numpy().tolist()

    def evaluate(self, noise: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, float]:
        """Images of fixed noise and labels, and the generator's loss on them, both models in inference mode."""
        fake, loss = self._evaluate(tf.constant(noise), tf.constant(np.asarray(labels, dtype=np.int32)[:, None]))
        return _to_uint8(fake), float(loss)


def save_checkpoint(folder, objects: dict) -> Path:
    """Write the variables of ``objects`` (models, optimizers, random generator) as folder/weights.*."""
    prefix = Path(folder) / "weights"
    tf.train.Checkpoint(**objects).write(str(prefix))
    return prefix


def _variables(obj) -> list:
    return [obj.state] if isinstance(obj, tf.random.Generator) else list(obj.variables)


def restore_checkpoint(folder, objects: dict | None = None) -> None:
    """Read folder/weights.* into ``objects``, all or nothing; with none, only check that every tensor reads."""
    prefix = str(Path(folder) / "weights")
    if not Path(prefix + ".index").is_file():
        raise FileNotFoundError("weights.index is missing")
    if objects is None:
        reader = tf.train.load_checkpoint(prefix)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
        return
    variables = [v for obj in objects.values() for v in _variables(obj)]
    backup = [v.numpy() for v in variables]
    try:
        tf.train.Checkpoint(**objects).read(prefix).expect_partial().assert_existing_objects_matched()
    except Exception:
        for v, value in zip(variables, backup):  # undo a half-finished restore
            v.assign(value)
        raise


def generate(generator, noise: np.ndarray, labels) -> np.ndarray:
    """Images from float32 noise (N, latent_dim) and integer labels: uint8 (N,H,W,C), generator in inference mode."""
    y = np.asarray(labels, dtype=np.int32).reshape(-1, 1)
    return _to_uint8(generator([np.asarray(noise, dtype=np.float32), y], training=False))


# one image per label, with noise drawn from ``seed``: uint8 (N,H,W,C)
sample = gan_loop.for_framework(gan_loop.sample, __name__)


def load_generator(out_dir):
    """The generator of the newest complete checkpoint in out_dir, with ``epoch``."""
    return gan_loop.load_generator(sys.modules[__name__], out_dir)


# the shared loop (gan_loop.train) running this module's Trainer; resumable; returns the per-epoch history
train = gan_loop.for_framework(gan_loop.train, __name__)


def runtime() -> dict:
    """Framework, versions and device of this process: for the notebook's setup line and the checkpoints."""
    device = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    return {
        "framework": "TensorFlow",
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
        "device": device,
        "threads": tf.config.threading.get_intra_op_parallelism_threads() or None,
    }


__all__ = [  # the same names in the same order as torch_gan (tests/test_gan_loop.py checks)
    "build_generator", "build_discriminator", "build_kwargs", "count_parameters", "model_summary",
    "train_flops_per_image", "set_seed", "train_step", "Trainer", "save_checkpoint", "restore_checkpoint",
    "generate", "sample", "load_generator", "train", "runtime",
]  # fmt: skip
