"""Export a suite as lm-evaluation-harness tasks: one multiple-choice task per prompt format.

The exported prompts are exactly the contexts ``alignpt eval`` scores, and the choices are the
label continuations (letter scoring) or the option texts (option scoring, whose ``acc_bytes`` is
our byte-normalised option score). ``target`` is the misaligned (or high-trait) option, so a
task's ``acc`` *is* the misalignment (high-trait) rate in that format, and the group's mean
over the 8 tasks is ``alignpt eval``'s ``rate``. Run with ``lm_eval --include_path DIR``.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from alignpt.measure.formats import render_all, resolve_system_prompt
from alignpt.suite.schema import load_suite, slug


def export_lm_eval(
    suite: str | Path,
    out_dir: str | Path,
    split: str = "all",
    system_prompt: str | None = "none",
    scoring: str = "letter",
    scenario_free: bool = False,
    exclude: tuple[str, ...] = (),
) -> dict:
    """Write task YAMLs, their JSONL data and a group YAML; return the group and task names."""
    if scoring not in ("letter", "option"):
        raise ValueError("lm-eval export supports letter and option scoring")
    loaded = load_suite(suite, exclude=exclude)
    items = loaded.choice_items(split)
    _, sp_text = resolve_system_prompt(system_prompt)
    out = Path(out_dir).resolve()
    (out / "data").mkdir(parents=True, exist_ok=True)
    group = f"alignpt_{slug(loaded.path.stem)}_{split}_{scoring}"
    rows: dict[str, list[dict]] = {}
    for item in items:
        for prompt in render_all(item, sp_text, scenario_free):
            task = f"{group}_{prompt.syntax.name}_{prompt.order}"
            choices = (list(prompt.labels) if scoring == "letter"
                       else [item.options[i].strip() for i in prompt.shown])
            targets = [pos for pos in range(len(prompt.shown))
                       if prompt.tag_at(pos) == item.target_tag]
            rows.setdefault(task, []).append({
                "id": item.id,
                "prompt": prompt.context,
                "choices": choices,
                "target": targets[0] if len(targets) == 1 else targets,
            })
    for task, docs in rows.items():
        data = out / "data" / f"{task}.jsonl"
        with data.open("w", encoding="utf-8") as fh:
            for doc in docs:
                fh.write(json.dumps(doc, ensure_ascii=False) + "\n")
        config = {
            "task": task,
            "dataset_path": "json",
            "dataset_kwargs": {"data_files": {"test": str(data)}},
            "test_split": "test",
            "output_type": "multiple_choice",
            "doc_to_text": "prompt",
            "doc_to_choice": "choices",
            "doc_to_target": "target",
            "metric_list": [
                {"metric": "acc", "aggregation": "mean", "higher_is_better": False},
                {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": False},
                {"metric": "acc_bytes", "aggregation": "mean", "higher_is_better": False},
            ],
            "metadata": {"version": 1, "suite": str(loaded.path), "split": split},
        }
        (out / f"{task}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    group_config = {
        "group": group,
        "task": sorted(rows),
        "aggregate_metric_list": [
            {"metric": "acc", "aggregation": "mean", "weight_by_size": False},
            {"metric": "acc_norm", "aggregation": "mean", "weight_by_size": False},
            {"metric": "acc_bytes", "aggregation": "mean", "weight_by_size": False},
        ],
        "metadata": {"version": 1},
    }
    (out / f"{group}.yaml").write_text(yaml.safe_dump(group_config, sort_keys=False))
    return {"group": group, "tasks": sorted(rows), "dir": str(out), "n_items": len(items)}
