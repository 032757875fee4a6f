"""The demo model's parts: training data (`data`), tokenizer, model and training loop (`train`),
evaluation through `attribution.analyze` (`evaluate`) and the model card (`card`).
Entry point: scripts/train_demo_model.py."""
