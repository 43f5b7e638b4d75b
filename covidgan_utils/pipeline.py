"""Run the numbered notebooks headless with papermill, in order, into RUN/executed/.

``python -m covidgan_utils run --profile demo`` is the one command behind ``make demo``.
The run's progress lives in RUN/pipeline.json, so ``--resume`` continues where a run stopped and a
finished run is never silently overwritten.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from . import config, runs, settings
from .files import RunLock, RunLockError, StorageError, read_json, write_json

STATE = "pipeline.json"
HEADLESS_ENV = {"COVIDGAN_PROGRESS": "0", "COVIDGAN_INTERACTIVE": "0"}  # nobody watches a headless run


class PipelineError(RuntimeError):
    """A notebook failed or the run directory is not in a state to run."""


def notebooks_dir() -> Path:
    return config.repo_root() / "notebooks"


def available_notebooks() -> list[Path]:
    """The numbered notebooks (NN_name.ipynb) in order."""
    return sorted(p for p in notebooks_dir().glob("[0-9][0-9]_*.ipynb"))


DEFAULT_LAST = 6  # notebooks after 06 (07: sweeps) start other runs, so they run only when named


def select(spec: str | None) -> list[Path]:
    """Notebooks named by a comma list of numbers or names ("01,03"); 01-06 when spec is empty."""
    books = available_notebooks()
    if not spec:
        return [b for b in books if int(b.name[:2]) <= DEFAULT_LAST]
    chosen = []
    for token in (t.strip() for t in spec.split(",") if t.strip()):
        match = [b for b in books if b.name.startswith(token.zfill(2) + "_") or b.stem == token]
        if not match:
            names = ", ".join(b.stem for b in books)
            raise PipelineError(f"No notebook matches {token!r}. Available: {names}.")
        chosen += [m for m in match if m not in chosen]
    return sorted(chosen)


def declared_parameters(notebook: Path) -> set[str]:
    """Names assigned in the notebook's `parameters` cell."""
    import papermill as pm

    return set(pm.inspect_notebook(str(notebook)).keys())


def _run_unlocked(
    profile: str = "demo",
    data_dir: str | None = None,
    run_dir: str | None = None,
    notebooks: str | None = None,
    params: dict | None = None,
    resume: bool = False,
    overwrite: bool = False,
    again: bool = False,
) -> dict:
    """Execute the selected notebooks in order; returns the run state (per-notebook status and seconds)."""
    import papermill as pm

    params = dict(params or {})
    cfg = config.resolve(profile=profile, data_dir=data_dir, run_dir=run_dir, claim=False)
    run_path = cfg.run_dir
    state_path = run_path / STATE
    books = select(notebooks)
    # notebook-only parameters (07's study options) may differ between the sessions of one run; run settings may not
    wanted = {"profile": profile, "data_dir": data_dir,
              "params": {k: v for k, v in params.items() if settings.is_run_setting(k)}}
    if state_path.exists() and not overwrite:
        state = read_json(state_path)
        if not resume:
            raise PipelineError(
                f"Run directory {config.rel(run_path)} already holds a run ({_done_list(state)}). "
                "Use --resume to continue it, --overwrite to start over, or choose another --run-dir."
            )
        if {k: state.get(k) for k in wanted} != wanted:
            raise PipelineError(
                f"Run directory {config.rel(run_path)} was started with other settings "
                f"({ {k: state.get(k) for k in wanted} }). Use --overwrite to start over or another --run-dir."
            )
        runs.claim(run_path)
    else:
        runs.claim(run_path)
        if overwrite:
            runs.clear(run_path)
        state = {**wanted, "notebooks": {}}
    run_path.mkdir(parents=True, exist_ok=True)
    write_json(state_path, state)
    executed = run_path / "executed"
    executed.mkdir(exist_ok=True)
    env_before = {name: os.environ.get(name) for name in HEADLESS_ENV}
    os.environ.update(HEADLESS_ENV)  # the kernels inherit it: no progress bars, static figures instead of widgets
    try:
        pending = [b for b in books if not _skipped(state, b, again)]
        if cfg.uses_phantoms and any(b.name[:2] in PHANTOM_READERS for b in pending):
            _draw_phantoms(profile, data_dir, run_dir, params, state, state_path)
        for i, book in enumerate(books, 1):
            name = book.stem
            if _skipped(state, book, again):
                print(f"[{i}/{len(books)}] {name}: already done, skipped (resume)")
                continue
            declared = declared_parameters(book)
            given = {"profile": profile, "data_dir": data_dir, "run_dir": str(run_dir) if run_dir else None, **params}
            inject = {k: v for k, v in given.items() if k in declared}
            print(f"[{i}/{len(books)}] {name} ...", end="", flush=True)
            start = time.perf_counter()
            out = executed / book.name
            partial = executed / f".{book.stem}.partial.ipynb"
            failed = executed / f"{book.stem}.failed.ipynb"
            try:
                pm.execute_notebook(
                    str(book), str(partial), parameters=inject, kernel_name="python3",
                    cwd=str(notebooks_dir()), progress_bar=False,
                    extra_arguments=["--log-level=ERROR"],  # the kernel's start-up notices are not results
                )
            except pm.PapermillExecutionError as exc:
                seconds = time.perf_counter() - start
                if partial.exists():
                    partial.replace(failed)
                state["notebooks"][name] = {"status": "failed", "seconds": round(seconds, 1), "cell": exc.exec_count}
                write_json(state_path, state)
                print(" FAILED", flush=True)
                raise PipelineError(
                    f"{book.name} failed in cell [{exc.exec_count}] after {seconds:.0f} s: {exc.ename}: {exc.evalue}\n"
                    f"The executed notebook with the traceback: {config.rel(failed)}"
                ) from None
            partial.replace(out)
            failed.unlink(missing_ok=True)
            seconds = time.perf_counter() - start
            state["notebooks"][name] = {"status": "done", "seconds": round(seconds, 1), "finished": _now(),
                                        "load_average": _load_average(), "cpus": os.cpu_count()}
            write_json(state_path, state)
            print(f" done in {_fmt(seconds)}", flush=True)
    finally:
        for name, value in env_before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    total = sum(state["notebooks"].get(b.stem, {}).get("seconds", 0) for b in books)
    drawing = state.get("phantoms", {}).get("seconds", 0)
    also = f" (and {_fmt(drawing)} drawing phantoms)" if drawing >= 1 else ""
    print(f"All {len(books)} notebook(s) done; total {_fmt(total)}{also}. Executed notebooks: {config.rel(executed)}")
    return state


def check_parameters(params: dict, books: list[Path]) -> dict:
    """``-p`` values checked before anything is written: each must be a parameter of a selected notebook, in range."""
    declared = set().union(*(declared_parameters(b) for b in books)) if books else set()
    unknown = sorted(k for k in params if k not in declared)
    if unknown:
        raise PipelineError(
            f"Parameter(s) {unknown} are not parameters of any selected notebook "
            f"({', '.join(b.stem for b in books)}); their parameters: {', '.join(sorted(declared - {'profile', 'data_dir', 'run_dir'}))}."
        )
    try:
        return settings.check_all(params)
    except settings.SettingError as exc:
        raise PipelineError(f"{exc}\nNothing was written.") from None


def run(profile: str = "demo", data_dir=None, run_dir=None, notebooks=None, params=None, resume=False, overwrite=False,
        again: bool = False) -> dict:
    """Execute the selected notebooks in order, holding the run directory's lock; returns the run state.

    Parameters, the run directory and the data folder are checked before anything is written. ``again`` (with
    ``resume``) executes the selected notebooks even where they are done (notebook 07 after new studies).
    """
    if again and not resume:
        raise PipelineError("--again reruns finished notebooks of an existing run: use it with --resume.")
    try:
        params = check_parameters(dict(params or {}), select(notebooks))
        cfg = config.resolve(profile=profile, data_dir=data_dir, run_dir=run_dir, claim=False)
        # -p external_dir is checked against the run directory before anything is written (notebook 05 reads it)
        config.external_path(params.get("external_dir", cfg.external_dir), cfg.run_dir, cfg.data_dir)
        with RunLock(cfg.run_dir, what=f"'covidgan run --profile {profile}'"):
            state = _run_unlocked(profile, data_dir, run_dir, notebooks, params, resume, overwrite, again)
            for seed, sub in gan_seed_runs(cfg, select(notebooks)):
                _run_gan_seed(profile, data_dir, sub, seed, select(notebooks), params)
            return state
    except (RunLockError, StorageError, settings.SettingError, runs.RunDirError) as exc:
        raise PipelineError(str(exc)) from None


def _skipped(state: dict, book: Path, again: bool) -> bool:
    """True when the run has already done this notebook and is not asked to run it again."""
    return state["notebooks"].get(book.stem, {}).get("status") == "done" and not again


PHANTOM_READERS = ("01", "02", "03", "04", "05", "06")  # the notebooks that read a phantom set on phantom runs


def _draw_phantoms(profile, data_dir, run_dir, params: dict, state: dict, state_path: Path) -> None:
    """Every phantom set the notebooks read, drawn once before them (phantoms.draw_all), in two processes where
    two cores are free; the seconds are the run's, recorded as state["phantoms"]."""
    from . import phantoms

    setting_params = {k: v for k, v in params.items() if k in settings.run_setting_names()}  # e.g. phantom_seed
    cfg = config.resolve(profile=profile, data_dir=data_dir, run_dir=run_dir, claim=False, **setting_params)
    start = time.perf_counter()
    print("[phantoms] drawing the sets the notebooks read (once; reused after) ...", end="", flush=True)
    phantoms.draw_all(cfg, workers=min(2, os.cpu_count() or 1))
    seconds = time.perf_counter() - start
    state["phantoms"] = {"seconds": round(seconds, 1), "finished": _now(), "load_average": _load_average()}
    write_json(state_path, state)
    print(f" done in {_fmt(seconds)}", flush=True)


GAN_STAGES = ("02", "03", "04", "05")  # the notebooks whose results depend on the GAN's training seed


def gan_seed_runs(cfg, books: list[Path]) -> list[tuple[int, Path]]:
    """The sub-runs of a run's GAN seeds after the first, RUN/gan_seeds/seed-<s>, when a selected notebook needs a GAN."""
    if len(cfg.gan_seeds) < 2 or not any(b.name[:2] in GAN_STAGES for b in books):
        return []
    return [(int(s), cfg.path("gan_seeds", f"seed-{s}")) for s in cfg.gan_seeds[1:]]


def _run_gan_seed(profile, data_dir, sub: Path, seed: int, books: list[Path], params: dict) -> dict:
    """One GAN seed's own run (its own split made the same way, its GANs, synthetic images and classifiers)."""
    runs.claim(sub)
    overrides = sub / config.OVERRIDES_FILE
    wanted = {"gan_seeds": [seed]}
    if overrides.exists() and read_json(overrides) != wanted:
        raise PipelineError(f"{config.rel(overrides)} holds {read_json(overrides)}, not {wanted}; delete {config.rel(sub)}.")
    write_json(overrides, wanted)
    numbers = ["01"] + [b.name[:2] for b in books if b.name[:2] in GAN_STAGES]
    sub_books = select(",".join(numbers))
    declared = set().union(*(declared_parameters(b) for b in sub_books))
    print(f"=== GAN seed {seed}: {config.rel(sub)} (notebooks {', '.join(numbers)})", flush=True)
    return run(profile, data_dir, str(sub), ",".join(numbers), {k: v for k, v in params.items() if k in declared},
               resume=(sub / STATE).exists())


def when_measured() -> dict:
    """When a time was measured and under what load: {"finished": UTC minute, "load_average": [1, 5, 15 min]}."""
    return {"finished": _now(), "load_average": _load_average()}


def _now() -> str:
    import datetime

    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _load_average() -> list[float] | None:
    """The machine's 1, 5 and 15 minute load averages when a notebook ends: a time means little without them."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):  # not on every platform
        return None


def _fmt(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def _done_list(state: dict) -> str:
    done = [k for k, v in state.get("notebooks", {}).items() if v.get("status") == "done"]
    return "finished: " + (", ".join(done) if done else "none")
