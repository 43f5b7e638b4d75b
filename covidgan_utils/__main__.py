"""Command line: ``python -m covidgan_utils {phantoms,run,sweep,figures,publish,readme,vgg16-file} ...``."""

from __future__ import annotations

import argparse
import sys


def _value(text: str):
    """Parse a -p value the way papermill's -p does (config.parse_value)."""
    from .config import parse_value

    return parse_value(text)


def _run(argv) -> int:
    from . import config, pipeline

    ap = argparse.ArgumentParser(prog="python -m covidgan_utils run", description="Run the numbered notebooks headless with papermill.")
    ap.add_argument("--profile", default="demo", choices=list(config.PROFILES))
    ap.add_argument("--data-dir", default=None, help="dataset folder (COVID/, Normal/); default: built-in phantoms")
    ap.add_argument("--run-dir", default=None, help="where artifacts go; default runs/<profile>")
    ap.add_argument("--notebooks", default=None, help="comma list, e.g. 01,03 (default: all)")
    ap.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    group = ap.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="continue a run from the first unfinished notebook")
    group.add_argument("--overwrite", action="store_true", help="delete the run directory's previous run and start over")
    ap.add_argument("--again", action="store_true", help="with --resume: execute the selected notebooks even if done")
    args = ap.parse_args(argv)
    params = {name: _value(value) for name, value in args.parameter}
    try:
        pipeline.run(args.profile, args.data_dir, args.run_dir, args.notebooks, params, resume=args.resume, overwrite=args.overwrite,
                     again=args.again)
    except pipeline.PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _figures(argv) -> int:
    from . import figures

    return figures.main(argv)


def _publish(argv) -> int:
    from . import pipeline, publish

    ap = argparse.ArgumentParser(prog="python -m covidgan_utils publish",
                                 description="Copy a finished run's executed notebooks over notebooks/, cleaned for committing.")
    ap.add_argument("--run-dir", default="runs/demo")
    ap.add_argument("--notebooks", default=None, help="comma list of numbers, e.g. 07 (default: every executed one)")
    ap.add_argument("--compare", metavar="REV", help="compare notebooks/, figures/ and the README's run results with their versions at REV "
                    "(timings masked, figures with a pixel tolerance) and stop")
    args = ap.parse_args(argv)
    if args.compare:
        found = publish.compare_all(args.compare)
        for name, problems in found.items():
            print(f"{name}: " + ("same (timings masked)" if not problems else "; ".join(problems[:8])))
        return 1 if any(found.values()) else 0
    try:
        publish.publish(args.run_dir, only=args.notebooks.split(",") if args.notebooks else None)
    except pipeline.PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _readme(argv) -> int:
    from . import readme

    ap = argparse.ArgumentParser(prog="python -m covidgan_utils readme",
                                 description="Write a finished run's results into README.md between the results markers.")
    ap.add_argument("--run-dir", default="runs/demo")
    ap.add_argument("--readme", default="README.md")
    ap.add_argument("--section", default="demo", choices=sorted(readme.SECTIONS),
                    help="demo: make notebooks' run on the phantoms; real: a run on real X-rays (make real-results)")
    args = ap.parse_args(argv)
    try:
        changed = readme.update(args.readme, args.run_dir, args.section)
    except readme.ReadmeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.readme}: {args.section} results section {'rewritten' if changed else 'unchanged'} from {args.run_dir}")
    return 0


def _phantoms(argv) -> int:
    from . import phantoms

    return phantoms.main(argv) or 0


def _sweep(argv) -> int:
    from . import sweeps

    return sweeps.main(argv)


def _vgg16_file(argv) -> int:
    """Write a random-init VGG16 state_dict to PATH (once) and print PATH: a local weights file for paper-smoke."""
    ap = argparse.ArgumentParser(prog="python -m covidgan_utils vgg16-file", description=_vgg16_file.__doc__)
    ap.add_argument("path")
    args = ap.parse_args(argv)
    from pathlib import Path

    path = Path(args.path)
    if not path.exists():
        import torch
        from torchvision.models import vgg16

        from .files import atomic_path

        torch.manual_seed(0)
        print(f"writing a RANDOM-INIT VGG16 (not ImageNet) to {path}: it tests the local-file path only", file=sys.stderr)
        with atomic_path(path) as tmp:
            torch.save(vgg16(weights=None).state_dict(), tmp)
    print(path)
    return 0


COMMANDS = {"phantoms": _phantoms, "run": _run, "sweep": _sweep, "figures": _figures, "publish": _publish,
            "readme": _readme, "vgg16-file": _vgg16_file}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print("usage: python -m covidgan_utils {" + ",".join(COMMANDS) + "} [options]   (add -h after a command for its options)")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
