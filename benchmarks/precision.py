"""Training speed of each ``precision="auto"`` recipe's network in float32 and bfloat16.

What ``"auto"`` (cifar_cnn.training.precision) decides from the hardware, set beside what
each policy really costs here: whole training steps (``model.fit`` with the recipe's
optimizer and loss, random uint8 images), each policy in a fresh process, the two policies
alternating ``--repeats`` times so that drift in the host's speed falls on both. Per run,
the median step of ``--steps``; reported, the median and range over the repeats.

Usage:
    python -m benchmarks.precision --batch 500 --steps 8 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics

from benchmarks.common import run_child, write_result

POLICIES = ("float32", "mixed_bfloat16")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--steps", type=int, default=8, help="timed steps per run")
    p.add_argument("--repeats", type=int, default=3, help="runs per recipe and policy")
    p.add_argument("--child", nargs=2, metavar=("RECIPE", "POLICY"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        from benchmarks.profile_step import step_images_per_second

        recipe, policy = args.child
        ips = step_images_per_second("full", args.batch, args.steps, policy, recipe=recipe)
        print(json.dumps({"images_per_second": ips}))
        return

    from cifar_cnn.environment import cpu_flags
    from cifar_cnn.recipes import get_recipe, list_recipes
    from cifar_cnn.training.precision import resolve_precision

    chosen, reason = resolve_precision("auto")
    # One recipe per network: lean94 trains fast94's network (on smaller images at first).
    networks: dict[str, str] = {}
    for n in list_recipes():
        r = get_recipe(n)
        if r.precision == "auto":
            networks.setdefault(f"{r.model} {sorted(r.model_options.items())}", n)
    recipes = list(networks.values())
    speeds: dict[str, dict[str, list[float]]] = {n: {q: [] for q in POLICIES} for n in recipes}
    for i in range(args.repeats):
        for name in recipes:
            for policy in POLICIES if i % 2 == 0 else POLICIES[::-1]:
                out = run_child(["benchmarks.precision", "--child", name, policy,
                                 "--batch", str(args.batch), "--steps", str(args.steps)])
                speeds[name][policy].append(round(out["images_per_second"], 1))
                print(name, policy, speeds[name][policy][-1], "images/s", flush=True)
    results = {}
    for name, by_policy in speeds.items():
        med = {q: statistics.median(v) for q, v in by_policy.items()}
        results[name] = {
            **{q: {"images_per_second_median": med[q], "range": [min(v), max(v)], "runs": v}
               for q, v in by_policy.items()},
            "bfloat16_over_float32": round(med["mixed_bfloat16"] / med["float32"], 3),
            "auto_chose_the_faster": med[chosen] >= max(med.values()),
        }
        print(f"{name}: float32 {med['float32']:.0f}, bfloat16 {med['mixed_bfloat16']:.0f} "
              f"images/s; auto -> {chosen}", flush=True)
    path = write_result("precision", {
        "batch_size": args.batch, "steps": args.steps, "repeats": args.repeats,
        "auto_chooses": chosen, "auto_reason": reason,
        "cpu_bf16_flags": sorted(cpu_flags() & {"avx512_bf16", "amx_bf16", "amx_tile"}),
        "recipes": results,
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
