"""The GPU check's report (matchrcnn/benchmarks/gpu.py) as markdown, for docs/benchmarks.md."""

from __future__ import annotations

from matchrcnn.benchmarks.train import MODELS

SPEED_TARGET = 0.9
"""Our training images/s over torchvision's that the GPU issue asks for, match network and all."""


def format_markdown(report: dict) -> str:
    """Headline, then one table per part; a part that failed shows its error instead."""
    title = report.get("gpu") or report["description"]
    lines = [f"## GPU check: {title}{' (tiny)' if report['tiny'] else ''}", "",
             _header(report), ""]
    for name, writer in (("smoke", _smoke), ("throughput", _throughput),
                         ("profile", _profile)):
        section = report.get(name)
        if section is None:
            continue
        if section["status"] != "ok":
            lines += [f"### {name}: failed after {section['section_seconds']:.0f} s", "",
                      "```", section["error"], "```", ""]
            continue
        lines += [*writer(section), ""]
    return "\n".join(lines)


def _header(report: dict) -> str:
    device = report["description"]
    if report["device"] == "cuda":
        device = f"{report['gpu']}, driver {report.get('driver') or 'unknown'}, " \
                 f"CUDA {report['cuda']}"
    overrides = f"; overrides `{' '.join(report['overrides'])}`" if report["overrides"] else ""
    total = f"; {report['total_seconds']:.0f} s in all" if "total_seconds" in report else ""
    return (f"{report['date']}, {device}, torch {report['torch']}, torchvision "
            f"{report['torchvision']}, Python {report['python']}. Command: `{report['command']}`"
            f" (config `{report['config']}`, backbone from random weights{overrides}){total}.")


def _smoke(section: dict) -> list[str]:
    data, losses, evaluation = section["dataset"], section["losses"], section["eval_only"]
    seconds, checkpoint, resume = section["seconds"], section["checkpoint"], section["resume"]
    landmarks, retrieval = evaluation["landmarks"], evaluation["retrieval"]
    return [
        "### Smoke run: tools/train_net.py train, --resume, --eval-only", "",
        f"Synthetic set of {data['images']} images at {data['image_size']} px "
        f"({data['train']['images']} train, {data['validation']['images']} validation, made in "
        f"{section['data_seconds']:.0f} s); {section['iterations']} iterations of "
        f"{section['batch']} images, AMP {'on' if section['amp'] else 'off'}.", "",
        "| step | seconds | result |", "| --- | --- | --- |",
        f"| train to iteration {resume['from_iteration']} | {seconds['train']:.1f} | losses "
        f"finite; checkpoint {checkpoint['file']} (iteration {checkpoint['iteration']}) |",
        f"| `--resume` to iteration {section['iterations']} | {seconds['resume']:.1f} | resumed "
        f"at iteration {resume['from_iteration']}; losses finite; total loss "
        f"{losses['first_total_loss']:.3f} at the start, {losses['last_total_loss']:.3f} at the "
        f"end; {resume['final_file']} (iteration {resume['final_iteration']}) |",
        f"| `--eval-only` | {seconds['eval_only']:.1f} | bbox AP "
        f"{_number(evaluation['bbox']['AP'])}, segm AP {_number(evaluation['segm']['AP'])}, "
        f"landmark AP {_number(landmarks['AP'])}, retrieval top-1 "
        f"{_number(retrieval.get('top1'))}, top-20 {_number(retrieval.get('top20'))} |",
    ]


def _throughput(section: dict) -> list[str]:
    height, width = section["image_size"]
    rows = {(row["model"], row["batch"]): row for row in section["training"]}
    batches = sorted({row["batch"] for row in section["training"]})
    lines = [
        f"### Training throughput and peak memory ({height}x{width} images, AMP "
        f"{'on' if section['amp'] else 'off'}, {section['warmup']} warmup + "
        f"{section['iterations']} timed steps)", "",
        f"Ours trains every head and the match network; target: at least {SPEED_TARGET}x "
        "torchvision's images/s.", "",
        "| batch per GPU | ours images/s | torchvision images/s | speed ours / torchvision | "
        "ours peak MiB | torchvision peak MiB | memory ours / torchvision |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for batch in batches:
        ours, theirs = rows[("matchrcnn", batch)], rows[("torchvision", batch)]
        lines.append(
            f"| {batch} | {ours['images_per_second']:.2f} | {theirs['images_per_second']:.2f} | "
            f"{_ratio(ours['images_per_second'], theirs['images_per_second'])} | "
            f"{ours['peak_mib']:.0f} | {theirs['peak_mib']:.0f} | "
            f"{_ratio(ours['peak_mib'], theirs['peak_mib'])} |")
    lines += ["", "Inference, one image at a time, eval mode:", "",
              "| model | ms per image | peak MiB |", "| --- | --- | --- |"]
    lines += [f"| {MODELS[row['model']]} | {row['ms_per_image']:.1f} | {row['peak_mib']:.0f} |"
              for row in section["inference"]]
    return lines


def _profile(section: dict) -> list[str]:
    device = "CUDA" if section["sort_by"] == "self_device_time_total" else "CPU"
    lines = [
        f"### Profile of one training step of ours (batch {section['batch']}): top "
        f"{len(section['top'])} ops by self {device} time", "",
        f"The step took {section['profiled_step_ms']:.1f} ms under the profiler; its ops were "
        f"busy {section['self_cuda_ms']:.1f} ms on CUDA and {section['self_cpu_ms']:.1f} ms on "
        "the CPU.", "",
        "| op | calls | self CUDA ms | CUDA total ms | self CPU ms | CPU total ms |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    lines += [f"| `{row['op']}` | {row['calls']} | {row['self_cuda_ms']:.2f} | "
              f"{row['cuda_total_ms']:.2f} | {row['self_cpu_ms']:.2f} | {row['cpu_total_ms']:.2f} |"
              for row in section["top"]]
    return lines


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}x" if theirs > 0 else "n/a"
