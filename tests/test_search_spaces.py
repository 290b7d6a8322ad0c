"""Every bundled search space names real config keys, and the models its points describe can be built."""

from pathlib import Path

import optuna
import pytest
from timesfm_tiny import required_cli_args

from ensemble.training.config import config_from_flags, merge, resolve_config
from ensemble.training.family import build
from ensemble.tuning.objective import check_keys
from ensemble.tuning.space import SearchSpace

CONFIGS = Path(__file__).parents[1] / "configs"
SPACES = sorted(p.stem for p in (CONFIGS / "search_spaces").glob("*.yaml"))


def test_every_model_config_has_a_search_space():
    models = {p.stem for p in CONFIGS.glob("*.yaml")}
    assert models <= set(SPACES), f"configs without a search space: {sorted(models - set(SPACES))}"


@pytest.mark.parametrize("name", [s for s in SPACES if (CONFIGS / f"{s}.yaml").is_file()])
def test_search_space_points_build_a_model(name, splits, tmp_path):
    base = resolve_config(CONFIGS / f"{name}.yaml", {"data.root": str(splits), "data.seq_len": 24,
                          "tracking.save_dir": str(tmp_path / "runs"), "trainer.logger": False})  # fmt: skip
    base = merge(base, config_from_flags(required_cli_args(name, tmp_path)))  # tiny weights where a model needs them
    space = SearchSpace.from_yaml(CONFIGS / "search_spaces" / f"{name}.yaml")
    check_keys(base, space)  # each key alone
    # whole points, so choices that clash with each other (width vs heads, say) show up here
    sampler = optuna.samplers.RandomSampler(seed=0)
    study = optuna.create_study(sampler=sampler)
    for _ in range(4):
        trial = study.ask()
        params = space.suggest(trial)
        job = build(base, params)
        for key, value in params.items():  # the sampled value reached the built model's config
            assert _get(job.config, key) == value, key
        study.tell(trial, 0.0)


def _get(config, key):
    for part in key.split("."):
        config = config[part]
    return config
