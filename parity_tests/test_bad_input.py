"""Bad input, clear errors, nothing lost: every command, every kind of mistake, one line and exit 2.

    python -m pytest parity_tests/test_bad_input.py -q       # ~2-4 min on 2 busy cores (real processes)

Each case runs the real command in a subprocess, as a user would, and checks:

* exit status 2 and stderr is exactly one line starting with "error: " - no
  traceback, no framework log line (TensorFlow's C++ start-up lines and
  Lightning's banners would break "one line"); only `--resume`, which must
  load the run's data before it can compare vocabularies, may print the data
  layer's own "[data] loaded ..." progress line before it;
* the line says what was wrong and names the file or value at fault
  (the fragments listed per case), and what is valid where there is a list;
* nothing was left behind: the output folder of a trainer holds no run
  directory, convert wrote no file (not even a temp file), data.prepare's
  cache folder is empty.

The mistakes (every kind the project promises a one-line error for), through every command they can reach:

    unknown route / direction, hour outside 0-23, date outside the trained years
        keras_impl.score, lightning_impl.score
    missing or corrupt checkpoint / model file
        keras_impl.score, lightning_impl.score, lightning_impl.convert, both trainers' --resume
    a checkpoint of another model, or of an older vocabulary, or a --vocabulary other than its own
        both score commands, convert, both trainers' --resume (the data changed since the run began)
    a model that answers NaN; hyperparameters that do not match the weights; a pickle that runs code
    (with TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 set)
        both score commands (NaN), lightning_impl.score and convert (the others)
    --sample-rows 1 (a split would be empty)
        both trainers
    a config with an unknown key or a wrong type
        keras_impl.train, lightning_impl.train, data.prepare
    a raw workbook with a missing column, an empty raw folder
        data.prepare, keras_impl.train, lightning_impl.train

The command processes run four at a time (they mostly wait on imports).
"""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
import pytest

from parity_tests.reliability_support import (PROJECT_ROOT, assert_one_error_line, files_under, real_data_available,
                                              run_cli)

pytestmark = pytest.mark.slow

TRIP = {"--route": "501", "--direction": "e", "--date": "2019-06-21", "--hour": "18"}
PARALLEL_PROCESSES = 4


@dataclass
class Case:
    """One command with one mistake: what to run, what the error line must say, which folders stay empty."""

    name: str
    module: str
    arguments: list[str]
    fragments: tuple[str, ...]
    empty: tuple[Path, ...] = ()
    needs_real_data: bool = False
    # --resume must load the run's data before it can compare vocabularies, and the data
    # layer reports that on stderr ("[data] loaded ... rows"); nothing else may precede the error.
    progress_prefix: str | None = None
    env: dict[str, str] | None = None  # extra environment variables for the command


# --------------------------------------------------------------------------
# The files the mistakes are made of
# --------------------------------------------------------------------------


@dataclass
class Files:
    root: Path
    keras_model: Path           # a healthy .keras model, vocabulary.json beside it
    lightning_checkpoint: Path  # a healthy streetcar checkpoint
    current_vocabulary: Path    # the 2014-2019 vocabulary
    old_keras_model: Path       # trained on an older vocabulary (2014-2018), its vocabulary.json beside it
    old_checkpoint: Path        # the same, as a Lightning checkpoint
    truncated_keras: Path
    truncated_checkpoint: Path
    foreign_keras: Path         # a Keras model that is not the streetcar model
    plain_torch_file: Path      # torch.save of a plain dict
    foreign_checkpoint: Path    # a Lightning-style checkpoint of another module
    shifted_vocabulary: Path    # the healthy models' vocabulary sizes, other values (years 2015-2020)
    nan_keras_model: Path       # a streetcar Keras model whose output bias is NaN (vocabulary.json beside it)
    nan_checkpoint: Path        # the same as a Lightning checkpoint
    huge_checkpoint: Path       # hyperparameters claim vocab_sizes year = 10**10
    payload_checkpoint: Path    # a pickle that creates `payload_marker` when fully unpickled
    payload_marker: Path
    bad_key_config: Path
    bad_type_config: Path
    missing_column_dir: Path
    empty_raw_dir: Path


def write_workbook_without(path: Path, dropped: str) -> Path:
    """A one-sheet TTC-style workbook lacking column `dropped`."""
    from openpyxl import Workbook

    header = ["Report Date", "Route", "Time", "Day", "Location", "Incident", "Min Delay", "Min Gap",
              "Direction", "Vehicle"]
    row = ["2014-01-02", 505, "06:31:00", "Thursday", "Dundas and Roncesvalles", "Late Leaving Garage", 4, 8,
           "E/B", 4018]
    keep = [index for index, name in enumerate(header) if name != dropped]
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "Jan 2014"
    sheet.append([header[index] for index in keep])
    sheet.append([row[index] for index in keep])
    workbook.save(path)
    return path


def write_config_with(path: Path, section: str, key: str, value) -> Path:
    import yaml

    config = yaml.safe_load((PROJECT_ROOT / "configs" / "streetcar.yaml").read_text(encoding="utf-8"))
    config[section][key] = value
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Files:
    import keras
    import torch

    from data.vocab import BOOK_VOCABULARIES, Vocabularies
    from keras_impl.model import build_model
    from bridge.convert import keras_to_lightning

    root = tmp_path_factory.mktemp("bad-input")
    healthy, old = root / "healthy", root / "old"
    healthy.mkdir()
    old.mkdir()
    keras.utils.set_random_seed(0)
    build_model(BOOK_VOCABULARIES.sizes()).save(str(healthy / "model.keras"))
    BOOK_VOCABULARIES.save(healthy / "vocabulary.json")
    keras_to_lightning(healthy / "model.keras", healthy / "model.ckpt")
    old_vocabulary = Vocabularies(dict(BOOK_VOCABULARIES.values, year=tuple(range(2014, 2019))))
    build_model(old_vocabulary.sizes()).save(str(old / "model.keras"))
    old_vocabulary.save(old / "vocabulary.json")
    keras_to_lightning(old / "model.keras", old / "model.ckpt")

    truncated_keras = root / "truncated.keras"
    truncated_keras.write_bytes((healthy / "model.keras").read_bytes()[:2000])
    truncated_checkpoint = root / "truncated.ckpt"
    truncated_checkpoint.write_bytes((healthy / "model.ckpt").read_bytes()[:2000])
    foreign = keras.Sequential([keras.Input(shape=(3,)), keras.layers.Dense(1)])
    foreign.save(str(root / "foreign.keras"))
    BOOK_VOCABULARIES.save(root / "vocabulary.json")
    torch.save({"weights": torch.zeros(3)}, root / "plain.pt")
    torch.save({"state_dict": {"layer.weight": torch.zeros(2, 2)}, "hyper_parameters": {"hidden": 2},
                "pytorch-lightning_version": "2.6.0"}, root / "foreign.ckpt")

    untrusted = write_untrusted_models(root, healthy)

    missing_column_dir = root / "raw-missing-column"
    missing_column_dir.mkdir()
    write_workbook_without(missing_column_dir / "ttc-streetcar-delay-data-2014.xlsx", "Route")
    empty_raw_dir = root / "raw-empty"
    empty_raw_dir.mkdir()
    return Files(root=root, keras_model=healthy / "model.keras", lightning_checkpoint=healthy / "model.ckpt",
                 current_vocabulary=healthy / "vocabulary.json", old_keras_model=old / "model.keras",
                 old_checkpoint=old / "model.ckpt", truncated_keras=truncated_keras,
                 truncated_checkpoint=truncated_checkpoint, foreign_keras=root / "foreign.keras",
                 plain_torch_file=root / "plain.pt", foreign_checkpoint=root / "foreign.ckpt", **untrusted,
                 bad_key_config=write_config_with(root / "bad-key.yaml", "hyperparameters", "learnin_rate", 0.01),
                 bad_type_config=write_config_with(root / "bad-type.yaml", "hyperparameters", "batch_size", "big"),
                 missing_column_dir=missing_column_dir, empty_raw_dir=empty_raw_dir)


class _OpenOnUnpickle:
    """Unpickling this calls open(marker, "w"): the harmless stand-in for code a crafted file would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def write_untrusted_models(root: Path, healthy: Path) -> dict[str, Path]:
    """Models that load but must not be answered from, and a checkpoint that runs code when unpickled."""
    import keras
    import numpy as np
    import torch

    from data.vocab import BOOK_VOCABULARIES, Vocabularies

    shifted = Vocabularies(dict(BOOK_VOCABULARIES.values, year=tuple(range(2015, 2021))))
    shifted.save(root / "shifted-vocabulary.json")
    nan_dir = root / "nan-model"
    nan_dir.mkdir()
    model = keras.models.load_model(str(healthy / "model.keras"))
    output = model.get_layer("output")
    output.set_weights([output.get_weights()[0], np.full_like(output.get_weights()[1], np.nan)])
    model.save(str(nan_dir / "model.keras"))
    BOOK_VOCABULARIES.save(nan_dir / "vocabulary.json")
    checkpoint = torch.load(healthy / "model.ckpt", map_location="cpu", weights_only=True)
    checkpoint["state_dict"]["net.output.bias"] = torch.full_like(checkpoint["state_dict"]["net.output.bias"],
                                                                  float("nan"))
    torch.save(checkpoint, nan_dir / "model.ckpt")
    checkpoint = torch.load(healthy / "model.ckpt", map_location="cpu", weights_only=True)
    checkpoint["hyper_parameters"]["vocab_sizes"]["year"] = 10 ** 10
    torch.save(checkpoint, root / "huge.ckpt")
    payload_dir = root / "payload-out"
    payload_dir.mkdir()
    marker = payload_dir / "code-ran"
    torch.save({"state_dict": {}, "hyper_parameters": _OpenOnUnpickle(marker)}, root / "payload.ckpt")
    return {"shifted_vocabulary": root / "shifted-vocabulary.json", "nan_keras_model": nan_dir / "model.keras",
            "nan_checkpoint": nan_dir / "model.ckpt", "huge_checkpoint": root / "huge.ckpt",
            "payload_checkpoint": root / "payload.ckpt", "payload_marker": marker}


def interrupted_run_dir(files: Files, framework: str, name: str, *, vocabulary, corrupt: str | None) -> Path:
    """A run directory as a killed run leaves it: run_request.json, vocabulary.json, a damaged or foreign state."""
    from configs.loader import config_to_dict, load_config, resolve_experiment
    from dataclasses import asdict

    run_dir = files.root / name
    run_dir.mkdir()
    config = load_config()
    (run_dir / "run_request.json").write_text(json.dumps({
        "framework": framework, "config": config_to_dict(config),
        "settings": asdict(resolve_experiment(config, "5")), "sample_rows": 20000, "raw_dir": None,
        "completed": False}))
    vocabulary.save(run_dir / "vocabulary.json")
    if framework == "lightning":
        (run_dir / "checkpoints").mkdir()
        target = run_dir / "checkpoints" / "last.ckpt"
        if corrupt == "truncated":
            target.write_bytes(files.lightning_checkpoint.read_bytes()[:1500])
        else:
            shutil.copy(files.lightning_checkpoint, target)
    else:
        (run_dir / "backup").mkdir()
        shutil.copy(files.keras_model, run_dir / "backup" / "epoch-0002.weights.h5")
        metadata = {"epoch": 2, "batch": 0, "weights": "epoch-0002.weights.h5",
                    "project_state": {"callbacks": {}, "seed_generators": {}, "history": {}}}
        text = json.dumps(metadata)
        (run_dir / "backup" / "training_metadata.json").write_text(text[:25] if corrupt == "truncated" else text)
    return run_dir


# --------------------------------------------------------------------------
# The cases
# --------------------------------------------------------------------------


def trip(**change: str) -> list[str]:
    arguments = dict(TRIP)
    arguments.update({f"--{key}": value for key, value in change.items()})
    return [part for pair in arguments.items() for part in pair]


def build_cases(files: Files) -> list[Case]:
    from data.vocab import BOOK_VOCABULARIES, Vocabularies

    cases: list[Case] = []
    scorers = {"keras": ("keras_impl.score", "--model", files.keras_model, files.old_keras_model,
                         files.truncated_keras, files.foreign_keras),
               "lightning": ("lightning_impl.score", "--checkpoint", files.lightning_checkpoint,
                             files.old_checkpoint, files.truncated_checkpoint, files.plain_torch_file)}
    for framework, (module, flag, healthy, old, truncated, foreign) in scorers.items():
        model = [flag, str(healthy)]
        cases += [
            Case(f"{framework}-score-unknown-route", module, [*model, *trip(route="999")],
                 ("Route", "999", "valid: 301, 304")),
            Case(f"{framework}-score-unknown-direction", module, [*model, *trip(direction="x")],
                 ("Direction", "'x'", "valid: b, e, n, s, w")),
            Case(f"{framework}-score-hour-24", module, [*model, *trip(hour="24")], ("hour 24", "0-23")),
            Case(f"{framework}-score-hour-negative", module, [*model, *trip(hour="-1")], ("hour -1", "0-23")),
            Case(f"{framework}-score-year-2021", module, [*model, *trip(date="2021-03-01")],
                 ("2021-03-01", "trained years", "2014", "2019")),
            Case(f"{framework}-score-missing-file", module, [flag, str(files.root / "nowhere" / healthy.name),
                                                            *trip()], ("not found", str(files.root / "nowhere"))),
            Case(f"{framework}-score-corrupt-file", module, [flag, str(truncated), *trip()], (str(truncated),)),
            Case(f"{framework}-score-another-model", module, [flag, str(foreign), *trip()], (str(foreign),)),
            Case(f"{framework}-score-older-vocabulary", module,
                 [flag, str(old), "--vocabulary", str(files.current_vocabulary), *trip()],
                 ("differs from the vocabulary saved with the model", str(old.parent), "year")),
            # Same sizes, other values: 2020 would be scored as 2019.
            Case(f"{framework}-score-other-vocabulary", module,
                 [flag, str(healthy), "--vocabulary", str(files.shifted_vocabulary), *trip()],
                 ("--vocabulary", str(files.shifted_vocabulary), "differs from the vocabulary saved with the model",
                  "year")),
            Case(f"{framework}-score-nan-model", module,
                 [flag, str(files.nan_keras_model if framework == "keras" else files.nan_checkpoint), *trip()],
                 ("p(delay) = nan", "not a probability in [0, 1]")),
        ]
    # lightning_impl.score given a Keras file and a checkpoint of another LightningModule.
    cases += [
        Case("lightning-score-keras-file", "lightning_impl.score",
             ["--checkpoint", str(files.keras_model), *trip()], (str(files.keras_model),)),
        Case("lightning-score-foreign-checkpoint", "lightning_impl.score",
             ["--checkpoint", str(files.foreign_checkpoint), *trip()],
             (str(files.foreign_checkpoint), "not a streetcar model checkpoint")),
        Case("keras-score-checkpoint-file", "keras_impl.score",
             ["--model", str(files.lightning_checkpoint), *trip()], (str(files.lightning_checkpoint), ".ckpt")),
        # Checked against the saved weights before the network is built (it would allocate 400 GB).
        Case("lightning-score-huge-vocab-sizes", "lightning_impl.score",
             ["--checkpoint", str(files.huge_checkpoint), *trip()],
             (str(files.huge_checkpoint), "vocab_sizes.year = 10000000000", "(6, 10)")),
        # An explicit torch.load(weights_only=True) wins over the variable that forces full unpickling.
        Case("lightning-score-pickle-payload", "lightning_impl.score",
             ["--checkpoint", str(files.payload_checkpoint), *trip()],
             ("refused checkpoint", str(files.payload_checkpoint), "could run code"),
             empty=(files.payload_marker.parent,), env={"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}),
    ]

    convert_out = files.root / "convert-out"
    convert_out.mkdir()
    convert = "lightning_impl.convert"
    cases += [
        Case("convert-missing-keras", convert, ["--keras", str(files.root / "nowhere.keras"),
                                                "--out", str(convert_out / "a.ckpt")],
             ("not found", "nowhere.keras"), empty=(convert_out,)),
        Case("convert-corrupt-keras", convert, ["--keras", str(files.truncated_keras), "--out",
                                                str(convert_out / "b.ckpt")],
             (str(files.truncated_keras),), empty=(convert_out,)),
        Case("convert-another-keras-model", convert, ["--keras", str(files.foreign_keras), "--out",
                                                      str(convert_out / "c.ckpt")],
             (str(files.foreign_keras), "not this project's streetcar model"), empty=(convert_out,)),
        Case("convert-older-vocabulary", convert, ["--keras", str(files.old_keras_model), "--vocabulary",
                                                   str(files.current_vocabulary), "--out", str(convert_out / "d.ckpt")],
             ("does not fit", str(files.old_keras_model)), empty=(convert_out,)),
        Case("convert-corrupt-checkpoint", convert, ["--lightning", str(files.truncated_checkpoint), "--out",
                                                     str(convert_out / "e.keras")],
             (str(files.truncated_checkpoint),), empty=(convert_out,)),
        Case("convert-plain-torch-file", convert, ["--lightning", str(files.plain_torch_file), "--out",
                                                   str(convert_out / "f.keras")],
             (str(files.plain_torch_file),), empty=(convert_out,)),
        Case("convert-pickle-payload", convert, ["--lightning", str(files.payload_checkpoint), "--out",
                                                 str(convert_out / "g.keras")],
             ("refused checkpoint", str(files.payload_checkpoint)), empty=(convert_out, files.payload_marker.parent),
             env={"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}),
        Case("convert-huge-vocab-sizes", convert, ["--lightning", str(files.huge_checkpoint), "--out",
                                                   str(convert_out / "h.keras")],
             ("vocab_sizes.year = 10000000000",), empty=(convert_out,)),
    ]

    for framework in ("keras", "lightning"):
        module = f"{framework}_impl.train"
        out_dir = files.root / f"{framework}-runs"
        out_dir.mkdir()
        common = ["--experiment", "0", "--out-dir", str(out_dir)]
        cases += [
            Case(f"{framework}-train-config-unknown-key", module, ["--config", str(files.bad_key_config), *common],
                 ("hyperparameters.learnin_rate", str(files.bad_key_config), "valid keys"), empty=(out_dir,)),
            Case(f"{framework}-train-config-wrong-type", module, ["--config", str(files.bad_type_config), *common],
                 ("hyperparameters.batch_size", "'big'", "int", str(files.bad_type_config)), empty=(out_dir,)),
            Case(f"{framework}-train-missing-column", module,
                 ["--raw-dir", str(files.missing_column_dir), *common],
                 ("ttc-streetcar-delay-data-2014.xlsx", "missing column 'Route'", "required:"), empty=(out_dir,)),
            Case(f"{framework}-train-empty-raw-folder", module, ["--raw-dir", str(files.empty_raw_dir), *common],
                 ("no raw workbooks found", str(files.empty_raw_dir)), empty=(out_dir,)),
            # One row cannot fill train, valid and test (Lightning used to train nothing and exit 0).
            Case(f"{framework}-train-sample-rows-1", module, [*common, "--sample-rows", "1"],
                 ("--sample-rows 1", "split(s) empty", "at least one row in each of train, valid and test"),
                 empty=(out_dir,), needs_real_data=True, progress_prefix="[data] "),
        ]
        corrupt_dir = interrupted_run_dir(files, framework, f"{framework}-corrupt-run",
                                          vocabulary=BOOK_VOCABULARIES, corrupt="truncated")
        changed_dir = interrupted_run_dir(files, framework, f"{framework}-older-vocabulary-run",
                                          vocabulary=Vocabularies(dict(BOOK_VOCABULARIES.values,
                                                                       year=tuple(range(2014, 2019)))),
                                          corrupt=None)
        corrupt_name = "last.ckpt" if framework == "lightning" else "training_metadata.json"
        cases += [
            Case(f"{framework}-resume-corrupt-checkpoint", module, ["--resume", str(corrupt_dir)],
                 (corrupt_name, str(corrupt_dir)), needs_real_data=True, progress_prefix="[data] "),
            Case(f"{framework}-resume-older-vocabulary", module, ["--resume", str(changed_dir)],
                 ("vocabularies differ", "year", str(changed_dir)), needs_real_data=True,
                 progress_prefix="[data] "),
            Case(f"{framework}-resume-not-a-run-dir", module, ["--resume", str(files.root / "raw-empty")],
                 ("run_request.json", str(files.root / "raw-empty"))),
        ]

    for name, arguments, fragments in [
        ("prepare-config-unknown-key", ["--config", str(files.bad_key_config)],
         ("hyperparameters.learnin_rate", str(files.bad_key_config))),
        ("prepare-config-wrong-type", ["--config", str(files.bad_type_config)],
         ("hyperparameters.batch_size", "'big'", "int")),
        ("prepare-missing-column", ["--raw-dir", str(files.missing_column_dir)],
         ("ttc-streetcar-delay-data-2014.xlsx", "missing column 'Route'", "required:")),
        ("prepare-empty-raw-folder", ["--raw-dir", str(files.empty_raw_dir)],
         ("no raw workbooks found", str(files.empty_raw_dir))),
    ]:
        cache_dir = files.root / f"cache-{name}"
        cache_dir.mkdir()
        cases.append(Case(name, "data.prepare", [*arguments, "--cache-dir", str(cache_dir)], fragments,
                          empty=(cache_dir,)))
    return cases


CASE_NAMES = [
    *(f"{framework}-score-{mistake}" for framework in ("keras", "lightning")
      for mistake in ("unknown-route", "unknown-direction", "hour-24", "hour-negative", "year-2021", "missing-file",
                      "corrupt-file", "another-model", "older-vocabulary", "other-vocabulary", "nan-model")),
    "lightning-score-keras-file", "lightning-score-foreign-checkpoint", "keras-score-checkpoint-file",
    "lightning-score-huge-vocab-sizes", "lightning-score-pickle-payload",
    "convert-missing-keras", "convert-corrupt-keras", "convert-another-keras-model", "convert-older-vocabulary",
    "convert-corrupt-checkpoint", "convert-plain-torch-file", "convert-pickle-payload", "convert-huge-vocab-sizes",
    *(f"{framework}-{mistake}" for framework in ("keras", "lightning")
      for mistake in ("train-config-unknown-key", "train-config-wrong-type", "train-missing-column",
                      "train-empty-raw-folder", "train-sample-rows-1", "resume-corrupt-checkpoint",
                      "resume-older-vocabulary",
                      "resume-not-a-run-dir")),
    "prepare-config-unknown-key", "prepare-config-wrong-type", "prepare-missing-column", "prepare-empty-raw-folder",
]


@pytest.fixture(scope="module")
def outcomes(files):
    """Run every case once (PARALLEL_PROCESSES at a time); {name: (case, CompletedProcess or None)}."""
    cases = {case.name: case for case in build_cases(files)}
    missing = sorted(set(CASE_NAMES) ^ set(cases))
    if missing:
        raise AssertionError(f"CASE_NAMES and build_cases disagree on {missing}")
    runnable = [case for case in cases.values() if real_data_available() or not case.needs_real_data]
    with ThreadPoolExecutor(PARALLEL_PROCESSES) as pool:
        completed = dict(zip((case.name for case in runnable),
                             pool.map(lambda case: run_cli(case.module, case.arguments, env=case.env, timeout=300),
                                      runnable)))
    return {name: (case, completed.get(name)) for name, case in cases.items()}


@pytest.mark.parametrize("name", CASE_NAMES)
def test_bad_input_is_one_clear_line_exit_2_and_leaves_nothing(name, outcomes):
    case, completed = outcomes[name]
    if completed is None:
        pytest.skip("needs the real TTC workbooks (the run's data is loaded before its state is checked)")
    line = assert_one_error_line(completed, *case.fragments, progress_prefix=case.progress_prefix)
    assert len(line) < 1500, f"the error line is not a short message: {line[:300]}..."
    for folder in case.empty:
        assert files_under(folder) == [], f"{case.name} left files behind in {folder}: {files_under(folder)}"
    assert completed.stdout == "", f"stdout should be empty on an error, got {completed.stdout[:300]!r}"
