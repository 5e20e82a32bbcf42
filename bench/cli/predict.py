"""`bench predict`: the best trial's model (or --run-id's) over a folder of new images."""

from __future__ import annotations

from bench.cli._common import RAW, add_task, describe, require_experiment

EXAMPLES = (
    "examples:\n  bench predict --task xray-heart --data new_images/ --out preds/\n"
    "  bench predict --task segmentation --data Dataset501_Organ/imagesTs --out preds/ --folds 0,2\n"
    "  bench predict --task ct-lung --data scans/ --out preds/ --run-id <MLflow run id>"
)


def add_parser(sub) -> None:
    s = sub.add_parser(
        "predict",
        help="predict new images with a trial's model (the best one by default)",
        epilog=EXAMPLES,
        formatter_class=RAW,
        description=describe(
            "Run a trial's trained model over a folder of images and write the task's outputs: xray-heart "
            "predictions.csv and heart masks (PNG); segmentation <case>.nii.gz (or .png) with dataset.json's "
            "label values; ct-lung lung and lesion masks (NIfTI), every mask on its input's grid. A "
            "cross-validated trial predicts with the mean of its fold models. Default model: the best COMPLETE "
            "trial of the latest search. Exit 1 when some image could not be predicted (one line each)."
        ),
    )
    add_task(s)
    s.add_argument("--data", required=True, help="folder of images (the task's layout, or any of its image files)")
    s.add_argument("--out", required=True, help="output folder (created; files appear whole or not at all)")
    which = s.add_mutually_exclusive_group()
    which.add_argument("--run-id", help="MLflow run id of the trial (default: the best COMPLETE trial)")
    which.add_argument("--study", help="the best trial of this study")
    s.add_argument("--folds", type=fold_list, help="of a cross-validated trial, these folds' models only: 0,2")
    s.set_defaults(func=run)


def fold_list(text: str) -> list[int]:
    import argparse

    try:
        folds = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be fold numbers separated by commas, like 0,2, but got '{text}'")
    if not folds or min(folds) < 0:
        raise argparse.ArgumentTypeError(f"must name at least one fold >= 0, like 0,2, but got '{text}'")
    return folds


def run(args) -> int:
    require_experiment(args.task, "bench predict")
    from bench.predict.run import predict, progress_printer

    summary = predict(args.task, args.data, args.out, run_id=args.run_id, study=args.study, folds=args.folds,
                      on_line=progress_printer())
    bad = len(summary.problems)
    print(f"predicted {len(summary.rows)} of {len(summary.rows) + bad} cases into {args.out} in "
          f"{summary.seconds:.1f} s with {summary.model.describe()}"
          + (f"; {bad} could not be predicted (lines above)" if bad else ""))
    return 1 if bad else 0
