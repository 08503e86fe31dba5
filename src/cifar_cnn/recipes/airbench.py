"""Fast recipes on the airbench network: ``fast94`` and ``quick``.

They follow airbench94_muon (Keller Jordan, github.com/KellerJordan/cifar10-airbench; the
method in arXiv:2404.00498): a frozen data-derived whitening layer, scale-free batch norm,
Muon for the conv kernels and Nesterov SGD at per-group rates for the rest, label smoothing,
alternating flips with 2-pixel shifts, large batches, a linear decay to zero, and flip+shift
test-time augmentation. The rates are airbench's, converted from its summed loss (x batch)
to Keras' mean loss. See README "Fast recipes" for what each choice measured here.
"""

from cifar_cnn.recipes.base import Recipe, register_recipe

BATCH = 2000

# airbench94_muon's SGD rates on a summed loss (bias 0.053, head 0.67) in mean-loss units,
# its weight decay (2e-6 x batch per step), and a whitening bias trained for 3 epochs only.
MUON_SGD_OPTIONS = {
    "momentum": 0.6,
    "ns_steps": 3,
    "sgd_learning_rate": 0.053 * BATCH,
    "sgd_learning_rates": {"head": 0.67 * BATCH},
    "sgd_momentum": 0.85,
    "sgd_weight_decay": 2e-6 * BATCH,
    "stop_after_epochs": {"whiten": 3},
}

FAST94 = register_recipe(
    Recipe(
        name="fast94",
        model="airbench",
        epochs=8,
        batch_size=BATCH,
        optimizer="muon_sgd",
        learning_rate=0.24,  # Muon's; the SGD groups' rates follow the same schedule
        lr_schedule="linear",
        optimizer_options=MUON_SGD_OPTIONS,
        label_smoothing=0.2,
        augmentation="alternating_flip_translate",
        precision="mixed_bfloat16",  # ~2x the float32 conv speed on AVX-512 bf16 CPUs
        tta="flip_translate",
        description="airbench94_muon in Keras: towards 94% test accuracy, fast on a CPU.",
    )
)
