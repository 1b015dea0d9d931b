"""The sandbox's warm start: supervised fine-tuning with TRL's ``SFTTrainer`` (split from the trainer, issue #36).

What: ``sft`` trains a model on prompt/completion pairs, the loss on completions only, and returns TRL's loss log.
Why its own module: the sandbox build (``hicra.sandbox.build``) needs SFT and nothing of the RL trainer; CPU-safe
settings (no bf16, no gradient checkpointing, length-grouped batches) live here once.
How to run: through a sandbox build (``python -m hicra.sandbox``), or directly:

    from hicra.training.sft import sft
    history = sft(model, tokenizer, [{"prompt": ..., "completion": ...}], out_dir, steps=100)
"""

from __future__ import annotations

from pathlib import Path

from trl import SFTConfig, SFTTrainer


def sft(
    model,
    tokenizer,
    examples: list[dict],
    out_dir,
    steps: int,
    batch_size: int = 16,
    learning_rate: float = 1e-3,
    seed: int = 0,
    progress: bool = True,
) -> list[dict]:
    """Supervised fine-tuning on prompt/completion dicts; returns TRL's loss log."""
    import datasets

    args = SFTConfig(
        output_dir=str(Path(out_dir)),
        max_steps=steps,
        per_device_train_batch_size=batch_size,
        learning_rate=learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=max(1, steps // 20),
        weight_decay=0.0,
        logging_steps=max(1, steps // 10),
        save_strategy="no",
        report_to=[],
        bf16=False,
        use_cpu=True,
        seed=seed,
        data_seed=seed,
        max_length=512,
        completion_only_loss=True,
        dataloader_num_workers=0,
        disable_tqdm=not progress,
        gradient_checkpointing=False,
        train_sampling_strategy="group_by_length",
    )
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=datasets.Dataset.from_list(examples), processing_class=tokenizer
    )
    trainer.train()
    return [h for h in trainer.state.log_history if "loss" in h]
