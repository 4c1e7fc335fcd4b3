"""The network: building it, its compiled steps, scoring, weights, and the exported contract."""
