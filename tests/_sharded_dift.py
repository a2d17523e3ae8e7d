"""DIFT from a stock checkpoint folder under parameter sharding (FSDP2 or DeepSpeed ZeRO-3, 2 CPU processes) or on one
process.

Run by test_sharded.py: `accelerate launch --config_file examples/accelerate/fsdp.yaml --num_processes 2
--mixed_precision no tests/_sharded_dift.py <workdir> sharded` for the FSDP2 run, `torchrun --nproc_per_node 2
tests/_sharded_dift.py <workdir> zero3` for the ZeRO-3 run, `run(<workdir>, "unsharded")` in-process for the
reference. It reads `<workdir>/base` (a stock tiny model and its processor) and `<workdir>/data` (a DIFT
dataset saved with `save_to_disk`), lets `DIFTTrainer(model=<path>)` run `from_base` (add the latent tokens, grow the
embeddings, mean-initialise the new rows), shards the model, trains 3 DIFT steps and writes `<workdir>/<name>.json`:
the full input-embedding and `lm_head` rows of the latent tokens (gathered from the shards) before and after training,
the shard sizes, and the per-step losses.

accelerate does not turn FSDP on for CPU processes (`DistributedType.FSDP` needs a GPU-type device; on CPU the Trainer
would fall back to DDP), so the model is sharded here by accelerate's own `fsdp2_prepare_model`, with the FSDP plugin
read from the environment that `accelerate launch` set from the config file (wrap policy, reshard_after_forward,
cpu_ram_efficient_loading: every rank runs from_base, then the model is moved to the meta device on ranks > 0 and
their shards are filled from rank 0's copy). The step
is `DIFTTrainer.compute_loss`, backward, AdamW, as in the Trainer's loop.

The ZeRO-3 run takes the stage from examples/accelerate/zero3.yaml and, as `zero3_init_flag` does, builds the model
inside `deepspeed.zero.Init` (transformers' `HfDeepSpeedConfig`): the checkpoint is partitioned while it loads, before
`from_base` grows the embeddings. accelerate does not run DeepSpeed on CPU processes either (each process sees
`num_processes == 1`), so the engine comes from `deepspeed.initialize` with a torch AdamW (DeepSpeed's own CPU Adam is
a C++ extension compiled at first use).

One global batch is two rows, `data[2 * step]` and `data[2 * step + 1]`. Sharded: one row per process; FSDP averages
the gradients over the two processes. Unsharded: both rows one after the other, each loss halved, as gradient
accumulation does. Both average per-row losses, so they compute the same step.
"""

from __future__ import annotations

import json
import os
import sys
from types import SimpleNamespace

import torch


STEPS = 3


def _full(param) -> torch.Tensor:
    """The whole parameter, gathered from the shards of a DTensor (FSDP2) or a ZeRO-3 parameter; every rank must call
    this. A plain tensor is returned as is."""
    if hasattr(param, "ds_id"):
        import deepspeed

        with deepspeed.zero.GatheredParameters([param]):
            return param.detach().clone()
    data = param.detach()
    return data.full_tensor() if hasattr(data, "full_tensor") else data


def _local(param) -> torch.Tensor:
    if hasattr(param, "ds_tensor"):
        return param.ds_tensor
    data = param.detach()
    return data.to_local() if hasattr(data, "to_local") else data


def latent_rows(model, ids) -> dict:
    out = {}
    for key, module in (("embed", model.get_input_embeddings()), ("lm_head", model.get_output_embeddings())):
        full = _full(module.weight).double()
        out[key] = {
            "full_shape": list(full.shape),
            "local_shape": list(_local(module.weight).shape),
            "new_rows": full[ids].tolist(),
            "old_mean": full[: min(ids)].mean(0).tolist(),
        }
    return out


def shard(model):
    """FSDP2 as `accelerate launch` with the FSDP config would apply it (the plugin reads the launcher's env)."""
    import torch.distributed as dist
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.fsdp_utils import fsdp2_prepare_model

    plugin = FullyShardedDataParallelPlugin()
    if plugin.fsdp_version != 2:
        raise ValueError(f"expected fsdp_version 2 from the launcher's environment, got {plugin.fsdp_version}")
    accelerator = SimpleNamespace(
        state=SimpleNamespace(fsdp_plugin=plugin),
        torch_device_mesh=None,
        parallelism_config=None,
        is_main_process=dist.get_rank() == 0,
        mixed_precision="no",
        device=torch.device("cpu"),
    )
    return fsdp2_prepare_model(accelerator, model), plugin


def zero3_config() -> dict:
    import yaml

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "accelerate", "zero3.yaml")
    with open(path) as f:
        recipe = yaml.safe_load(f)["deepspeed_config"]
    if not recipe["zero3_init_flag"]:
        raise ValueError("zero3.yaml is expected to build the model partitioned (zero3_init_flag: true)")
    return {
        "train_micro_batch_size_per_gpu": 1,
        "gradient_accumulation_steps": 1,
        "gradient_clipping": 0.0,
        "zero_optimization": {"stage": recipe["zero_stage"]},
        "zero_allow_untested_optimizer": True,  # a torch AdamW
    }


def run(workdir: str, name: str) -> dict:
    import datasets
    import torch.distributed as dist
    from transformers import AutoProcessor

    from thinker4d.trainers import DIFTConfig, DIFTTrainer

    datasets.disable_progress_bars()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    ds_config = hf_ds_config = None
    if name == "zero3":
        from transformers.integrations import HfDeepSpeedConfig

        ds_config = zero3_config()
        hf_ds_config = HfDeepSpeedConfig(ds_config)  # from here on, from_pretrained builds inside zero.Init
    args = DIFTConfig(
        output_dir=os.path.join(workdir, f"out-{name}"),
        latent_size=2,
        activation_checkpointing=False,
        report_to="none",
        use_cpu=True,
        bf16=False,
        seed=0,
    )  # sets up the process group (gloo) when launched with 2 processes
    processor = AutoProcessor.from_pretrained(os.path.join(workdir, "base"))
    data = datasets.load_from_disk(os.path.join(workdir, "data"))
    trainer = DIFTTrainer(model=os.path.join(workdir, "base"), args=args, processing_class=processor)
    model = trainer.model
    result = {
        "world_size": world,
        "partitioned_at_load": sum(hasattr(p, "ds_id") for p in model.parameters()),
        "num_params": sum(1 for _ in model.parameters()),
    }
    config = model.config
    ids = [config.latent_start_id, config.latent_pad_id, config.latent_end_id]
    result["latent_ids"] = ids
    step_fn = None
    if ds_config is not None:
        import deepspeed

        params = [p for p in model.parameters() if p.requires_grad]
        engine, *_ = deepspeed.initialize(
            model=model, optimizer=torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0), config=ds_config
        )
        result["zero_stage"] = engine.zero_optimization_stage()

        def step_fn(loss):
            engine.backward(loss)
            engine.step()

        model = engine.module
    elif world > 1:
        model, plugin = shard(model)
        result["cpu_ram_efficient_loading"] = plugin.cpu_ram_efficient_loading
        result["fsdp_modules"] = sum(type(m).__name__.startswith("FSDP") for m in model.modules())
    model.train()
    result["before"] = latent_rows(model, ids)

    if step_fn is None:
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.0)

        def step_fn(loss):
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()

    rank = dist.get_rank() if world > 1 else 0
    losses = []
    for step in range(STEPS):
        rows = [2 * step + rank] if world > 1 else [2 * step, 2 * step + 1]
        total = torch.zeros(())
        for n, i in enumerate(rows):
            loss = trainer.compute_loss(model, trainer.data_collator([data[i]])) / len(rows)
            if n < len(rows) - 1:  # accumulate; the last row's step_fn runs the optimizer
                loss.backward()
            else:
                step_fn(loss)
            total += loss.detach()
        if world > 1:
            dist.all_reduce(total)
            total /= world
        losses.append(float(total))
    result["losses"] = losses
    result["after"] = latent_rows(model, ids)
    if rank == 0:
        with open(os.path.join(workdir, f"{name}.json"), "w") as f:
            json.dump(result, f)
    del hf_ds_config
    if world > 1:
        dist.destroy_process_group()
    return result


if __name__ == "__main__":
    torch.set_num_threads(1)
    run(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "sharded")
