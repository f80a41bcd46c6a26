"""(d) of train_speed.py: the same networks in Keras 3 on TensorFlow CPU, `model.fit`.

Runs only inside the benchmark-only environment (.venv-keras, `pip install tensorflow-cpu`);
never imported by fashionlab. Prints one JSON line: {model: {policy: images_per_s}}.
Images are random uint8-like floats: throughput does not depend on the pixel values. The
layer stacks mirror fashionlab's s0-m1, s0-m2 and s2-cnn (see `fashionlab models NAME`);
s0-m2's random crop and flip are left out, which only flatters Keras.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402

BATCH = {"s0-m1": 128, "s0-m2": 128, "s2-cnn": 128}


def build(name: str) -> keras.Model:
    inputs = keras.Input((28, 28, 1))
    if name == "s0-m1":
        x = layers.Conv2D(32, 3, activation="relu")(inputs)
        x = layers.Conv2D(64, 3, activation="relu")(x)
        x = layers.MaxPooling2D()(x)
        x = layers.Flatten()(x)
        x = layers.Dense(128, activation="relu")(x)
        x = layers.Dropout(0.25)(x)
    elif name == "s0-m2":
        x = inputs
        for stage, (width, drop) in enumerate(((32, 0.05), (64, 0.1), (128, 0.15))):
            for _ in range(2):
                x = layers.Conv2D(width, 3, padding="same", use_bias=False)(x)
                x = layers.BatchNormalization()(x)
                x = layers.ReLU()(x)
            if stage < 2:
                x = layers.MaxPooling2D()(x)
            x = layers.Dropout(drop)(x)
        x = layers.GlobalAveragePooling2D()(x)
        x = layers.Dense(128, activation="relu")(x)
        x = layers.Dropout(0.2)(x)
    elif name == "s2-cnn":
        x = layers.Conv2D(32, 3, activation="relu")(inputs)
        x = layers.MaxPooling2D()(x)
        x = layers.Conv2D(64, 3, activation="relu")(x)
        x = layers.MaxPooling2D()(x)
        x = layers.Flatten()(x)
        x = layers.Dense(128, activation="relu")(x)
        x = layers.Dropout(0.25)(x)
    else:
        raise SystemExit(f"no Keras version of {name}")
    outputs = layers.Dense(10, dtype="float32")(x)  # logits in fp32 under mixed precision
    return keras.Model(inputs, outputs)


def images_per_s(name: str, policy: str, steps: int, repeats: int) -> float:
    """Median over `repeats` timed `fit` epochs of `steps` batches, after a warm-up epoch."""
    keras.mixed_precision.set_global_policy(policy)
    model = build(name)
    optimizer = keras.optimizers.AdamW(1e-3) if name == "s0-m2" else keras.optimizers.Adam(1e-3)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    batch = BATCH[name]
    rng = np.random.default_rng(0)
    x = rng.random((batch * steps, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, batch * steps)
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0)  # warm-up: graph tracing
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
        rates.append(batch * steps / (time.perf_counter() - started))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("models", nargs="+")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--policies", default="float32,mixed_bfloat16")
    args = parser.parse_args()
    out = {
        name: {
            p: images_per_s(name, p, args.steps, args.repeats) for p in args.policies.split(",")
        }
        for name in args.models
    }
    for name in out:
        if "float32" in out[name]:
            out[name]["fp32"] = out[name].pop("float32")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
