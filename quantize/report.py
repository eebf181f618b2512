"""Render a comparison as a terminal table, report.json, report.md and confusion-matrix PNGs."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from quantize.labels import EMOTIONS


def print_table(result: dict, max_drop: float, console: Console | None = None) -> None:
    console = console or Console()
    fl, q = result["float"], result["int8"]
    table = Table(title=f"float vs int8 on {result['n']} faces ({result['data']})")
    table.add_column("")
    table.add_column("float", justify="right")
    table.add_column("int8", justify="right")
    table.add_row("top-1 accuracy", f"{fl['accuracy']:.2%}", f"{q['accuracy']:.2%}")
    table.add_row("macro-F1", f"{fl['macro_f1']:.3f}", f"{q['macro_f1']:.3f}")
    table.add_row("size", _kb(fl["size_bytes"]), _kb(q["size_bytes"]))
    if "latency_ms" in q:
        table.add_row("latency / image (int8 on 1 thread)", f"{fl['latency_ms']:.2f} ms", f"{q['latency_ms']:.3f} ms")
    for name in EMOTIONS:
        a, b = fl["per_class"][name], q["per_class"][name]
        table.add_row(f"  {name} P/R/F1 (n={a['support']})", _prf(a), _prf(b))
    console.print(table)
    # Off a terminal (a CI log, a pipe) rich would wrap at 80 columns mid-phrase; a long line greps better.
    wrap = {"soft_wrap": not console.is_terminal}
    if result["labels"] != list(EMOTIONS):
        console.print(f"model outputs scored as: {', '.join(result['labels'])}", **wrap)
    for line in _provenance(result):
        console.print(line, **wrap, markup=False)
    verdict = "[green]PASS[/]" if result["drop_pts"] <= max_drop else "[red]FAIL[/]"
    console.print(f"drop {result['drop_pts']:+.2f} points (max {max_drop}), agreement {result['agreement']:.2%}: "
                  f"{verdict}", **wrap)
    if "float_checks" in result:
        findings = result["float_checks"]["findings"]
        verdict = f"[red]FAIL[/] ({', '.join(f['kind'] for f in findings)}: see below)" if findings else "[green]PASS[/]"
        console.print(f"float model (above chance, varied answers, label order): {verdict}", **wrap)


def _provenance(result: dict) -> list[str]:
    """Where the normalization came from and whether the float model was evaluated with flip TTA."""
    lines = []
    norm = result.get("normalization", {})
    if "source" in norm:
        lines.append(f"normalization: pixel * {norm['input_scale']:.6g} + {norm['input_offset']:g} (from the "
                     f"{norm['source']})")
    tta = result.get("tta")
    if tta:
        applied = "flip TTA applied to the float model" if tta["applied"] == "flip" else "no TTA"
        lines.append(f"{applied} ({tta['source']}; a face against its mirror image: median {tta['mirror_steps']:g} "
                     f"int8 output steps on {tta['faces']} faces, against {tta['between_steps']:g} between faces)")
    if result.get("source_mismatch"):
        lines.append(f"warning: {result['source_mismatch']}")
    if result.get("sidecar_accuracy_note"):
        lines.append(f"note: the sidecar says {result['sidecar_accuracy_note']}: this accuracy may be on faces the "
                     "model learned; the drop still measures the int8 conversion")
    if result.get("float_checks", {}).get("order_note"):
        lines.append(result["float_checks"]["order_note"])
    return lines


def write(result: dict, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "report.json").write_text(json.dumps(result, indent=2) + "\n")
    (directory / "report.md").write_text(markdown(result))
    for name in ("float", "int8"):
        _confusion_png(result[name]["confusion"], f"{name}: accuracy {result[name]['accuracy']:.2%}",
                       directory / f"confusion-{name}.png")


def markdown(result: dict) -> str:
    fl, q = result["float"], result["int8"]
    lines = [
        f"# Quantization check: {Path(q['file']).name}",
        "",
        f"{result['n']} faces from `{result['data']}`.",
        "",
        "| | float | int8 |",
        "|---|---:|---:|",
        f"| top-1 accuracy | {fl['accuracy']:.2%} | {q['accuracy']:.2%} |",
        f"| macro-F1 | {fl['macro_f1']:.3f} | {q['macro_f1']:.3f} |",
        f"| file size | {_kb(fl['size_bytes'])} | {_kb(q['size_bytes'])} |",
    ]
    if "latency_ms" in q:
        lines.append(
            f"| latency per image (int8: 1 thread; float: TF graph) | {fl['latency_ms']:.2f} ms | {q['latency_ms']:.3f} ms |"
        )
    lines += [
        "",
        f"Drop: **{result['drop_pts']:+.2f} points**; agreement: **{result['agreement']:.2%}**.",
        "",
        f"Model outputs scored as: {', '.join(result['labels'])}.",
        "",
        *[f"- {line}" for line in _provenance(result)],
        "",
    ]
    checks = result.get("float_checks")
    if checks:
        order = f"best label order {', '.join(checks['best_labels'])} {checks['best_accuracy']:.2%}" \
            if checks.get("order_checked", True) else checks["order_note"]
        lines.append(f"Float model checks: accuracy {checks['accuracy']:.2%}, always {checks['commonest']!r} "
                     f"{checks['chance']:.2%}, most frequent answer {checks['top_answer']!r} {checks['top_share']:.2%}, "
                     f"{order}.")
        lines += [f"- **FAIL**: {f['message']}" for f in checks["findings"]] or ["- PASS"]
        lines.append("")
    lines += [
        "| class | support | float P / R / F1 | int8 P / R / F1 |",
        "|---|---:|---|---|",
    ]
    for name in EMOTIONS:
        a, b = fl["per_class"][name], q["per_class"][name]
        lines.append(f"| {name} | {a['support']} | {_prf(a)} | {_prf(b)} |")
    lines += ["", "Confusion matrices (rows true, columns predicted): `confusion-float.png`, `confusion-int8.png`.", ""]
    return "\n".join(lines)


def _prf(m: dict) -> str:
    return f"{m['precision']:.2f} / {m['recall']:.2f} / {m['f1']:.2f}"


def _kb(n: int) -> str:
    return f"{n / 1024:,.0f} KB"


def _confusion_png(matrix: list[list[int]], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(EMOTIONS)), EMOTIONS, rotation=45, ha="right")
    ax.set_yticks(range(len(EMOTIONS)), EMOTIONS)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    peak = max(max(row) for row in matrix) or 1
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            ax.text(j, i, count, ha="center", va="center", fontsize=8, color="white" if count > peak / 2 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
