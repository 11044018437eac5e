"""The engine: the :class:`~colorize_cli.engine.colorizer.Colorizer` over ONNX Runtime or torch, weights
and their resolution (bundled, cache, Hub), on-demand ONNX export, metrics. Imports models and below."""
