"""`bench register`: a trial's model as an MLflow pyfunc model and a new version of a registered name."""

from __future__ import annotations

from bench.cli._common import RAW, add_task, describe, require_experiment
from bench.cli.predict import fold_list

EXAMPLES = (
    "examples:\n  bench register --task xray-heart --name xray-heart-best\n"
    "  bench register --task segmentation --study seg-1 --name organ-seg --example Dataset501_Organ/imagesTs/x_0000.nii.gz\n"
    "then:\n  python -c \"import mlflow, pandas; m = mlflow.pyfunc.load_model('models:/xray-heart-best/latest'); "
    "print(m.predict(pandas.DataFrame(dict(image=['a.png']))))\"\n"
    "  mlflow models serve -m models:/xray-heart-best/latest --env-manager local"
)


def add_parser(sub) -> None:
    s = sub.add_parser(
        "register",
        help="register a trial's model in the MLflow model registry (a pyfunc model)",
        epilog=EXAMPLES,
        formatter_class=RAW,
        description=describe(
            "Log the trial's model (every fold's weights and model.json, with bench's predictor as its code, a "
            "signature and an input example) as an MLflow pyfunc model on the trial's run, and register it as a "
            "new version of NAME tagged with the trial's metrics, split hash and folds. Default trial: the best "
            "COMPLETE trial of the latest search."
        ),
    )
    add_task(s)
    s.add_argument("--name", required=True, help="registered model name (made when missing)")
    which = s.add_mutually_exclusive_group()
    which.add_argument("--run-id", help="MLflow run id of the trial (default: the best COMPLETE trial)")
    which.add_argument("--study", help="the best trial of this study")
    s.add_argument("--folds", type=fold_list, help="of a cross-validated trial, these folds' models only: 0,2")
    s.add_argument("--example", help="an image for the input example and output signature (default: the first "
                                     "image of the trial's data folder)")
    s.set_defaults(func=run)


def run(args) -> int:
    require_experiment(args.task, "bench register")
    from bench.predict.register import register

    done = register(args.task, args.name, run_id=args.run_id, study=args.study, folds=args.folds,
                    example=args.example)
    print(f"registered run {done.run_id} as {done} (model {done.source})")
    print(f"load it: mlflow.pyfunc.load_model('models:/{done.name}/{done.version}')")
    return 0
