"""``amicl namm ...`` (base model, evolution, evaluation) and ``amicl figures namm``. torch loads lazily."""

from __future__ import annotations

import os
from pathlib import Path

import click

from amicl.cli import CONTEXT, check_run_folder

POLICY_NAMES = ["full", "recency", "h2o", "l2", "random", "namm"]


def _threads(n):
    import torch

    torch.set_num_threads(n or os.cpu_count() or 1)


@click.group(context_settings=CONTEXT)
def namm():
    """Neural attention memory models: train the frozen base model, evolve NAMM, evaluate policies."""


@namm.command("train-base")
@click.option("--layers", type=int, default=4)
@click.option("--d-model", type=int, default=128)
@click.option("--heads", type=int, default=4)
@click.option("--kv-heads", type=int, default=2, help="Grouped KV heads.")
@click.option("--token-shift/--no-token-shift", default=True, show_default=True,
              help="Add the previous token's embedding to each input (see GPTConfig).")
@click.option("--steps", type=int, default=4000)
@click.option("--batch", type=int, default=16)
@click.option("--lr", type=float, default=1e-3)
@click.option("--min-context", type=int, default=128)
@click.option("--max-context", type=int, default=1024)
@click.option("--queries", type=int, default=8, help="Questions per training prompt, each answer supervised.")
@click.option("--curriculum", type=click.IntRange(min=0), default=1000, show_default=True,
              help="Steps at each context length before the next doubling is admitted (0: all lengths from the start).")
@click.option("--tasks", default=None, help="Comma-separated tasks to train on [default: all six].")
@click.option("--eval-every", type=int, default=250)
@click.option("--seed", type=click.IntRange(min=0), default=0)
@click.option("--threads", type=click.IntRange(min=1), default=None)
@click.option("--out", type=click.Path(file_okay=False), required=True)
@click.option("--resume", is_flag=True)
def train_base(layers, d_model, heads, kv_heads, token_shift, steps, batch, lr, min_context, max_context, queries,
               curriculum, tasks, eval_every, seed, threads, out, resume):
    """Train the small GPT (rotary, grouped KV heads) on the synthetic long-context tasks."""
    from evolution.base import BaseConfig, BaseTrainer
    from transformers_mini.config import GPTConfig

    _threads(threads)
    out = Path(out)
    model = GPTConfig(vocab_size=256, block_size=max(4096, max_context), n_layer=layers, n_head=heads,
                      n_kv_head=kv_heads, d_model=d_model, pos="rotary", token_shift=token_shift)
    picked = {"tasks": tuple(t.strip() for t in tasks.split(",") if t.strip())} if tasks else {}
    cfg = BaseConfig(model=model, **picked,
                     min_context=min_context, max_context=max_context, queries=queries, curriculum=curriculum,
                     steps=steps, batch=batch, lr=lr, eval_every=eval_every, seed=seed)
    check_run_folder(out, "base.pt", resume)
    trainer = BaseTrainer(cfg)
    if resume:
        trainer.load(out)
    click.echo(f"base model: {trainer.model.n_params():,} parameters", err=True)
    hist = trainer.fit(out)
    click.echo("  ".join(f"{k}={v:.3f}" for k, v in hist[-1].items() if k != "step") if hist else "no steps run")


@namm.command("evolve")
@click.option("--base", "base_dir", type=click.Path(exists=True, file_okay=False), required=True, help="train-base run.")
@click.option("--stages", default="kv_retrieval;kv_retrieval,variable_tracking", show_default=True,
              help="Semicolon-separated stages, each a comma-separated task list.")
@click.option("--generations", default="20,20", show_default=True, help="Generations per stage.")
@click.option("--scorer", type=click.Choice(["bam", "mlp"]), default="bam")
@click.option("--mask", type=click.Choice(["backward", "none", "forward"]), default="backward")
@click.option("--popsize", type=int, default=16)
@click.option("--sigma0", type=float, default=0.065)
@click.option("--full-cma", is_flag=True, help="Full covariance instead of separable CMA-ES.")
@click.option("--n-up", type=int, default=64, help="Tokens between memory updates (multiple of 16).")
@click.option("--context", type=int, default=1024)
@click.option("--prompts", type=int, default=16, help="Prompts per task per generation.")
@click.option("--dev-prompts", type=int, default=128)
@click.option("--dev-every", type=int, default=5)
@click.option("--metric", type=click.Choice(["accuracy", "prob"]), default="prob", show_default=True,
              help="Fitness score: exact match, or the probability of the right answer (smooth).")
@click.option("--seed", type=click.IntRange(min=0), default=0)
@click.option("--threads", type=click.IntRange(min=1), default=None)
@click.option("--out", type=click.Path(file_okay=False), required=True)
@click.option("--resume", is_flag=True)
def evolve(base_dir, stages, generations, scorer, mask, popsize, sigma0, full_cma, n_up, context, prompts, dev_prompts,
           dev_every, metric, seed, threads, out, resume):
    """Evolve a NAMM scorer with CMA-ES on the base model, stage by stage, checkpointing every generation."""
    from evolution.base import load_base
    from evolution.evolve import EvolveConfig, Evolution

    _threads(threads)
    out = Path(out)
    try:
        gens = tuple(int(g) for g in generations.split(","))
    except ValueError:
        raise click.BadParameter(f"{generations!r} is not a comma-separated list of integers",
                                 param_hint="--generations") from None
    cfg = EvolveConfig(stages=tuple(tuple(t.strip() for t in s.split(",")) for s in stages.split(";")),
                       generations=gens, scorer=scorer, mask=mask, popsize=popsize, sigma0=sigma0,
                       separable=not full_cma, n_up=n_up, context=context, prompts_per_task=prompts,
                       dev_prompts=dev_prompts, dev_every=dev_every, metric=metric, seed=seed)
    check_run_folder(out, "evolution.pkl", resume)
    run = Evolution(cfg, load_base(base_dir))
    if resume:
        run.load(out)
        click.echo(f"resuming at generation {run.engine.generation}", err=True)
    hist = run.run(out)
    click.echo(f"best dev mean fitness {run.best['dev']:.4f} at generation {run.best['generation']}; "
               f"last generation: {hist[-1]['fitness_mean']:.4f} mean fitness, "
               f"{hist[-1]['cache_fraction_mean']:.3f} cache fraction")


@namm.command("eval")
@click.option("--base", "base_dir", type=click.Path(exists=True, file_okay=False), required=True)
@click.option("--policy", type=click.Choice(POLICY_NAMES), required=True)
@click.option("--namm", "namm_dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="evolve run whose best mean to use (--policy namm).")
@click.option("--budget", default=None, help="Comma-separated token budgets per (layer, head), one eval each.")
@click.option("--budget-fraction", default=None, help="Comma-separated budgets as fractions of --context.")
@click.option("--match", "match_dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="A NAMM eval folder: use its measured per-layer average cache as the budget.")
@click.option("--tasks", default="kv_retrieval,passage_retrieval,variable_tracking,icl_classification,needle,multi_hop")
@click.option("--prompts", type=int, default=64)
@click.option("--context", type=int, default=1024)
@click.option("--n-up", type=int, default=64)
@click.option("--metric", type=click.Choice(["accuracy", "prob"]), default="accuracy")
@click.option("--seed", type=click.IntRange(min=0), default=1)
@click.option("--threads", type=click.IntRange(min=1), default=None)
@click.option("--out", type=click.Path(file_okay=False), required=True)
def eval_cmd(base_dir, policy, namm_dir, budget, budget_fraction, match_dir, tasks, prompts, context, n_up, metric, seed,
             threads, out):
    """Score a memory policy on the tasks, normalised by the full cache on the same prompts."""
    from evolution.evaluate import evaluate_policy, parse_budgets

    _threads(threads)
    budgets = parse_budgets(policy, budget, budget_fraction, match_dir, context)
    rows = evaluate_policy(Path(base_dir), policy, Path(namm_dir) if namm_dir else None, budgets,
                           [t.strip() for t in tasks.split(",") if t.strip()], prompts, context, n_up, metric, seed,
                           Path(out))
    for r in rows:
        click.echo(f"{r['policy']:8s} budget={r['budget']!s:>8s} {r['task']:20s} normalised {r['normalised']:.3f} "
                   f"cache {r['cache_fraction']:.3f}")


@namm.command("table")
@click.argument("evals", nargs=-1, type=click.Path(exists=True, file_okay=False), required=True)
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Also write table.md and table.csv here.")
def table(evals, out):
    """Normalised score per policy and task with bootstrap 95% intervals, from eval folders on the same prompts;
    tasks outside the NAMM's evolution stages count as held out, and NAMM is compared with each policy, paired."""
    from amicl.results import atomic_write_bytes, read_json, write_csv
    from evolution.evaluate import summary_table
    from evolution.evolve import EvolveConfig

    dirs = [Path(e) for e in evals]
    evolved = [read_json(d / "config.json")["eval"].get("namm") for d in dirs]
    evolved = [Path(e) for e in evolved if e and (Path(e) / "config.json").exists()]
    stages = read_json(evolved[0] / "config.json")["evolve"]["stages"] if evolved else EvolveConfig().stages
    rows, md = summary_table(dirs, {t for s in stages for t in s})
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        write_csv(Path(out) / "table.csv", rows)
        atomic_write_bytes(Path(out) / "table.md", md.encode())
    click.echo(md, nl=False)


@click.command("namm")
@click.argument("runs", nargs=-1, type=click.Path(exists=True, file_okay=False), required=True)
@click.option("--out", type=click.Path(file_okay=False), required=True)
@click.option("--format", "formats", default="png,pdf")
def figures_namm(runs, out, formats):
    """Fitness and cache curves of evolve runs, score vs cache fraction of eval runs, kept-token layers and ages."""
    from evolution.figures import draw_namm

    for p in draw_namm([Path(r) for r in runs], Path(out), tuple(f.strip() for f in formats.split(",") if f.strip())):
        click.echo(p)
