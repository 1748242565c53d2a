"""Suite files: grids, validation on load (before anything runs), `list suites`, `run --dry-run`.

Nothing here trains: every test stops at loading, resolving or planning.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from genbench.cli import main
from genbench.errors import ConfigError, GenbenchError, UnknownNameError
from genbench.harness.recorder import RunRecorder
from genbench.harness.spec import resolve_all, run_config
from genbench.harness.store import COMPLETE_METRIC, RESULTS_FILE
from genbench.harness.suites import SuiteFile, load_suite, parse_suite
from genbench.registry import SUITES

BUILTIN_RUN_COUNTS = {"quick": 10, "diffusion": 8, "likelihood": 15, "vae-zoo": 52, "gan-losses": 150, "standard": 50}


def write_suite(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_builtin_suite_files_load_and_resolve_unchanged():
    for name, count in BUILTIN_RUN_COUNTS.items():
        suite = load_suite(name)  # resolves every run: a broken built-in suite fails here
        assert len(suite.runs) == count, name
        assert suite.description


GRID = """
description = "a grid"
[defaults]
device = "cpu"
lr = 2e-3

[[runs]]
model = "ae"
steps = 5

[[grid]]
dataset = ["digits?size=8", "digits"]
model = ["vae", "ae"]
steps = [10, 20]
precision = ["fp32", "bf16"]
seeds = [0, 1]
batch_size = 32
model_options = { latent_dim = 4 }
[grid.per_model.vae]
model_options = { likelihood = "gaussian" }
"""


def test_grid_is_the_cross_product_in_the_documented_order(tmp_path):
    suite = parse_suite("g", write_suite(tmp_path, GRID))
    assert len(suite.runs) == 1 + 2 * 2 * 2 * 2 * 2
    first, grid = suite.runs[0], suite.runs[1:]
    assert (first.model, first.steps, first.lr) == ("ae", 5, 2e-3)  # [[runs]] come first, defaults apply
    assert suite.origins[0] == "[[runs]] entry 1" and set(suite.origins[1:]) == {"[[grid]] entry 1"}
    keys = [(c.dataset, c.model, c.steps, c.precision, c.seed) for c in grid]
    assert keys[:3] == [("digits?size=8", "vae", 10, "fp32", 0), ("digits?size=8", "vae", 10, "fp32", 1),
                        ("digits?size=8", "vae", 10, "bf16", 0)]  # dataset outermost, seed innermost
    assert keys[-1] == ("digits", "ae", 20, "bf16", 1) and len(set(keys)) == len(keys)
    assert all(c.batch_size == 32 and c.lr == 2e-3 for c in grid)  # scalars reach every run
    for c in grid:  # per_model merges over the entry's options, key by key
        expected = {"latent_dim": 4, "likelihood": "gaussian"} if c.model == "vae" else {"latent_dim": 4}
        assert c.model_options == expected
    assert len(resolve_all(suite.runs, "g")) == 33


def test_per_objective_options_reach_only_that_objective(tmp_path):
    path = write_suite(tmp_path, """
[[grid]]
model = "gan"
dataset = "toy2d-ring8"
objective = ["wgan", "hinge"]
model_options = { arch = "mlp" }
trainer_options = { monitor_every = 100 }
[grid.per_objective.wgan]
trainer_options = { n_critic = 5 }
""")
    runs = {c.objective: c for c in parse_suite("p", path).runs}
    assert runs["wgan"].trainer_options == {"monitor_every": 100, "n_critic": 5}
    assert runs["hinge"].trainer_options == {"monitor_every": 100}


@pytest.mark.parametrize("text, match", [
    ('grids = 1\n[[runs]]\nmodel = "ae"', r"top level: unknown key 'grids'. Did you mean 'grid'"),
    ('[defaults]\nstepz = 3\n[[runs]]\nmodel = "ae"', r"\[defaults\]: unknown key 'stepz'. Did you mean 'steps'"),
    ('[[runs]]\nmodel = "ae"\n[[runs]]\nmodel = "ae"\nseed = 1\nmodel_option = {}',
     r"\[\[runs\]\] entry 2: unknown key 'model_option'. Did you mean 'model_options'"),
    ('[[grid]]\nmodel = ["ae"]\nper_modle = {}', r"\[\[grid\]\] entry 1: unknown key 'per_modle'. Did you mean 'per_model'"),
    ('[[grid]]\nmodel = ["ae", "vae"]\n[grid.per_model.vae]\nmodel_optins = {}',
     r"\[per_model.vae\]: unknown key 'model_optins'. Did you mean 'model_options'"),
    ('[[grid]]\nmodel = ["ae", "vae"]\n[grid.per_model.vea]\nmodel_options = {}',
     r"\[per_model.vea\] names no model of this grid. Did you mean 'vae'"),
    ('[[runs]]\nmodel = "ae"\n[[runs]]\nseed = 1\nmodel = "ae"\n[[grid]]\nmodel = ["vae", "ae"]\nseeds = [1]',
     r"\[\[runs\]\] entry 2 and \[\[grid\]\] entry 1 both give the run ae / recon / digits / seed 1"),
    ('description = "nothing to run"', "no \\[\\[runs\\]\\] or \\[\\[grid\\]\\] entries"),
    ('[[grid]]\nseeds = [0, 1]', r"\[\[grid\]\] entry 1 names no model: add e.g. model = \"vae\""),
    ('[[runs]]\nmodel = "ae"\nsteps = 3\n[runs', "is not valid TOML"),
])
def test_bad_structure_is_rejected_with_suggestions(tmp_path, text, match):
    with pytest.raises(ConfigError, match=match):
        parse_suite("bad", write_suite(tmp_path, text))


@pytest.mark.parametrize("entry, match", [
    ('model = "vea"', r"entry 3 \(model 'vea'.*\): Unknown model 'vea'. Did you mean 'vae'"),
    ('model = "vae"\nobjective = "elbow"', r"entry 3 .*Unknown .* 'elbow'. Did you mean 'elbo'"),
    ('model = "ae"\nobjective = "elbo"', r"entry 3 .*Objective 'elbo' trains vae models"),
    ('model = "vae"\ndataset = "digts"', r"entry 3 .*Unknown dataset 'digts'. Did you mean 'digits'"),
    ('model = "vae"\ndataset = "digits?sise=8"', r"entry 3 .*Unknown option 'sise' for dataset 'digits'. Did you mean 'size'"),
    ('model = "vae"\nmodel_options = { latnt_dim = 2 }', r"entry 3 .*Unknown option 'latnt_dim' for model 'vae'. Did you mean 'latent_dim'"),
    ('model = "vae"\nobjective_options = { bta = 2.0 }', r"entry 3 .*Unknown option 'bta' for objective 'elbo'. Did you mean 'beta'"),
    ('model = "vae"\ntrainer_options = { n_critic = 5 }', r"entry 3 .*Unknown option 'n_critic' for trainer"),
])
def test_unknown_names_and_options_name_the_entry(tmp_path, entry, match):
    text = f'[defaults]\ndevice = "cpu"\n[[runs]]\nmodel = "ae"\n[[runs]]\nmodel = "vae"\n[[runs]]\nseed = 7\n{entry}\n'
    path = write_suite(tmp_path, text)
    with pytest.raises(ConfigError, match=match) as exc:
        parse_suite("bad", path)
    assert str(path) in str(exc.value)
    if "Unknown model" in match:
        assert isinstance(exc.value, UnknownNameError)  # the registry's error class survives the context


@pytest.mark.parametrize("line, match", [
    ('steps = "400"', r"key 'steps': must be an integer; got '400' \(a string\). Write it as e.g. steps = 500"),
    ("steps = 0", r"key 'steps': must be >= 1; got 0"),
    ("steps = 1.5", r"key 'steps': must be an integer; got 1.5"),
    ("batch_size = true", r"key 'batch_size': must be an integer; got True \(a boolean\)"),
    ('lr = "fast"', r"key 'lr': must be a number; got 'fast'"),
    ("lr = -1e-3", r"key 'lr': must be > 0; got -0.001"),
    ("adam_beta2 = 1.0", r"key 'adam_beta2': must be < 1; got 1.0"),
    ("eval_batch = 100000", r"key 'eval_batch': must be <= 65,536; got 100000"),
    ("seeds = [0, 4294967296]", r"key 'seeds': must be <= 4,294,967,295; got 4294967296"),
    ('seeds = [0, "1"]', r"key 'seeds': must be a non-empty list of distinct integers"),
    ("seeds = 3", r"key 'seeds': must be a non-empty list"),
    ("seeds = [0, 0]", r"key 'seeds': must be a non-empty list of distinct"),
    ('precision = "fp64"', r"key 'precision': must be one of 'fp32', 'bf16', 'fp16'; got 'fp64'"),
    ("model_options = 3", r"key 'model_options': must be a table"),
    ('dataset = ["digits", "shapes"]', r"key 'dataset': a list is crossed only in a \[\[grid\]\] entry"),
])
def test_value_types_are_checked_with_file_entry_and_key(tmp_path, line, match):
    path = write_suite(tmp_path, f'[[runs]]\nmodel = "ae"\n[[runs]]\nmodel = "vae"\n{line}\n')
    with pytest.raises(ConfigError, match=match) as exc:
        parse_suite("bad", path)
    assert f"Suite file {path}, [[runs]] entry 2, key" in str(exc.value)


@pytest.mark.parametrize("line, match", [
    ("lr = [1e-3, 2e-3]", r"\[\[grid\]\] entry 1, key 'lr': must be a number; got \[0.001, 0.002\] \(an array\)"),
    ("steps = []", r"key 'steps': a grid axis must be a non-empty list without repeats"),
    ('precision = ["fp32", "fp8"]', r"key 'precision': must be one of .*; got 'fp8'"),
    ('model = ["vae", "vae"]', r"key 'model': a grid axis must be a non-empty list without repeats"),
])
def test_grid_axes_are_checked_item_by_item(tmp_path, line, match):
    text = f'[[grid]]\n{line}\n' if line.startswith("model") else f'[[grid]]\nmodel = ["vae"]\n{line}\n'
    with pytest.raises(ConfigError, match=match):
        parse_suite("bad", write_suite(tmp_path, text))


def test_typo_in_the_12th_run_fails_before_the_first_starts(tmp_path, capsys):
    entries = "".join(f'[[runs]]\nmodel = "ae"\nseed = {i}\n' for i in range(11))
    path = write_suite(tmp_path, entries + '[[runs]]\nmodel = "vae"\nmodel_options = { archh = "mlp" }\n')
    out = tmp_path / "out"
    assert main(["run", "--suite", str(path), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "[[runs]] entry 12" in err and "Did you mean 'arch'" in err and "Traceback" not in err
    assert not out.exists()  # nothing ran, nothing was created


DRY = """
[defaults]
model = "vae"
dataset = "digits?size=8"
device = "cpu"
steps = 30
[[grid]]
seeds = [0, 1, 2]
model_options = { arch = "conv" }
"""


def test_dry_run_prints_the_plan_and_marks_complete_runs(tmp_path, capsys):
    path = write_suite(tmp_path, DRY)
    out = tmp_path / "out"
    out.mkdir()
    runs = resolve_all(parse_suite("dry", path).runs, "dry")
    recorder = RunRecorder(runs[1], out / RESULTS_FILE, "torch")  # seed 1 finished in an earlier session
    recorder.emit(COMPLETE_METRIC, 1.0, "bool")
    recorder.flush()
    size = (out / RESULTS_FILE).stat().st_size

    assert main(["run", "--suite", str(path), "--out", str(out), "--dry-run"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == ["#", "model", "objective", "dataset", "seed", "steps", "precision", "status"]
    assert [line.split()[:7] for line in lines[1:4]] == [
        [str(i + 1), "vae[arch=conv]", "elbo", "digits?size=8", str(i), "30", "fp32"] for i in range(3)]
    assert [line.endswith("to run") for line in lines[1:4]] == [True, False, True]
    assert lines[2].endswith("complete (skip)")
    assert lines[4].startswith(f"3 run(s) planned in {out}: 2 to run, 1 already complete (skipped).")
    assert (out / RESULTS_FILE).stat().st_size == size and sorted(p.name for p in out.iterdir()) == [RESULTS_FILE]


def test_dry_run_into_a_new_folder_creates_nothing(tmp_path, capsys):
    out = tmp_path / "new"
    assert main(["run", "--suite", str(write_suite(tmp_path, DRY)), "--out", str(out), "--dry-run"]) == 0
    assert f"3 run(s) planned in {out} (a new folder): 3 to run" in capsys.readouterr().out
    assert not out.exists()


def test_list_suites_prints_run_count_and_description(tmp_path, capsys):
    broken = write_suite(tmp_path, "[defaults]\nstepz = 3\n", "broken.toml")
    SUITES.register("test-broken", SuiteFile("test-broken", broken))
    try:
        assert main(["list", "suites"]) == 0
    finally:
        SUITES.unregister("test-broken")
    rows = {line.split("\t")[0]: line.split("\t")[1:] for line in capsys.readouterr().out.splitlines()}
    for name, count in BUILTIN_RUN_COUNTS.items():
        assert rows[name][0] == f"{count} runs" and rows[name][1] == load_suite(name).description
    assert rows["test-broken"][0] == "invalid" and "Did you mean 'steps'" in rows["test-broken"][1]


def test_unknown_suite_name_and_missing_file(tmp_path):
    with pytest.raises(UnknownNameError, match="Did you mean 'quick'"):
        load_suite("quik")
    with pytest.raises(GenbenchError, match="does not exist"):
        load_suite(str(tmp_path / "missing.toml"))


def test_a_renamed_option_in_a_suite_names_file_entry_and_the_new_name(tmp_path):
    path = write_suite(tmp_path, '[[runs]]\nmodel = "gan"\n[[runs]]\nmodel = "gan"\nseed = 1\n'
                                 'trainer_options = { eval_every = 50 }\n')
    with pytest.raises(ConfigError, match=r"s.toml, \[\[runs\]\] entry 2 \(model 'gan'.*\): Unknown option "
                                          r"'eval_every' for trainer 'adversarial': renamed to 'monitor_every'"):
        parse_suite("bad", path)


def test_identical_ad_hoc_configs_are_refused_by_the_same_check():
    config = run_config({"model": "ae", "device": "cpu"}, "test")
    with pytest.raises(ConfigError, match=r"^Run 1 and Run 2 both give the run ae / recon / digits / seed 0"):
        resolve_all([config, config])


GAN_LOSSES = ["minimax", "non-saturating", "lsgan", "wgan", "wgan-gp", "dragan", "hinge", "ebgan", "began", "ragan"]


def test_gan_losses_grids_give_every_loss_on_every_dataset_at_one_setting():
    """The suite's two grids expand to the 30 (dataset, loss) settings it listed by hand, in
    that order, 5 seeds each; only WGAN and WGAN-GP take n_critic = 5."""
    suite = load_suite("gan-losses")
    datasets = ("toy2d-ring8", "toy2d-grid25", "digits")
    expected = [(d, loss, s) for d in datasets for loss in GAN_LOSSES for s in range(5)]
    assert [(c.dataset, c.objective, c.seed) for c in suite.runs] == expected
    for c in suite.runs:
        points = c.dataset != "digits"
        critic = {"n_critic": 5} if c.objective in ("wgan", "wgan-gp") else {}
        assert (c.model, c.batch_size, c.log_every) == ("gan", 64, 20)
        assert (c.steps, c.lr, c.eval_samples) == ((800, 0.001, 2500) if points else (200, 0.0002, 1000))
        assert c.model_options == ({"arch": "mlp", "width": 128, "latent_dim": 2} if points else
                                   {"arch": "dcgan", "width": 32, "d_norm": "none"})
        assert c.trainer_options == ({"monitor_every": 100, "monitor_samples": 1000} if points else
                                     {"monitor_every": 50, "monitor_samples": 500}) | critic


VAE_ZOO = [  # (model, objective, model_options, objective_options): what the suite listed per dataset
    ("ae", None, {"latent_dim": 10}, {}),
    ("ae", "denoise", {"latent_dim": 10}, {"corruption": "mask", "level": 0.25}),
    ("sparse-ae", None, {}, {}),
    ("vae", None, {"latent_dim": 10}, {}),
    ("vae", "beta-vae", {"latent_dim": 10}, {"beta": 4.0}),
    ("vae", "iwae", {"latent_dim": 10}, {"k": 5}),
    ("hvae", None, {}, {"warmup_steps": 500}),
    ("gumbel-vae", None, {}, {}),
    ("vq-vae", None, {"channels": 32, "res_blocks": 1}, {}),
    ("vae-gan", None, {"latent_dim": 10}, {}),
    ("vae", None, {"latent_dim": 10}, {"beta": 0.5}),
    ("vae", None, {"latent_dim": 10}, {"beta": 2.0}),
    ("vae", None, {"latent_dim": 10}, {"beta": 8.0}),
]


def test_vae_zoo_grids_give_every_model_on_both_datasets():
    """The suite's grids expand to the 13 runs it listed by hand per dataset, 2 seeds each."""
    suite = load_suite("vae-zoo")
    key = lambda m, o, mo, oo, d, s: (m, o, d, s, tuple(sorted(mo.items())), tuple(sorted(oo.items())))  # noqa: E731
    got = [key(c.model, c.objective, c.model_options, c.objective_options, c.dataset, c.seed) for c in suite.runs]
    expected = [key(*entry, d, s) for d in ("digits", "shapes") for entry in VAE_ZOO for s in (0, 1)]
    assert Counter(got) == Counter(expected) and len(got) == 52
    assert {(c.steps, c.batch_size, c.lr, c.log_every, c.eval_samples, c.iwae_k) for c in suite.runs} == {
        (1500, 64, 1e-3, 25, 2000, 64)}
