"""Command line: `genbench list|run|report` (and `python bench.py`, which is the same).

User errors (bad path, corrupt file, unknown name, bad config) end with a
one-paragraph message and exit code 2, without a traceback.
"""

from __future__ import annotations

import argparse
import math
import shlex
import socket
import sys
from datetime import datetime, timezone
from pathlib import Path

from genbench.errors import GenbenchError
from genbench.catalog import registry_for
from genbench.registry import REGISTRIES

DEFAULT_SUITE = "quick"
RESULTS_ROOT = Path("results")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genbench",
        description="Benchmark and evaluation suite for deep generative models. "
        "With no arguments, runs the quick suite on embedded data.",
    )
    sub = parser.add_subparsers(dest="command")

    p_list = sub.add_parser("list", help="print the registered names of one kind, one per line")
    p_list.add_argument("kind", choices=list(REGISTRIES), help="what to list")
    p_list.add_argument("-v", "--verbose", action="store_true", help="add a one-line summary per name")

    p_run = sub.add_parser("run", help="train, evaluate and record runs; writes results.jsonl and report.md",
                           description="Run a suite (--suite; default: quick) or ad-hoc runs of one model (--model). "
                           "The run-setting flags are RunConfig's fields (genbench/harness/settings.py); with "
                           "--suite they apply to every run of the suite, over the file's values.")
    what = p_run.add_mutually_exclusive_group()
    what.add_argument("--suite", help="suite name (`genbench list suites`) or path to a .toml suite file")
    add_run_settings(p_run, what)
    p_run.add_argument("--seeds", type=int, default=argparse.SUPPRESS,
                       help="ad-hoc runs: number of seeds, runs seeds 0..K-1 (default 1)")
    p_run.add_argument("--out", type=out_arg, help="result folder; rerunning into an existing one resumes it "
                       "(default results/<suite>/<UTC stamp>-<host>/)")
    p_run.add_argument("--shard", type=shard_arg, metavar="I/N",
                       help="take shard I of N of the runs (0 <= I < N; split by sorted run_id) so N processes "
                       "share one suite and one --out folder; render the report with `genbench report` after all")
    p_run.add_argument("--no-progress", action="store_true", help="no progress bars")
    p_run.add_argument("--dry-run", action="store_true", help="validate and print the planned runs (and which "
                       "are already complete in --out, so would be skipped), then exit without training")

    p_repro = sub.add_parser("reproduce", help="re-check published results with genbench's own code: list, run "
                             "one or several, or all; writes records and a report with paper and genbench side by side",
                             description="Each reproduction names its paper, the claims it tests, its setup and a "
                             "verdict per claim (reproduced / not reproduced / inconclusive). `genbench reproduce list` "
                             "names them; `genbench reproduce NAME [NAME ...]` or `genbench reproduce all` runs them.")
    p_repro.add_argument("names", nargs="+", metavar="list|all|NAME", help="`list`, `all`, or reproduction names")
    p_repro.add_argument("--profile", choices=["cpu", "gpu"], default="cpu",
                         help="budget: cpu (default; what a 2-core machine finishes) or gpu (longer runs)")
    p_repro.add_argument("--out", type=out_arg, help="result folder; rerunning into it skips the reproductions "
                         "already complete there (default results/reproduce/<profile>/)")

    p_kernels = sub.add_parser("kernels", help="benchmark the Triton kernels against their baselines (CUDA)")
    p_kernels.add_argument("--ops", nargs="+", help="benches to run (default: all; e.g. attention vq_nearest)")
    p_kernels.add_argument("--cases", nargs="+", metavar="GLOB",
                           help="only cases whose name (as the table shows it, e.g. 'B=64,H=4,S=256,D=64,bf16') "
                           "matches one of these fnmatch globs")
    p_kernels.add_argument("--providers", nargs="+", metavar="NAME", help="only these providers (e.g. triton cudnn)")
    p_kernels.add_argument("--quick", action="store_true",
                           help="one or two representative cases per op (the models' layers); no train_step")
    p_kernels.add_argument("--jobs", type=int, default=0, metavar="N",
                           help="processes compiling kernels in parallel before timing, or for --compile "
                           "(default: one per CPU core; 1: none before timing)")
    p_kernels.add_argument("--save", metavar="NAME", help="save these timings as baseline NAME for this GPU kind")
    p_kernels.add_argument("--compare", metavar="NAME", help="compare with saved baseline NAME (same GPU kind)")
    p_kernels.add_argument("--fail-above", type=float, default=10.0, metavar="PCT",
                           help="with --compare: exit 1 if one of genbench's kernels is missing, failed, or slower "
                           "by more than PCT%% beyond its q20-q80 spread and the floor (default 10)")
    p_kernels.add_argument("--fail-floor-us", type=float, default=2.0, metavar="US",
                           help="with --compare: changes smaller than this many µs never fail (default 2)")
    p_kernels.add_argument("--check", action="store_true",
                           help="correctness only: kernels vs references (Triton interpreter without CUDA)")
    p_kernels.add_argument("--compile", nargs="+", metavar="TARGET",
                           help="compile every kernel configuration for these GPU targets (e.g. sm_90 sm_80) "
                           "without a GPU: registers, spills, shared memory; exit 1 if one breaks the bounds")
    p_kernels.add_argument("--dry-run", action="store_true",
                           help="print what a timing run of this selection would time, then exit (no GPU needed)")
    p_kernels.add_argument("--out", type=out_arg, default=RESULTS_ROOT / "kernels", help="results root")

    p_report = sub.add_parser("report", help="render report.md and figures from result folders")
    p_report.add_argument("dirs", nargs="+", type=Path, help="result folders (holding results.jsonl)")
    p_report.add_argument("--out", type=out_arg, help="where to write the report (default: the first folder)")

    p_compare = sub.add_parser("compare", help="per-metric deltas of B against baseline A, with noise bands over seeds")
    p_compare.add_argument("baseline", type=Path, metavar="A", help="baseline: result folder (holding results.jsonl) "
                           "or a .jsonl file of records (e.g. a saved kernel baseline)")
    p_compare.add_argument("candidate", type=Path, metavar="B", help="candidate: result folder or .jsonl file")
    p_compare.add_argument("--fail-above", type=float, metavar="PCT", help="exit 1 if any significant regression "
                           "is worse than PCT%% of A's mean (default: report only, exit 0)")
    p_compare.add_argument("--markdown", type=Path, metavar="FILE", help="also write the comparison to FILE")
    p_compare.add_argument("--changed-only", action="store_true", help="hide rows that are unchanged or within noise")
    from genbench.harness.settings import RESULT_SETTINGS

    p_compare.add_argument("--across", metavar="KEY", choices=(*RESULT_SETTINGS, "trainer_options"),
                           help="compare two values of run setting KEY (e.g. lr): the runs of A and B (or of "
                           "one folder given twice) split by KEY's value, A's value the baseline; without it, "
                           "groups that differ in a setting are never compared. KEY: %(choices)s")
    return parser


def add_run_settings(p_run: argparse.ArgumentParser, what) -> None:
    """One flag per run setting, generated from its declaration (genbench/harness/settings.py):
    type from the annotation, choices from a Literal, help with range and default. A flag
    that is not given is absent from args, so RunConfig's own default applies."""
    from genbench.harness.settings import SETTING_TYPES, SETTINGS, is_option_table, setting_flag, setting_help

    for name in SETTINGS:
        flag = setting_flag(name)
        if flag is None:
            continue
        kind = setting_kind(SETTING_TYPES[name]) if not is_option_table(name) else {
            "action": "append", "metavar": "KEY=VALUE"}
        (what if name == "model" else p_run).add_argument(
            flag, dest=name, default=argparse.SUPPRESS, help=setting_help(name).replace("%", "%%"), **kind)


def setting_kind(annotation) -> dict:
    """argparse's type or choices for a setting's annotation (int, float, str, Literal, X | None)."""
    import typing

    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is typing.Literal:
        return {"choices": args}
    annotation = args[0] if args else annotation
    return {"type": annotation} if annotation in (int, float) else {}


def given_settings(args) -> dict:
    """The run settings given as flags, each converted and checked against its declared
    range (the message names the flag); option tables parsed from KEY=VALUE."""
    from genbench.harness.settings import SETTINGS, check_setting, is_option_table, setting_flag
    from genbench.utils.options import parse_assignments

    given = {}
    for name in SETTINGS:
        if name in vars(args):
            value, flag = getattr(args, name), setting_flag(name)
            given[name] = parse_assignments(value, flag) if is_option_table(name) else check_setting(name, value, flag)
    return given


def cmd_list(args) -> int:
    if args.kind == "suites":  # name, run count, description: what choosing a suite needs
        from genbench.harness.suites import suite_listing

        print(suite_listing())
        return 0
    registry = registry_for(args.kind)
    for name in registry.names():
        summary = getattr(registry.get(name), "summary", "")
        print(f"{name}\t{summary}" if args.verbose and summary else name)
    return 0


def cmd_run(args) -> int:
    from genbench.report import render_report
    from genbench.harness.runner import run_all
    from genbench.harness.suites import command_line_runs, load_suite

    settings = given_settings(args)
    if "model" in settings:  # every name and option checked before anything runs, as a suite's are
        runs, folder = command_line_runs(settings, getattr(args, "seeds", 1)), "adhoc"
    else:
        refuse_ad_hoc_flags(args, settings)
        suite = load_suite(args.suite or DEFAULT_SUITE, settings)  # resolved whole on load
        runs, folder = suite.resolved, suite.name
    runs = shard_for(args, runs)
    out = args.out = args.out or default_out(folder)  # main() names it if the run is interrupted
    if args.dry_run:
        from genbench.harness.suites import describe_plan

        print(describe_plan(runs, out))
        return 0
    if is_main_process():  # under torchrun, once, not once per rank
        print(f"{len(runs)} run(s) -> {out}", file=sys.stderr)
    run_all(runs, out, progress=not args.no_progress, shard=args.shard)
    if args.shard:  # other shards may still be running: the report is rendered once, after all
        print(f"shard {args.shard[0]}/{args.shard[1]} done; once every shard has finished: genbench report {out}",
              file=sys.stderr)
        print(out)
    elif is_main_process():  # under torchrun, rank 0 alone writes the report
        print(render_report([out]))
    return 0


def refuse_ad_hoc_flags(args, settings: dict) -> None:
    """--seeds and the option tables (--set, ...) shape ad-hoc runs of one model; a suite's
    entries set their own seeds and options (flags such as --device apply to every run)."""
    from genbench.harness.settings import is_option_table, setting_flag

    flags = (["--seeds"] if "seeds" in vars(args) else []) + [setting_flag(n) for n in settings if is_option_table(n)]
    if flags:
        raise GenbenchError(f"{', '.join(flags)} apply to ad-hoc runs (--model M); a suite sets its runs' seeds and "
                            "options in its file. Drop them, or copy the suite file, edit its entries and pass "
                            "--suite path/to/copy.toml.")


def out_arg(text: str) -> Path:
    """--out DIR; an empty DIR (an unset shell variable, say) is refused, not taken as '.'."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty folder name would mean the current folder: give a folder, "
                                         "e.g. --out results/mine (or --out . for the current folder)")
    return Path(text)


def shard_arg(text: str) -> tuple[int, int]:
    """'I/N' -> (I, N) with 0 <= I < N."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give the shard as I/N, e.g. 0/2") from None
    if count < 1 or not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"{text!r}: need N >= 1 and 0 <= I < N, e.g. 0/2 and 1/2")
    return index, count


def shard_for(args, runs: list) -> list:
    """This process's runs: its --shard of them, all of them otherwise. Shards and torchrun
    ranks must write one folder, so both need --out (a default folder is stamped per process)."""
    from genbench.harness.runner import shard_runs
    from genbench.train.distributed import env_world_size

    if (args.shard or env_world_size() > 1) and args.out is None:
        raise GenbenchError("--shard and torchrun runs need --out DIR: every process must write into the same "
                            "result folder, and the default folder is stamped per process.")
    return shard_runs(runs, *args.shard) if args.shard else runs


def is_main_process() -> bool:
    from genbench.train.distributed import is_main

    return is_main()


def cmd_reproduce(args) -> int:
    from genbench.report import render_report
    from genbench.reproduce import run_reproduction

    registry = registry_for("reproductions")
    if args.names == ["list"]:
        for name in registry.names():
            entry = registry.get(name)
            print(f"{name}\t{entry.paper}; {entry.where} ({args.profile}: {entry.budget[args.profile]})")
        return 0
    names = registry.names() if args.names == ["all"] else args.names
    for name in names:
        registry.get(name)  # every name checked before anything runs
    out = args.out or RESULTS_ROOT / "reproduce" / args.profile
    for name in names:
        print(f"{name} ({args.profile}) ...", file=sys.stderr)
        checks = run_reproduction(name, args.profile, out)
        if checks is None:
            print(f"  already complete in {out}: skipped", file=sys.stderr)
            continue
        for check in checks:
            print(f"  {check.verdict:15s} {check.claim}", file=sys.stderr)
    print(render_report([out]))
    return 0


def cmd_report(args) -> int:
    from genbench.report import render_report

    for d in args.dirs:
        if not d.is_dir():
            raise GenbenchError(f"{d} is not a folder. Pass the result folder that holds results.jsonl.")
    print(render_report(args.dirs, args.out))
    return 0


def cmd_kernels(args) -> int:
    import os

    import torch

    if args.check and not torch.cuda.is_available() and "genbench.kernels" not in sys.modules:
        # Read when @triton.jit decorates the kernels: must be set before they are imported.
        os.environ["TRITON_INTERPRET"] = "1"
    from genbench import kernelbench

    if args.jobs < 0:
        raise GenbenchError(f"--jobs {args.jobs}: give a number of processes >= 1 (0: one per CPU core).")
    if not 0 <= args.fail_floor_us < float("inf"):
        raise GenbenchError(f"--fail-floor-us {args.fail_floor_us}: give a finite number of microseconds >= 0.")
    check_fail_above(args.fail_above)
    selection = kernelbench.Selection(tuple(args.ops or ()), tuple(args.cases or ()), tuple(args.providers or ()),
                                      args.quick)
    if args.dry_run:
        print(kernelbench.describe_selection(selection))
        return 0
    if args.check:
        table, ok = kernelbench.run_checks(args.ops)
        print(table)
        print("all kernels match their references" if ok else "MISMATCH: see the table", file=sys.stderr)
        return 0 if ok else 1
    if args.compile:
        from genbench.kernelbench.compile import SPILL_BOUND, compile_report

        report = compile_report(args.compile, selection, args.jobs or None)
        print(report.table)
        print()
        print(report.summary)
        if report.failures:
            print(f"{len(report.failures)} configuration(s) failed to compile, spill more than {SPILL_BOUND} bytes "
                  "or exceed the target's shared memory: see the table", file=sys.stderr)
            return 1
        return 0
    out = kernelbench.run_benchmarks(selection, args.out, progress=lambda s: print(s, file=sys.stderr), jobs=args.jobs)
    print((out / "table.md").read_text())
    if args.save:
        print(f"saved baseline: {kernelbench.save_baseline(out, args.save)}", file=sys.stderr)
    if args.compare:
        from genbench.harness.store import RESULTS_FILE, read_records

        baseline = read_records(kernelbench.baseline_path(out, args.compare))
        result = kernelbench.compare_timings(baseline, read_records(out / RESULTS_FILE), args.fail_above,
                                             args.fail_floor_us, selection)
        print(result.table)
        if result.regressions:
            print(f"{result.regressions} of genbench's kernel timing(s) failed the gate against baseline "
                  f"{args.compare!r} (missing, failed, or slower than {args.fail_above}% beyond the spread and "
                  f"{args.fail_floor_us} µs)", file=sys.stderr)
            return 1
    print(out)
    return 0


def check_fail_above(pct: float | None) -> None:
    """--fail-above PCT is a finite percentage >= 0 (NaN would pass every comparison)."""
    if pct is not None and not 0 <= pct < math.inf:
        raise GenbenchError(f"--fail-above {pct}: give a finite percentage >= 0, e.g. --fail-above 5.")


def cmd_compare(args) -> int:
    from genbench.report.compare import compare_paths, render
    from genbench.harness.store import write_text_atomic

    check_fail_above(args.fail_above)
    if args.markdown and args.markdown.is_dir():
        raise GenbenchError(f"--markdown {args.markdown} is a folder; give a file in it, e.g. "
                            f"--markdown {args.markdown / 'comparison.md'}.")
    comparison = compare_paths(args.baseline, args.candidate, across=args.across)
    text = render(comparison, changed_only=args.changed_only)
    print(text)
    if args.markdown:
        write_text_atomic(args.markdown, text, option="--markdown FILE")  # whole or not at all
    failures = [] if args.fail_above is None else comparison.failures(args.fail_above)
    if failures:
        print(f"{len(failures)} significant regression(s) worse than {args.fail_above}%: "
              + ", ".join(f"{r.key.metric} ({r.badness_pct:+.1f}% worse)" for r in failures[:5]), file=sys.stderr)
        return 1
    return 0


def default_out(folder: str) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return RESULTS_ROOT / folder / f"{stamp}-{socket.gethostname()}"


COMMANDS = {"list": cmd_list, "run": cmd_run, "report": cmd_report, "kernels": cmd_kernels, "compare": cmd_compare,
            "reproduce": cmd_reproduce}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv or ["run", "--suite", DEFAULT_SUITE])
    if args.command is None:
        build_parser().print_help()
        return 2
    try:
        return COMMANDS[args.command](args)
    except GenbenchError as exc:
        print(f"genbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # under torchrun every rank gets the Ctrl-C: say it once (no torch yet: no torchrun group either)
        if "torch" not in sys.modules or is_main_process():
            print(interrupted_message(args), file=sys.stderr)
        return 130  # 128 + SIGINT, as shells report a Ctrl-C


def interrupted_message(args) -> str:
    """One line after Ctrl-C: what was saved and how to resume."""
    if args.command != "run" or args.dry_run:
        return f"genbench: interrupted; `genbench {args.command}` did not finish: rerun it."
    if args.out is None:  # interrupted while the runs were being resolved
        return "genbench: interrupted before any run started; nothing was saved."
    from genbench.harness.store import RESULTS_FILE

    if not (args.out / RESULTS_FILE).is_file():
        return f"genbench: interrupted before any run recorded results in {args.out}; rerun the command to start again."
    return (f"genbench: interrupted; the runs completed so far are saved in {args.out / RESULTS_FILE}. Rerun the "
            f"same command with --out {shlex.quote(str(args.out))} to resume (the interrupted run starts over).")


if __name__ == "__main__":
    raise SystemExit(main())
