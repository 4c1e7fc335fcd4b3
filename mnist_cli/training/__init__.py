"""Training: the networks, the compiled steps, the Python loop around them, checkpoints,
TensorBoard summaries, tf.distribute placement and the scoring used for validation."""
