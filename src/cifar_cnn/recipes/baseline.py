"""The classic TensorFlow CIFAR-10 tutorial, as a recipe."""

from cifar_cnn.recipes.base import Recipe, register_recipe

BASELINE = register_recipe(
    Recipe(
        name="baseline",
        model="baseline",  # Conv(32)-Pool-Conv(64)-Pool-Conv(64)-Dense(64)-Dense(10)
        epochs=10,  # the tutorial's count; accuracy flattens near 70% after it
        batch_size=32,  # Keras' default, as in the tutorial
        optimizer="adam",  # Adam with Keras defaults, as in the tutorial
        learning_rate=1e-3,
        augmentation=None,  # the tutorial trains on the raw images
        precision="float32",  # the tutorial's precision; try --precision mixed_bfloat16
        tta=False,
        description="The plain CNN of the TensorFlow CIFAR-10 tutorial (about 70% in 10 epochs).",
    )
)
