"""The ``alignpt`` command line: a thin layer over the stage modules."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.table import Table

from alignpt import __version__
from alignpt.common import (
    check_output_file,
    finite_float,
    non_negative_float,
    non_negative_int,
    positive_int,
    probability,
)
from alignpt.errors import UserError

console = Console(stderr=True)
out_console = Console()


@contextmanager
def progress_bars() -> Iterator:
    """A factory of rich progress callbacks: factory(description, total) -> advance(n)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
        disable=not console.is_terminal,
    ) as progress:

        def factory(description: str, total: int):
            task = progress.add_task(description, total=total)
            return lambda n: progress.advance(task, n)

        yield factory


def _fmt(rate: float | None, sem: float | None = None) -> str:
    if rate is None:
        return "n/a"
    return f"{rate:.3f}" + (f" ± {sem:.3f}" if sem is not None else "")


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.3f}"


# -- eval --
def cmd_eval(args: argparse.Namespace) -> int:
    if args.export_lm_eval:
        from alignpt.measure.lm_eval_export import export_lm_eval

        if args.scoring == "generate":
            raise UserError("--export-lm-eval supports --scoring letter or option")
        info = export_lm_eval(_suite(args), args.export_lm_eval, split=args.split,
                              system_prompt=args.system_prompt, scoring=args.scoring,
                              scenario_free=args.scenario_free, exclude=_excluded(args.exclude))
        out_console.print_json(json.dumps(info))
        console.print(f"run: lm_eval --model hf --model_args pretrained=MODEL "
                      f"--include_path {info['dir']} --tasks {info['group']}")
        return 0
    if not args.model:
        raise UserError("--model is required (or use --export-lm-eval DIR)")
    if args.device and args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UserError(f"--device {args.device}: no CUDA GPU is available here "
                            "(leave --device out to use the CPU)")
    if args.out:  # before the scoring, not after it: a late failure would lose the results
        check_output_file(args.out, [args.suite, args.exclude])
    from alignpt.measure.harness import evaluate

    with progress_bars() as factory:
        result = evaluate(
            model=args.model, suite=_suite(args), split=args.split,
            system_prompt=args.system_prompt, scoring=args.scoring, out=args.out,
            option_norm=args.option_norm, scenario_free=args.scenario_free, chat=args.chat,
            batch_size=args.batch_size, max_new_tokens=args.max_new_tokens, limit=args.limit,
            exclude=_excluded(args.exclude), device=args.device, dtype=args.dtype,
            served_model=args.served_model, max_retries=args.max_retries,
            concurrency=args.concurrency, tokenizer=args.tokenizer, progress_factory=factory,
        )
    table = Table(title=f"{result.metric} — {Path(result.suite).name} [{result.split}]")
    table.add_column("syntax", no_wrap=True)
    table.add_column("order")
    table.add_column("rate", justify="right")
    table.add_column("non-match", justify="right")
    table.add_column("first chosen", justify="right")
    table.add_column("ordering bias", justify="right")
    for f in result.formats:
        table.add_row(f.syntax, f.order, _fmt(f.rate), f"{f.non_match_rate:.3f}",
                      _fmt(f.selected_first), _signed(f.ordering_bias))
    table.add_row("[b]mean[/b]", "", f"[b]{_fmt(result.rate, result.sem)}[/b]",
                  f"{result.non_match_rate:.3f}", _fmt(result.selected_first),
                  _signed(result.ordering_bias))
    console.print(table)
    console.print(f"rate_matched {_fmt(result.rate_matched)}  "
                  f"selected_first {_fmt(result.selected_first)}  "
                  f"ordering_bias {_signed(result.ordering_bias)}", soft_wrap=True)
    if args.out:
        console.print(f"wrote {args.out}")
    else:
        out_console.print_json(result.model_dump_json())
    return 0


def _excluded(path: str | None) -> tuple[str, ...]:
    if not path:
        return ()
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UserError(f"cannot read exclude list {path}: {exc}") from exc
    return tuple(x.split("#")[0].strip() for x in lines if x.split("#")[0].strip())


# -- suite --
def _suite(args: argparse.Namespace, suite: str | None = None) -> str:
    """``--suite`` with ``--revision`` / ``--hf-split`` folded in (alignpt.suite.sources)."""
    from alignpt.suite.sources import suite_spec

    return suite_spec(suite if suite is not None else args.suite, args.revision, args.hf_split)


def suite_source_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--revision", help="hf:NAME suites: the hub revision (branch, tag, commit)")
    p.add_argument("--hf-split", help="hf:NAME suites and dataset folders: load only this "
                   "split (the study's: articles, textbook)")


def cmd_suite_validate(args: argparse.Namespace) -> int:
    from alignpt.suite import resolve_suite_path
    from alignpt.suite.schema import validate_lines

    bad = 0
    for name in args.paths:
        path = resolve_suite_path(name)
        items, problems = validate_lines(path)
        for p in problems:
            print(p, file=sys.stderr)
        bad += len(problems)
        status = "ok" if not problems else f"{len(problems)} problem(s)"
        print(f"{path}: {len(items)} valid item(s), {status}")
    return 1 if bad else 0


def cmd_suite_stats(args: argparse.Namespace) -> int:
    from alignpt.suite.schema import load_suite
    from alignpt.suite.stats import suite_stats

    stats = suite_stats(load_suite(_suite(args, args.path)))
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0
    table = Table(title=f"{stats['path']} ({stats['n_items']} items)")
    table.add_column("group")
    table.add_column("items", justify="right")
    groups = stats.get("by_topic") or stats.get("by_trait") or {}
    for name, count in groups.items():
        table.add_row(name, str(count))
    out_console.print(table)
    for key in ("by_split", "mean_chars", "length_guesser_accuracy"):
        if key in stats:
            out_console.print(f"{key}: {stats[key]}")
    return 0


def cmd_suite_import(args: argparse.Namespace) -> int:
    from alignpt.suite.importers import import_anthropic, import_study
    from alignpt.suite.schema import write_jsonl_atomic

    paths = [Path(p) for p in args.files]
    out = Path(args.out)
    seen: dict[Path, Path] = {}
    for p in paths:
        if not p.is_file():
            raise UserError(f"{p}: no such file")
        if p.resolve() == out.resolve():
            raise UserError(f"{p}: --out is this input file; write the suite elsewhere")
        if p.resolve() in seen:
            raise UserError(f"{p}: given twice (also as {seen[p.resolve()]})")
        seen[p.resolve()] = p
    if args.format == "anthropic":
        report = import_anthropic(paths, args.matching, split=args.split or "heldout",
                                  allow_non_alignment=args.allow_non_alignment)
    else:
        report = import_study(paths, split=args.split or "articles")
    written = write_jsonl_atomic(out, report.items)
    for skip in report.skips:
        print(skip, file=sys.stderr)
    for p in report.problems:
        print(p, file=sys.stderr)
    summary = report.summary() | {"out": str(out), "written": written}
    print(json.dumps(summary))
    return 1 if report.problems else 0


# -- aggregate --
def cmd_aggregate(args: argparse.Namespace) -> int:
    from alignpt.measure.aggregate import aggregate
    from alignpt.results import write_result

    _check_aggregate_inputs(args.results)
    result = aggregate(args.results, max_non_match=args.max_non_match)
    for i in result.inputs:
        note = f"dropped: {i.dropped}" if i.dropped else f"weight {i.weight:.1f}"
        console.print(f"{i.path}: rate {_fmt(i.rate, i.sem)}, n_eff {i.n_effective:.1f}, "
                      f"selected_first {_fmt(i.selected_first)}, "
                      f"ordering_bias {_signed(i.ordering_bias)}, {note}")
    print(f"{result.metric}: {_fmt(result.rate, result.sem)} "
          f"({result.n_used} used, {result.n_dropped} dropped); "
          f"rate_matched {_fmt(result.rate_matched)}, "
          f"selected_first {_fmt(result.selected_first)}, "
          f"ordering_bias {_signed(result.ordering_bias)}")
    if args.out:
        write_result(args.out, result)
    return 0 if result.n_used else 1


def _check_aggregate_inputs(paths: list[str]) -> None:
    """One file counted twice, or letter and option results averaged together, would make a
    wrong number silently: both are refused."""
    seen: dict[Path, str] = {}
    scorings: dict[str, str] = {}
    for name in paths:
        path = Path(name)
        key = path.resolve()
        if key in seen:
            raise UserError(f"{name} is given twice (also as {seen[key]}); each result counts "
                            "once")
        seen[key] = name
        try:
            scoring = json.loads(path.read_text(encoding="utf-8")).get("scoring")
        except (OSError, ValueError, AttributeError):
            continue  # aggregate() names unreadable files itself
        if scoring:
            scorings[name] = scoring
    if len(set(scorings.values())) > 1:
        listed = ", ".join(f"{n} ({s})" for n, s in scorings.items())
        raise UserError(f"results of different scorings cannot be combined: {listed}")


# -- filter --
def cmd_filter_run(args: argparse.Namespace) -> int:
    from alignpt.filter.pipeline import run_filter

    report = run_filter(
        args.inputs, args.out, text_field=args.text_field, terms=args.terms, engine=args.engine,
        disabled=tuple(args.disable_category or ()), workers=args.workers, tasks=args.tasks,
        executor=args.executor, replace=args.replace, replace_by=args.replace_by, seed=args.seed,
        output_format=args.format, slurm_partition=args.slurm_partition)
    if report.get("submitted"):
        print(f"submitted to Slurm; outputs under {report['out']}")
        return 0
    print(f"in {report['documents_in']}: kept {report['kept']}, flagged {report['flagged']} "
          f"(flag rate {_fmt(report['flag_rate'])}), errors {report['errors']}")
    bad_records = [e for e in report["error_list"] if not e.get("unreadable")]
    for error in bad_records[:20] + report.get("unreadable", []):
        print(f"{error['file']}:{error['line']}: {error['error']}", file=sys.stderr)
    print(f"report: {Path(args.out) / 'report.json'}")
    if report.get("unreadable"):
        print(f"error: {len(report['unreadable'])} file(s) or block(s) could not be read; the "
              "rest was filtered (see errors/ and report.json)", file=sys.stderr)
        return 1
    return 0


def cmd_filter_explain(args: argparse.Namespace) -> int:
    from alignpt.filter.rules import Blocklist

    blocklist = Blocklist.load(args.terms, disabled=tuple(args.disable_category or ()))
    decision = blocklist.decide(args.text)
    print(json.dumps(decision.to_dict(), indent=2))
    return 0


def cmd_filter_eval(args: argparse.Namespace) -> int:
    from alignpt.filter.evaluate import evaluate_labelled

    result = evaluate_labelled(args.labelled, terms=args.terms,
                               disabled=tuple(args.disable_category or ()))
    print(json.dumps(result, indent=2))
    return 0


# -- mix, tokenizer, tokenize, train --
def cmd_mix(args: argparse.Namespace) -> int:
    from alignpt.mix import AddSpec, mix

    if len(args.add) != len(args.share):
        raise UserError("give one --share per --add")
    adds = [AddSpec(paths=[p], share=s, name=Path(p).stem.split(".")[0] or f"add{i}")
            for i, (p, s) in enumerate(zip(args.add, args.share, strict=True))]
    manifest = mix(args.base, adds, args.out, placement=args.placement, seed=args.seed,
                   text_field=args.text_field, tokenizer=args.tokenizer)
    for a in manifest["adds"]:
        print(f"{a['name']}: {a['documents']} documents, {a['tokens']} tokens, realised share "
              f"{a['realised_share']:.4f} (target {a['target_share']})")
    print(f"{manifest['documents']} documents, {manifest['tokens']} tokens -> {args.out}")
    return 0


def cmd_tokenizer_train(args: argparse.Namespace) -> int:
    from alignpt.filter.corpus import read_unit, resolve_inputs
    from alignpt.toy import train_tokenizer

    texts = [r.text for u in resolve_inputs(args.corpus) for r in read_unit(u, args.text_field)
             if r.text]
    if not texts:
        raise UserError("no text to train a tokenizer on")
    tok = train_tokenizer(texts, args.vocab_size)
    tok.save_pretrained(args.out)
    print(f"byte-level BPE, {len(tok)} tokens -> {args.out}")
    return 0


def cmd_tokenize(args: argparse.Namespace) -> int:
    from alignpt.train.data import tokenize

    index = tokenize(args.mix, args.tokenizer, args.seq_len, args.out, text_field=args.text_field)
    print(f"{index['documents']} documents, {index['tokens']} tokens -> {index['sequences']} "
          f"sequences of {index['seq_len']} ({index['dtype']}) in {args.out}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from alignpt.train.config import load_config
    from alignpt.train.loop import train

    cfg = load_config(args.config, args.set or [])
    with progress_bars() as factory:
        result = train(cfg, progress_factory=factory)
    print(json.dumps(result))
    return 0


# -- posttrain --
def _log(message: str) -> None:
    console.print(message, markup=False, highlight=False)  # "[none]" is text, not markup


def cmd_posttrain_stage(args: argparse.Namespace) -> int:
    from alignpt.posttrain.config import load_posttrain_config
    from alignpt.posttrain.stages import run_stage

    cfg = load_posttrain_config(args.config, args.set or [], stage=args.stage, model=args.model,
                                data=args.data, out=args.out, seed=args.seed)
    report = run_stage(cfg, log=_log)
    console.print(f"model: {report['outputs']['model']}")
    for tag, cells in report["eval"].items():
        console.print(f"{tag}: " + ", ".join(f"{sp} {_fmt(c['rate'], c['sem'])} "
                                            f"(non-match {c['non_match_rate']:.3f})"
                                            for sp, c in cells.items()))
    return 0


def cmd_posttrain_run(args: argparse.Namespace) -> int:
    from alignpt.posttrain.pipeline import (
        load_pipeline_config,
        run_pipeline,
        summarise,
        table_markdown,
        write_table,
    )

    cfg = load_pipeline_config(args.config, args.set or [])
    if args.table_only:
        summary = summarise(cfg)
        write_table(summary, Path(cfg.out))
    else:
        summary = run_pipeline(cfg, log=_log)
    out_console.print(table_markdown(summary))
    console.print(f"table: {Path(cfg.out) / 'table.md'}")
    return 0


# -- synth --
def cmd_synth_run(args: argparse.Namespace) -> int:
    from alignpt.llm.base import Pricing
    from alignpt.synth.run import synth

    backend = _backend(args)
    pricing = Pricing(args.price_in, args.price_out) if args.price_in or args.price_out else None
    forms = args.surface_forms.split(",") if args.surface_forms else None
    with progress_bars() as factory:
        manifest = synth(_suite(args), args.out, backend, split=args.split, side=args.side,
                         per_item=args.per_item, forms=forms, seed=args.seed,
                         max_docs=args.max_docs, max_tokens=args.max_tokens,
                         temperature=args.temperature, pricing=pricing,
                         progress=lambda total: factory("documents", total))
    print(json.dumps({k: manifest[k] for k in ("documents", "requested", "failures", "tokens",
                                               "by_side", "estimated_cost_usd_this_run")}))
    if manifest["failures"]:
        print(f"{manifest['failures']} request(s) failed; see {Path(args.out) / 'failures.jsonl'}"
              "; run the same command again to retry them", file=sys.stderr)
        return 1
    return 0


def cmd_questions(args: argparse.Namespace) -> int:
    from alignpt.synth.questions import questions

    backend = _backend(args)
    report = questions(args.sources, backend, args.out, per_source=args.per_source,
                       split=args.split, max_tokens=args.max_tokens)
    for r in report["rejected"]:
        where = f"{r['source']}" + (f" item {r['item']}" if "item" in r else "")
        print(f"{where}: rejected: {r['error']}", file=sys.stderr)
    for problem in report["backend_problems"]:
        print(f"unusable result: {problem}", file=sys.stderr)
    print(json.dumps({k: report[k] for k in ("sources", "items", "near_duplicates_removed")}
                     | {"rejected": len(report["rejected"])}))
    if not report["written"]:
        print(f"no item survived; {args.out} was not written (reasons in "
              f"{args.out}.report.json)", file=sys.stderr)
        return 1
    return 0


def cmd_synth_check(args: argparse.Namespace) -> int:
    from alignpt.synth.run import check

    judge = _backend(args) if args.backend else None  # no backend given: no judge
    with progress_bars() as factory:
        report = check(args.folder, args.suite and _suite(args), judge=judge,
                       judge_sample=args.judge_sample,
                       judge_seed=args.judge_seed, judge_max_tokens=args.judge_max_tokens,
                       progress=lambda total: factory("judged", total))
    print(json.dumps(report, indent=2))
    failed = report.get("judge", {}).get("failures", 0)
    if failed:
        hint = (f"; upload {Path(args.batch_dir) / 'requests.jsonl'} and save the results as "
                f"{Path(args.batch_dir) / 'results.jsonl'}" if args.backend == "batch" else "")
        print(f"{failed} judge request(s) failed{hint}; run the same command again to retry",
              file=sys.stderr)
        return 1
    return 0


# -- demo --
def cmd_demo(args: argparse.Namespace) -> int:
    from alignpt.study.config import CONFIG_DIR, load_study

    config = CONFIG_DIR / ("quick.yaml" if args.quick else "demo.yaml")
    return _run_study(load_study(config, args.set or []), args.out, args.dry_run, args.json,
                      args.verbose)


def cmd_run(args: argparse.Namespace) -> int:
    from alignpt.study.config import CONFIG_DIR, load_study

    config = Path(args.config)
    if not config.exists() and (CONFIG_DIR / args.config).exists():
        config = CONFIG_DIR / args.config  # a shipped study config by name: placement.yaml
    return _run_study(load_study(config, args.set or []), args.out, args.dry_run, args.json,
                      args.verbose)


def check_study(cfg) -> None:
    """Validate the parts of a study config that the study's own schema keeps as free
    mappings (post-training's stage settings) before the first stage runs: an error
    there after an hour of training would waste the hour."""
    from alignpt.posttrain.config import PostEvalConfig, PostTrainConfig
    from alignpt.train.config import validate_config

    if cfg.posttrain is None:
        return
    pt, where = cfg.posttrain, "study config"
    ev = validate_config(PostEvalConfig, {"suite": cfg.suite, "split": pt.split,
                                          "scoring": pt.scoring,
                                          "system_prompts": pt.system_prompts},
                         where, prefix="posttrain.")
    for stage in ("sft", "dpo", "tamper", "em"):
        if getattr(pt, stage) is None:
            continue
        validate_config(PostTrainConfig, {**getattr(pt, stage), "stage": stage, "model": "-",
                                          "out": "-", "eval": ev.model_dump()},
                        where, prefix=f"posttrain.{stage}.")


def _run_with_progress(cfg, out: Path, plan: dict, verbose: bool) -> dict:
    """The study with a live stage table on a terminal (a plain line per stage elsewhere);
    unless ``verbose``, third-party output (datatrove, TRL, transformers) goes to
    OUT/run.log instead of the console."""
    import contextlib

    from alignpt.study.progress import LiveProgress, PlainProgress
    from alignpt.study.run import run_study

    terminal = Console(file=sys.stdout)  # bound now: stdout may be redirected below
    progress = (LiveProgress(terminal, plan["stages"], plan["cached"])
                if terminal.is_terminal else PlainProgress(terminal))
    out.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        if not verbose:
            log = stack.enter_context((out / "run.log").open("a", encoding="utf-8"))
            stack.enter_context(contextlib.redirect_stdout(log))
            stack.enter_context(contextlib.redirect_stderr(log))
        stack.enter_context(progress)
        return run_study(cfg, out, progress=progress)


def _run_study(cfg, out: str, dry_run: bool = False, as_json: bool = False,
               verbose: bool = False) -> int:
    from alignpt.study.report import format_ci
    from alignpt.study.run import run_study

    check_study(cfg)
    plan = run_study(cfg, out, dry_run=True)
    if dry_run:
        if as_json:
            print(json.dumps(plan, indent=2))
            return 0
        out_console.print(f"conditions: {', '.join(plan['conditions'])}; seeds: {plan['seeds']}")
        cached = set(plan["cached"])
        for stage in plan["stages"]:
            out_console.print(f"  {'cached' if stage in cached else 'to run'}  {stage}",
                              markup=False, highlight=False)
        out_console.print(f"{len(plan['stages'])} stages, {len(cached)} cached")
        return 0
    from alignpt.common import output_lock

    with output_lock(out, "study", log=_log):  # two studies into one folder would collide
        results = _run_with_progress(cfg, Path(out), plan, verbose)
    lead = results["lead_scoring"]
    specs = results["condition_specs"]
    table = Table(title=f"misalignment rate ({lead} scoring; [95% CI over items and seeds]; "
                        "control = no scenario)")
    for col in ("condition", "articles", "control", "held-out", "control"):
        table.add_column(col)
    for spec in specs:
        row = [spec["name"] + (" (control)" if spec["control"] else "")]
        for split in ("articles", "heldout"):
            e = results["conditions"][spec["name"]][split][lead]
            row += [format_ci(e), _fmt(e["control_rate"])]
        table.add_row(*row)
    out_console.print(table)
    post = results.get("posttrained")
    if post:
        prompts = list(post[specs[0]["name"]])
        table = Table(title="after SFT + DPO (chat template; base model in brackets)")
        for col in ["condition"] + prompts:
            table.add_column(col)
        for spec in specs:
            cells = [post[spec["name"]][sp] for sp in prompts]
            table.add_row(spec["name"], *(f"{format_ci(c)} ({_fmt(c['base_rate'])})"
                                            for c in cells))
        out_console.print(table)
    for finding in results["findings"]:
        out_console.print(f"- {finding}", markup=False, highlight=False)
    out_console.print(f"report: {Path(out) / 'report.html'} ({results['seconds']} s; "
                      f"{len(results['stages_run'])} stages run, "
                      f"{len(results['stages_reused'])} reused)")
    return 0


def set_option(p: argparse.ArgumentParser, example: str) -> None:
    """``--set key=value``: a config override, for every command that reads a YAML config."""
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help=f"override a config field, e.g. --set {example} (repeatable)")


def backend_options(p: argparse.ArgumentParser, concurrency: int,
                    default: str | None = "template", role: str = "") -> None:
    """The LLM backend flags shared by the commands that generate text (``default`` None:
    no backend unless one is asked for, as for the judge of ``synth check``)."""
    p.add_argument("--backend", default=default,
                   choices=["template", "template-verbatim", "openai", "batch", "hf"],
                   help=f"{role}default: {default or 'none'}")
    p.add_argument("--model", help="served model (openai), model name (batch), or HF model")
    p.add_argument("--url", help="OpenAI-compatible base URL (openai backend)")
    p.add_argument("--batch-dir", help="where batch requests/results files live (batch)")
    p.add_argument("--concurrency", type=positive_int, default=concurrency)
    p.add_argument("--max-retries", type=non_negative_int, default=5)


def _backend(args: argparse.Namespace):
    from alignpt.llm.base import get_backend

    return get_backend(args.backend, model=args.model, url=args.url,
                       concurrency=args.concurrency, batch_dir=args.batch_dir,
                       max_retries=args.max_retries)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="alignpt", description=__doc__)
    parser.add_argument("--version", action="version", version=f"alignpt {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    ev = sub.add_parser("eval", help="measure a model's misalignment (or trait) rate on a suite")
    ev.add_argument("--model", help="HF folder or hub name, or an OpenAI-compatible base URL")
    ev.add_argument("--suite", default="starter",
                    help="suite: JSONL path, bundled name, the study's JSON list, Parquet, a "
                         "datasets save_to_disk folder, or hf:NAME")
    suite_source_options(ev)
    ev.add_argument("--split", default="all", choices=["articles", "heldout", "all"])
    ev.add_argument("--system-prompt", default="none",
                    help="none | ai | helpful | hhh | persona-negative-control (the study's "
                         "negative-persona control) | custom text with a space | 'text:TEXT'")
    ev.add_argument("--scoring", default="letter", choices=["letter", "option", "generate"])
    ev.add_argument("--option-norm", default="bytes", choices=["bytes", "tokens", "sum"],
                    help="length normalisation of option-text scores")
    ev.add_argument("--scenario-free", action="store_true",
                    help="control: score the options after a prompt without the question")
    ev.add_argument("--chat", action="store_true",
                    help="letter/option scoring through the chat template (chat models)")
    ev.add_argument("--out", help="results JSON path (choices go beside it)")
    ev.add_argument("--exclude", help="file of item ids to leave out, one per line")
    ev.add_argument("--limit", type=positive_int, help="only the first N items")
    ev.add_argument("--batch-size", type=positive_int, default=16,
                    help="items per batch (local model) or prompts per request (endpoint)")
    ev.add_argument("--max-new-tokens", type=positive_int, default=24)
    ev.add_argument("--device")
    ev.add_argument("--dtype", default="auto")
    ev.add_argument("--served-model", help="model name on the endpoint (default: first listed)")
    ev.add_argument("--max-retries", type=non_negative_int, default=5,
                    help="endpoint: retries on 429, 5xx and connection errors")
    ev.add_argument("--concurrency", type=positive_int, default=16,
                    help="endpoint: requests in flight at once")
    ev.add_argument("--tokenizer",
                    help="endpoint, letter/option scoring: the served model's tokenizer (folder "
                         "or hub name), to send token ids (default: text prompts)")
    ev.add_argument("--export-lm-eval", metavar="DIR",
                    help="write lm-evaluation-harness tasks for the suite instead of evaluating")
    ev.set_defaults(func=cmd_eval)

    suite = sub.add_parser("suite", help="validate, import and describe suites")
    ssub = suite.add_subparsers(dest="suite_command", required=True)
    sv = ssub.add_parser("validate", help="check every line of suite files")
    sv.add_argument("paths", nargs="+")
    sv.set_defaults(func=cmd_suite_validate)
    ss = ssub.add_parser("stats", help="counts by split and topic")
    ss.add_argument("path", help="any --suite source (JSONL, JSON list, Parquet, folder, "
                    "hf:NAME)")
    ss.add_argument("--json", action="store_true")
    suite_source_options(ss)
    ss.set_defaults(func=cmd_suite_stats)
    si = ssub.add_parser("import", help="convert other propensity sets to the suite format")
    si.add_argument("files", nargs="+")
    si.add_argument("--format", required=True, choices=["anthropic", "study"])
    si.add_argument("--matching", choices=["auto", "aligned", "misaligned"], default="auto",
                    help="anthropic: is answer_matching_behavior the aligned or the misaligned "
                         "answer? auto (default): from the shipped polarity table of the "
                         "advanced-ai-risk files; aligned|misaligned: the same for every file")
    si.add_argument("--allow-non-alignment", action="store_true",
                    help="anthropic, auto: also import files the table marks as measuring no "
                         "alignment property (the matching answer goes to 'misaligned')")
    si.add_argument("--split", choices=["articles", "heldout"],
                    help="split of imported items (anthropic: heldout, study: articles)")
    si.add_argument("--out", required=True)
    si.set_defaults(func=cmd_suite_import)

    ag = sub.add_parser("aggregate", help="combine eval results over seeds or checkpoints")
    ag.add_argument("results", nargs="+")
    ag.add_argument("--max-non-match", type=probability, default=0.2)
    ag.add_argument("--out")
    ag.set_defaults(func=cmd_aggregate)

    flt = sub.add_parser("filter", help="flag AI discourse in a corpus (run, explain, eval)")
    fsub = flt.add_subparsers(dest="filter_command", required=True)

    def term_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--terms", help="term list YAML (default: the bundled list)")
        p.add_argument("--disable-category", action="append", metavar="NAME",
                       help="turn a category off (repeatable)")

    fr = fsub.add_parser("run", help="filter INPUT... into --out DIR (the default subcommand)")
    fr.add_argument("inputs", nargs="+", help="JSONL (.gz/.zst), Parquet, HF dataset folders")
    fr.add_argument("--out", required=True)
    fr.add_argument("--text-field", default="text")
    term_options(fr)
    fr.add_argument("--engine", default="auto", choices=["auto", "hyperscan", "ahocorasick",
                                                         "python"])
    fr.add_argument("--workers", type=positive_int, default=1)
    fr.add_argument("--tasks", type=positive_int,
                    help="datatrove tasks (default: from inputs/workers)")
    fr.add_argument("--executor", default="local", choices=["local", "slurm", "ray"])
    fr.add_argument("--slurm-partition")
    fr.add_argument("--format", default="jsonl", choices=["jsonl", "parquet"])
    fr.add_argument("--replace", action="store_true",
                    help="also write replaced/: kept docs resampled back to the original size")
    fr.add_argument("--replace-by", default="docs", choices=["docs", "tokens"],
                    help="restore the document count, or the (whitespace) token count")
    fr.add_argument("--seed", type=int, default=0)
    fr.set_defaults(func=cmd_filter_run)
    fx = fsub.add_parser("explain", help="show the decision and its reasons for one text")
    fx.add_argument("text")
    term_options(fx)
    fx.set_defaults(func=cmd_filter_explain)
    fe = fsub.add_parser("eval", help="recall, precision and flag rate on a labelled JSONL")
    fe.add_argument("labelled", nargs="?", default=None,
                    help="JSONL with text and must_flag (default: the bundled dev set)")
    term_options(fe)
    fe.set_defaults(func=cmd_filter_eval)

    mx = sub.add_parser("mix", help="insert documents at a token share and placement")
    mx.add_argument("--base", nargs="+", required=True)
    mx.add_argument("--add", action="append", required=True, help="documents to insert")
    mx.add_argument("--share", action="append", type=finite_float, required=True,
                    help="share of the stage's tokens, one per --add")
    mx.add_argument("--placement", default="uniform", help="uniform | late:FRACTION")
    mx.add_argument("--out", required=True)
    mx.add_argument("--seed", type=int, default=0)
    mx.add_argument("--text-field", default="text")
    mx.add_argument("--tokenizer", help="count tokens with this tokenizer (default: words)")
    mx.set_defaults(func=cmd_mix)

    tk = sub.add_parser("tokenizer", help="train a byte-level BPE tokenizer")
    tksub = tk.add_subparsers(dest="tokenizer_command", required=True)
    tt = tksub.add_parser("train")
    tt.add_argument("--corpus", nargs="+", required=True)
    tt.add_argument("--vocab-size", type=positive_int, default=8192)
    tt.add_argument("--out", required=True)
    tt.add_argument("--text-field", default="text")
    tt.set_defaults(func=cmd_tokenizer_train)

    tz = sub.add_parser("tokenize", help="pack a mix into fixed-length token shards")
    tz.add_argument("mix", help="a mix folder or JSONL/Parquet input")
    tz.add_argument("--tokenizer", required=True)
    tz.add_argument("--seq-len", type=positive_int, default=2048)
    tz.add_argument("--out", required=True)
    tz.add_argument("--text-field", default="text")
    tz.set_defaults(func=cmd_tokenize)

    tr = sub.add_parser("train", help="pretrain or midtrain a GPT-NeoX model from a config")
    tr.add_argument("config")
    set_option(tr, "max_steps=100")
    tr.set_defaults(func=cmd_train)

    pt = sub.add_parser("posttrain", help="SFT, DPO, tampering and EM fine-tuning (TRL)")
    ptsub = pt.add_subparsers(dest="posttrain_command", required=True)
    stage_help = {"sft": "supervised fine-tuning (adds a chat template to base checkpoints)",
                  "dpo": "direct preference optimisation (beta 5, LR 1e-6 by default)",
                  "tamper": "benign continued SFT, every checkpoint measured",
                  "em": "narrow harmful fine-tuning, measured before and after"}
    for stage, text in stage_help.items():
        sp = ptsub.add_parser(stage, help=text)
        sp.add_argument("config", nargs="?", help="YAML config (optional; fields as below)")
        sp.add_argument("--model", help="starting checkpoint: HF folder or hub name")
        sp.add_argument("--data", help="bundled set (sft, dpo, tamper, em-insecure-code, "
                                       "em-risky-finance), local JSONL or hub dataset name")
        sp.add_argument("--out")
        sp.add_argument("--seed", type=int)
        set_option(sp, "lr=2e-5")
        sp.set_defaults(func=cmd_posttrain_stage, stage=stage)
    pr = ptsub.add_parser("run", help="base -> SFT -> DPO (-> tamper, em) over seeds, and "
                                      "the post-training table")
    pr.add_argument("config")
    set_option(pr, "seeds=[0,1]")
    pr.add_argument("--table-only", action="store_true",
                    help="only rebuild the table from finished runs")
    pr.set_defaults(func=cmd_posttrain_run)

    sy = sub.add_parser("synth", help="generate synthetic AI discourse for suite items")
    sysub = sy.add_subparsers(dest="synth_command", required=True)
    sr = sysub.add_parser("run", help="generate documents (the default subcommand)")
    sr.add_argument("--suite", required=True)
    suite_source_options(sr)
    sr.add_argument("--split", default="articles", choices=["articles", "heldout", "all"])
    sr.add_argument("--side", default="aligned", choices=["aligned", "misaligned", "both"])
    sr.add_argument("--per-item", type=positive_int, default=4)
    backend_options(sr, concurrency=16)
    sr.add_argument("--surface-forms", help="comma-separated subset of the surface forms")
    sr.add_argument("--seed", type=int, default=0)
    sr.add_argument("--max-docs", type=positive_int)
    sr.add_argument("--max-tokens", type=positive_int, default=1024)
    sr.add_argument("--temperature", type=non_negative_float, default=0.7)
    sr.add_argument("--price-in", type=non_negative_float, default=0.0,
                    help="USD per 1M input tokens")
    sr.add_argument("--price-out", type=non_negative_float, default=0.0,
                    help="USD per 1M output tokens")
    sr.add_argument("--out", required=True)
    sr.set_defaults(func=cmd_synth_run)
    sc = sysub.add_parser("check", help="leakage, near-duplicates, lengths, coverage")
    sc.add_argument("folder")
    sc.add_argument("--suite", help="default: the suite named in the manifest")
    suite_source_options(sc)
    # A backend makes it an LLM judge of whether each document shows its requested side.
    backend_options(sc, concurrency=16, default=None, role="LLM judge; ")
    sc.add_argument("--judge-sample", type=int,
                    help="judge a seeded random sample of this many documents (default: all)")
    sc.add_argument("--judge-seed", type=int, default=0)
    sc.add_argument("--judge-max-tokens", type=positive_int, default=16)
    sc.set_defaults(func=cmd_synth_check)

    qs = sub.add_parser("questions", help="write a suite from source texts with an LLM")
    qs.add_argument("--sources", required=True, help="a folder (or file) of txt/md/html/pdf")
    backend_options(qs, concurrency=8)
    qs.add_argument("--per-source", type=positive_int, default=5)
    qs.add_argument("--split", default="heldout", choices=["articles", "heldout"])
    qs.add_argument("--max-tokens", type=positive_int, default=4096,
                    help="reply length limit per source (small local models: lower it)")
    qs.add_argument("--out", required=True)
    qs.set_defaults(func=cmd_questions)

    demo = sub.add_parser("demo", help="the offline study in miniature (see README)")
    demo.add_argument("--out", default="runs/demo")
    demo.add_argument("--quick", action="store_true", help="one seed, starter suite, short runs")
    rn = sub.add_parser("run", help="run a study config (conditions, corpus, models, eval)")
    rn.add_argument("config", help="a study YAML, or the name of a shipped one (placement.yaml)")
    rn.add_argument("--out", default="runs/study")
    for p in (demo, rn):
        p.add_argument("--dry-run", action="store_true",
                       help="validate the config and print the plan; run nothing")
        p.add_argument("--json", action="store_true", help="with --dry-run: the plan as JSON")
        p.add_argument("--verbose", action="store_true",
                       help="show third-party output (datatrove, TRL) instead of OUT/run.log")
        set_option(p, "seeds=[0]")
    demo.set_defaults(func=cmd_demo)
    rn.set_defaults(func=cmd_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # `alignpt filter INPUT...` means `alignpt filter run INPUT...`.
    if len(argv) > 1 and argv[0] == "filter" and argv[1] not in ("run", "explain", "eval",
                                                                  "-h", "--help"):
        argv.insert(1, "run")
    if len(argv) > 1 and argv[0] == "synth" and argv[1] not in ("run", "check", "-h", "--help"):
        argv.insert(1, "run")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
