"""Every training configuration the benchmark times, what each one changes, and whether it changes the updates.

    keras_configurations(batches_per_epoch=1717)   # Keras default, the steps_per_execution sweep, XLA
    LIGHTNING_CONFIGURATIONS                        # plain engine, fast engine and its variants, a plain torch loop

A configuration is what a user could pick: a setting of keras_impl.train or
lightning_impl.train (or, for the plain PyTorch loop, the code a user would
write without Lightning).  The JSON names (`name`) are the keys of the
result's `epoch_seconds`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

# The sweep: steps_per_execution near 8, 32 and 128.  With the shared batch order
# the value must divide the epoch's batches (keras_impl.data.check_steps_per_execution),
# so each is the nearest divisor above 1 (the full split's 1,717 batches: 17 and 101).
STEPS_PER_EXECUTION_TARGETS = (8, 32, 128)


@dataclass(frozen=True)
class Configuration:
    name: str                      # the JSON key
    framework: str                 # keras | lightning | torch
    label: str                     # the page's words
    options: str                   # the trainer's flags (or "—")
    updates: str                   # same | different: compared with the framework's default
    updates_note: str              # why, and which test shows it
    overrides: Mapping[str, Any] = field(default_factory=dict)     # config keys (configs.loader.override)
    engine: str | None = None      # lightning only
    steps_per_execution: int | None = None
    gradients: str | None = None


def nearest_divisors(batches: int, targets=STEPS_PER_EXECUTION_TARGETS) -> list[int]:
    """For each target, the divisor of `batches` above 1 nearest to it (ties: the smaller), without repeats."""
    divisors = [value for value in range(2, batches + 1) if batches % value == 0]
    chosen: list[int] = []
    for target in targets:
        if divisors:
            best = min(divisors, key=lambda value: (abs(value - target), value))
            if best not in chosen:
                chosen.append(best)
    return chosen


SAME_SPE = ("same", "bit for bit: the same SGD steps, called K at a time "
                    "(keras_impl/tests/test_execution_options.py)")
XLA_NOTE = ("different", "XLA fuses and rounds differently (1.4e-2 apart after 2 epochs in "
                         "keras_impl/tests/test_execution_options.py); needs general.repeatable_run: false, "
                         "as Keras drops XLA under TensorFlow's op determinism")


def keras_configurations(batches_per_epoch: int) -> list[Configuration]:
    """Keras default, the steps_per_execution sweep, jit_compile, and both together (the sweep's largest)."""
    sweep = nearest_divisors(batches_per_epoch)
    configurations = [Configuration("keras", "keras", "Keras default", "—", "same",
                                    "the reference (Model.fit, steps_per_execution 1, no XLA on a CPU)")]
    for steps in sweep:
        configurations.append(Configuration(
            f"keras_spe{steps}", "keras", f"Keras steps_per_execution={steps}", f"--steps-per-execution {steps}",
            *SAME_SPE, overrides={"keras.steps_per_execution": steps}))
    no_determinism = {"general.repeatable_run": False, "keras.jit_compile": True}
    configurations.append(Configuration("keras_jit", "keras", "Keras jit_compile=True", "--jit-compile true ¹",
                                        *XLA_NOTE, overrides=no_determinism))
    if sweep:
        steps = sweep[-1]
        configurations.append(Configuration(
            f"keras_jit_spe{steps}", "keras", f"Keras jit_compile=True, steps_per_execution={steps}",
            f"--jit-compile true --steps-per-execution {steps} ¹", *XLA_NOTE,
            overrides={**no_determinism, "keras.steps_per_execution": steps}))
    return configurations


LIGHTNING_CONFIGURATIONS = (
    Configuration("lightning_plain", "lightning", "Lightning plain engine (the idiomatic port)", "--engine plain",
                  "same", "the reference: nn.Module + automatic optimisation (lightning_impl/system.py)",
                  engine="plain"),
    Configuration("lightning_fast", "lightning", "Lightning fast engine, its defaults", "--engine fast",
                  "different", "a fused kernel: the same model, rounded differently (float32 ulps; "
                               "lightning_impl/tests/test_engines.py)", engine="fast"),
    Configuration("lightning_fast_one_step", "lightning", "Lightning fast engine, one batch per step",
                  "--engine fast --steps-per-execution 1", "different", "as the fast engine: the same "
                  "updates as its default (lightning_impl/tests/test_train.py, steps_per_execution)", engine="fast", steps_per_execution=1),
    Configuration("lightning_fast_autograd", "lightning", "Lightning fast engine, autograd gradients",
                  "--engine fast --gradients autograd", "different", "as the fast engine: closed-form and "
                  "autograd gradients are bitwise equal (lightning_impl/tests/test_fast_system.py)",
                  engine="fast", gradients="autograd"),
    Configuration("torch_loop", "torch", "plain PyTorch loop, no Lightning", "— (benchmarks/torch_loop.py)",
                  "same", "the plain engine's network, loss and SGD in a for loop: the same steps",
                  engine="plain"),
)


def describe(configuration: Configuration) -> dict[str, Any]:
    """The JSON form of a configuration (its name is the key it is stored under)."""
    return {"framework": configuration.framework, "label": configuration.label, "options": configuration.options,
            "updates": configuration.updates, "updates_note": configuration.updates_note,
            "overrides": dict(configuration.overrides)}
