"""Evaluation results: metrics computed from predictions, and the pictures drawn from them."""
