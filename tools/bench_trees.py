"""Fit and predict time of each tree library through ``ensemble`` against the raw library, same run.

    python tools/bench_trees.py [--root data/demo] [--repeats 2]

"ensemble" is ``TreeTrainer.fit`` with the bundled config's model settings: the design matrix, the library's
datasets, boosting in chunks, a val evaluation with the full metric suite after each chunk, TensorBoard
logging and best/last native checkpoints. "raw" is the library's own training call on ready numpy arrays,
with the val set as its evaluation set (the usual way to watch a run), the same parameters and rounds.
No early stopping on either side, so both train the same trees (checked: max |p_ensemble - p_raw|).
Runs alternate and each side keeps its fastest repeat, which damps the noise of a shared machine; CPU time
(``time.process_time``, all threads) is printed beside wall time, as it is steadier under others' load.
Prediction: the test split through ``TreeModel.split`` + ``predict_proba`` against the raw predict call.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import catboost
import lightgbm as lgb
import numpy as np
import xgboost as xgb
import yaml
from lightning.pytorch.loggers import TensorBoardLogger

from ensemble.data import DEFAULT_DEMO_ROOT, WindowDataModule
from ensemble.models.trees import CatBoostModel, LightGBMModel, XGBoostModel
from ensemble.training.trees import TreeTrainer

CONFIGS = Path(__file__).parents[1] / "configs"
MODELS = {"xgboost": XGBoostModel, "lightgbm": LightGBMModel, "catboost": CatBoostModel}


def arrays(dm: WindowDataModule, split: str) -> tuple[np.ndarray, np.ndarray]:
    panel, ends = dm.panel(split), dm.ends[split]
    return panel.features[ends].numpy(), panel.label[ends].numpy()


def raw_fit(name: str, params: dict, data: dict, rounds: int):
    (X, y), (Xv, yv) = data["train"], data["val"]
    if name == "xgboost":
        dval = xgb.DMatrix(Xv, yv)
        return xgb.train(params, xgb.DMatrix(X, y), rounds, evals=[(dval, "val")], verbose_eval=False)
    if name == "lightgbm":
        train = lgb.Dataset(X, y)
        return lgb.train(params, train, rounds, valid_sets=[lgb.Dataset(Xv, yv, reference=train)])
    params = {k: v for k, v in params.items() if k not in ("allow_writing_files",)}
    model = catboost.CatBoostClassifier(iterations=rounds, allow_writing_files=False, **params)
    return model.fit(X, y, eval_set=(Xv, yv), use_best_model=False)


def raw_predict(name: str, model, X: np.ndarray) -> np.ndarray:
    if name == "xgboost":
        return model.inplace_predict(X)
    return model.predict(X) if name == "lightgbm" else model.predict_proba(X)


def timed(fn, *args):
    """(wall seconds, CPU seconds of this process, result)."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args)
    return time.perf_counter() - wall, time.process_time() - cpu, out


def ours_predict(model, dm: WindowDataModule) -> np.ndarray:
    return model.predict_proba(model.split(dm.panel("test"), dm.ends["test"]).X)


def bench(name: str, dm: WindowDataModule, data: dict, epochs: int, repeats: int, threads: int | None) -> dict:
    config = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    init_args, rounds_per_epoch = config["model"]["init_args"], config["trainer"]["rounds_per_epoch"]
    rounds = epochs * rounds_per_epoch
    linked = {"horizon": dm.horizon, "bars_per_year": dm.bars_per_year, "feature_names": dm.feature_names}
    times: dict[str, list[tuple[float, float]]] = {"fit_ens": [], "fit_raw": [], "pred_ens": [], "pred_raw": []}
    for _ in range(repeats):  # alternate the two sides so load on a shared machine hits both alike
        with tempfile.TemporaryDirectory() as tmp:
            model = MODELS[name](**init_args, **linked, n_jobs=threads)
            trainer = TreeTrainer(max_epochs=epochs, rounds_per_epoch=rounds_per_epoch, enable_progress_bar=False,
                                  enable_model_summary=False, logger=[TensorBoardLogger(tmp, name="bench")],
                                  default_root_dir=tmp)  # fmt: skip
            *fit_ens, _ = timed(trainer.fit, model, dm)
            *fit_raw, raw_model = timed(raw_fit, name, model.library_params(), data, rounds)
            *pred_ens, p_ours = timed(ours_predict, model, dm)
            *pred_raw, p_raw = timed(raw_predict, name, raw_model, data["test"][0])
            for key, value in zip(times, (fit_ens, fit_raw, pred_ens, pred_raw), strict=True):
                times[key].append(tuple(value))
            assert model.num_rounds == rounds, (model.num_rounds, rounds)
    wall = {k: min(w for w, _ in v) for k, v in times.items()}
    cpu = {k: min(c for _, c in v) for k, v in times.items()}
    return {
        "rounds": rounds,
        "wall": wall,
        "cpu": cpu,
        "max_abs_prob_diff": float(np.abs(p_ours - p_raw).max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=DEFAULT_DEMO_ROOT, help="splits folder (the demo data is made if missing)")
    parser.add_argument("--horizon", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=6, help="chunks of the config's rounds_per_epoch")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--threads", type=int, default=None, help="library threads (default: all cores)")
    args = parser.parse_args()
    dm = WindowDataModule(root=args.root, horizon=args.horizon)  # bars_per_year: inferred (8760 on the demo)
    dm.setup("fit")
    dm.setup("test")
    data = {split: arrays(dm, split) for split in ("train", "val", "test")}
    rows = {s: len(v[1]) for s, v in data.items()}
    print(f"data: {args.root}  rows train/val/test {rows['train']}/{rows['val']}/{rows['test']}  "
          f"features {dm.num_features}  threads {args.threads or 'all'}  repeats {args.repeats}")  # fmt: skip
    print(f"{'model':<10}{'rounds':>7}  {'':<5}{'fit ens':>9}{'fit raw':>9}{'ratio':>7}"
          f"{'pred ens':>10}{'pred raw':>10}{'ratio':>7}")  # fmt: skip
    for name in args.models:
        r = bench(name, dm, data, args.epochs, args.repeats, args.threads)
        for clock in ("wall", "cpu"):
            t = r[clock]
            print(f"{name if clock == 'wall' else '':<10}{r['rounds'] if clock == 'wall' else '':>7}  {clock:<5}"
                  f"{t['fit_ens']:>8.2f}s{t['fit_raw']:>8.2f}s{t['fit_ens'] / t['fit_raw']:>7.3f}"
                  f"{1e3 * t['pred_ens']:>8.1f}ms{1e3 * t['pred_raw']:>8.1f}ms{t['pred_ens'] / t['pred_raw']:>7.2f}",
                  flush=True)  # fmt: skip
        print(f"{'':<19}same model: max |p_ensemble - p_raw| on test = {r['max_abs_prob_diff']:.1e}")


if __name__ == "__main__":
    main()
