"""Tree adapters against the raw libraries: same predictions, same early stopping, exact resume."""

from __future__ import annotations

import catboost
import lightgbm as lgb
import numpy as np
import pytest
import xgboost as xgb
from panels import make_frames, write_frames

from ensemble.data import WindowDataModule
from ensemble.models.trees import CatBoostModel, LightGBMModel, XGBoostModel
from ensemble.training.trees import EarlyStopping, ModelCheckpoint, TreeTrainer

CLASS_WEIGHTS = np.array([1.0, 0.5, 2.0])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    frames = make_frames(n_symbols=3, rows=(160, 60, 60), n_features=5, seed=1)
    rng = np.random.default_rng(0)
    for df in frames.values():  # a weak, learnable signal, so the best round is not the first
        df["f0"] = (df["label_h5"].fillna(0) + rng.normal(0, 1.5, len(df))).astype("float32")
    root = write_frames(tmp_path_factory.mktemp("trees") / "splits", frames)
    dm = WindowDataModule(root=str(root), horizon=5)
    dm.setup("fit")
    dm.setup("test")
    arrays = {}
    for split in ("train", "val", "test"):
        p, e = dm.panel(split), dm.ends[split]
        arrays[split] = (p.features[e].numpy(), p.label[e].numpy(), p.weight[e].numpy())
    return dm, arrays


def fit(model, dm, tmp_path, epochs, rounds, callbacks=None):
    trainer = TreeTrainer(
        max_epochs=epochs,
        rounds_per_epoch=rounds,
        callbacks=callbacks,
        enable_progress_bar=False,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, dm)
    return trainer


# (our model, the same settings written out for the raw library); one thread, as OpenMP threads only
# contend for the test machine's cores on data this small
def xgb_case(seed):
    ours = XGBoostModel(
        learning_rate=0.3,
        max_depth=3,
        subsample=0.8,
        colsample_bytree=0.7,
        seed=seed,
        class_weights=CLASS_WEIGHTS.tolist(),
        use_sample_weights=True,
        n_jobs=1,
    )
    raw = {
        "objective": "multi:softprob",
        "num_class": 3,
        "learning_rate": 0.3,
        "max_depth": 3,
        "subsample": 0.8,
        "colsample_bytree": 0.7,
        "seed": seed,
        "nthread": 1,
    }
    return ours, raw


def lgb_case(seed):
    ours = LightGBMModel(
        learning_rate=0.3,
        num_leaves=7,
        min_data_in_leaf=5,
        bagging_fraction=0.8,
        bagging_freq=1,
        feature_fraction=0.7,
        seed=seed,
        class_weights=CLASS_WEIGHTS.tolist(),
        use_sample_weights=True,
        n_jobs=1,
    )
    raw = {
        "objective": "multiclass",
        "num_class": 3,
        "learning_rate": 0.3,
        "num_leaves": 7,
        "min_data_in_leaf": 5,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "feature_fraction": 0.7,
        "seed": seed,
        "verbosity": -1,
        "num_threads": 1,
    }
    return ours, raw


def cb_case(seed):
    ours = CatBoostModel(
        learning_rate=0.3,
        depth=3,
        bootstrap_type="Bernoulli",
        subsample=0.8,
        rsm=0.7,
        seed=seed,
        class_weights=CLASS_WEIGHTS.tolist(),
        use_sample_weights=True,
        n_jobs=1,
    )
    raw = {
        "loss_function": "MultiClass",
        "learning_rate": 0.3,
        "depth": 3,
        "bootstrap_type": "Bernoulli",
        "subsample": 0.8,
        "rsm": 0.7,
        "random_seed": seed,
        "verbose": False,
        "allow_writing_files": False,
        "thread_count": 1,
    }
    return ours, raw


def raw_predict(name, params, X, y, w, X_test, rounds):
    if name == "xgboost":
        return xgb.train(params, xgb.DMatrix(X, y, weight=w), rounds).predict(xgb.DMatrix(X_test))
    if name == "lightgbm":
        return lgb.train(params, lgb.Dataset(X, y, weight=w), rounds).predict(X_test)
    model = catboost.CatBoostClassifier(iterations=rounds, **params)
    return model.fit(X, y, sample_weight=w).predict_proba(X_test)


CASES = {"xgboost": xgb_case, "lightgbm": lgb_case, "catboost": cb_case}


@pytest.mark.parametrize("name", CASES)
def test_predictions_equal_the_raw_library(name, data, tmp_path):
    """Chunked boosting with class and sample weights and subsampling gives the library's own model."""
    dm, arrays = data
    ours, params = CASES[name](seed=7)
    fit(ours, dm, tmp_path, epochs=3, rounds=4)
    X, y, w = arrays["train"]
    X_test = arrays["test"][0]
    expected = raw_predict(name, params, X, y, CLASS_WEIGHTS[y] * w, X_test, rounds=12)
    assert ours.num_rounds == 12
    np.testing.assert_allclose(ours.predict_proba(X_test), expected, rtol=1e-6, atol=1e-7)


def raw_early_stop(name, params, arrays, patience, max_rounds):
    """(best round, rounds trained), 1-based, from the library's own early stopping on val log loss."""
    (X, y, _), (Xv, yv, _) = arrays["train"], arrays["val"]
    if name == "xgboost":
        bst = xgb.train(
            {**params, "eval_metric": "mlogloss"},
            xgb.DMatrix(X, y),
            max_rounds,
            evals=[(xgb.DMatrix(Xv, yv), "val")],
            early_stopping_rounds=patience,
            verbose_eval=False,
        )
        return bst.best_iteration + 1, bst.num_boosted_rounds()
    if name == "lightgbm":
        bst = lgb.train(
            {**params, "metric": "multi_logloss"},
            lgb.Dataset(X, y),
            max_rounds,
            valid_sets=[lgb.Dataset(Xv, yv)],
            callbacks=[lgb.early_stopping(patience, verbose=False)],
            keep_training_booster=True,
        )  # else the returned booster is cut to the best round
        return bst.best_iteration, bst.current_iteration()
    model = catboost.CatBoostClassifier(
        iterations=max_rounds, early_stopping_rounds=patience, use_best_model=False, **params
    )
    model.fit(X, y, eval_set=(Xv, yv))
    return model.get_best_iteration() + 1, model.tree_count_


@pytest.mark.parametrize("name", CASES)
def test_early_stopping_stops_where_the_library_does(name, data, tmp_path):
    """One round per epoch, monitoring val/log_loss: the same best round and the same stopping round."""
    dm, arrays = data
    ours, params = CASES[name](seed=1)
    ours.class_weights, ours.use_sample_weights = None, False  # the libraries' eval sets are unweighted
    stop = EarlyStopping(monitor="val/log_loss", mode="min", patience=4)
    best = ModelCheckpoint(monitor="val/log_loss", mode="min", save_last=False)
    fit(ours, dm, tmp_path, epochs=150, rounds=1, callbacks=[stop, best])
    expected_best, expected_rounds = raw_early_stop(name, params, arrays, patience=4, max_rounds=150)
    assert expected_rounds < 150, "the library did not stop: the test would prove nothing"
    assert (best.best_round, ours.num_rounds) == (expected_best, expected_rounds)


def test_catboost_chunks_cross_200_rounds(data, tmp_path):
    """CatBoost re-derives a parameter at 200 planned iterations, which its snapshots would refuse."""
    dm, arrays = data
    ours = CatBoostModel(learning_rate=0.1, depth=2, n_jobs=1)
    fit(ours, dm, tmp_path, epochs=3, rounds=90)
    (X, y, _), X_test = arrays["train"], arrays["test"][0]
    params = {"loss_function": "MultiClass", "learning_rate": 0.1, "depth": 2, "random_seed": 0, "verbose": False}
    expected = catboost.CatBoostClassifier(iterations=270, thread_count=1, allow_writing_files=False, **params)
    np.testing.assert_allclose(ours.predict_proba(X_test), expected.fit(X, y).predict_proba(X_test), rtol=1e-6)
