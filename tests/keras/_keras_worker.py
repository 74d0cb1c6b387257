"""One Keras back end in its own process (KERAS_BACKEND is read once, at import): every case, error case and
scenario of the Keras suite, results pickled for the parent test process to check.

    KERAS_BACKEND=jax python tests/keras/_keras_worker.py INPUT.pkl OUTPUT.pkl WORKDIR

Nothing here imports torch: on the JAX and TensorFlow back ends the run also shows that none of phidice.keras
pulls it in. Every scenario catches its own exception, so that one failure does not hide the others.
"""

from __future__ import annotations

import os
import pickle
import sys
import time
import traceback

# two CPU devices for the data-parallel scenario, set up before the back end starts
if os.environ.get("KERAS_BACKEND") == "tensorflow":
    import tensorflow as tf

    tf.config.set_logical_device_configuration(
        tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2
    )
elif os.environ.get("KERAS_BACKEND") == "jax":
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2").strip()

import phidice.keras as pk  # noqa: E402 - first of phidice: what the import itself loads

TORCH_AFTER_IMPORT = "torch" in sys.modules

import _keras_monitor_cases
import _keras_stats_cases
import numpy as np

import keras
from keras import ops

BACKEND = keras.backend.backend()
PARTIAL = ("LeafDiceLoss", "MarginalDiceLoss")


# ---------------------------------------------------------------- gradients per back end


def value_and_grad(f, x, jit: bool = False):
    """(value, ∂total/∂x) for ``f(x) = (total, value)``, with the back end's own autodiff: jax.grad (compiled
    whole by jax.jit with ``jit``, as Keras's training step is), torch autograd or tf.GradientTape."""
    if BACKEND == "jax":
        import jax

        grad_of = jax.grad(f, has_aux=True)
        grad, value = (jax.jit(grad_of) if jit else grad_of)(x)
        return value, np.asarray(grad)
    if BACKEND == "torch":
        xt = x.detach().clone().requires_grad_(True)
        total, value = f(xt)
        total.backward()
        return value.detach(), xt.grad.detach().cpu().numpy()
    if BACKEND == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            tape.watch(x)
            total, value = f(x)
        return value, tape.gradient(total, x).numpy()
    raise RuntimeError(f"no gradient for back end {BACKEND}")


def traced_call(f, *args):
    """``f(*args)`` compiled the back end's way: jax.jit, or tf.function with every dimension unknown except
    the classes (as Keras may trace a model); None on a back end that runs eagerly."""
    if BACKEND == "jax":
        import jax

        return jax.jit(f)(*args)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        def spec(a):
            shape = [None] * len(a.shape)
            if a.dtype.is_floating or (len(a.shape) == 2 and a.dtype == tf.bool):
                shape[-1] = a.shape[-1]  # the classes of y_pred (channels-last) and of annotated (B, C)
            return tf.TensorSpec(shape, a.dtype)

        return tf.function(f, input_signature=[spec(a) for a in args])(*args)
    return None


# ---------------------------------------------------------------- cases


def build_loss(case):
    options = dict(case["options"], **case["keras_options"])
    if case.get("superset_map") is not None:
        options["labels_superset_map"] = case["superset_map"]
    return getattr(pk, case["loss"])(**options)


def call_args(case):
    x = ops.cast(ops.convert_to_tensor(case["x"]), case["dtype"])
    y = ops.convert_to_tensor(case["y"])
    extra = {} if case.get("annotated") is None else {"annotated": ops.convert_to_tensor(case["annotated"])}
    return x, y, extra


def run_case(case, jit: bool = False) -> dict:
    """The loss value (per φ for reduction="none") and, for float32 cases, the gradient of its sum (on JAX
    compiled whole with ``jit``)."""
    try:
        loss = build_loss(case)
        x, y, extra = call_args(case)
        if case["grad"]:

            def f(z):
                value = loss(y, z, **extra)
                return ops.sum(value), value

            value, grad = value_and_grad(f, x, jit)
            out = {"grad": grad}
        else:
            value, out = loss(y, x, **extra), {}
        out["value"] = np.asarray(ops.convert_to_numpy(ops.cast(value, "float32")))
        return out
    except (TypeError, ValueError) as err:
        return {"error": (type(err).__name__, str(err))}


def run_fuzz_case(case) -> dict:
    """:func:`run_case` for a drawn case, on JAX under jax.jit (one compilation a case, where eager JAX compiles
    each operation for each new shape: several times slower); any exception is the case's result, so that one
    does not end the run."""
    try:
        return run_case(case, jit=True)
    except Exception:  # noqa: BLE001 - reported to the parent
        return {"exception": traceback.format_exc(limit=-3)}


# ---------------------------------------------------------------- scenarios


def _segmentation_data(n, size, C, rng):
    """Images whose class follows the intensity (learnable by a tiny network), labels (n, *S)."""
    x = rng.normal(size=(n, size, size, 1)).astype("float32")
    labels = np.digitize(x[..., 0], [0.3, 1.0][: C - 1]).astype("int32")
    return x, labels


def _tiny_model(C, size=16):
    return keras.Sequential(
        [
            keras.Input((size, size, 1)),
            keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(C, 1),
        ]
    )


FITS = {  # name: (loss, dtype policy)
    "dice_BI": (lambda: pk.DiceLoss(phi="BI", include_background=False), "float32"),
    "dice_ce_I": (lambda: pk.DiceCELoss(phi="I", eps=[1e-3, 1e-2, 1e-1], ce_weight=[0.5, 1.0, 2.0]), "mixed_float16"),
    "leaf_supersets": (lambda: pk.LeafDiceLoss(phi="BCI", labels_superset_map={3: [0, 2]}), "mixed_bfloat16"),
}


def scenario_fit(workdir):
    """A few epochs of a tiny segmentation network per loss (two under a mixed-precision policy): finite and
    decreasing; the compiled model saved and reloaded."""
    out = {}
    for name, (make_loss, policy) in FITS.items():
        try:
            keras.config.set_dtype_policy(policy)
            keras.utils.set_random_seed(1)
            x, labels = _segmentation_data(16, 16, 3, np.random.default_rng(0))
            if name == "leaf_supersets":  # class 2 not labelled in half the samples: its voxels read "0 or 2" (3)
                labels[8:][labels[8:] != 1] = 3
            loss = make_loss()
            model = _tiny_model(3)
            model.compile(optimizer=keras.optimizers.Adam(0.03), loss=loss)
            hist = model.fit(x, labels, batch_size=4, epochs=6, verbose=0, shuffle=False).history["loss"]
            logits = model(x)
            value = loss(ops.convert_to_tensor(labels), logits)
            path = f"{workdir}/{name}.keras"
            model.save(path)
            again = keras.models.load_model(path)
            reloaded = again.loss(ops.convert_to_tensor(labels), again(x))  # its compiled loss, its weights
            out[name] = {
                "history": hist,
                "policy": policy,
                "type": type(loss).__name__,
                "config": loss.get_config(),
                "logits_dtype": keras.backend.standardize_dtype(logits.dtype),
                "loss_dtype": keras.backend.standardize_dtype(value.dtype),
                "reloaded_type": type(again.loss).__name__,
                "reloaded_config": again.loss.get_config(),
                "evaluate": (float(ops.convert_to_numpy(value)), float(ops.convert_to_numpy(reloaded))),
            }
        except Exception:  # noqa: BLE001 - reported to the parent
            out[name] = {"exception": traceback.format_exc()}
        finally:
            keras.config.set_dtype_policy("float32")
    return out


def scenario_traced(cases):
    """Compiled (jit / tf.function) values equal eager ones; a bad label under jit gives NaN, eagerly an error."""
    if BACKEND not in ("jax", "tensorflow"):
        return {"skipped": f"{BACKEND} runs eagerly"}
    out = {}
    for case in cases:
        try:
            loss = build_loss(case)
            x, y, extra = call_args(case)
            eager = float(ops.convert_to_numpy(ops.sum(loss(y, x, **extra))))
            if extra:
                jitted = traced_call(
                    lambda y_, x_, a_, f=loss: ops.sum(f(y_, x_, annotated=a_)), y, x, extra["annotated"]
                )
            else:
                jitted = traced_call(lambda y_, x_, f=loss: ops.sum(f(y_, x_)), y, x)
            out[case["id"]] = {"eager": eager, "traced": float(ops.convert_to_numpy(jitted))}
        except Exception:  # noqa: BLE001
            out[case["id"]] = {"exception": traceback.format_exc()}
    try:
        x = ops.convert_to_tensor(np.zeros((2, 4, 4, 3), "float32"))
        bad = np.zeros((2, 4, 4), "int32")
        bad[1, 2, 2] = 5
        bad = ops.convert_to_tensor(bad)
        checked, unchecked = pk.DiceLoss(phi="I"), pk.DiceLoss(phi="I", validate_args=False)
        guard = {
            "traced": float(ops.convert_to_numpy(traced_call(lambda y_, x_: checked(y_, x_), bad, x))),
            "unchecked": float(ops.convert_to_numpy(traced_call(lambda y_, x_: unchecked(y_, x_), bad, x))),
        }
        try:
            checked(bad, x)
            guard["eager"] = None
        except ValueError as err:
            guard["eager"] = str(err)
        out["guard"] = guard
    except Exception:  # noqa: BLE001
        out["guard"] = {"exception": traceback.format_exc()}
    return out


def scenario_replicas():
    """Data parallelism on two CPU devices, a batch of 8 split 4 + 4: which batch does Φ = BI span?

    TensorFlow (MirroredStrategy): each replica's; Keras reports the mean of the two per-replica losses (the
    loss scales by 1/replicas as Keras's own losses do, and Keras unscales what it reports). JAX
    (keras.distribution.DataParallel): one program over the global batch, so the whole batch's.
    """
    if BACKEND not in ("tensorflow", "jax"):
        return {"skipped": f"no data-parallel training on {BACKEND} in Keras"}
    try:
        x, labels = _segmentation_data(8, 8, 3, np.random.default_rng(3))
        keras.utils.set_random_seed(4)
        if BACKEND == "tensorflow":
            import tensorflow as tf

            strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
            replicas = strategy.num_replicas_in_sync
            with strategy.scope():
                model = _tiny_model(3, size=8)
                model.compile(optimizer="adam", loss=pk.DiceLoss(phi="BI"))
        else:
            import jax

            replicas = len(jax.devices())
            keras.distribution.set_distribution(keras.distribution.DataParallel(devices=jax.devices()))
            model = _tiny_model(3, size=8)
            model.compile(optimizer="adam", loss=pk.DiceLoss(phi="BI"))
        try:
            reported = model.evaluate(x, labels, batch_size=8, verbose=0)
            logits = model(x)
        finally:
            if BACKEND == "jax":
                keras.distribution.set_distribution(None)
        loss = pk.DiceLoss(phi="BI")
        whole = float(loss(labels, logits))
        halves = [float(loss(labels[i : i + 4], logits[i : i + 4])) for i in (0, 4)]
        return {"replicas": replicas, "reported": reported, "whole": whole, "halves": halves}
    except Exception:  # noqa: BLE001
        return {"exception": traceback.format_exc()}


def scenario_serialize(cases):
    """get_config → from_config, and Keras's own serialize/deserialize, give the same loss."""
    out = {}
    for case in cases:
        try:
            loss = build_loss(case)
            again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
            x, y, extra = call_args(case)
            out[case["id"]] = {
                "type": type(again).__name__,
                "same_config": again.get_config() == loss.get_config(),
                "values": (
                    float(ops.convert_to_numpy(ops.sum(loss(y, x, **extra)))),
                    float(ops.convert_to_numpy(ops.sum(again(y, x, **extra)))),
                ),
            }
        except Exception:  # noqa: BLE001
            out[case["id"]] = {"exception": traceback.format_exc()}
    return out


def _monitor_fit(name, workdir):
    kind, options, supersets = _keras_monitor_cases.FITS[name]
    extra = {} if supersets is None else {"labels_superset_map": supersets}
    loss = getattr(pk, kind)(**options, **extra)
    x, labels, xv, lv = _keras_monitor_cases.data(name)
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input(x.shape[1:]), keras.layers.Conv2D(_keras_monitor_cases.C, 3, padding="same")])
    path = f"{workdir}/monitor-{name}.jsonl"
    monitor = pk.GradientMonitorCallback(loss, history_file=path, advice=False)
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss=loss, metrics=[monitor.metric])
    history = model.fit(
        x,
        labels,
        batch_size=_keras_monitor_cases.BATCH,
        epochs=_keras_monitor_cases.EPOCHS,
        verbose=0,
        shuffle=False,
        validation_data=(xv, lv),
        callbacks=[monitor],
    ).history
    return {
        "history": history,
        "monitor": monitor.history,
        "val_monitor": monitor.val_history,
        "advice": monitor.advise(),
        "logits": np.asarray(model.predict(x, verbose=0)),
        "val_logits": np.asarray(model.predict(xv, verbose=0)),
        "file": path,
    }


def _monitor_errors():
    """The callback's errors: a loss that is not a phidice Dice-family one, options it cannot follow, a model
    compiled without its metric."""

    def uncompiled():
        loss = pk.DiceLoss()
        model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Conv2D(3, 1)])
        model.compile(optimizer="sgd", loss=loss)
        x, y = np.zeros((2, 4, 4, 1), "float32"), np.zeros((2, 4, 4), "int32")
        model.fit(x, y, epochs=1, verbose=0, callbacks=[pk.GradientMonitorCallback(loss)])

    attempts = {
        "keras_loss": lambda: pk.GradientMonitorCallback(keras.losses.CategoricalCrossentropy()),
        "focal": lambda: pk.GradientMonitorCallback(pk.DiceFocalLoss()),
        "none": lambda: pk.GradientMonitorCallback(pk.DiceLoss(reduction="none")),
        "squared": lambda: pk.GradientMonitorCallback(pk.DiceLoss(squared=True)),
        "spacing": lambda: pk.GradientMonitorCallback(pk.DiceLoss(), spacing=(1.0, -2.0)),
        "uncompiled": uncompiled,
    }
    out = {}
    for name, attempt in attempts.items():
        try:
            attempt()
            out[name] = None
        except Exception as err:  # noqa: BLE001 - reported to the parent
            out[name] = (type(err).__name__, str(err))
    return out


def _monitor_doc_block(workdir):
    """docs/monitor.md's Keras block, run as written on a tiny model (in ``workdir``, where it writes its file)."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "monitor.md").read_text()
    block = text.split("<!-- run by tests/keras/test_keras_monitor.py -->\n```python\n")[1].split("```")[0]
    x, y, xv, yv = _keras_monitor_cases.data("dice_I")
    model = keras.Sequential([keras.Input(x.shape[1:]), keras.layers.Conv2D(_keras_monitor_cases.C, 1)])
    namespace = {"model": model, "x": x, "y": y, "xv": xv, "yv": yv}
    here = os.getcwd()
    os.chdir(workdir)
    try:
        exec(block.replace("callbacks=[", "verbose=0, callbacks=["), namespace)
    finally:
        os.chdir(here)
    return {"block": block, "keys": sorted(namespace["history"]), "file": os.path.join(workdir, "monitor.jsonl")}


def scenario_monitor(workdir):
    """The monitor callback in real fits (values for the parent to hold to the PyTorch monitor), its errors and
    the block of docs/monitor.md."""
    out = {}
    try:
        out["doc"] = _monitor_doc_block(workdir)
    except Exception:  # noqa: BLE001 - reported to the parent
        out["doc"] = {"exception": traceback.format_exc()}
    for name in _keras_monitor_cases.FITS:
        try:
            out[name] = _monitor_fit(name, workdir)
        except Exception:  # noqa: BLE001 - reported to the parent
            out[name] = {"exception": traceback.format_exc()}
    out["errors"] = _monitor_errors()
    return out


def scenario_keras_only():
    """What only the Keras losses have: no sample_weight, torch-only options refused, Keras's reduction names."""
    out = {}
    x = ops.convert_to_tensor(np.zeros((2, 4, 4, 3), "float32"))
    y = ops.convert_to_tensor(np.zeros((2, 4, 4), "int32"))
    attempts = {
        "sample_weight": lambda: pk.DiceLoss()(y, x, sample_weight=ops.ones((2,))),
        "sync_batch": lambda: pk.DiceLoss(sync_batch=True),
        "fused": lambda: pk.DiceCELoss(fused=True),
        "unknown": lambda: pk.LeafDiceLoss(bogus=1),
        "data_format": lambda: pk.DiceLoss(data_format="NHWC"),
        "both_annotated": lambda: pk.LeafDiceLoss(labels_superset_map={3: [0, 1]})(
            y, x, annotated=np.ones((2, 3), bool)
        ),
        "superset_map_dense": lambda: pk.LeafDiceLoss(labels_superset_map={3: [0, 1]})(ops.one_hot(y, 3), x),
    }
    for name, attempt in attempts.items():
        try:
            attempt()
            out[name] = None
        except Exception as err:  # noqa: BLE001
            out[name] = (type(err).__name__, str(err))
    return out


def scenario_loss_from_stats():
    """phidice.keras.loss_from_stats on :data:`STATS_CASES`, the deprecated loss_from_sums beside it, bad input."""
    import warnings

    from phidice import DiceConfig, DiceStats

    inter, P, Y, keep = _keras_stats_cases.stats_arrays()
    stats = DiceStats(*(np.asarray(a, "float32") for a in (inter, P, Y)))
    out = {"values": []}
    for options, with_keep, C in _keras_stats_cases.STATS_CASES:
        value = pk.loss_from_stats(stats, keep=keep if with_keep else None, num_channels=C, **options)
        out["values"].append(np.asarray(ops.convert_to_numpy(value), "float64"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        old = pk.loss_from_sums(stats, DiceConfig(phi="BI", eps=1.0), num_channels=3)
    out["deprecated"] = {
        "value": float(ops.convert_to_numpy(old)),
        "warnings": [(w.category.__name__, str(w.message)) for w in caught],
    }
    attempts = {
        "keep_shape": lambda: pk.loss_from_stats(stats, keep=keep[:, :2]),
        "fused": lambda: pk.loss_from_stats(stats, fused=True),
        "bad_phi": lambda: pk.loss_from_stats(stats, phi="X"),
    }
    out["errors"] = {}
    for name, attempt in attempts.items():
        try:
            attempt()
            out["errors"][name] = None
        except Exception as err:  # noqa: BLE001
            out["errors"][name] = (type(err).__name__, str(err))
    import inspect

    out["params"] = [p.name for p in inspect.signature(pk.loss_from_stats).parameters.values()]
    return out


def scenario_signatures() -> dict:
    """The visible signatures and get_config keys of the Keras losses, and their docstring examples run."""
    import doctest
    import inspect

    from phidice.keras import losses
    from phidice.keras.losses import KERAS_SKIP

    result = doctest.testmod(losses, optionflags=doctest.NORMALIZE_WHITESPACE, report=False)
    out = {"skip": list(KERAS_SKIP), "doctest": [result.failed, result.attempted]}
    for name in ("DiceLoss", "DiceCELoss", "LeafDiceLoss", "MarginalDiceLoss"):
        cls = getattr(pk, name)
        params = [
            [p.name, p.kind.name, repr(p.default), repr(p.annotation)]
            for p in inspect.signature(cls).parameters.values()
        ]
        out[name] = {
            "params": params,
            "init": list(inspect.signature(cls.__init__).parameters)[1:],
            "config": sorted(cls().get_config()),
        }
    return out


def main(inp: str, outp: str, workdir: str) -> None:
    with open(inp, "rb") as f:
        job = pickle.load(f)
    result = {"backend": BACKEND, "keras": keras.__version__, "torch_after_import": TORCH_AFTER_IMPORT, "times": {}}
    t = time.perf_counter()
    result["cases"] = {c["id"]: run_case(c) for c in job["cases"]}
    result["times"]["cases"] = time.perf_counter() - t
    t = time.perf_counter()
    result["fuzz"] = {c["id"]: run_fuzz_case(c) for c in job.get("fuzz", ())}
    result["times"]["fuzz"] = time.perf_counter() - t
    t = time.perf_counter()
    result["errors"] = {c["id"]: run_case(c) for c in job["errors"]}
    result["traced"] = scenario_traced(job["traced"])
    result["serialize"] = scenario_serialize(job["serialize"])
    result["keras_only"] = scenario_keras_only()
    try:
        result["loss_from_stats"] = scenario_loss_from_stats()
    except Exception:  # noqa: BLE001
        result["loss_from_stats"] = {"failed": traceback.format_exc()}
    try:
        result["signatures"] = scenario_signatures()
    except Exception:  # noqa: BLE001
        result["signatures"] = {"failed": traceback.format_exc()}
    result["times"]["checks"] = time.perf_counter() - t
    t = time.perf_counter()
    result["fit"] = scenario_fit(workdir)
    result["replicas"] = scenario_replicas()
    result["times"]["fit"] = time.perf_counter() - t
    t = time.perf_counter()
    result["monitor"] = scenario_monitor(workdir)
    result["times"]["monitor"] = time.perf_counter() - t
    result["torch_at_end"] = "torch" in sys.modules
    with open(outp, "wb") as f:
        pickle.dump(result, f)


if __name__ == "__main__":
    main(*sys.argv[1:4])
