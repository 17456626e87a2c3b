"""Recipes: a model per recipe number the PLC selects (handshake mode), validated like [model]."""

from __future__ import annotations

from pathlib import Path

from linegate.config import load_config
from linegate.service.reload import plan_reload
from tests.config.test_loader import _cleanup_copies, demo_with, error_of  # noqa: F401 (autouse fixture)

HANDSHAKE = ('mode = "pulse"', 'mode = "handshake"')
RECIPE_2 = """
[recipes.2.model]
id = "demo-ball-zone-recipe2"
path = "../engines/demo/ball_zone.onnx"
[recipes.2.model.preprocess]
resize = [160, 120]
[recipes.2.model.postprocess]
classes = ["pass", "reject"]
reject_thresholds = { reject = 0.7 }
[recipes.2.deadline]
budget_ms = 30.0
"""


def with_recipe(tmp_path: Path, recipe: str = RECIPE_2, mode: tuple[str, str] = HANDSHAKE) -> Path:
    path = demo_with(tmp_path, *mode)
    path.write_text(path.read_text() + recipe)
    return path


def test_recipe_models_load_with_paths_resolved_and_numbers_as_keys(tmp_path: Path) -> None:
    """[recipes.N.model] loads as recipe N; its model path resolves against the file like [model]'s."""
    cfg = load_config(with_recipe(tmp_path))
    recipe = cfg.recipes[2]
    assert recipe.model.id == "demo-ball-zone-recipe2" and recipe.model.path == cfg.model.path
    assert recipe.deadline is not None and recipe.deadline.budget_ms == 30.0


def test_recipe_model_that_does_not_fit_the_camera_is_refused_by_name(tmp_path: Path) -> None:
    """A recipe's ROI outside the frame is an error naming recipes.N.model."""
    bad = RECIPE_2.replace("resize = [160, 120]", "resize = [160, 120]\nroi = [600, 0, 100, 100]")
    assert "recipes.2.model.preprocess.roi [600, 0, 100, 100] exceeds the camera frame" in error_of(
        with_recipe(tmp_path, bad)
    )


def test_recipes_need_handshake_mode(tmp_path: Path) -> None:
    """In pulse mode no recipe word is read, so recipes are refused instead of silently unused."""
    path = with_recipe(tmp_path, mode=("fire_delay_ms = 0.0", "fire_delay_ms = 0.0"))
    assert "recipes are selected by the PLC's recipe word: they need plc.mode = 'handshake'" in error_of(path)


def test_recipe_number_out_of_range_is_refused(tmp_path: Path) -> None:
    """Recipe numbers are the PLC's 16-bit word."""
    assert "recipes.70000" in error_of(with_recipe(tmp_path, RECIPE_2.replace("recipes.2", "recipes.70000")))


def test_changing_recipes_reloads_without_replacing_a_worker_or_a_restart(tmp_path: Path) -> None:
    """Recipes are read by the supervisor only: a reload applies them in place."""
    old = load_config(with_recipe(tmp_path))
    new = load_config(with_recipe(tmp_path, RECIPE_2.replace("reject = 0.7", "reject = 0.6")))
    plan = plan_reload(old, new)
    assert plan.replace == () and plan.needs_restart == ()
