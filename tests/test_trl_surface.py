"""The TRL surface hicra.training.trainer relies on beyond public arguments (listed in its docstring). An upgrade of TRL
that moves any of it fails here, in one place, naming what moved."""

import inspect

import trl
from trl import GRPOConfig, GRPOTrainer


def test_installed_trl_has_what_the_trainer_touches():
    for name in (
        "_generate_and_score_completions",
        "_get_per_token_logps_and_entropies",
        "_compute_loss",
        "log",
        "train",
        "get_high_entropy_mask",
        "_prepare_inputs",
        "_get_train_sampler",
        "_load_from_checkpoint",  # a resume of a run whose last checkpoint is its last step loads it, trains nothing
    ):
        assert callable(getattr(GRPOTrainer, name, None)), f"TRL {trl.__version__}: GRPOTrainer.{name} is gone"
    sig = inspect.signature(GRPOTrainer._get_per_token_logps_and_entropies)
    for arg in ("model", "input_ids", "attention_mask", "logits_to_keep", "batch_size", "compute_entropy"):
        assert arg in sig.parameters, f"TRL {trl.__version__}: _get_per_token_logps_and_entropies lost {arg!r}"
    assert "rollout_func" in inspect.signature(GRPOTrainer.__init__).parameters, "rollout_func is gone"
    fields = GRPOConfig.__dataclass_fields__
    for f in (
        "epsilon_high",
        "loss_type",
        "top_entropy_quantile",
        "entropy_coef",
        "num_generations",
        "max_completion_length",
        "use_vllm",
        "steps_per_generation",
        "use_adaptive_entropy",
    ):
        assert f in fields, f"TRL {trl.__version__}: GRPOConfig.{f} is gone"
    src = inspect.getsource(GRPOTrainer)
    for attr in ("self._logs", "self._metrics", "self._buffered_inputs", "self._step"):
        assert attr in src, f"TRL {trl.__version__}: GRPOTrainer no longer keeps {attr}"
    for key in ('"rewards"', '"prompt"', '"completion"'):
        assert f"_logs[{key}]" in src, f"TRL {trl.__version__}: GRPOTrainer._logs lost {key}"
    from trl.trainer.utils import split_tensor_dict  # noqa: F401  (hicra.training.trainer.group_by_length re-splits with it)

    assert "split_tensor_dict(generation_batch, self.args.steps_per_generation)" in inspect.getsource(
        GRPOTrainer._prepare_inputs
    ), f"TRL {trl.__version__}: _prepare_inputs no longer buffers micro-batches"
